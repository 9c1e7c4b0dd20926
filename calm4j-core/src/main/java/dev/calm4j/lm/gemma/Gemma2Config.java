package dev.calm4j.lm.gemma;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.lm.llama.RopeScaling;

import java.util.ArrayList;
import java.util.List;

/**
 * A Gemma 2 {@code config.json}, field for field with Hugging Face's {@code Gemma2Config}, read in the transformers
 * 4.x layout (top-level {@code rope_theta}, {@code torch_dtype}, possibly no {@code layer_types}) and the 5.x one
 * ({@code rope_parameters}, {@code dtype}). Every field is validated when read; errors name the file and the field.
 *
 * <p>Where a field is absent, HF's class defaults apply (so the same file means the same model in both): soft caps
 * 50 (attention) and 30 (logits), {@code sliding_window} 4096, {@code query_pre_attn_scalar} 256, tied head. An
 * explicit {@code null} cap or window means none, as in HF. The shape fields ({@code hidden_size}, {@code head_dim},
 * the head counts...) are required here although HF's class has defaults: a checkpoint without them is not a real one.
 *
 * @param queryPreAttnScalar the attention scale is its {@code ^-0.5}
 * @param slidingWindow keys a sliding layer's query sees, itself included; 0 = none
 * @param layerTypes per layer {@code sliding_attention} or {@code full_attention}; HF's default alternates, sliding
 *                   first
 * @param attnLogitSoftcapping the attention scores' tanh cap; 0 = none
 * @param finalLogitSoftcapping the logits' tanh cap; 0 = none
 * @param dtype the dtype the checkpoint says it is stored in
 */
public record Gemma2Config(
        int vocabSize,
        int hiddenSize,
        int intermediateSize,
        int numHiddenLayers,
        int numAttentionHeads,
        int numKeyValueHeads,
        int headDim,
        double rmsNormEps,
        double ropeTheta,
        RopeScaling ropeScaling,
        int maxPositionEmbeddings,
        boolean tieWordEmbeddings,
        boolean attentionBias,
        double queryPreAttnScalar,
        int slidingWindow,
        List<String> layerTypes,
        double attnLogitSoftcapping,
        double finalLogitSoftcapping,
        int bosTokenId,
        List<Integer> eosTokenIds,
        String dtype) implements GemmaConfig {

    public static final String MODEL_TYPE = "gemma2";

    public Gemma2Config {
        GemmaJson.check(vocabSize, hiddenSize, intermediateSize, numHiddenLayers, numAttentionHeads, numKeyValueHeads,
                headDim, rmsNormEps, queryPreAttnScalar, slidingWindow, layerTypes, maxPositionEmbeddings);
        if (!(ropeTheta > 0)) {
            throw new IllegalArgumentException("field 'rope_theta' is " + ropeTheta + ", expected a number > 0");
        }
        GemmaJson.checkCap("attn_logit_softcapping", attnLogitSoftcapping);
        GemmaJson.checkCap("final_logit_softcapping", finalLogitSoftcapping);
        ropeScaling = ropeScaling == null ? RopeScaling.NONE : ropeScaling;
        layerTypes = List.copyOf(layerTypes);
        eosTokenIds = List.copyOf(eosTokenIds);
    }

    /** HF's default layer types: even layers (0, 2, ...) slide, odd ones attend to everything. */
    public static List<String> alternating(int layers) {
        List<String> t = new ArrayList<>();
        for (int i = 0; i < layers; i++) {
            t.add(i % 2 == 0 ? SLIDING : FULL);
        }
        return t;
    }

    @Override
    public String modelType() {
        return MODEL_TYPE;
    }

    @Override
    public boolean qkNorm() {
        return false;
    }

    @Override
    public double attentionSoftcap() {
        return attnLogitSoftcapping;
    }

    /** Gemma 2 has one rotary for every layer. */
    @Override
    public double slidingRopeTheta() {
        return ropeTheta;
    }

    @Override
    public RopeScaling slidingRopeScaling() {
        return ropeScaling;
    }

    /** Builds a config from HF JSON; {@code source} names the file in errors. */
    public static Gemma2Config fromJson(JsonNode c, String source) {
        GemmaJson f = new GemmaJson(c, source);
        f.modelType(MODEL_TYPE);
        f.activation();
        f.causal();
        int layers = f.bounded("num_hidden_layers", null, 1, GemmaJson.MAX_LAYERS);

        // Rotary: 5.x keeps theta (and any scaling) in rope_parameters; 4.x has top-level rope_theta.
        double theta;
        RopeScaling scaling;
        JsonNode rp = f.object("rope_parameters");
        if (rp != null) {
            theta = new GemmaJson(rp, source + ": rope_parameters").positive("rope_theta", f.number("rope_theta", 10000.0));
            scaling = f.scaling(rp, "rope_parameters");
        } else {
            theta = f.positive("rope_theta", 10000.0);
            JsonNode rs = f.object("rope_scaling");
            scaling = rs == null ? RopeScaling.NONE : f.scaling(rs, "rope_scaling");
        }
        try {
            return new Gemma2Config(f.integer("vocab_size", null), f.integer("hidden_size", null),
                    f.integer("intermediate_size", null), layers, f.integer("num_attention_heads", null),
                    f.integer("num_key_value_heads", null), f.integer("head_dim", null), f.positive("rms_norm_eps", 1e-6),
                    theta, scaling, f.integer("max_position_embeddings", 8192), f.bool("tie_word_embeddings", true),
                    f.bool("attention_bias", false), f.positive("query_pre_attn_scalar", 256.0), f.slidingWindow(),
                    f.layerTypes(layers, alternating(layers)), f.softcap("attn_logit_softcapping", 50.0),
                    f.softcap("final_logit_softcapping", 30.0), f.bos(), f.eos(), f.dtype());
        } catch (IllegalArgumentException e) {
            throw new Calm4jException(source + ": " + e.getMessage());
        }
    }

    /** The config as HF transformers 4.x writes it (top-level {@code rope_theta}), which 5.x reads too. */
    @Override
    public ObjectNode toJson() {
        ObjectNode o = GemmaJson.JSON.createObjectNode();
        o.putArray("architectures").add("Gemma2ForCausalLM");
        o.put("model_type", MODEL_TYPE);
        GemmaJson.putCommon(o, this);
        o.put("rope_theta", ropeTheta);
        if (!ropeScaling.type().equals("default")) {
            GemmaJson.putScaling(o.putObject("rope_scaling"), ropeScaling);
        }
        GemmaJson.putCap(o, "attn_logit_softcapping", attnLogitSoftcapping);
        GemmaJson.putCap(o, "final_logit_softcapping", finalLogitSoftcapping);
        return o;
    }
}
