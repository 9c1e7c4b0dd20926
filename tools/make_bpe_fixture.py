#!/usr/bin/env python3
"""Write what HF's Python ``tokenizers`` makes of a few texts with the tokenizer.json calm4j's BpeTrainer wrote.

Run by hand with any Python that has the ``tokenizers`` package, after the Java trainer has written the fixture
(``BpeTrainerTest`` with ``-Dcalm4j.bpe.writeFixture=true`` trains ``corpus.txt`` into ``tokenizer.json``):

    python3 tools/make_bpe_fixture.py     # writes calm4j-core/src/test/resources/tokenizers/bpe_trained/expected.json

For each text: the ids (no special tokens are added: the file has no post-processor), each token's end in the
text (code points; a token without a span ends where the one before it ends), and ``decode(ids)`` with special
tokens skipped. ``BpeTrainerTest.idsAndEndsMatchThePythonTokenizers`` checks calm4j (DJL) against it.
"""
import json
import os

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = os.path.join(HERE, "..", "calm4j-core", "src", "test", "resources", "tokenizers", "bpe_trained")

TEXTS = [
    "El niño come una manzana en la cocina.",
    "¿Dónde está la estación de información?",
    "The children play in the garden.",
    "Mañana, él compró azúcar y café.",
    "¡Hola!  Two spaces, a tab\tand\na newline.",
    " leading and trailing space ",
    "Zürich ½ 😀 ünknown",
    "a",
    "",
]


def ends(encoding):
    out, last = [], 0
    for start, end in encoding.offsets:
        if end > start:
            last = max(last, end)
        out.append(last)
    return out


def main():
    tok = Tokenizer.from_file(os.path.join(DIR, "tokenizer.json"))
    cases = []
    for text in TEXTS:
        enc = tok.encode(text)
        cases.append({"text": text, "ids": enc.ids, "ends": ends(enc), "tokens": enc.tokens,
                      "decoded": tok.decode(enc.ids)})
    with open(os.path.join(DIR, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    for c in cases:
        print(repr(c["text"]), c["tokens"], c["ends"], repr(c["decoded"]))


if __name__ == "__main__":
    main()
