#!/usr/bin/env python3
"""Write smoothed BLEU-4 scores as CodeXGLUE's code-to-text evaluator computes them, the reference for calm4j's
``dev.calm4j.eval.SmoothBleu``.

The reference is ``Code-Text/code-to-text/evaluator/evaluator.py`` of microsoft/CodeXGLUE (identical to
``Code-Text/code-to-text/code/bleu.py``), at commit ac74a62802a0dd159b3258c78a2df8ad36cdf2b9 (file last changed in
90f11dc34f14fb3995631f4cab53d9b8ed9d2ecd):
https://github.com/microsoft/CodeXGLUE/blob/ac74a62802a0dd159b3258c78a2df8ad36cdf2b9/Code-Text/code-to-text/evaluator/evaluator.py
CodeXGLUE is not a package, so its functions are transcribed below unchanged (only reformatted, Python 2-isms none),
and driven as its ``__main__`` drives them: each hypothesis and reference goes through ``splitPuncts(s.strip().lower())``
(computeMaps), then ``bleu([ref], hyp)[0]`` per sentence, and the corpus score is the mean of those ×100
(bleuFromMaps).

Independent check: where sacrebleu's definition coincides with this one, the two must agree, and the script
stops if they do not. sacrebleu's ``BLEU(tokenize='none', smooth_method='add-k', smooth_value=1)`` adds 1 to the
matches and totals of orders 2-4 as CodeXGLUE does; its brevity penalty is exp(1 - r/c), CodeXGLUE's
exp(min(0, 1 - (r+1)/(c+1))): both are 1 when the hypothesis is at least as long as the reference. So for pairs
whose (CodeXGLUE-tokenized) hypothesis has >= 4 tokens, is not shorter than the reference and has a unigram match,
sacrebleu's sentence score of the tokens joined by spaces, /100, equals CodeXGLUE's. NLTK's ``method2`` smoothing
is the same add-one on orders 2-4 (recent NLTK) with NLTK's brevity penalty, so the same subset is checked with it
when NLTK is installed.

Run with a Python that has sacrebleu 2.x (written with 2.6.0 and NLTK 3.10.3; a venv from the local index:
``python3 -m venv /tmp/venv && /tmp/venv/bin/pip install sacrebleu nltk``):

    python3 tools/make_bleu_golden.py     # writes calm4j-core/src/test/resources/golden/bleu/bleu.json

Deterministic: a rerun writes the same bytes.
"""
import json
import math
import os
import re
import sys
import xml.sax.saxutils

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "calm4j-core", "src", "test", "resources", "golden", "bleu")

# ---- CodeXGLUE evaluator.py, transcribed (module globals as there) -------------------------------------------------
nonorm = 0
preserve_case = False
eff_ref_len = "shortest"

normalize1 = [
    ('<skipped>', ''),         # strip "skipped" tags
    (r'-\n', ''),              # strip end-of-line hyphenation and join lines
    (r'\n', ' '),              # join lines
]
normalize1 = [(re.compile(pattern), replace) for (pattern, replace) in normalize1]

normalize2 = [
    (r'([\{-\~\[-\` -\&\(-\+\:-\@\/])', r' \1 '),  # tokenize punctuation. apostrophe is missing
    (r'([^0-9])([\.,])', r'\1 \2 '),              # tokenize period and comma unless preceded by a digit
    (r'([\.,])([^0-9])', r' \1 \2'),              # tokenize period and comma unless followed by a digit
    (r'([0-9])(-)', r'\1 \2 ')                    # tokenize dash when preceded by a digit
]
normalize2 = [(re.compile(pattern), replace) for (pattern, replace) in normalize2]


def normalize(s):
    if (nonorm):
        return s.split()
    if type(s) is not str:
        s = " ".join(s)
    for (pattern, replace) in normalize1:
        s = re.sub(pattern, replace, s)
    s = xml.sax.saxutils.unescape(s, {'&quot;': '"'})
    s = " %s " % s
    if not preserve_case:
        s = s.lower()
    for (pattern, replace) in normalize2:
        s = re.sub(pattern, replace, s)
    return s.split()


def count_ngrams(words, n=4):
    counts = {}
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            ngram = tuple(words[i:i + k])
            counts[ngram] = counts.get(ngram, 0) + 1
    return counts


def cook_refs(refs, n=4):
    refs = [normalize(ref) for ref in refs]
    maxcounts = {}
    for ref in refs:
        counts = count_ngrams(ref, n)
        for (ngram, count) in counts.items():
            maxcounts[ngram] = max(maxcounts.get(ngram, 0), count)
    return ([len(ref) for ref in refs], maxcounts)


def cook_test(test, item, n=4):
    (reflens, refmaxcounts) = item
    test = normalize(test)
    result = {}
    result["testlen"] = len(test)
    if eff_ref_len == "shortest":
        result["reflen"] = min(reflens)
    elif eff_ref_len == "average":
        result["reflen"] = float(sum(reflens)) / len(reflens)
    elif eff_ref_len == "closest":
        min_diff = None
        for reflen in reflens:
            if min_diff is None or abs(reflen - len(test)) < min_diff:
                min_diff = abs(reflen - len(test))
                result['reflen'] = reflen
    result["guess"] = [max(len(test) - k + 1, 0) for k in range(1, n + 1)]
    result['correct'] = [0] * n
    counts = count_ngrams(test, n)
    for (ngram, count) in counts.items():
        result["correct"][len(ngram) - 1] += min(refmaxcounts.get(ngram, 0), count)
    return result


def score_cooked(allcomps, n=4, ground=0, smooth=1):
    totalcomps = {'testlen': 0, 'reflen': 0, 'guess': [0] * n, 'correct': [0] * n}
    for comps in allcomps:
        for key in ['testlen', 'reflen']:
            totalcomps[key] += comps[key]
        for key in ['guess', 'correct']:
            for k in range(n):
                totalcomps[key][k] += comps[key][k]
    logbleu = 0.0
    all_bleus = []
    for k in range(n):
        correct = totalcomps['correct'][k]
        guess = totalcomps['guess'][k]
        addsmooth = 0
        if smooth == 1 and k > 0:
            addsmooth = 1
        logbleu += math.log(correct + addsmooth + sys.float_info.min) - math.log(guess + addsmooth + sys.float_info.min)
        if guess == 0:
            all_bleus.append(-10000000)
        else:
            all_bleus.append(math.log(correct + sys.float_info.min) - math.log(guess))
    logbleu /= float(n)
    all_bleus.insert(0, logbleu)
    brevPenalty = min(0, 1 - float(totalcomps['reflen'] + 1) / (totalcomps['testlen'] + 1))
    for i in range(len(all_bleus)):
        if i == 0:
            all_bleus[i] += brevPenalty
        all_bleus[i] = math.exp(all_bleus[i])
    return all_bleus


def bleu(refs, candidate, ground=0, smooth=1):
    refs = cook_refs(refs)
    test = cook_test(candidate, refs)
    return score_cooked([test], ground=ground, smooth=smooth)


def splitPuncts(line):
    return ' '.join(re.findall(r"[\w]+|[^\s\w]", line))


def bleuFromMaps(m1, m2):
    score = [0] * 5
    num = 0.0
    for key in m1:
        if key in m2:
            bl = bleu(m1[key], m2[key][0])
            score = [score[i] + bl[i] for i in range(0, len(bl))]
            num += 1
    return [s * 100.0 / num for s in score]
# ---- end of the transcription --------------------------------------------------------------------------------------


def prepared(s):
    """What computeMaps does to a prediction or reference column."""
    return splitPuncts(s.strip().lower())


PAIRS = [
    ("Returns the maximum of the given values.", "Returns the maximum of the given values."),
    ("Returns the max of two values", "Returns the maximum of the given values."),
    ("Gets the value.", "Returns the value of this field, or null if it is not set."),
    ("", "Returns the length of the string."),
    ("Something", ""),
    ("", ""),
    ("Creates a new ArrayList<String> from the given Iterable.", "Creates a mutable ArrayList instance containing the given elements."),
    ("Checks if a CharSequence is empty (\"\") or null.", "Checks if a CharSequence is empty (\"\"), null or whitespace only."),
    ("Returns a view of the map's keys; the view's iterator is fail-fast", "Returns an unmodifiable view of the map's keys."),
    ("Converts Java time (milliseconds since Epoch) to NTFS time.", "Converts NTFS time (100 nanosecond units since 1 January 1601) to Java time."),
    ("get_value returns the value of x_1", "getValue returns the value of x1"),
    ("Returns n!, that is, the product of the first n positive integers, 1 if n == 0.", "Returns n!, the product of the first n positive integers."),
    ("Version 3.14 of the API, see section 2-3.", "Version 3.14 of the API (see sections 2 - 3)."),
    ("Returns 1 if x < y as unsigned integers, and 0 otherwise.", "Returns 1 if x &lt; y as unsigned integers, and 0 otherwise."),
    ("Decodes a string: \"a,b\" -> [a, b]", "Decodes a comma-separated string into its parts."),
    ("a b c d", "a b c d"),
    ("a b c d e", "a b c d"),
    ("a b c", "a b c d"),
    ("a", "a"),
    ("the the the the", "the cat is on the mat"),
    ("the cat the cat on the mat", "the cat is on the mat"),
    ("RETURNS THE VALUE", "returns the value"),
    ("  leading and   trailing  spaces  ", "leading and trailing spaces"),
    ("tabs\tand\nnewlines in\r\nthe text", "tabs and newlines in the text"),
    ("Überprüft die Größe", "überprüft die größe der datei"),
    ("Returns the value in µs", "Returns the value in μs"),
    ("İstanbul ΣΊΣΥΦΟΣ", "istanbul σίσυφος"),
    ("日本語のテキスト", "日本語のテキストです"),
    ("x² and 2½ and ①", "x2 and 2 1/2 and 1"),
    ("foo‿bar a\u0301b", "foo bar ab"),
    ("Sets the maxCodeLen.", "Sets the maxCodeLen."),
    ("Sets the value.", "Sets the maxCodeLen."),
    ("<skipped> a-\nb", "a b"),
    ("1,000.5 and 1.5, then 2-3", "1,000.5 and 1.5 , then 2 - 3"),
    ("... !!! ???", "!!!"),
    ("{@code foo} #bar @baz $qux %x ^y ~z `w` |v|", "foo bar baz qux"),
    ("Returns an estimate of the standard deviation of each parameter.", "Returns the standard deviation of each parameter."),
    ("Parses a string to produce a Vector3D object.", "Parses a string to produce a Vector3D object"),
    ("Tests whether the file exists.", "Tests whether the file or directory denoted by this path exists."),
    ("Deletes a directory recursively, quietly.", "Deletes a file, never throwing an exception."),
]

SLICES = [(0, 10), (5, 9), (15, 22), (30, 40)]


def main():
    sentences = []
    for h, r in PAIRS:
        ph, pr = prepared(h), prepared(r)
        refs = cook_refs([pr])
        test = cook_test(ph, refs)
        sentences.append({
            "hyp": h, "ref": r,
            "hyp_tokens": normalize(ph), "ref_tokens": normalize(pr),
            "testlen": test["testlen"], "reflen": test["reflen"],
            "guess": test["guess"], "correct": test["correct"],
            "bleu": bleu([pr], ph)[0],
        })
    ids = [str(i) for i in range(len(PAIRS))]
    gold = {i: [prepared(r)] for i, (_, r) in zip(ids, PAIRS)}
    pred = {i: [prepared(h)] for i, (h, _) in zip(ids, PAIRS)}
    corpus = bleuFromMaps(gold, pred)[0]
    slices = []
    for a, b in SLICES:
        g = {i: gold[i] for i in ids[a:b]}
        slices.append({"from": a, "to": b, "score": bleuFromMaps(g, pred)[0]})

    # The independent check on the subset where the definitions coincide.
    from sacrebleu.metrics import BLEU
    sb = BLEU(tokenize='none', smooth_method='add-k', smooth_value=1, effective_order=True)
    try:
        from nltk.translate.bleu_score import sentence_bleu, SmoothingFunction
        method2 = SmoothingFunction().method2
    except ImportError:
        sentence_bleu = None
    checked = 0
    for s in sentences:
        ht, rt = s["hyp_tokens"], s["ref_tokens"]
        if len(ht) >= 4 and len(ht) >= len(rt) and s["correct"][0] > 0:
            theirs = sb.sentence_score(" ".join(ht), [" ".join(rt)]).score / 100
            if abs(theirs - s["bleu"]) > 1e-12:
                sys.exit(f"sacrebleu disagrees on {s['hyp']!r} / {s['ref']!r}: {theirs} vs {s['bleu']}")
            if sentence_bleu is not None:
                n = sentence_bleu([rt], ht, smoothing_function=method2)
                if abs(n - s["bleu"]) > 1e-12:
                    sys.exit(f"NLTK disagrees on {s['hyp']!r} / {s['ref']!r}: {n} vs {s['bleu']}")
            checked += 1
    if checked < 8:
        sys.exit(f"only {checked} pairs where sacrebleu's definition coincides; add some")

    os.makedirs(OUT, exist_ok=True)
    doc = {
        "reference": "microsoft/CodeXGLUE Code-Text/code-to-text/evaluator/evaluator.py @ ac74a62802a0dd159b3258c78a2df8ad36cdf2b9",
        "checked_against_sacrebleu": checked,
        "checked_against_nltk": checked if sentence_bleu is not None else 0,
        "sentences": sentences,
        "corpus": corpus,
        "slices": slices,
    }
    with open(os.path.join(OUT, "bleu.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(sentences)} pairs, corpus {corpus!r}; {checked} checked against sacrebleu"
          + (" and NLTK" if sentence_bleu is not None else ""))


if __name__ == "__main__":
    main()
