package dev.calm4j.eval;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Smoothed BLEU-4 as CodeXGLUE's code-to-text evaluator computes it ({@code Code-Text/code-to-text/evaluator/
 * evaluator.py} of microsoft/CodeXGLUE, commit ac74a62; the score the code-summarisation literature reports), one
 * reference per hypothesis:
 * <ol>
 *   <li>each side is prepared as its {@code computeMaps} does: Python's {@code strip()}, {@code lower()}, then
 *       {@code splitPuncts}: runs of word characters (Python's {@code \w}: letters, numbers, {@code _}) and single
 *       other non-space characters, joined by spaces;</li>
 *   <li>then tokenized by its {@code normalize} (from NIST mteval-v11a): {@code <skipped>} removed, lines joined,
 *       {@code &lt; &gt; &quot; &amp;} unescaped, lower-cased, the punctuation {@code {|}~[\]^_`} space through
 *       {@code &}, {@code (} through {@code +}, {@code :} through {@code @} and {@code /} split off, periods and commas
 *       split off unless between digits, a dash after a digit split off; split on whitespace;</li>
 *   <li>a sentence's score is {@code exp(mean over n=1..4 of log((m_n + s_n) / (g_n + s_n)) + min(0, 1 - (r+1)/(c+1)))}
 *       with m_n the clipped n-gram matches, g_n the hypothesis' n-grams, s_n = 0 for unigrams and 1 above (the
 *       smoothing of Lin and Och 2004), r and c the reference and hypothesis lengths in tokens; Python's
 *       {@code sys.float_info.min} is added inside each log as there, so no match of unigrams gives ~0 rather than an
 *       error, and an empty hypothesis scores {@code exp(-r)};</li>
 *   <li>the corpus score is 100 × the mean of the sentence scores (not BLEU of summed statistics).</li>
 * </ol>
 * Scores are on the 0–100 scale, unrounded. {@code tools/make_bleu_golden.py} transcribes the reference and checks it
 * against sacrebleu and NLTK where their definitions coincide; {@code SmoothBleuTest} matches this class to it.
 */
public final class SmoothBleu {
    public static final int MAX_ORDER = 4;

    private SmoothBleu() {}

    /** The tokens BLEU counts for one side: {@code normalize(splitPuncts(s.strip().lower()))}. */
    public static List<String> tokens(String s) {
        return normalize(splitPuncts(stripPython(s).toLowerCase(Locale.ROOT)));
    }

    /**
     * One sentence's statistics: {testlen, reflen, guess_1..4, correct_1..4} (10 numbers), as CodeXGLUE's
     * {@code cook_test}.
     */
    public static long[] statistics(String hypothesis, String reference) {
        List<String> hyp = tokens(hypothesis);
        List<String> ref = tokens(reference);
        Map<String, Integer> refCounts = ngrams(ref);
        long[] stats = new long[2 + 2 * MAX_ORDER];
        stats[0] = hyp.size();
        stats[1] = ref.size();
        for (int k = 1; k <= MAX_ORDER; k++) {
            stats[1 + k] = Math.max(hyp.size() - k + 1, 0);
        }
        for (Map.Entry<String, Integer> e : ngrams(hyp).entrySet()) {
            int order = e.getKey().split(" ", -1).length;
            stats[1 + MAX_ORDER + order] += Math.min(refCounts.getOrDefault(e.getKey(), 0), e.getValue());
        }
        return stats;
    }

    /** CodeXGLUE's {@code score_cooked([stats])[0]}: the sentence score in [0, 1]. */
    public static double fromStatistics(long[] stats) {
        if (stats.length != 2 + 2 * MAX_ORDER) {
            throw new IllegalArgumentException((2 + 2 * MAX_ORDER) + " statistics expected, got " + stats.length);
        }
        // Same operations in the same order as the Python.
        double tiny = Double.MIN_NORMAL;   // sys.float_info.min
        double logBleu = 0.0;
        for (int k = 0; k < MAX_ORDER; k++) {
            long correct = stats[2 + MAX_ORDER + k];
            long guess = stats[2 + k];
            int addSmooth = k > 0 ? 1 : 0;
            logBleu += StrictMath.log((double) (correct + addSmooth) + tiny) - StrictMath.log((double) (guess + addSmooth) + tiny);
        }
        logBleu /= MAX_ORDER;
        double brevity = Math.min(0, 1 - (double) (stats[1] + 1) / (stats[0] + 1));
        return StrictMath.exp(logBleu + brevity);
    }

    /** One sentence's score on the 0–100 scale. */
    public static double sentence(String hypothesis, String reference) {
        return 100 * fromStatistics(statistics(hypothesis, reference));
    }

    /** The corpus score: 100 × the mean of the sentence scores, as CodeXGLUE's {@code bleuFromMaps}. */
    public static double corpus(List<String> hypotheses, List<String> references) {
        return Bootstrap.mean100(sentenceScores(hypotheses, references), null);
    }

    /** The corpus score with a percentile bootstrap interval over sentences (as {@link ChrF#corpus(List, List, int, long)}). */
    public static Score corpus(List<String> hypotheses, List<String> references, int resamples, long seed) {
        double[] s = sentenceScores(hypotheses, references);
        return new Score(Bootstrap.mean100(s, null), Bootstrap.meanInterval(s, resamples, seed), s.length);
    }

    /** Paired bootstrap of system A against system B on the same references (as {@link ChrF#pairedDifference}). */
    public static Score pairedDifference(List<String> hypothesesA, List<String> hypothesesB, List<String> references,
                                         int resamples, long seed) {
        double[] a = sentenceScores(hypothesesA, references);
        double[] b = sentenceScores(hypothesesB, references);
        return new Score(Bootstrap.mean100(a, null) - Bootstrap.mean100(b, null),
                Bootstrap.pairedMeanInterval(a, b, resamples, seed), a.length);
    }

    /** Each sentence's score in [0, 1]. */
    static double[] sentenceScores(List<String> hypotheses, List<String> references) {
        if (hypotheses.size() != references.size()) {
            throw new IllegalArgumentException(hypotheses.size() + " hypotheses, " + references.size() + " references");
        }
        if (hypotheses.isEmpty()) {
            throw new IllegalArgumentException("no sentences to score");
        }
        double[] out = new double[hypotheses.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = fromStatistics(statistics(hypotheses.get(i), references.get(i)));
        }
        return out;
    }

    // CodeXGLUE's normalize2, the same regular expressions (Java's and Python's agree on these constructs).
    private static final Pattern PUNCT = Pattern.compile("([\\{-\\~\\[-\\` -\\&\\(-\\+\\:-\\@\\/])");
    private static final Pattern PERIOD_COMMA_AFTER = Pattern.compile("([^0-9])([\\.,])");
    private static final Pattern PERIOD_COMMA_BEFORE = Pattern.compile("([\\.,])([^0-9])");
    private static final Pattern DASH_AFTER_DIGIT = Pattern.compile("([0-9])(-)");

    static List<String> normalize(String s) {
        s = s.replace("<skipped>", "").replace("-\n", "").replace("\n", " ");
        // xml.sax.saxutils.unescape(s, {'&quot;': '"'}): &lt;, &gt;, then the extra entity, &amp; last.
        s = s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
        s = (" " + s + " ").toLowerCase(Locale.ROOT);
        s = PUNCT.matcher(s).replaceAll(" $1 ");
        s = PERIOD_COMMA_AFTER.matcher(s).replaceAll("$1 $2 ");
        s = PERIOD_COMMA_BEFORE.matcher(s).replaceAll(" $1 $2");
        s = DASH_AFTER_DIGIT.matcher(s).replaceAll("$1 $2 ");
        return splitPython(s);
    }

    /** {@code ' '.join(re.findall(r"[\w]+|[^\s\w]", line))} with Python's Unicode {@code \w} and {@code \s}. */
    static String splitPuncts(String line) {
        StringBuilder out = new StringBuilder(line.length() + 16);
        int i = 0;
        while (i < line.length()) {
            int cp = line.codePointAt(i);
            int len = Character.charCount(cp);
            if (isPythonWord(cp)) {
                int j = i + len;
                while (j < line.length() && isPythonWord(line.codePointAt(j))) {
                    j += Character.charCount(line.codePointAt(j));
                }
                append(out, line.substring(i, j));
                i = j;
            } else {
                if (!ChrF.isPythonWhitespace(cp)) {
                    append(out, line.substring(i, i + len));
                }
                i += len;
            }
        }
        return out.toString();
    }

    private static void append(StringBuilder out, String token) {
        if (out.length() > 0) {
            out.append(' ');
        }
        out.append(token);
    }

    /** Python's {@code \w} on str: {@code str.isalnum()} (letters and numbers, any script) or {@code _}. */
    static boolean isPythonWord(int cp) {
        if (cp == '_' || Character.isLetter(cp)) {
            return true;
        }
        int type = Character.getType(cp);
        return type == Character.DECIMAL_DIGIT_NUMBER || type == Character.LETTER_NUMBER || type == Character.OTHER_NUMBER;
    }

    /** Python's {@code str.strip()}. */
    static String stripPython(String s) {
        int a = 0;
        int b = s.length();
        while (a < b && ChrF.isPythonWhitespace(s.codePointAt(a))) {
            a += Character.charCount(s.codePointAt(a));
        }
        while (b > a && ChrF.isPythonWhitespace(s.codePointBefore(b))) {
            b -= Character.charCount(s.codePointBefore(b));
        }
        return s.substring(a, b);
    }

    /** Python's {@code str.split()}: runs of whitespace separate, no empty tokens. */
    static List<String> splitPython(String s) {
        List<String> out = new ArrayList<>();
        int i = 0;
        while (i < s.length()) {
            while (i < s.length() && ChrF.isPythonWhitespace(s.codePointAt(i))) {
                i += Character.charCount(s.codePointAt(i));
            }
            int j = i;
            while (j < s.length() && !ChrF.isPythonWhitespace(s.codePointAt(j))) {
                j += Character.charCount(s.codePointAt(j));
            }
            if (j > i) {
                out.add(s.substring(i, j));
            }
            i = j;
        }
        return out;
    }

    /** n-grams of orders 1..4, each written as its tokens joined by a space (tokens hold no whitespace). */
    private static Map<String, Integer> ngrams(List<String> words) {
        Map<String, Integer> counts = new HashMap<>();
        for (int k = 1; k <= MAX_ORDER; k++) {
            for (int i = 0; i + k <= words.size(); i++) {
                counts.merge(String.join(" ", words.subList(i, i + k)), 1, Integer::sum);
            }
        }
        return counts;
    }
}
