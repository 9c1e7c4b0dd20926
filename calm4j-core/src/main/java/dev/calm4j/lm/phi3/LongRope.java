package dev.calm4j.lm.phi3;

import java.util.List;

/**
 * Phi-3's LongRoPE ({@code rope_type "longrope"}; HF {@code _compute_longrope_parameters}): per-frequency divisors,
 * one set for sequences up to {@code original_max_position_embeddings} ({@code short_factor}) and one beyond it
 * ({@code long_factor}), and cos/sin scaled by {@code attention_factor}.
 *
 * @param shortFactor one divisor per rotated pair ({@code rotary dims / 2} of them)
 * @param longFactor as many, for sequences longer than the original context
 * @param factor the context extension, {@code max_position_embeddings / original_max_position_embeddings} unless
 *               the config gives it
 * @param attentionFactor multiplies cos and sin: {@code sqrt(1 + ln(factor) / ln(original))} when factor > 1, else 1,
 *                        unless the config gives it
 */
public record LongRope(List<Double> shortFactor, List<Double> longFactor, double factor, double attentionFactor) {

    public LongRope {
        shortFactor = List.copyOf(shortFactor);
        longFactor = List.copyOf(longFactor);
        for (List<Double> f : List.of(shortFactor, longFactor)) {
            for (double v : f) {
                if (!(v > 0) || Double.isInfinite(v)) {
                    throw new IllegalArgumentException("field '" + (f == shortFactor ? "short_factor" : "long_factor")
                            + "' holds " + v + ", expected positive numbers");
                }
            }
        }
        if (!(factor > 0) || Double.isInfinite(factor)) {
            throw new IllegalArgumentException("field 'factor' is " + factor + ", expected a positive number");
        }
        if (!(attentionFactor > 0) || Double.isInfinite(attentionFactor)) {
            throw new IllegalArgumentException("field 'attention_factor' is " + attentionFactor
                    + ", expected a positive number (with factor > 1 and no attention_factor, "
                    + "original_max_position_embeddings must be > 1)");
        }
    }

    /** HF's default attention factor for a context extension {@code factor} over {@code original} positions. */
    public static double defaultAttentionFactor(double factor, int original) {
        return factor <= 1.0 ? 1.0 : Math.sqrt(1 + Math.log(factor) / Math.log(original));
    }

    /**
     * {@code 1 / (ext[i] * theta^(2i / dim))} over the rotated dims, in float32 as HF computes it (the exponent, the
     * power, the product and the reciprocal each rounded to float32); {@code ext} null is plain rope (all 1).
     */
    static float[] inverseFrequencies(List<Double> ext, int rotaryDim, double theta) {
        float[] inv = new float[rotaryDim / 2];
        for (int i = 0; i < inv.length; i++) {
            float exponent = (float) (2 * i) / (float) rotaryDim;
            float power = (float) Math.pow(theta, exponent);
            float e = ext == null ? 1.0f : (float) (double) ext.get(i);
            inv[i] = 1.0f / (e * power);
        }
        return inv;
    }
}
