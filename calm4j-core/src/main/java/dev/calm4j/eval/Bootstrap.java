package dev.calm4j.eval;

import java.util.Arrays;
import java.util.Random;

/**
 * The percentile bootstrap the metrics share: resamples of n sentences drawn with replacement from
 * {@code new Random(seed)} (one {@code nextInt(n)} per pick, so every metric draws the same sentences for a seed), and
 * the 95 % interval picked as sacrebleu's {@code estimate_ci} picks it: sorted, indices {@code R/40} and
 * {@code R - R/40 - 1}.
 */
final class Bootstrap {
    private Bootstrap() {}

    static void draw(Random random, int[] pick) {
        for (int i = 0; i < pick.length; i++) {
            pick[i] = random.nextInt(pick.length);
        }
    }

    static int checkResamples(int resamples) {
        if (resamples < 40) {
            throw new IllegalArgumentException("resamples " + resamples + " < 40: too few for a 95% interval");
        }
        return resamples;
    }

    static double[] percentiles(double[] scores) {
        double[] sorted = scores.clone();
        Arrays.sort(sorted);
        int lower = sorted.length / 40;
        return new double[] {sorted[lower], sorted[sorted.length - lower - 1]};
    }

    /**
     * The interval of a corpus score that is 100 × the mean of per-sentence values in [0, 1] (smoothed BLEU's mean of
     * sentence scores, exact match's share of matches), summed in the drawn order as the corpus score is.
     */
    static double[] meanInterval(double[] perSentence, int resamples, long seed) {
        double[] scores = new double[checkResamples(resamples)];
        Random random = new Random(seed);
        int[] pick = new int[perSentence.length];
        for (int r = 0; r < resamples; r++) {
            draw(random, pick);
            scores[r] = mean100(perSentence, pick);
        }
        return percentiles(scores);
    }

    /** The interval of A's mean minus B's over resamples that draw the same sentences for both. */
    static double[] pairedMeanInterval(double[] a, double[] b, int resamples, long seed) {
        double[] diffs = new double[checkResamples(resamples)];
        Random random = new Random(seed);
        int[] pick = new int[a.length];
        for (int r = 0; r < resamples; r++) {
            draw(random, pick);
            diffs[r] = mean100(a, pick) - mean100(b, pick);
        }
        return percentiles(diffs);
    }

    /** {@code sum * 100.0 / n} over the rows {@code pick} names (all rows when null), as CodeXGLUE's bleuFromMaps. */
    static double mean100(double[] values, int[] pick) {
        double sum = 0;
        int n = pick == null ? values.length : pick.length;
        for (int i = 0; i < n; i++) {
            sum += values[pick == null ? i : pick[i]];
        }
        return sum * 100.0 / n;
    }
}
