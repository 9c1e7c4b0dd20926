package dev.calm4j.lm.smollm3;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.lm.HfConfigFields;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.llama.RopeScaling;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * A SmolLM3 {@code config.json}, field for field with Hugging Face's {@code SmolLM3Config} (transformers 4.x and
 * 5.x layouts). HF's defaults for fields a config leaves out: {@code rope_theta} 2e6, {@code rms_norm_eps} 1e-6,
 * {@code max_position_embeddings} 32768, tied head, {@code no_rope_layer_interval} 4, no window, no biases;
 * {@code head_dim} is hidden / heads unless config.json carries one. Special token ids are what the file says (HF's
 * fallback ids 128000 / 128001 / 128004 are not invented for a file that omits them).
 *
 * <p>Rotary per layer: {@code no_rope_layers[i]} is 1 when layer i USES rotary, 0 when it does not (HF's name
 * reads the other way round); absent, every {@code no_rope_layer_interval}-th layer (i + 1 divisible by it) goes
 * without. With {@code use_sliding_window} and a {@code sliding_window}, the layers without rotary slide, unless
 * {@code layer_types} names each layer's kind explicitly; a sliding layer without a window is refused.
 *
 * @param headDim per-head width
 * @param attentionBias biases on q, k, v and o projections
 * @param mlpBias biases on gate, up and down projections
 * @param slidingWindow keys a sliding layer's query sees (itself included), or 0 = none (also when
 *                      {@code use_sliding_window} is false: no layer can then slide)
 * @param noRopeLayers 1 = the layer applies rotary, 0 = it does not; one per layer, always resolved
 * @param layerTypes {@code full_attention} or {@code sliding_attention}, one per layer, always resolved
 */
public record SmolLM3Config(
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
        boolean mlpBias,
        boolean useSlidingWindow,
        int slidingWindow,
        int noRopeLayerInterval,
        List<Integer> noRopeLayers,
        List<String> layerTypes,
        int bosTokenId,
        List<Integer> eosTokenIds,
        String dtype) implements ModelConfig {

    public static final String MODEL_TYPE = "smollm3";
    static final String FULL = "full_attention";
    static final String SLIDING = "sliding_attention";
    private static final ObjectMapper JSON = new ObjectMapper();

    public SmolLM3Config {
        positive("vocab_size", vocabSize);
        positive("hidden_size", hiddenSize);
        positive("intermediate_size", intermediateSize);
        positive("num_hidden_layers", numHiddenLayers);
        positive("num_attention_heads", numAttentionHeads);
        positive("num_key_value_heads", numKeyValueHeads);
        positive("head_dim", headDim);
        positive("max_position_embeddings", maxPositionEmbeddings);
        positive("no_rope_layer_interval", noRopeLayerInterval);
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
        if (slidingWindow < 0) {
            throw new IllegalArgumentException("field 'sliding_window' is " + slidingWindow + ", expected > 0 or null");
        }
        ropeScaling = ropeScaling == null ? RopeScaling.NONE : ropeScaling;
        noRopeLayers = List.copyOf(noRopeLayers);
        if (noRopeLayers.size() != numHiddenLayers) {
            throw new IllegalArgumentException("field 'no_rope_layers' has " + noRopeLayers.size()
                    + " entries, expected " + numHiddenLayers + " (one per layer)");
        }
        for (int r : noRopeLayers) {
            if (r != 0 && r != 1) {
                throw new IllegalArgumentException("field 'no_rope_layers' holds " + r + ", expected 0 or 1");
            }
        }
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
            if (t.equals(SLIDING) && !(useSlidingWindow && slidingWindow > 0)) {
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

    /** HF's default: layer i skips rotary when i + 1 is a multiple of the interval (1 = uses rotary). */
    public static List<Integer> defaultNoRopeLayers(int layers, int interval) {
        List<Integer> r = new ArrayList<>(layers);
        for (int i = 0; i < layers; i++) {
            r.add((i + 1) % interval != 0 ? 1 : 0);
        }
        return r;
    }

    /** HF's default: with a window in use, the layers without rotary slide. */
    public static List<String> defaultLayerTypes(List<Integer> noRopeLayers, boolean useSlidingWindow, int window) {
        List<String> types = new ArrayList<>(noRopeLayers.size());
        for (int r : noRopeLayers) {
            types.add(useSlidingWindow && window > 0 && r == 0 ? SLIDING : FULL);
        }
        return types;
    }

    /** A SmolLM3 config for models made from scratch: every 4th layer without rotary, tied, no window. */
    public static SmolLM3Config of(int vocab, int hidden, int intermediate, int layers, int heads, int kvHeads,
                                   int maxPositions) {
        if (hidden % heads != 0) {
            throw new IllegalArgumentException("hidden_size (" + hidden + ") must be divisible by num_attention_heads (" + heads + ")");
        }
        List<Integer> rope = defaultNoRopeLayers(layers, 4);
        return new SmolLM3Config(vocab, hidden, intermediate, layers, heads, kvHeads, hidden / heads, 1e-6, 2e6,
                RopeScaling.NONE, maxPositions, true, false, false, false, 0, 4, rope,
                defaultLayerTypes(rope, false, 0), 1, List.of(2), "float32");
    }

    @Override
    public String modelType() {
        return MODEL_TYPE;
    }

    /** Whether layer {@code i} applies rotary to q and k. */
    public boolean usesRope(int i) {
        return noRopeLayers.get(i) == 1;
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

    /**
     * The same tensors as a Llama checkpoint of this shape (names, shapes, biases, tying): SmolLM3's weights are
     * Llama's, only the forward differs, so {@link dev.calm4j.lm.llama.LlamaWeights} holds them.
     */
    public LlamaConfig weightLayout() {
        return new LlamaConfig("llama", vocabSize, hiddenSize, intermediateSize, numHiddenLayers, numAttentionHeads,
                numKeyValueHeads, headDim, rmsNormEps, ropeTheta, ropeScaling, maxPositionEmbeddings,
                tieWordEmbeddings, attentionBias, attentionBias, mlpBias, 0, bosTokenId, eosTokenIds, dtype);
    }

    @Override
    public long parameterCount() {
        return weightLayout().parameterCount();
    }

    /** Builds a config from HF JSON; {@code source} names the file in errors. */
    public static SmolLM3Config fromJson(JsonNode c, String source) {
        HfConfigFields f = new HfConfigFields(c, source);
        f.modelType(MODEL_TYPE);
        f.silu();
        int hidden = f.bounded("hidden_size", null, 1, HfConfigFields.MAX_WIDTH);
        int layers = f.bounded("num_hidden_layers", null, 1, HfConfigFields.MAX_LAYERS);
        int heads = f.bounded("num_attention_heads", null, 1, HfConfigFields.MAX_HEADS);
        int kvHeads = f.bounded("num_key_value_heads", heads, 1, HfConfigFields.MAX_HEADS);
        int headDim;
        if (f.has("head_dim")) {
            headDim = f.bounded("head_dim", null, 2, HfConfigFields.MAX_WIDTH);
        } else if (hidden % heads != 0) {
            throw new Calm4jException(source + ": field 'hidden_size' (" + hidden
                    + ") is not divisible by 'num_attention_heads' (" + heads + ") and no 'head_dim' is given");
        } else {
            headDim = hidden / heads;
        }
        int maxPositions = f.bounded("max_position_embeddings", 32768, 1, HfConfigFields.MAX_POSITIONS);
        f.rotaryTableFits(maxPositions, headDim);
        HfConfigFields.Rope rope = f.rope(2000000.0);

        boolean useWindow = f.bool("use_sliding_window", false);
        int window = useWindow && f.has("sliding_window") ? f.bounded("sliding_window", null, 1, Integer.MAX_VALUE) : 0;
        int interval = f.bounded("no_rope_layer_interval", 4, 1, Integer.MAX_VALUE);
        List<Integer> noRope = f.ints("no_rope_layers", layers, Set.of(0, 1));
        if (noRope == null) {
            noRope = defaultNoRopeLayers(layers, interval);
        }
        List<String> types = f.strings("layer_types", layers, Set.of(FULL, SLIDING));
        if (types == null) {
            types = defaultLayerTypes(noRope, useWindow, window);
        }
        try {
            return new SmolLM3Config(f.bounded("vocab_size", null, 1, HfConfigFields.MAX_VOCAB), hidden,
                    f.bounded("intermediate_size", null, 1, HfConfigFields.MAX_WIDTH), layers, heads, kvHeads, headDim,
                    f.positive("rms_norm_eps", 1e-6), rope.theta(), rope.scaling(), maxPositions,
                    f.bool("tie_word_embeddings", true), f.bool("attention_bias", false), f.bool("mlp_bias", false),
                    useWindow, window, interval, noRope, types, f.bos(), f.eos(), f.dtype());
        } catch (IllegalArgumentException ex) {
            throw new Calm4jException(source + ": " + ex.getMessage());
        }
    }

    /** The config as HF transformers 4.x writes it, with the explicit per-layer lists (both versions read them). */
    @Override
    public ObjectNode toJson() {
        ObjectNode o = JSON.createObjectNode();
        o.putArray("architectures").add("SmolLM3ForCausalLM");
        o.put("model_type", MODEL_TYPE);
        o.put("vocab_size", vocabSize);
        o.put("hidden_size", hiddenSize);
        o.put("intermediate_size", intermediateSize);
        o.put("num_hidden_layers", numHiddenLayers);
        o.put("num_attention_heads", numAttentionHeads);
        o.put("num_key_value_heads", numKeyValueHeads);
        if (headDim * numAttentionHeads != hiddenSize) {
            o.put("head_dim", headDim);
        }
        o.put("hidden_act", "silu");
        o.put("rms_norm_eps", rmsNormEps);
        HfConfigFields.putRope(o, ropeTheta, ropeScaling);
        o.put("max_position_embeddings", maxPositionEmbeddings);
        o.put("tie_word_embeddings", tieWordEmbeddings);
        o.put("attention_bias", attentionBias);
        o.put("mlp_bias", mlpBias);
        o.put("use_sliding_window", useSlidingWindow);
        if (slidingWindow > 0) {
            o.put("sliding_window", slidingWindow);
        } else {
            o.putNull("sliding_window");
        }
        o.put("no_rope_layer_interval", noRopeLayerInterval);
        ArrayNode rope = o.putArray("no_rope_layers");
        noRopeLayers.forEach(rope::add);
        ArrayNode types = o.putArray("layer_types");
        layerTypes.forEach(types::add);
        HfConfigFields.putSpecialTokens(o, bosTokenId, eosTokenIds);
        o.put("torch_dtype", dtype);
        return o;
    }
}
