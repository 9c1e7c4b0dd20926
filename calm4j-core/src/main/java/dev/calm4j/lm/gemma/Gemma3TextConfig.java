package dev.calm4j.lm.gemma;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.lm.llama.RopeScaling;

import java.util.ArrayList;
import java.util.List;

/**
 * A Gemma 3 text {@code config.json} ({@code model_type: gemma3_text}, what {@code Gemma3ForCausalLM} loads), field
 * for field with Hugging Face's {@code Gemma3TextConfig}, read in the transformers 4.x layout ({@code rope_theta}
 * for the full-attention layers, {@code rope_local_base_freq} for the sliding ones, {@code rope_scaling} for the full
 * ones only, {@code sliding_window_pattern} instead of {@code layer_types}) and the 5.x one ({@code rope_parameters}
 * with a {@code full_attention} and a {@code sliding_attention} dict, {@code layer_types}, {@code dtype}).
 *
 * <p>Absent fields take HF's class defaults: rope_theta 1e6, local base 1e4, {@code sliding_window} 4096, a pattern of
 * 6 (five sliding layers, then a full one), {@code query_pre_attn_scalar} 256, no soft caps, tied head. The shape
 * fields are required (see {@link Gemma2Config}).
 *
 * @param attnLogitSoftcapping recorded as HF records it, but not applied: HF's {@code Gemma3Attention} does not pass it
 *                             to the attention (transformers 4.50 to 5.18), and calm4j computes what HF computes
 * @param slidingRopeTheta {@code rope_local_base_freq} (4.x) or {@code rope_parameters.sliding_attention.rope_theta}
 * @param slidingRopeScaling the sliding layers' rotary scaling (5.x only; 4.x configs have none)
 */
public record Gemma3TextConfig(
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
        double slidingRopeTheta,
        RopeScaling slidingRopeScaling,
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

    public static final String MODEL_TYPE = "gemma3_text";

    public Gemma3TextConfig {
        GemmaJson.check(vocabSize, hiddenSize, intermediateSize, numHiddenLayers, numAttentionHeads, numKeyValueHeads,
                headDim, rmsNormEps, queryPreAttnScalar, slidingWindow, layerTypes, maxPositionEmbeddings);
        if (!(ropeTheta > 0)) {
            throw new IllegalArgumentException("field 'rope_theta' is " + ropeTheta + ", expected a number > 0");
        }
        if (!(slidingRopeTheta > 0)) {
            throw new IllegalArgumentException("field 'rope_local_base_freq' is " + slidingRopeTheta
                    + ", expected a number > 0");
        }
        GemmaJson.checkCap("attn_logit_softcapping", attnLogitSoftcapping);
        GemmaJson.checkCap("final_logit_softcapping", finalLogitSoftcapping);
        ropeScaling = ropeScaling == null ? RopeScaling.NONE : ropeScaling;
        slidingRopeScaling = slidingRopeScaling == null ? RopeScaling.NONE : slidingRopeScaling;
        layerTypes = List.copyOf(layerTypes);
        eosTokenIds = List.copyOf(eosTokenIds);
    }

    /** HF's layer types from the older {@code sliding_window_pattern}: layer i is full when (i + 1) % pattern == 0. */
    public static List<String> pattern(int layers, int pattern) {
        List<String> t = new ArrayList<>();
        for (int i = 0; i < layers; i++) {
            t.add((i + 1) % pattern != 0 ? SLIDING : FULL);
        }
        return t;
    }

    @Override
    public String modelType() {
        return MODEL_TYPE;
    }

    @Override
    public boolean qkNorm() {
        return true;
    }

    /** Never applied, whatever the config says: see {@link #attnLogitSoftcapping}. */
    @Override
    public double attentionSoftcap() {
        return 0;
    }

    /** Builds a config from HF JSON; {@code source} names the file in errors. */
    public static Gemma3TextConfig fromJson(JsonNode c, String source) {
        GemmaJson f = new GemmaJson(c, source);
        f.modelType(MODEL_TYPE);
        f.activation();
        f.causal();
        int layers = f.bounded("num_hidden_layers", null, 1, GemmaJson.MAX_LAYERS);

        double theta;
        RopeScaling scaling;
        double localTheta;
        RopeScaling localScaling;
        JsonNode rp = f.object("rope_parameters");
        if (rp != null) {
            // 5.x: one dict per layer type; a dict without rope_theta takes the top-level value or HF's default.
            GemmaJson r = new GemmaJson(rp, source);
            JsonNode full = r.object("full_attention");
            JsonNode local = r.object("sliding_attention");
            if (full == null || local == null) {
                throw f.error("rope_parameters", "is " + rp + ", expected 'full_attention' and 'sliding_attention' objects");
            }
            theta = new GemmaJson(full, source + ": rope_parameters.full_attention")
                    .positive("rope_theta", f.number("rope_theta", 1e6));
            scaling = f.scaling(full, "rope_parameters.full_attention");
            localTheta = new GemmaJson(local, source + ": rope_parameters.sliding_attention")
                    .positive("rope_theta", f.number("rope_local_base_freq", 1e4));
            localScaling = f.scaling(local, "rope_parameters.sliding_attention");
        } else {
            theta = f.positive("rope_theta", 1e6);
            JsonNode rs = f.object("rope_scaling");
            scaling = rs == null ? RopeScaling.NONE : f.scaling(rs, "rope_scaling");
            localTheta = f.positive("rope_local_base_freq", 1e4);
            localScaling = RopeScaling.NONE;
        }
        int pattern = f.bounded("sliding_window_pattern", 6, 1, Integer.MAX_VALUE);
        try {
            return new Gemma3TextConfig(f.integer("vocab_size", null), f.integer("hidden_size", null),
                    f.integer("intermediate_size", null), layers, f.integer("num_attention_heads", null),
                    f.integer("num_key_value_heads", null), f.integer("head_dim", null), f.positive("rms_norm_eps", 1e-6),
                    theta, scaling, localTheta, localScaling, f.integer("max_position_embeddings", 131072),
                    f.bool("tie_word_embeddings", true), f.bool("attention_bias", false),
                    f.positive("query_pre_attn_scalar", 256.0), f.slidingWindow(),
                    f.layerTypes(layers, pattern(layers, pattern)), f.softcap("attn_logit_softcapping", 0),
                    f.softcap("final_logit_softcapping", 0), f.bos(), f.eos(), f.dtype());
        } catch (IllegalArgumentException e) {
            throw new Calm4jException(source + ": " + e.getMessage());
        }
    }

    /**
     * The config as HF transformers 4.x writes it ({@code rope_theta}, {@code rope_local_base_freq},
     * {@code rope_scaling}; {@code sliding_window_pattern} next to {@code layer_types} when the types follow one),
     * which 5.x reads too; with rotary scaling on the sliding layers, which 4.x cannot say, 5.x's
     * {@code rope_parameters} instead.
     */
    @Override
    public ObjectNode toJson() {
        ObjectNode o = GemmaJson.JSON.createObjectNode();
        o.putArray("architectures").add("Gemma3ForCausalLM");
        o.put("model_type", MODEL_TYPE);
        GemmaJson.putCommon(o, this);
        for (int p = 1; p <= numHiddenLayers + 1; p++) {
            if (pattern(numHiddenLayers, p).equals(layerTypes)) {
                o.put("sliding_window_pattern", p);
                break;
            }
        }
        if (slidingRopeScaling.type().equals("default")) {
            o.put("rope_theta", ropeTheta);
            o.put("rope_local_base_freq", slidingRopeTheta);
            if (ropeScaling.type().equals("default")) {
                o.putNull("rope_scaling");
            } else {
                GemmaJson.putScaling(o.putObject("rope_scaling"), ropeScaling);
            }
        } else {
            ObjectNode rp = o.putObject("rope_parameters");
            ObjectNode full = rp.putObject(FULL);
            GemmaJson.putScaling(full, ropeScaling);
            full.put("rope_theta", ropeTheta);
            ObjectNode local = rp.putObject(SLIDING);
            GemmaJson.putScaling(local, slidingRopeScaling);
            local.put("rope_theta", slidingRopeTheta);
        }
        GemmaJson.putCap(o, "attn_logit_softcapping", attnLogitSoftcapping);
        GemmaJson.putCap(o, "final_logit_softcapping", finalLogitSoftcapping);
        return o;
    }
}
