package dev.calm4j.lm.phi3;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.lm.HfConfigFields;
import dev.calm4j.lm.ModelConfig;

import java.util.List;
import java.util.Set;

/**
 * A Phi-3 {@code config.json}, field for field with Hugging Face's {@code Phi3Config} (Phi-3, Phi-3.5 and Phi-4-mini
 * checkpoints). Reads the 4.x layout (top-level {@code rope_theta}, {@code partial_rotary_factor},
 * {@code rope_scaling}, {@code torch_dtype}) and the 5.x one ({@code rope_parameters}, {@code dtype}). Every field is
 * validated when read; an error names the file and the field.
 *
 * @param headDim per-head width: {@code head_dim} when given, else hidden / heads (as HF's attention reads it)
 * @param partialRotaryFactor the fraction of each head that is rotated (Phi-4-mini: 0.75); the rest passes through
 * @param longRope LongRoPE scaling, or null for plain rope
 * @param originalMaxPositionEmbeddings the pretraining context: longrope switches to its long factors beyond it
 * @param slidingWindow attention window in keys (a query sees at most this many, itself included), or 0 = none
 * @param eosTokenIds every id that ends generation (HF allows an int or a list)
 * @param dtype the dtype the checkpoint says it is stored in ({@code float32}, {@code bfloat16}, {@code float16})
 */
public record Phi3Config(
        int vocabSize,
        int hiddenSize,
        int intermediateSize,
        int numHiddenLayers,
        int numAttentionHeads,
        int numKeyValueHeads,
        int headDim,
        double rmsNormEps,
        double ropeTheta,
        double partialRotaryFactor,
        LongRope longRope,
        int maxPositionEmbeddings,
        int originalMaxPositionEmbeddings,
        boolean tieWordEmbeddings,
        int slidingWindow,
        int bosTokenId,
        List<Integer> eosTokenIds,
        String dtype) implements ModelConfig {

    public static final String MODEL_TYPE = "phi3";

    // Bounds on sizes, checked before anything is allocated: a hostile config.json must not make calm4j build
    // rotary tables (or random weights) of arbitrary size. Every released Phi-3 fits far inside them.
    static final int MAX_VOCAB = 1 << 22;
    static final int MAX_WIDTH = 1 << 16;
    static final int MAX_INTERMEDIATE = 1 << 18;
    static final int MAX_LAYERS = 1024;
    static final int MAX_HEADS = 1024;
    static final int MAX_POSITIONS = 1 << 20;
    static final long MAX_ROTARY_TABLE = 1L << 28;     // positions x rotary dims, per table

    private static final ObjectMapper JSON = new ObjectMapper();

    public Phi3Config {
        bounded("vocab_size", vocabSize, MAX_VOCAB);
        bounded("hidden_size", hiddenSize, MAX_WIDTH);
        bounded("intermediate_size", intermediateSize, MAX_INTERMEDIATE);
        bounded("num_hidden_layers", numHiddenLayers, MAX_LAYERS);
        bounded("num_attention_heads", numAttentionHeads, MAX_HEADS);
        bounded("num_key_value_heads", numKeyValueHeads, MAX_HEADS);
        bounded("head_dim", headDim, MAX_WIDTH);
        bounded("max_position_embeddings", maxPositionEmbeddings, MAX_POSITIONS);
        bounded("original_max_position_embeddings", originalMaxPositionEmbeddings, MAX_POSITIONS);
        if (numAttentionHeads % numKeyValueHeads != 0) {
            throw new IllegalArgumentException("field 'num_key_value_heads' is " + numKeyValueHeads
                    + ", expected a divisor of num_attention_heads (" + numAttentionHeads + ")");
        }
        if ((long) numAttentionHeads * headDim > MAX_WIDTH) {
            throw new IllegalArgumentException("field 'num_attention_heads' x head_dim is "
                    + (long) numAttentionHeads * headDim + ", expected at most " + MAX_WIDTH);
        }
        if (!(rmsNormEps > 0) || Double.isInfinite(rmsNormEps)) {
            throw new IllegalArgumentException("field 'rms_norm_eps' is " + rmsNormEps + ", expected a positive number");
        }
        if (!(ropeTheta > 1) || Double.isInfinite(ropeTheta)) {
            throw new IllegalArgumentException("field 'rope_theta' is " + ropeTheta + ", expected a number > 1");
        }
        if (!(partialRotaryFactor > 0 && partialRotaryFactor <= 1)) {
            throw new IllegalArgumentException("field 'partial_rotary_factor' is " + partialRotaryFactor
                    + ", expected a number in (0, 1]");
        }
        int rotary = (int) (headDim * partialRotaryFactor);
        if (rotary < 2 || rotary % 2 != 0) {
            throw new IllegalArgumentException("field 'partial_rotary_factor' (" + partialRotaryFactor + ") of head_dim "
                    + headDim + " rotates " + rotary + " dims, expected an even number >= 2");
        }
        if ((long) maxPositionEmbeddings * rotary > MAX_ROTARY_TABLE) {
            throw new IllegalArgumentException("field 'max_position_embeddings' (" + maxPositionEmbeddings + ") x "
                    + rotary + " rotary dims exceeds " + MAX_ROTARY_TABLE + " table entries");
        }
        if (longRope != null) {
            for (List<Double> f : List.of(longRope.shortFactor(), longRope.longFactor())) {
                if (f.size() != rotary / 2) {
                    throw new IllegalArgumentException("field '" + (f == longRope.shortFactor() ? "short_factor" : "long_factor")
                            + "' has " + f.size() + " values, expected " + rotary / 2 + " (rotary dims / 2)");
                }
            }
        }
        if (slidingWindow < 0) {
            throw new IllegalArgumentException("field 'sliding_window' is " + slidingWindow + ", expected a positive integer or null");
        }
        eosTokenIds = List.copyOf(eosTokenIds);
        if (!Set.of("float32", "bfloat16", "float16").contains(dtype)) {
            throw new IllegalArgumentException("field 'dtype' is '" + dtype + "', expected float32, bfloat16 or float16");
        }
    }

    private static void bounded(String field, int v, int max) {
        if (v <= 0 || v > max) {
            throw new IllegalArgumentException("field '" + field + "' is " + v + ", expected an integer in 1.." + max);
        }
    }

    @Override
    public String modelType() {
        return MODEL_TYPE;
    }

    /** Rotated dims per head: {@code int(head_dim * partial_rotary_factor)}, as HF truncates it. */
    public int rotaryDim() {
        return (int) (headDim * partialRotaryFactor);
    }

    public int queryDim() {
        return numAttentionHeads * headDim;
    }

    public int kvDim() {
        return numKeyValueHeads * headDim;
    }

    /** Number of weights a checkpoint of this config holds (tied head counted once). */
    @Override
    public long parameterCount() {
        long d = hiddenSize;
        long attn = d * (queryDim() + 2L * kvDim()) + (long) queryDim() * d;
        long mlp = 3 * d * intermediateSize;
        long embed = (long) vocabSize * d;
        return embed + numHiddenLayers * (attn + mlp + 2 * d) + d + (tieWordEmbeddings ? 0 : embed);
    }

    // ------------------------------------------------------------------------------------------------------
    // Reading and writing config.json
    // ------------------------------------------------------------------------------------------------------

    /** Builds a config from HF JSON; {@code source} names the file in errors. */
    public static Phi3Config fromJson(JsonNode c, String source) {
        HfConfigFields f = new HfConfigFields(c, source);
        String type = f.string("model_type", null);
        if (!MODEL_TYPE.equals(type)) {
            throw new Calm4jException(source + ": field 'model_type' is " + (type == null ? "missing" : "'" + type + "'")
                    + ", expected 'phi3'");
        }
        String act = f.string("hidden_act", "silu");
        if (!act.equals("silu")) {
            throw new Calm4jException(source + ": field 'hidden_act' is '" + act + "', expected 'silu' (Phi-3's gated MLP)");
        }
        int hidden = f.integer("hidden_size", null);
        int heads = f.integer("num_attention_heads", null);
        int kvHeads = f.integer("num_key_value_heads", heads);
        int layers = f.integer("num_hidden_layers", null);
        Integer explicitHeadDim = c.hasNonNull("head_dim") ? f.integer("head_dim", null) : null;
        if (explicitHeadDim == null && heads > 0 && hidden % heads != 0) {
            throw new Calm4jException(source + ": field 'hidden_size' (" + hidden
                    + ") is not divisible by 'num_attention_heads' (" + heads + ") and no 'head_dim' is given");
        }
        int headDim = explicitHeadDim != null ? explicitHeadDim : (heads > 0 ? hidden / heads : 0);
        int maxPositions = f.integer("max_position_embeddings", 4096);

        // Rotary: 5.x keeps theta, the partial factor and the scaling in rope_parameters; 4.x has them at the top
        // level, the scaling under rope_scaling (HF: rope_scaling, when set, replaces rope_parameters).
        JsonNode rope;
        String ropeField;
        if (c.hasNonNull("rope_scaling")) {
            rope = c.get("rope_scaling");
            ropeField = "rope_scaling";
        } else {
            rope = c.get("rope_parameters");
            ropeField = "rope_parameters";
        }
        if (rope != null && !rope.isNull() && !rope.isObject()) {
            throw new Calm4jException(source + ": field '" + ropeField + "' is " + rope + ", expected an object or null");
        }
        HfConfigFields rf = rope == null || rope.isNull() ? null : new HfConfigFields(rope, source + ": " + ropeField);
        double theta = rf != null && rope.hasNonNull("rope_theta") ? rf.number("rope_theta", null) : f.number("rope_theta", 10000.0);
        double partial = rf != null && rope.hasNonNull("partial_rotary_factor") ? rf.number("partial_rotary_factor", null)
                : f.number("partial_rotary_factor", 1.0);
        String ropeType = rf == null ? "default"
                : rope.hasNonNull("rope_type") ? rf.string("rope_type", null) : rf.string("type", "default");
        // HF's Phi3Config maps the legacy names "su" and "yarn" to longrope.
        if (ropeType.equals("su") || ropeType.equals("yarn")) {
            ropeType = "longrope";
        }
        // Phi-3's own top-level original_max_position_embeddings wins over the one in the rope dict (HF's exception).
        int original = c.hasNonNull("original_max_position_embeddings") ? f.integer("original_max_position_embeddings", null)
                : rf != null && rope.hasNonNull("original_max_position_embeddings")
                ? rf.integer("original_max_position_embeddings", null) : maxPositions;
        LongRope longRope = switch (ropeType) {
            case "default" -> null;
            case "longrope" -> {
                double factor = rope.hasNonNull("factor") ? rf.number("factor", null)
                        : original > 0 ? (double) maxPositions / original : 1.0;
                double attention = rope.hasNonNull("attention_factor") ? rf.number("attention_factor", null)
                        : LongRope.defaultAttentionFactor(factor, original);
                try {
                    yield new LongRope(rf.numbers("short_factor"), rf.numbers("long_factor"), factor, attention);
                } catch (IllegalArgumentException ex) {
                    throw new Calm4jException(source + ": " + ropeField + ": " + ex.getMessage());
                }
            }
            default -> throw new Calm4jException(source + ": field '" + ropeField + "' has rope type '" + ropeType
                    + "', which phi3 does not use (supported: default, longrope)");
        };

        int window = 0;
        if (c.hasNonNull("sliding_window")) {
            window = f.integer("sliding_window", null);
            if (window <= 0) {
                throw new Calm4jException(source + ": field 'sliding_window' is " + window + ", expected a positive integer or null");
            }
        }
        String dtype = c.hasNonNull("dtype") ? f.string("dtype", null) : f.string("torch_dtype", "float32");
        int bos = c.hasNonNull("bos_token_id") ? f.integer("bos_token_id", null) : -1;
        try {
            return new Phi3Config(f.integer("vocab_size", null), hidden, f.integer("intermediate_size", null), layers,
                    heads, kvHeads, headDim, f.number("rms_norm_eps", 1e-5), theta, partial, longRope, maxPositions,
                    original, f.bool("tie_word_embeddings", false), window, bos, f.ids("eos_token_id"), dtype);
        } catch (IllegalArgumentException ex) {
            throw new Calm4jException(source + ": " + ex.getMessage());
        }
    }

    /** The config as HF transformers 4.x writes it for Phi-3 (the layout of the hub checkpoints; 5.x reads it). */
    @Override
    public ObjectNode toJson() {
        ObjectNode o = JSON.createObjectNode();
        o.putArray("architectures").add("Phi3ForCausalLM");
        o.put("model_type", MODEL_TYPE);
        o.put("vocab_size", vocabSize);
        o.put("hidden_size", hiddenSize);
        o.put("intermediate_size", intermediateSize);
        o.put("num_hidden_layers", numHiddenLayers);
        o.put("num_attention_heads", numAttentionHeads);
        o.put("num_key_value_heads", numKeyValueHeads);
        if (numAttentionHeads * headDim != hiddenSize) {
            o.put("head_dim", headDim);
        }
        o.put("hidden_act", "silu");
        o.put("rms_norm_eps", rmsNormEps);
        o.put("rope_theta", ropeTheta);
        o.put("partial_rotary_factor", partialRotaryFactor);
        if (longRope == null) {
            o.putNull("rope_scaling");
        } else {
            ObjectNode rs = o.putObject("rope_scaling");
            rs.put("type", "longrope");
            longRope.shortFactor().forEach(rs.putArray("short_factor")::add);
            longRope.longFactor().forEach(rs.putArray("long_factor")::add);
            rs.put("factor", longRope.factor());
            rs.put("attention_factor", longRope.attentionFactor());
        }
        o.put("max_position_embeddings", maxPositionEmbeddings);
        o.put("original_max_position_embeddings", originalMaxPositionEmbeddings);
        o.put("tie_word_embeddings", tieWordEmbeddings);
        if (slidingWindow > 0) {
            o.put("sliding_window", slidingWindow);
        } else {
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
}
