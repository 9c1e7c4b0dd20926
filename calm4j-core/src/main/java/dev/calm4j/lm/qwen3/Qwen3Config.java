package dev.calm4j.lm.qwen3;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.lm.HfConfigFields;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.llama.RopeScaling;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * A Qwen3 {@code config.json}, field for field with Hugging Face's {@code Qwen3Config} (transformers 4.x and 5.x
 * layouts). Defaults are HF's for every field a config may leave out: notably {@code head_dim} 128 (not
 * hidden / heads), {@code rms_norm_eps} 1e-6, {@code max_position_embeddings} 32768, {@code rope_theta} 10000.
 *
 * <p>Sliding windows are per layer, as in HF: {@code sliding_window} counts only when {@code use_sliding_window}
 * is true, and then layers {@code i >= max_window_layers} slide, unless {@code layer_types} names each layer's
 * kind explicitly (5.x writes it). A config naming a sliding layer without a window is refused (HF fails on it).
 *
 * @param headDim per-head width ({@code head_dim})
 * @param attentionBias biases on q, k, v and o projections
 * @param slidingWindow keys a sliding layer's query sees (itself included), or 0 when
 *                      {@code use_sliding_window} is false / the window is null
 * @param layerTypes {@code full_attention} or {@code sliding_attention}, one per layer, always resolved
 * @param eosTokenIds every id that ends generation (HF allows an int or a list)
 * @param dtype the dtype the checkpoint says it is stored in
 */
public record Qwen3Config(
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
        boolean useSlidingWindow,
        int slidingWindow,
        int maxWindowLayers,
        List<String> layerTypes,
        int bosTokenId,
        List<Integer> eosTokenIds,
        String dtype) implements ModelConfig {

    public static final String MODEL_TYPE = "qwen3";
    static final String FULL = "full_attention";
    static final String SLIDING = "sliding_attention";
    private static final ObjectMapper JSON = new ObjectMapper();

    public Qwen3Config {
        positive("vocab_size", vocabSize);
        positive("hidden_size", hiddenSize);
        positive("intermediate_size", intermediateSize);
        positive("num_hidden_layers", numHiddenLayers);
        positive("num_attention_heads", numAttentionHeads);
        positive("num_key_value_heads", numKeyValueHeads);
        positive("head_dim", headDim);
        positive("max_position_embeddings", maxPositionEmbeddings);
        if (numAttentionHeads % numKeyValueHeads != 0) {
            throw new IllegalArgumentException("field 'num_key_value_heads' (" + numKeyValueHeads
                    + ") must divide 'num_attention_heads' (" + numAttentionHeads + ")");
        }
        if (headDim % 2 != 0) {
            throw new IllegalArgumentException("field 'head_dim' is " + headDim + ", expected an even number (rotary)");
        }
        if (!(rmsNormEps > 0) || !(ropeTheta > 0)) {
            throw new IllegalArgumentException("field 'rms_norm_eps' and 'rope_theta' must be > 0");
        }
        if (slidingWindow < 0 || (!useSlidingWindow && slidingWindow != 0)) {
            throw new IllegalArgumentException("field 'sliding_window' is " + slidingWindow
                    + ", expected > 0 with use_sliding_window, else 0 (none)");
        }
        ropeScaling = ropeScaling == null ? RopeScaling.NONE : ropeScaling;
        layerTypes = List.copyOf(layerTypes);
        if (layerTypes.size() != numHiddenLayers) {
            throw new IllegalArgumentException("field 'layer_types' has " + layerTypes.size()
                    + " entries, expected " + numHiddenLayers + " (one per layer)");
        }
        for (String t : layerTypes) {
            if (!t.equals(FULL) && !t.equals(SLIDING)) {
                throw new IllegalArgumentException("field 'layer_types' holds '" + t + "', expected "
                        + FULL + " or " + SLIDING);
            }
            if (t.equals(SLIDING) && slidingWindow == 0) {
                throw new IllegalArgumentException("field 'layer_types' names a sliding_attention layer, but there "
                        + "is no window (expected use_sliding_window true and a sliding_window)");
            }
        }
        eosTokenIds = List.copyOf(eosTokenIds);
        if (!Set.of("float32", "bfloat16", "float16").contains(dtype)) {
            throw new IllegalArgumentException("field 'dtype' is '" + dtype + "', expected float32, bfloat16 or float16");
        }
    }

    private static void positive(String field, int v) {
        if (v <= 0) {
            throw new IllegalArgumentException("field '" + field + "' is " + v + ", expected > 0");
        }
    }

    /** HF's layer kinds when {@code layer_types} is absent: layers from {@code max_window_layers} on slide. */
    public static List<String> defaultLayerTypes(int layers, int slidingWindow, int maxWindowLayers) {
        List<String> types = new ArrayList<>(layers);
        for (int i = 0; i < layers; i++) {
            types.add(slidingWindow > 0 && i >= maxWindowLayers ? SLIDING : FULL);
        }
        return types;
    }

    /** A Qwen3 config for models made from scratch: untied, no bias, no window, theta 1e6. */
    public static Qwen3Config of(int vocab, int hidden, int intermediate, int layers, int heads, int kvHeads,
                                 int headDim, int maxPositions) {
        return new Qwen3Config(vocab, hidden, intermediate, layers, heads, kvHeads, headDim, 1e-6, 1e6,
                RopeScaling.NONE, maxPositions, false, false, false, 0, layers,
                defaultLayerTypes(layers, 0, layers), 1, List.of(2), "float32");
    }

    @Override
    public String modelType() {
        return MODEL_TYPE;
    }

    /** The window of the sliding layers, 0 when no layer slides. */
    public int slidingWindowIfUsed() {
        return layerTypes.contains(SLIDING) ? slidingWindow : 0;
    }

    /** Keys layer {@code i} sees per query: the sliding window, or 0 (all earlier keys). */
    public int window(int i) {
        return layerTypes.get(i).equals(SLIDING) ? slidingWindow : 0;
    }

    public int queryDim() {
        return numAttentionHeads * headDim;
    }

    public int kvDim() {
        return numKeyValueHeads * headDim;
    }

    @Override
    public long parameterCount() {
        long d = hiddenSize;
        long attn = d * queryDim() + 2 * d * kvDim() + (long) queryDim() * d + 2L * headDim
                + (attentionBias ? queryDim() + 2L * kvDim() + d : 0);
        long perLayer = attn + 3 * d * intermediateSize + 2 * d;
        long embed = (long) vocabSize * d;
        return embed + numHiddenLayers * perLayer + d + (tieWordEmbeddings ? 0 : embed);
    }

    /** Builds a config from HF JSON; {@code source} names the file in errors. */
    public static Qwen3Config fromJson(JsonNode c, String source) {
        HfConfigFields f = new HfConfigFields(c, source);
        f.modelType(MODEL_TYPE);
        f.silu();
        int hidden = f.bounded("hidden_size", null, 1, HfConfigFields.MAX_WIDTH);
        int layers = f.bounded("num_hidden_layers", null, 1, HfConfigFields.MAX_LAYERS);
        int heads = f.bounded("num_attention_heads", null, 1, HfConfigFields.MAX_HEADS);
        int kvHeads = f.bounded("num_key_value_heads", heads, 1, HfConfigFields.MAX_HEADS);
        int headDim = f.bounded("head_dim", 128, 2, HfConfigFields.MAX_WIDTH);
        int maxPositions = f.bounded("max_position_embeddings", 32768, 1, HfConfigFields.MAX_POSITIONS);
        f.rotaryTableFits(maxPositions, headDim);
        HfConfigFields.Rope rope = f.rope(10000.0);

        // HF: sliding_window = sliding_window if use_sliding_window else None.
        boolean useWindow = f.bool("use_sliding_window", false);
        int window = useWindow && f.has("sliding_window") ? f.bounded("sliding_window", null, 1, Integer.MAX_VALUE) : 0;
        int maxWindowLayers = f.bounded("max_window_layers", 28, 0, Integer.MAX_VALUE);
        List<String> types = f.strings("layer_types", layers, Set.of(FULL, SLIDING));
        if (types == null) {
            types = defaultLayerTypes(layers, window, maxWindowLayers);
        }
        try {
            return new Qwen3Config(f.bounded("vocab_size", null, 1, HfConfigFields.MAX_VOCAB), hidden,
                    f.bounded("intermediate_size", null, 1, HfConfigFields.MAX_WIDTH), layers, heads, kvHeads, headDim,
                    f.positive("rms_norm_eps", 1e-6), rope.theta(), rope.scaling(), maxPositions,
                    f.bool("tie_word_embeddings", false), f.bool("attention_bias", false), useWindow, window,
                    maxWindowLayers, types, f.bos(), f.eos(), f.dtype());
        } catch (IllegalArgumentException ex) {
            throw new Calm4jException(source + ": " + ex.getMessage());
        }
    }

    /** The config as HF transformers 4.x writes it, with 5.x's explicit {@code layer_types} (both read it). */
    @Override
    public ObjectNode toJson() {
        ObjectNode o = JSON.createObjectNode();
        o.putArray("architectures").add("Qwen3ForCausalLM");
        o.put("model_type", MODEL_TYPE);
        o.put("vocab_size", vocabSize);
        o.put("hidden_size", hiddenSize);
        o.put("intermediate_size", intermediateSize);
        o.put("num_hidden_layers", numHiddenLayers);
        o.put("num_attention_heads", numAttentionHeads);
        o.put("num_key_value_heads", numKeyValueHeads);
        o.put("head_dim", headDim);
        o.put("hidden_act", "silu");
        o.put("rms_norm_eps", rmsNormEps);
        HfConfigFields.putRope(o, ropeTheta, ropeScaling);
        o.put("max_position_embeddings", maxPositionEmbeddings);
        o.put("tie_word_embeddings", tieWordEmbeddings);
        o.put("attention_bias", attentionBias);
        o.put("use_sliding_window", useSlidingWindow);
        if (slidingWindow > 0) {
            o.put("sliding_window", slidingWindow);
        } else {
            o.putNull("sliding_window");
        }
        o.put("max_window_layers", maxWindowLayers);
        ArrayNode types = o.putArray("layer_types");
        layerTypes.forEach(types::add);
        HfConfigFields.putSpecialTokens(o, bosTokenId, eosTokenIds);
        o.put("torch_dtype", dtype);
        return o;
    }
}
