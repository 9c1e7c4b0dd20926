#!/usr/bin/env python3
"""Write the small tokenizer.json fixtures that composing models with different tokenizers is tested on.

Run by hand with a Python that has the `tokenizers` package (no network needed):

    python3 tools/make_tokenizer_fixtures.py     # writes calm4j-core/src/test/resources/tokenizers/<name>/

Each folder gets ``tokenizer.json`` and ``expected.json``: for a few texts, the ids and each token's end in the text
as the Python ``tokenizers`` package computes them (the reference for calm4j's ``Tokenizer.encodeWithEnds``).

* ``bpe``: a byte-level BPE (GPT-2's pre-tokenizer and decoder) trained on the corpus below, vocabulary up to 659 (the corpus allows fewer), with a
  post-processor that puts ``<s>`` (id 1) before every sequence, as Llama's tokenizers do. ``<pad>`` is 0, ``</s>`` 2.
* ``bpe_merges``: the same trainer and corpus with 25 merges only: the same text cut into other pieces, so two
  models that share no token boundaries can be composed over the same text.

The corpus is a few lines of key-value sums and English, so that both vocabularies hold multi-character pieces of
what the tests write. Training is deterministic for a fixed corpus and vocabulary size.
"""
import json
import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "calm4j-core", "src", "test", "resources", "tokenizers")

CORPUS = [
    "abc+def=123", "xtyqh+wo=57", "k1 plus k2 is the sum", "the anchor reads the text",
    "the augment knows the keys", "a bridge adds what it reads", "numbers: 0 1 2 3 4 5 6 7 8 9",
    "hello world, hello composition", "key=value; value=key", "é and 😀 are characters too",
] * 20


def build(vocab_size):
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


TEXTS = ["abc+def=123", "the sum of xtyqh and é😀 is 57", ""]


def ends(encoding):
    """Each token's end in the text; a token without a span ends where the one before it ends (0 for the first)."""
    out, last = [], 0
    for start, end in encoding.offsets:
        if end > start:
            last = max(last, end)
        out.append(last)
    return out


def main():
    for name, size in (("bpe", 3 + 256 + 400), ("bpe_merges", 3 + 256 + 25)):
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        tok = build(size)
        tok.save(os.path.join(d, "tokenizer.json"))
        cases = []
        for text in TEXTS:
            enc = tok.encode(text)
            cases.append({"text": text, "ids": enc.ids, "ends": ends(enc)})
        with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
            json.dump(cases, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(name, tok.get_vocab_size(), [c["ends"] for c in cases])


if __name__ == "__main__":
    main()
