package dev.calm4j.eval;

import java.util.Locale;

/**
 * A corpus score with its percentile-bootstrap 95 % interval ({@link ChrF}, {@link SmoothBleu}, {@link ExactMatch}).
 *
 * @param value the score on the whole corpus (or, for a paired difference, A's minus B's)
 * @param ci95  {lower, upper}: the 2.5th and 97.5th percentiles of the resampled scores, picked as sacrebleu's
 *              {@code estimate_ci} picks them (sorted, indices {@code R/40} and {@code R - R/40 - 1})
 * @param n     sentences (or examples) scored
 */
public record Score(double value, double[] ci95, int n) {
    public Score {
        if (ci95.length != 2) {
            throw new IllegalArgumentException("ci95 needs {lower, upper}, got " + ci95.length + " values");
        }
        ci95 = ci95.clone();
    }

    @Override
    public double[] ci95() {
        return ci95.clone();
    }

    @Override
    public String toString() {
        return String.format(Locale.ROOT, "%.2f [%.2f, %.2f] (n=%d)", value, ci95[0], ci95[1], n);
    }
}
