package dev.calm4j.lm.gemma;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.lm.HfConfigFields;
import dev.calm4j.lm.llama.RopeScaling;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * Reading and writing the fields Gemma 2 and Gemma 3 configs share, with errors that name the file and the field.
 * Sizes are bounded here, before anything is allocated from them (the rotary tables are {@code max_position_embeddings
 * x head_dim}; a hostile config must not get to allocate terabytes).
 */
final class GemmaJson {
    static final ObjectMapper JSON = new ObjectMapper();

    static final int MAX_VOCAB = 1 << 22;
    static final int MAX_HIDDEN = 1 << 16;
    static final int MAX_INTERMEDIATE = 1 << 20;
    static final int MAX_LAYERS = 1024;
    static final int MAX_HEADS = 1024;
    static final int MAX_HEAD_DIM = 1024;
    static final int MAX_POSITIONS = 1 << 20;

    private final JsonNode node;
    private final HfConfigFields f;            // the readers every family shares

    GemmaJson(JsonNode node, String source) {
        this.node = node;
        this.f = new HfConfigFields(node, source);
    }

    Calm4jException error(String field, String what) {
        return new Calm4jException(f.source() + ": field '" + field + "' " + what);
    }

    boolean has(String name) {
        return node.has(name);
    }

    boolean isNull(String name) {
        return node.has(name) && node.get(name).isNull();
    }

    int integer(String name, Integer dflt) {
        return f.integer(name, dflt);
    }

    /** An integer in {@code [min, max]}. */
    int bounded(String name, Integer dflt, int min, int max) {
        int v = f.integer(name, dflt);
        if (v < min || v > max) {
            throw error(name, "is " + v + ", expected " + min + ".." + max);
        }
        return v;
    }

    double number(String name, Double dflt) {
        return f.number(name, dflt);
    }

    /** A number > 0. */
    double positive(String name, Double dflt) {
        return f.positive(name, dflt);
    }

    /**
     * A soft cap: absent = HF's class default, null = no cap (0 here), else a number > 0. Absent and null differ in
     * HF (Gemma 2's default caps are 50 and 30), so they differ here.
     */
    double softcap(String name, double dflt) {
        if (!node.has(name)) {
            return dflt;
        }
        return node.get(name).isNull() ? 0 : positive(name, null);
    }

    boolean bool(String name, boolean dflt) {
        return f.bool(name, dflt);
    }

    String string(String name, String dflt) {
        return f.string(name, dflt);
    }

    JsonNode object(String name) {
        JsonNode v = node.get(name);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isObject()) {
            throw error(name, "is " + v + ", expected an object");
        }
        return v;
    }

    // ------------------------------------------------------------------------------------------- shared fields

    /** {@code model_type}, which must be {@code expected}. */
    void modelType(String expected) {
        f.modelType(expected);
    }

    /** The MLP activation: HF's {@code hidden_activation} (older configs: {@code hidden_act}); only the tanh GELU. */
    void activation() {
        String field = has("hidden_activation") && !isNull("hidden_activation") ? "hidden_activation" : "hidden_act";
        String act = string(field, "gelu_pytorch_tanh");
        if (!act.equals("gelu_pytorch_tanh")) {
            throw error(field, "is '" + act + "', expected 'gelu_pytorch_tanh' (Gemma's GELU-tanh gated MLP)");
        }
    }

    void causal() {
        if (bool("use_bidirectional_attention", false)) {
            throw error("use_bidirectional_attention", "is true, expected false or null (calm4j loads causal language "
                    + "models only)");
        }
    }

    /** {@code layer_types} when given (checked against the layer count), else {@code dflt}. */
    List<String> layerTypes(int layers, List<String> dflt) {
        JsonNode v = node.get("layer_types");
        if (v == null || v.isNull()) {
            return dflt;
        }
        if (!v.isArray() || v.size() != layers) {
            throw error("layer_types", "is " + (v.isArray() ? "a list of " + v.size() : v.toString()) + ", expected a list of "
                    + layers + " (num_hidden_layers) entries");
        }
        List<String> types = new ArrayList<>();
        for (JsonNode x : v) {
            if (!x.isTextual() || !Set.of(GemmaConfig.SLIDING, GemmaConfig.FULL).contains(x.asText())) {
                throw error("layer_types", "holds " + x + ", expected '" + GemmaConfig.SLIDING + "' or '"
                        + GemmaConfig.FULL + "'");
            }
            types.add(x.asText());
        }
        return types;
    }

    /** {@code sliding_window}: absent = HF's default 4096, null = none (0), else 1..MAX_POSITIONS. */
    int slidingWindow() {
        if (!has("sliding_window")) {
            return 4096;
        }
        return isNull("sliding_window") ? 0 : bounded("sliding_window", null, 1, MAX_POSITIONS);
    }

    int bos() {
        return f.bos();
    }

    List<Integer> eos() {
        return f.eos();
    }

    String dtype() {
        return f.dtype();
    }

    /** Rotary scaling from an HF dict ({@code rope_type}, or legacy {@code type}); {@code field} names the dict. */
    RopeScaling scaling(JsonNode rs, String field) {
        String where = this.f.source() + ": " + field;
        GemmaJson f = new GemmaJson(rs, where);
        String typeField = rs.hasNonNull("rope_type") ? "rope_type" : "type";
        String type = f.string(typeField, "default");
        try {
            return switch (type) {
                case "default" -> RopeScaling.NONE;
                case "linear" -> new RopeScaling("linear", f.number("factor", null), 0, 0, 0);
                case "llama3" -> new RopeScaling("llama3", f.number("factor", null), f.number("low_freq_factor", null),
                        f.number("high_freq_factor", null), f.integer("original_max_position_embeddings", null));
                default -> throw f.error(typeField, "is '" + type + "', expected one of default, linear, llama3");
            };
        } catch (IllegalArgumentException e) {
            throw new Calm4jException(where + ": " + e.getMessage());
        }
    }

    // ------------------------------------------------------------------------------------------- writing

    static void putScaling(ObjectNode o, RopeScaling s) {
        o.put("rope_type", s.type());
        if (!s.type().equals("default")) {
            o.put("factor", s.factor());
        }
        if (s.type().equals("llama3")) {
            o.put("low_freq_factor", s.lowFreqFactor());
            o.put("high_freq_factor", s.highFreqFactor());
            o.put("original_max_position_embeddings", s.originalMaxPositions());
        }
    }

    static void putCap(ObjectNode o, String name, double cap) {
        if (cap > 0) {
            o.put(name, cap);
        } else {
            o.putNull(name);
        }
    }

    static void putCommon(ObjectNode o, GemmaConfig c) {
        o.put("vocab_size", c.vocabSize());
        o.put("hidden_size", c.hiddenSize());
        o.put("intermediate_size", c.intermediateSize());
        o.put("num_hidden_layers", c.numHiddenLayers());
        o.put("num_attention_heads", c.numAttentionHeads());
        o.put("num_key_value_heads", c.numKeyValueHeads());
        o.put("head_dim", c.headDim());
        o.put("hidden_activation", "gelu_pytorch_tanh");
        o.put("rms_norm_eps", c.rmsNormEps());
        o.put("max_position_embeddings", c.maxPositionEmbeddings());
        o.put("query_pre_attn_scalar", c.queryPreAttnScalar());
        if (c.slidingWindow() > 0) {
            o.put("sliding_window", c.slidingWindow());
        } else {
            o.putNull("sliding_window");
        }
        ArrayNode types = o.putArray("layer_types");
        c.layerTypes().forEach(types::add);
        o.put("tie_word_embeddings", c.tieWordEmbeddings());
        o.put("attention_bias", c.attentionBias());
        if (c.bosTokenId() >= 0) {
            o.put("bos_token_id", c.bosTokenId());
        }
        if (c.eosTokenIds().size() == 1) {
            o.put("eos_token_id", c.eosTokenIds().get(0));
        } else if (!c.eosTokenIds().isEmpty()) {
            ArrayNode a = o.putArray("eos_token_id");
            c.eosTokenIds().forEach(a::add);
        }
        o.put("torch_dtype", c.dtype());
    }

    /** Checks shared by both records' constructors (direct construction, not only JSON, goes through them). */
    static void check(int vocab, int hidden, int intermediate, int layers, int heads, int kvHeads, int headDim,
                      double eps, double scalar, int window, List<String> layerTypes, int maxPositions) {
        range("vocab_size", vocab, MAX_VOCAB);
        range("hidden_size", hidden, MAX_HIDDEN);
        range("intermediate_size", intermediate, MAX_INTERMEDIATE);
        range("num_hidden_layers", layers, MAX_LAYERS);
        range("num_attention_heads", heads, MAX_HEADS);
        range("num_key_value_heads", kvHeads, MAX_HEADS);
        range("head_dim", headDim, MAX_HEAD_DIM);
        range("max_position_embeddings", maxPositions, MAX_POSITIONS);
        if (heads % kvHeads != 0) {
            throw new IllegalArgumentException("field 'num_key_value_heads' is " + kvHeads
                    + ", expected a divisor of num_attention_heads (" + heads + ")");
        }
        if (headDim % 2 != 0) {
            throw new IllegalArgumentException("field 'head_dim' is " + headDim + ", expected an even number (rotary)");
        }
        if (!(eps > 0)) {
            throw new IllegalArgumentException("field 'rms_norm_eps' is " + eps + ", expected a number > 0");
        }
        if (!(scalar > 0)) {
            throw new IllegalArgumentException("field 'query_pre_attn_scalar' is " + scalar + ", expected a number > 0");
        }
        if (window < 0) {
            throw new IllegalArgumentException("field 'sliding_window' is " + window + ", expected >= 0 (0 = none)");
        }
        if (layerTypes.size() != layers) {
            throw new IllegalArgumentException("field 'layer_types' has " + layerTypes.size()
                    + " entries, expected " + layers + " (num_hidden_layers)");
        }
        for (String t : layerTypes) {
            if (!t.equals(GemmaConfig.SLIDING) && !t.equals(GemmaConfig.FULL)) {
                throw new IllegalArgumentException("field 'layer_types' holds '" + t + "', expected '"
                        + GemmaConfig.SLIDING + "' or '" + GemmaConfig.FULL + "'");
            }
        }
    }

    private static void range(String field, int v, int max) {
        if (v < 1 || v > max) {
            throw new IllegalArgumentException("field '" + field + "' is " + v + ", expected 1.." + max);
        }
    }

    static void checkCap(String field, double cap) {
        if (!(cap >= 0) || Double.isInfinite(cap)) {
            throw new IllegalArgumentException("field '" + field + "' is " + cap + ", expected a number > 0 (0 = none)");
        }
    }
}
