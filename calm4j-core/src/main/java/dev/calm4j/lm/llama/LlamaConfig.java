package dev.calm4j.lm.llama;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.lm.HfConfigFields;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * A Llama-family {@code config.json}, field for field with Hugging Face's {@code LlamaConfig}. Mistral and Qwen2
 * are Llama with config differences (a sliding window; q/k/v biases), so they share this record and
 * {@link LlamaModel} instead of copying the model three times; {@link #modelType} keeps the name.
 *
 * <p>Reads configs as written by transformers 4.x (top-level {@code rope_theta}, {@code rope_scaling},
 * {@code torch_dtype}) and 5.x ({@code rope_parameters}, {@code dtype}). Every field is validated when read, and
 * errors name the file and the field.
 *
 * @param modelType {@code llama}, {@code mistral} or {@code qwen2}
 * @param headDim per-head width; HF's {@code head_dim} field when present, else hidden / heads
 * @param qkvBias biases on q/k/v projections (Qwen2 always; Llama's {@code attention_bias})
 * @param oBias bias on the output projection (Llama's {@code attention_bias} only)
 * @param slidingWindow attention window in keys (a query sees at most this many, itself included), or 0 = none
 * @param eosTokenIds every id that ends generation (HF allows an int or a list)
 * @param dtype the dtype the checkpoint says it is stored in ({@code float32}, {@code bfloat16}, {@code float16})
 */
public record LlamaConfig(
        String modelType,
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
        boolean qkvBias,
        boolean oBias,
        boolean mlpBias,
        int slidingWindow,
        int bosTokenId,
        List<Integer> eosTokenIds,
        String dtype) implements dev.calm4j.lm.ModelConfig {

    public static final Set<String> MODEL_TYPES = Set.of("llama", "mistral", "qwen2");
    private static final ObjectMapper JSON = new ObjectMapper();

    public LlamaConfig {
        if (!MODEL_TYPES.contains(modelType)) {
            throw new IllegalArgumentException("model_type '" + modelType + "' is not a Llama-family type " + MODEL_TYPES);
        }
        positive("vocab_size", vocabSize);
        positive("hidden_size", hiddenSize);
        positive("intermediate_size", intermediateSize);
        positive("num_hidden_layers", numHiddenLayers);
        positive("num_attention_heads", numAttentionHeads);
        positive("num_key_value_heads", numKeyValueHeads);
        positive("head_dim", headDim);
        positive("max_position_embeddings", maxPositionEmbeddings);
        // Upper bounds before anything is sized by them: a hostile count would otherwise allocate per-layer lists
        // or tables for minutes before the weights could contradict it.
        atMost("vocab_size", vocabSize, HfConfigFields.MAX_VOCAB);
        atMost("hidden_size", hiddenSize, HfConfigFields.MAX_WIDTH);
        atMost("intermediate_size", intermediateSize, HfConfigFields.MAX_WIDTH);
        atMost("num_hidden_layers", numHiddenLayers, HfConfigFields.MAX_LAYERS);
        atMost("num_attention_heads", numAttentionHeads, HfConfigFields.MAX_HEADS);
        atMost("num_key_value_heads", numKeyValueHeads, HfConfigFields.MAX_HEADS);
        atMost("head_dim", headDim, HfConfigFields.MAX_WIDTH);
        atMost("max_position_embeddings", maxPositionEmbeddings, HfConfigFields.MAX_POSITIONS);
        if (numAttentionHeads % numKeyValueHeads != 0) {
            throw new IllegalArgumentException("num_attention_heads (" + numAttentionHeads
                    + ") must be a multiple of num_key_value_heads (" + numKeyValueHeads + ")");
        }
        if (headDim % 2 != 0) {
            throw new IllegalArgumentException("head_dim (" + headDim + ") must be even for rotary embeddings");
        }
        if (!(rmsNormEps > 0) || !(ropeTheta > 0)) {
            throw new IllegalArgumentException("rms_norm_eps and rope_theta must be > 0");
        }
        if (slidingWindow < 0) {
            throw new IllegalArgumentException("sliding_window must be >= 0, got " + slidingWindow);
        }
        if (ropeScaling == null) {
            ropeScaling = RopeScaling.NONE;
        }
        eosTokenIds = List.copyOf(eosTokenIds);
        if (!Set.of("float32", "bfloat16", "float16").contains(dtype)) {
            throw new IllegalArgumentException("dtype '" + dtype + "' is not one of float32, bfloat16, float16");
        }
    }

    private static void atMost(String field, int v, int max) {
        if (v > max) {
            throw new IllegalArgumentException("field '" + field + "' is " + v + ", expected at most " + max);
        }
    }

    private static void positive(String field, int v) {
        if (v <= 0) {
            throw new IllegalArgumentException(field + " must be > 0, got " + v);
        }
    }

    /** A plain Llama config for models made from scratch (head_dim = hidden / heads, untied head, no biases). */
    public static LlamaConfig llama(int vocab, int hidden, int intermediate, int layers, int heads, int kvHeads,
                                    int maxPositions) {
        if (hidden % heads != 0) {
            throw new IllegalArgumentException("hidden_size (" + hidden + ") must be divisible by num_attention_heads (" + heads + ")");
        }
        return new LlamaConfig("llama", vocab, hidden, intermediate, layers, heads, kvHeads, hidden / heads, 1e-5,
                10000.0, RopeScaling.NONE, maxPositions, false, false, false, false, 0, 1, List.of(2), "float32");
    }

    public int queryDim() {
        return numAttentionHeads * headDim;
    }

    public int kvDim() {
        return numKeyValueHeads * headDim;
    }

    /** Number of weights a checkpoint of this config holds (tied head counted once). */
    public long parameterCount() {
        long d = hiddenSize;
        long attn = d * queryDim() + 2 * d * kvDim() + (long) queryDim() * d
                + (qkvBias ? queryDim() + 2L * kvDim() : 0) + (oBias ? d : 0);
        long mlp = 3 * d * intermediateSize + (mlpBias ? 2L * intermediateSize + d : 0);
        long perLayer = attn + mlp + 2 * d;
        long embed = (long) vocabSize * d;
        return embed + numHiddenLayers * perLayer + d + (tieWordEmbeddings ? 0 : embed);
    }

    // ------------------------------------------------------------------------------------------------------
    // Reading and writing config.json
    // ------------------------------------------------------------------------------------------------------

    public static LlamaConfig read(Path file) {
        JsonNode root = dev.calm4j.io.StrictJson.read(file);
        if (!root.isObject()) {
            throw new Calm4jException(file + ": expected a JSON object");
        }
        return fromJson(root, file.toString());
    }

    /** Builds a config from HF JSON; {@code source} names the file in errors. */
    public static LlamaConfig fromJson(JsonNode c, String source) {
        Fields f = new Fields(c, source);
        String type = f.string("model_type", null);
        if (type == null) {
            throw new Calm4jException(source + ": field 'model_type' is missing (expected one of " + MODEL_TYPES + ")");
        }
        if (!MODEL_TYPES.contains(type)) {
            throw new Calm4jException(source + ": field 'model_type' is '" + type + "', expected one of " + MODEL_TYPES);
        }
        String act = f.string("hidden_act", "silu");
        if (!act.equals("silu")) {
            throw new Calm4jException(source + ": field 'hidden_act' is '" + act + "', expected 'silu' (SwiGLU)");
        }
        int hidden = f.integer("hidden_size", null);
        int heads = f.integer("num_attention_heads", null);
        int kvHeads = f.integer("num_key_value_heads", heads);
        Integer explicitHeadDim = c.hasNonNull("head_dim") ? f.integer("head_dim", null) : null;
        if (explicitHeadDim == null && heads > 0 && hidden % heads != 0) {
            throw new Calm4jException(source + ": field 'hidden_size' (" + hidden
                    + ") is not divisible by 'num_attention_heads' (" + heads + ") and no 'head_dim' is given");
        }
        int headDim = explicitHeadDim != null ? explicitHeadDim : (heads > 0 ? hidden / heads : 0);
        boolean qwen = type.equals("qwen2");
        boolean attentionBias = f.bool("attention_bias", false);
        boolean qkvBias = qwen || attentionBias;
        boolean oBias = !qwen && attentionBias;

        // Sliding window: Mistral applies it whenever set. Qwen2 only with use_sliding_window, and then (as
        // transformers' Qwen2Config derives its layer_types) on layers i >= max_window_layers (default 28): none when
        // max_window_layers >= the layer count, all when it is 0; a mix is refused (one window for every block here).
        int window = 0;
        if (c.hasNonNull("sliding_window")) {
            int w = f.integer("sliding_window", null);
            if (type.equals("mistral")) {
                window = w;
            } else if (qwen && f.bool("use_sliding_window", false)) {
                int layers = f.integer("num_hidden_layers", null);
                int from = c.hasNonNull("max_window_layers") ? f.integer("max_window_layers", null) : 28;
                if (from <= 0) {
                    window = w;
                } else if (from < layers) {
                    throw new Calm4jException(source + ": field 'max_window_layers' is " + from + ": only layers "
                            + from + ".." + (layers - 1) + " of " + layers + " slide, and a mix of sliding and full "
                            + "layers is not supported for qwen2 (0: all slide; >= num_hidden_layers: none)");
                }
            }
        }

        // Rotary: 5.x keeps theta and scaling in rope_parameters; 4.x has top-level rope_theta and rope_scaling.
        double theta;
        RopeScaling scaling;
        if (c.hasNonNull("rope_parameters")) {
            JsonNode rp = c.get("rope_parameters");
            if (!rp.isObject()) {
                throw new Calm4jException(source + ": field 'rope_parameters' must be an object");
            }
            Fields rf = new Fields(rp, source + ": rope_parameters");
            theta = rf.number("rope_theta", f.number("rope_theta", 10000.0));
            scaling = scaling(rp, source + ": field 'rope_parameters'");
        } else {
            theta = f.number("rope_theta", 10000.0);
            JsonNode rs = c.get("rope_scaling");
            if (rs != null && !rs.isNull() && !rs.isObject()) {
                throw new Calm4jException(source + ": field 'rope_scaling' must be an object or null");
            }
            scaling = rs == null || rs.isNull() ? RopeScaling.NONE : scaling(rs, source + ": field 'rope_scaling'");
        }

        String dtype = c.hasNonNull("dtype") ? f.string("dtype", null) : f.string("torch_dtype", "float32");
        List<Integer> eos = new ArrayList<>();
        JsonNode e = c.get("eos_token_id");
        if (e != null && e.isArray()) {
            for (JsonNode x : e) {
                if (!x.canConvertToInt()) {
                    throw new Calm4jException(source + ": field 'eos_token_id' must hold integers");
                }
                eos.add(x.asInt());
            }
        } else if (e != null && !e.isNull()) {
            eos.add(f.integer("eos_token_id", null));
        }
        int bos = c.hasNonNull("bos_token_id") ? f.integer("bos_token_id", null) : -1;
        try {
            return new LlamaConfig(type, f.integer("vocab_size", null), hidden, f.integer("intermediate_size", null),
                    f.integer("num_hidden_layers", null), heads, kvHeads, headDim, f.number("rms_norm_eps", 1e-6),
                    theta, scaling, f.integer("max_position_embeddings", 2048),
                    f.bool("tie_word_embeddings", false), qkvBias, oBias, f.bool("mlp_bias", false), window, bos, eos,
                    dtype);
        } catch (IllegalArgumentException ex) {
            throw new Calm4jException(source + ": " + ex.getMessage());
        }
    }

    private static RopeScaling scaling(JsonNode rs, String where) {
        Fields f = new Fields(rs, where);
        String type = rs.hasNonNull("rope_type") ? f.string("rope_type", null) : f.string("type", "default");
        try {
            return switch (type) {
                case "default" -> RopeScaling.NONE;
                case "linear" -> new RopeScaling("linear", f.number("factor", null), 0, 0, 0);
                case "llama3" -> new RopeScaling("llama3", f.number("factor", null), f.number("low_freq_factor", null),
                        f.number("high_freq_factor", null), f.integer("original_max_position_embeddings", null));
                default -> throw new IllegalArgumentException("rope type '" + type + "' is not supported (supported: default, linear, llama3)");
            };
        } catch (IllegalArgumentException ex) {
            throw new Calm4jException(where + ": " + ex.getMessage());
        }
    }

    /** The config as HF transformers 4.x writes it (the layout every current loader reads). */
    public ObjectNode toJson() {
        ObjectNode o = JSON.createObjectNode();
        String arch = switch (modelType) {
            case "mistral" -> "MistralForCausalLM";
            case "qwen2" -> "Qwen2ForCausalLM";
            default -> "LlamaForCausalLM";
        };
        o.putArray("architectures").add(arch);
        o.put("model_type", modelType);
        o.put("vocab_size", vocabSize);
        o.put("hidden_size", hiddenSize);
        o.put("intermediate_size", intermediateSize);
        o.put("num_hidden_layers", numHiddenLayers);
        o.put("num_attention_heads", numAttentionHeads);
        o.put("num_key_value_heads", numKeyValueHeads);
        o.put("head_dim", headDim);
        o.put("hidden_act", "silu");
        o.put("rms_norm_eps", rmsNormEps);
        o.put("rope_theta", ropeTheta);
        if (ropeScaling.type().equals("default")) {
            o.putNull("rope_scaling");
        } else {
            ObjectNode rs = o.putObject("rope_scaling");
            rs.put("rope_type", ropeScaling.type());
            rs.put("factor", ropeScaling.factor());
            if (ropeScaling.type().equals("llama3")) {
                rs.put("low_freq_factor", ropeScaling.lowFreqFactor());
                rs.put("high_freq_factor", ropeScaling.highFreqFactor());
                rs.put("original_max_position_embeddings", ropeScaling.originalMaxPositions());
            }
        }
        o.put("max_position_embeddings", maxPositionEmbeddings);
        o.put("tie_word_embeddings", tieWordEmbeddings);
        if (modelType.equals("llama")) {
            o.put("attention_bias", qkvBias);
            o.put("mlp_bias", mlpBias);
        }
        if (slidingWindow > 0) {
            o.put("sliding_window", slidingWindow);
            if (modelType.equals("qwen2")) {
                o.put("use_sliding_window", true);
                o.put("max_window_layers", 0);          // every layer slides (transformers: layers >= this one)
            }
        } else if (!modelType.equals("llama")) {
            o.putNull("sliding_window");
        }
        if (bosTokenId >= 0) {
            o.put("bos_token_id", bosTokenId);
        }
        if (eosTokenIds.size() == 1) {
            o.put("eos_token_id", eosTokenIds.get(0));
        } else if (!eosTokenIds.isEmpty()) {
            ArrayNode a = o.putArray("eos_token_id");
            eosTokenIds.forEach(a::add);
        }
        o.put("torch_dtype", dtype);
        return o;
    }

    /** Typed access to JSON fields with errors that name the file and the field. */
    private record Fields(JsonNode node, String source) {
        int integer(String name, Integer dflt) {
            JsonNode v = node.get(name);
            if (v == null || v.isNull()) {
                if (dflt == null) {
                    throw new Calm4jException(source + ": field '" + name + "' is missing (expected an integer)");
                }
                return dflt;
            }
            if (!v.isIntegralNumber() || !v.canConvertToInt()) {
                throw new Calm4jException(source + ": field '" + name + "' is " + v + ", expected an integer");
            }
            return v.asInt();
        }

        double number(String name, Double dflt) {
            JsonNode v = node.get(name);
            if (v == null || v.isNull()) {
                if (dflt == null) {
                    throw new Calm4jException(source + ": field '" + name + "' is missing (expected a number)");
                }
                return dflt;
            }
            if (!v.isNumber()) {
                throw new Calm4jException(source + ": field '" + name + "' is " + v + ", expected a number");
            }
            return v.asDouble();
        }

        boolean bool(String name, boolean dflt) {
            JsonNode v = node.get(name);
            if (v == null || v.isNull()) {
                return dflt;
            }
            if (!v.isBoolean()) {
                throw new Calm4jException(source + ": field '" + name + "' is " + v + ", expected true or false");
            }
            return v.asBoolean();
        }

        String string(String name, String dflt) {
            JsonNode v = node.get(name);
            if (v == null || v.isNull()) {
                return dflt;
            }
            if (!v.isTextual()) {
                throw new Calm4jException(source + ": field '" + name + "' is " + v + ", expected a string");
            }
            return v.asText();
        }
    }
}
