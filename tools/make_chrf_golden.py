#!/usr/bin/env python3
"""Write chrF2 scores computed by sacrebleu, the reference for calm4j's ``dev.calm4j.eval.ChrF``.

Run by hand with a Python that has sacrebleu 2.x (written with 2.6.0):

    python3 tools/make_chrf_golden.py     # writes calm4j-core/src/test/resources/golden/chrf/chrf.json

``chrf.json`` holds, for ~30 hypothesis/reference pairs, sacrebleu's sentence-level ``.score`` (unrounded float)
and sufficient statistics, with ``CHRF()`` (the defaults: char_order 6, word_order 0, beta 2, whitespace removed,
eps_smoothing False) and with ``CHRF(eps_smoothing=True)``; the corpus ``.score`` of all pairs and of a few
slices; sacrebleu's own bootstrap (1,000 resamples, numpy, seed 12345) interval half-width for the whole corpus,
which calm4j's seeded java.util.Random resampling can only approximate; and the code points Python's
``str.split()`` treats as whitespace. Deterministic: a rerun writes the same bytes.
"""
import json
import os
import sys

import sacrebleu
from sacrebleu.metrics import CHRF

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "calm4j-core", "src", "test", "resources", "golden", "chrf")

PAIRS = [
    ("El niño come una manzana en la cocina.", "El niño come una manzana en la cocina."),
    ("El nino come una manzana en la cocina.", "El niño come una manzana en la cocina."),
    ("La niña lee un libro.", "La niña está leyendo un libro en el jardín."),
    ("¿Dónde está la estación de tren?", "¿Dónde queda la estación del tren?"),
    ("Mañana vamos a la montaña.", "Mañana iremos a la montaña con nuestros amigos."),
    ("", "Esta frase no tiene traducción."),
    ("Algo", ""),
    ("", ""),
    ("The cat sat on the mat.", "El gato se sentó en la alfombra."),
    ("xyzzy qwerty", "El pájaro canta en el árbol."),
    ("Él compró café, azúcar y leche.", "Él compró café, leche y azúcar."),
    ("¡Qué día tan bonito!", "¡Qué día más bonito hace hoy!"),
    ("sí", "sí"),
    ("no", "sí"),
    ("a", "a"),
    ("ab", "abc"),
    ("abcde", "abcdef"),
    ("hola", "hola mundo"),
    ("hola mundo", "hola"),
    ("  espacios   de   más  ", "espacios de más"),
    ("sin\tespacios\nnormales", "sin espacios normales"),
    ("no\u00a0breaking\u2009thin\u3000wide", "no breaking thin wide"),
    ("información, comunicación y educación", "la información y la educación"),
    ("Los niños juegan en el parque después de la escuela.",
     "Después de la escuela, los niños juegan en el parque."),
    ("La ciudad tiene calles estrechas.", "La ciudad tiene muchas calles estrechas y antiguas."),
    ("El tren sale a las ocho.", "El tren sale de la estación a las ocho y media."),
    ("...", "!!!"),
    ("«Hola», dijo ella — ¿y tú?", "«Hola», dijo ella, ¿y tú?"),
    ("ÉL COMPRÓ CAFÉ", "él compró café"),
    ("😀 feliz 😀", "feliz 😀"),
    ("El perro duerme junto a la puerta de la casa.", "El perro duerme junto a la puerta de la casa"),
    ("aaaaaaaa", "aaaa"),
]

SLICES = [(0, 10), (5, 9), (8, 10), (20, 32)]


def main():
    default, eps = CHRF(), CHRF(eps_smoothing=True)
    hyps = [h for h, _ in PAIRS]
    refs = [r for _, r in PAIRS]
    sentences = []
    for h, r in PAIRS:
        stats = default._extract_corpus_statistics([h], [[r]])[0]
        sentences.append({
            "hyp": h, "ref": r, "stats": [int(x) for x in stats],
            "score": default.sentence_score(h, [r]).score,
            "score_eps": eps.sentence_score(h, [r]).score,
        })
    corpus = {"score": default.corpus_score(hyps, [refs]).score,
              "score_eps": eps.corpus_score(hyps, [refs]).score}
    slices = []
    for a, b in SLICES:
        slices.append({"from": a, "to": b, "score": default.corpus_score(hyps[a:b], [refs[a:b]]).score,
                       "score_eps": eps.corpus_score(hyps[a:b], [refs[a:b]]).score})
    os.environ["SACREBLEU_SEED"] = "12345"
    boot = CHRF().corpus_score(hyps, [refs], n_bootstrap=1000)
    data = {
        "sacrebleu": sacrebleu.__version__,
        "signature": str(default.get_signature()),
        "python_whitespace": [c for c in range(sys.maxunicode + 1) if chr(c).isspace()],
        "sentences": sentences,
        "corpus": corpus,
        "slices": slices,
        "bootstrap": {"n": 1000, "seed": 12345, "mean": float(boot._mean), "half_width": float(boot._ci)},
    }
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "chrf.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(data["signature"], "corpus", corpus, "bootstrap", data["bootstrap"])
    for s in sentences:
        print(f"{s['score']:8.4f} {s['score_eps']:8.4f}  {s['hyp']!r} | {s['ref']!r}")


if __name__ == "__main__":
    main()
