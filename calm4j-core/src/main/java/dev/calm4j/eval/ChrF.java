package dev.calm4j.eval;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * chrF2 as sacrebleu 2.x computes it with {@code CHRF()}'s defaults: character n-grams of orders 1 to 6 (code points,
 * whitespace removed first: Python's {@code str.split()} set of whitespace), no word n-grams, beta 2, case kept,
 * and sacrebleu's default smoothing ({@code eps_smoothing=False}: precision and recall averaged over the orders for
 * which both hypothesis and reference have n-grams). One reference per hypothesis.
 *
 * <p>Corpus scores sum the per-sentence statistics and compute one F-score from the sums, as sacrebleu does; a
 * sentence score is the corpus score of one sentence. Scores are on sacrebleu's 0–100 scale; the values are
 * sacrebleu's {@code .score} floats, not its rounded printout.
 */
public final class ChrF {
    public static final int CHAR_ORDER = 6;
    public static final int BETA = 2;

    private ChrF() {}

    /**
     * Sufficient statistics of one sentence: for each order 1..6, {hypothesis n-grams, reference n-grams, matches}
     * (18 numbers). The hypothesis count is 0 for an order the reference has no n-grams of, as in sacrebleu.
     */
    public static long[] statistics(String hypothesis, String reference) {
        int[] hyp = withoutWhitespace(hypothesis);
        int[] ref = withoutWhitespace(reference);
        long[] stats = new long[3 * CHAR_ORDER];
        for (int n = 1; n <= CHAR_ORDER; n++) {
            Map<String, int[]> h = ngrams(hyp, n);
            Map<String, int[]> r = ngrams(ref, n);
            long hypCount = 0;
            long refCount = 0;
            long match = 0;
            for (Map.Entry<String, int[]> e : h.entrySet()) {
                int c = e.getValue()[0];
                hypCount += c;
                int[] rc = r.get(e.getKey());
                if (rc != null) {
                    match += Math.min(c, rc[0]);
                }
            }
            for (int[] c : r.values()) {
                refCount += c[0];
            }
            stats[3 * (n - 1)] = r.isEmpty() ? 0 : hypCount;
            stats[3 * (n - 1) + 1] = refCount;
            stats[3 * (n - 1) + 2] = match;
        }
        return stats;
    }

    /** sacrebleu's {@code CHRF._compute_f_score} on (summed) statistics, default smoothing. */
    public static double fromStatistics(long[] stats) {
        return fromStatistics(stats, false);
    }

    /**
     * sacrebleu's {@code CHRF._compute_f_score}; {@code epsSmoothing} as its {@code eps_smoothing} argument (true:
     * the mean of per-order F-scores with 1e-16 standing in for an undefined precision or recall, as chrF++.py,
     * Moses and NLTK do).
     */
    public static double fromStatistics(long[] stats, boolean epsSmoothing) {
        if (stats.length != 3 * CHAR_ORDER) {
            throw new IllegalArgumentException(3 * CHAR_ORDER + " statistics expected, got " + stats.length);
        }
        // Same operations in the same order as the Python, so the doubles agree bit for bit.
        double eps = 1e-16;
        double score = 0.0;
        int effectiveOrder = 0;
        int factor = BETA * BETA;
        double avgPrec = 0.0;
        double avgRec = 0.0;
        for (int i = 0; i < CHAR_ORDER; i++) {
            long nHyp = stats[3 * i];
            long nRef = stats[3 * i + 1];
            long nMatch = stats[3 * i + 2];
            double prec = nHyp > 0 ? (double) nMatch / nHyp : eps;
            double rec = nRef > 0 ? (double) nMatch / nRef : eps;
            double denom = factor * prec + rec;
            score += denom > 0 ? (1 + factor) * prec * rec / denom : eps;
            if (nHyp > 0 && nRef > 0) {
                avgPrec += prec;
                avgRec += rec;
                effectiveOrder++;
            }
        }
        if (epsSmoothing) {
            return 100 * score / CHAR_ORDER;
        }
        if (effectiveOrder == 0) {
            avgPrec = 0.0;
            avgRec = 0.0;
        } else {
            avgPrec /= effectiveOrder;
            avgRec /= effectiveOrder;
        }
        if (avgPrec + avgRec != 0) {
            double f = (1 + factor) * avgPrec * avgRec;
            f /= factor * avgPrec + avgRec;
            return 100 * f;
        }
        return 0.0;
    }

    /** sacrebleu's {@code CHRF().sentence_score(hypothesis, [reference]).score}. */
    public static double sentence(String hypothesis, String reference) {
        return fromStatistics(statistics(hypothesis, reference));
    }

    /** sacrebleu's {@code CHRF().corpus_score(hypotheses, [references]).score}. */
    public static double corpus(List<String> hypotheses, List<String> references) {
        return fromStatistics(sum(allStatistics(hypotheses, references), null));
    }

    /**
     * The corpus score with a percentile bootstrap interval: {@code resamples} corpora of n sentences drawn with
     * replacement ({@code new Random(seed)}), each scored from its summed statistics.
     */
    public static Score corpus(List<String> hypotheses, List<String> references, int resamples, long seed) {
        long[][] stats = allStatistics(hypotheses, references);
        double[] scores = new double[checkResamples(resamples)];
        Random random = new Random(seed);
        int[] pick = new int[stats.length];
        for (int r = 0; r < resamples; r++) {
            draw(random, pick);
            scores[r] = fromStatistics(sum(stats, pick));
        }
        return new Score(fromStatistics(sum(stats, null)), percentiles(scores), stats.length);
    }

    /**
     * Paired bootstrap of system A against system B on the same references: the value is A's corpus score minus
     * B's, the interval that of the difference over resamples that draw the same sentences for both. An interval
     * that excludes 0 says the difference is unlikely to be resampling noise.
     */
    public static Score pairedDifference(List<String> hypothesesA, List<String> hypothesesB,
                                         List<String> references, int resamples, long seed) {
        long[][] a = allStatistics(hypothesesA, references);
        long[][] b = allStatistics(hypothesesB, references);
        double[] diffs = new double[checkResamples(resamples)];
        Random random = new Random(seed);
        int[] pick = new int[a.length];
        for (int r = 0; r < resamples; r++) {
            draw(random, pick);
            diffs[r] = fromStatistics(sum(a, pick)) - fromStatistics(sum(b, pick));
        }
        double value = fromStatistics(sum(a, null)) - fromStatistics(sum(b, null));
        return new Score(value, percentiles(diffs), a.length);
    }

    /** Python's {@code str.isspace}: what {@code str.split()} splits on (and so what sacrebleu removes). */
    static boolean isPythonWhitespace(int cp) {
        return Character.isWhitespace(cp) || Character.isSpaceChar(cp) || cp == 0x85;
    }

    private static int[] withoutWhitespace(String s) {
        return s.codePoints().filter(cp -> !isPythonWhitespace(cp)).toArray();
    }

    private static Map<String, int[]> ngrams(int[] cps, int n) {
        Map<String, int[]> out = new HashMap<>();
        for (int i = 0; i + n <= cps.length; i++) {
            out.computeIfAbsent(new String(cps, i, n), k -> new int[1])[0]++;
        }
        return out;
    }

    private static long[][] allStatistics(List<String> hypotheses, List<String> references) {
        if (hypotheses.size() != references.size()) {
            throw new IllegalArgumentException(hypotheses.size() + " hypotheses, " + references.size()
                    + " references");
        }
        if (hypotheses.isEmpty()) {
            throw new IllegalArgumentException("no sentences to score");
        }
        long[][] stats = new long[hypotheses.size()][];
        for (int i = 0; i < stats.length; i++) {
            stats[i] = statistics(hypotheses.get(i), references.get(i));
        }
        return stats;
    }

    /** Sums the rows {@code pick} names (all rows when null). */
    private static long[] sum(long[][] stats, int[] pick) {
        long[] total = new long[3 * CHAR_ORDER];
        int n = pick == null ? stats.length : pick.length;
        for (int i = 0; i < n; i++) {
            long[] row = stats[pick == null ? i : pick[i]];
            for (int j = 0; j < total.length; j++) {
                total[j] += row[j];
            }
        }
        return total;
    }

    private static void draw(Random random, int[] pick) {
        Bootstrap.draw(random, pick);
    }

    private static int checkResamples(int resamples) {
        return Bootstrap.checkResamples(resamples);
    }

    private static double[] percentiles(double[] scores) {
        return Bootstrap.percentiles(scores);
    }
}
