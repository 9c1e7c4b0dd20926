package dev.calm4j.lm.gemma;

import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.llama.RopeScaling;

import java.util.List;

/**
 * What {@link GemmaModel} reads from a Gemma 2 or Gemma 3 config: the two are one forward with switches (Gemma 3
 * adds q/k RMSNorm and separate rotary settings for its sliding layers, and drops the attention soft cap), so they
 * share the model and the weights, and each keeps its own record, field for field with its HF config class.
 */
public sealed interface GemmaConfig extends ModelConfig permits Gemma2Config, Gemma3TextConfig {
    String SLIDING = "sliding_attention";
    String FULL = "full_attention";

    int intermediateSize();

    int numKeyValueHeads();

    int headDim();

    double rmsNormEps();

    /** The attention scale is {@code queryPreAttnScalar^-0.5} (not {@code head_dim^-0.5}). */
    double queryPreAttnScalar();

    /** Keys a sliding layer's query sees, itself included; 0 = no window (sliding layers attend to everything). */
    int slidingWindow();

    /** Per layer, {@value #SLIDING} or {@value #FULL}. */
    List<String> layerTypes();

    boolean tieWordEmbeddings();

    /** Biases on q, k, v and o (HF {@code attention_bias}). */
    boolean attentionBias();

    /** Gemma 3's RMSNorm over each head of q and k, before rotary. */
    boolean qkNorm();

    /** The attention soft cap the forward applies; 0 = none (then attention is the fused kernel). */
    double attentionSoftcap();

    /** {@code logits = cap * tanh(logits / cap)}; 0 = none. */
    double finalLogitSoftcapping();

    /** Rotary base of the full-attention layers. */
    double ropeTheta();

    RopeScaling ropeScaling();

    /** Rotary base of the sliding layers. */
    double slidingRopeTheta();

    RopeScaling slidingRopeScaling();

    default boolean sliding(int layer) {
        return layerTypes().get(layer).equals(SLIDING);
    }

    /** Do sliding layers need a geometry of their own (a window that can bite, or other rotary tables)? */
    default boolean slidingDiffers() {
        return layerTypes().contains(SLIDING) && (slidingWindow() > 0 || slidingRopeTheta() != ropeTheta()
                || !slidingRopeScaling().equals(ropeScaling()));
    }

    default int queryDim() {
        return numAttentionHeads() * headDim();
    }

    default int kvDim() {
        return numKeyValueHeads() * headDim();
    }

    @Override
    default long parameterCount() {
        long d = hiddenSize();
        long attn = d * queryDim() + 2 * d * kvDim() + (long) queryDim() * d
                + (attentionBias() ? queryDim() + 2L * kvDim() + d : 0) + (qkNorm() ? 2L * headDim() : 0);
        long perLayer = attn + 3 * d * intermediateSize() + 4 * d;
        long embed = (long) vocabSize() * d;
        return embed + numHiddenLayers() * perLayer + d + (tieWordEmbeddings() ? 0 : embed);
    }
}
