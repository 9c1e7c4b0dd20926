package dev.calm4j.lm.llama;

/**
 * Rotary-embedding frequency scaling, as HF transformers describes it in {@code rope_scaling} (4.x) or
 * {@code rope_parameters} (5.x). Only the types calm4j implements can be built; anything else is refused when the
 * config is read, never silently ignored.
 *
 * @param type {@code default}, {@code linear} or {@code llama3}
 * @param factor the context extension factor (1 for {@code default})
 * @param lowFreqFactor llama3 only
 * @param highFreqFactor llama3 only
 * @param originalMaxPositions llama3 only: the pre-extension context length
 */
public record RopeScaling(String type, double factor, double lowFreqFactor, double highFreqFactor,
                          int originalMaxPositions) {

    public static final RopeScaling NONE = new RopeScaling("default", 1.0, 0, 0, 0);

    public RopeScaling {
        switch (type) {
            case "default" -> { }
            case "linear" -> {
                if (!(factor > 0)) {
                    throw new IllegalArgumentException("rope_scaling.factor must be > 0 for linear scaling, got " + factor);
                }
            }
            case "llama3" -> {
                if (!(factor > 0) || !(lowFreqFactor > 0) || !(highFreqFactor > lowFreqFactor) || originalMaxPositions <= 0) {
                    throw new IllegalArgumentException("llama3 rope_scaling needs factor > 0, 0 < low_freq_factor < "
                            + "high_freq_factor and original_max_position_embeddings > 0");
                }
            }
            default -> throw new IllegalArgumentException("rope type '" + type
                    + "' is not supported (supported: default, linear, llama3)");
        }
    }

    /**
     * Inverse frequencies for one head, computed in float32 exactly as HF does ({@code 1 / theta^(2i/d)}), then
     * scaled by the type's rule (HF {@code _compute_llama3_parameters} for llama3).
     */
    public float[] inverseFrequencies(int headDim, double theta) {
        float[] inv = new float[headDim / 2];
        for (int i = 0; i < inv.length; i++) {
            float exponent = (float) (2 * i) / (float) headDim;
            inv[i] = (float) (1.0 / Math.pow(theta, exponent));
        }
        switch (type) {
            case "linear" -> {
                for (int i = 0; i < inv.length; i++) {
                    inv[i] = (float) (inv[i] / factor);
                }
            }
            case "llama3" -> {
                double lowWavelen = originalMaxPositions / lowFreqFactor;
                double highWavelen = originalMaxPositions / highFreqFactor;
                for (int i = 0; i < inv.length; i++) {
                    double wavelen = 2 * Math.PI / inv[i];
                    double f = inv[i];
                    if (wavelen > lowWavelen) {
                        f = inv[i] / factor;                       // low frequencies: fully scaled
                    } else if (wavelen >= highWavelen) {           // medium: interpolate between scaled and not
                        double smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                        f = (1 - smooth) * inv[i] / factor + smooth * inv[i];
                    }
                    inv[i] = (float) f;
                }
            }
            default -> { }
        }
        return inv;
    }
}
