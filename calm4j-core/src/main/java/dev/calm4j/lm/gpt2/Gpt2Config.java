package dev.calm4j.lm.gpt2;

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
 * A GPT-2 {@code config.json}, field for field with Hugging Face's {@code GPT2Config} (GPT-2 and the models saved in
 * its layout, e.g. DistilGPT2). The record uses calm4j's names; HF's are in brackets: {@code hiddenSize}
 * ({@code n_embd}), {@code numHiddenLayers} ({@code n_layer}), {@code numAttentionHeads} ({@code n_head}),
 * {@code innerSize} ({@code n_inner}, null = 4 x n_embd), {@code maxPositionEmbeddings} ({@code n_positions}: the
 * learned position table's rows, so the longest sequence). HF's aliases ({@code hidden_size} ...) are read too.
 *
 * @param activation {@code activation_function}: {@code gelu_new}, {@code gelu_pytorch_tanh}, {@code gelu_fast}
 *                   (the tanh approximation), {@code gelu} (exact) or {@code relu}
 * @param scaleAttnWeights scores scaled by {@code 1/sqrt(head dim)} (else not at all)
 * @param scaleAttnByInverseLayerIdx scores of block i further scaled by {@code 1/(i+1)}
 * @param reorderAndUpcastAttn HF's mixed-precision switch (scores in float32); calm4j always computes attention in
 *                             float32, so it changes nothing here, and is kept to write the config back
 * @param dtype the dtype the checkpoint says it is stored in ({@code float32}, {@code bfloat16}, {@code float16})
 */
public record Gpt2Config(
        int vocabSize,
        int hiddenSize,
        int numHiddenLayers,
        int numAttentionHeads,
        int innerSize,
        int maxPositionEmbeddings,
        String activation,
        double layerNormEpsilon,
        boolean scaleAttnWeights,
        boolean scaleAttnByInverseLayerIdx,
        boolean reorderAndUpcastAttn,
        boolean tieWordEmbeddings,
        int bosTokenId,
        List<Integer> eosTokenIds,
        String dtype) implements ModelConfig {

    public static final String MODEL_TYPE = "gpt2";
    public static final Set<String> ACTIVATIONS = Set.of("gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu", "relu");

    // Bounds on sizes, checked before anything is allocated (a hostile config.json must not make calm4j allocate
    // arbitrary tables); every released GPT-2 fits far inside them.
    static final int MAX_VOCAB = 1 << 22;
    static final int MAX_WIDTH = 1 << 16;
    static final int MAX_INNER = 1 << 18;
    static final int MAX_LAYERS = 1024;
    static final int MAX_HEADS = 1024;
    static final int MAX_POSITIONS = 1 << 20;

    private static final ObjectMapper JSON = new ObjectMapper();

    public Gpt2Config {
        bounded("vocab_size", vocabSize, MAX_VOCAB);
        bounded("n_embd", hiddenSize, MAX_WIDTH);
        bounded("n_layer", numHiddenLayers, MAX_LAYERS);
        bounded("n_head", numAttentionHeads, MAX_HEADS);
        bounded("n_inner", innerSize, MAX_INNER);
        bounded("n_positions", maxPositionEmbeddings, MAX_POSITIONS);
        if (hiddenSize % numAttentionHeads != 0) {
            throw new IllegalArgumentException("field 'n_head' is " + numAttentionHeads + ", expected a divisor of n_embd ("
                    + hiddenSize + ")");
        }
        if (!ACTIVATIONS.contains(activation)) {
            throw new IllegalArgumentException("field 'activation_function' is '" + activation + "', expected one of "
                    + new java.util.TreeSet<>(ACTIVATIONS));
        }
        if (!(layerNormEpsilon > 0) || Double.isInfinite(layerNormEpsilon)) {
            throw new IllegalArgumentException("field 'layer_norm_epsilon' is " + layerNormEpsilon + ", expected a positive number");
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

    public int headDim() {
        return hiddenSize / numAttentionHeads;
    }

    /** Whether the activation is GELU's tanh approximation (gelu_new and its aliases). */
    public boolean geluTanh() {
        return activation.equals("gelu_new") || activation.equals("gelu_pytorch_tanh") || activation.equals("gelu_fast");
    }

    /** The factor block {@code i}'s attention scores are multiplied by (HF {@code GPT2Attention.scaling}). */
    public double attentionScale(int i) {
        double s = scaleAttnWeights ? 1.0 / Math.sqrt(headDim()) : 1.0;
        return scaleAttnByInverseLayerIdx ? s / (i + 1) : s;
    }

    /** Number of weights a checkpoint of this config holds (tied head counted once). */
    @Override
    public long parameterCount() {
        long d = hiddenSize;
        long f = innerSize;
        long perLayer = 4 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d);
        long embed = (long) vocabSize * d;
        return embed + (long) maxPositionEmbeddings * d + numHiddenLayers * perLayer + 2 * d + (tieWordEmbeddings ? 0 : embed);
    }

    // ------------------------------------------------------------------------------------------------------
    // Reading and writing config.json
    // ------------------------------------------------------------------------------------------------------

    /** Builds a config from HF JSON; {@code source} names the file in errors. */
    public static Gpt2Config fromJson(JsonNode c, String source) {
        HfConfigFields f = new HfConfigFields(c, source);
        String type = f.string("model_type", null);
        if (!MODEL_TYPE.equals(type)) {
            throw new Calm4jException(source + ": field 'model_type' is " + (type == null ? "missing" : "'" + type + "'")
                    + ", expected 'gpt2'");
        }
        if (f.bool("add_cross_attention", false)) {
            throw new Calm4jException(source + ": field 'add_cross_attention' is true, expected false (calm4j loads "
                    + "GPT-2 as a decoder-only model, without cross-attention)");
        }
        int hidden = f.integer("n_embd", "hidden_size", null);
        Integer inner = f.has("n_inner") ? f.integer("n_inner", null, null) : null;
        String dtype = c.hasNonNull("dtype") ? f.string("dtype", null) : f.string("torch_dtype", "float32");
        int bos = c.hasNonNull("bos_token_id") ? f.integer("bos_token_id", null, null) : c.has("bos_token_id") ? -1 : 50256;
        List<Integer> eos = c.has("eos_token_id") ? f.ids("eos_token_id") : List.of(50256);
        try {
            return new Gpt2Config(f.integer("vocab_size", null, null), hidden, f.integer("n_layer", "num_hidden_layers", null),
                    f.integer("n_head", "num_attention_heads", null), inner != null ? inner : 4 * hidden,
                    f.integer("n_positions", "max_position_embeddings", null), f.string("activation_function", "gelu_new"),
                    f.number("layer_norm_epsilon", 1e-5), f.bool("scale_attn_weights", true),
                    f.bool("scale_attn_by_inverse_layer_idx", false), f.bool("reorder_and_upcast_attn", false),
                    f.bool("tie_word_embeddings", true), bos, eos, dtype);
        } catch (IllegalArgumentException ex) {
            throw new Calm4jException(source + ": " + ex.getMessage());
        }
    }

    /** The config as HF transformers writes it for GPT-2 ({@code n_*} names, {@code torch_dtype}). */
    @Override
    public ObjectNode toJson() {
        ObjectNode o = JSON.createObjectNode();
        o.putArray("architectures").add("GPT2LMHeadModel");
        o.put("model_type", MODEL_TYPE);
        o.put("vocab_size", vocabSize);
        o.put("n_embd", hiddenSize);
        o.put("n_layer", numHiddenLayers);
        o.put("n_head", numAttentionHeads);
        o.put("n_inner", innerSize);
        o.put("n_positions", maxPositionEmbeddings);
        o.put("activation_function", activation);
        o.put("layer_norm_epsilon", layerNormEpsilon);
        o.put("scale_attn_weights", scaleAttnWeights);
        o.put("scale_attn_by_inverse_layer_idx", scaleAttnByInverseLayerIdx);
        o.put("reorder_and_upcast_attn", reorderAndUpcastAttn);
        o.put("add_cross_attention", false);
        o.put("tie_word_embeddings", tieWordEmbeddings);
        if (bosTokenId >= 0) {
            o.put("bos_token_id", bosTokenId);
        } else {
            o.putNull("bos_token_id");
        }
        if (eosTokenIds.size() == 1) {
            o.put("eos_token_id", eosTokenIds.get(0));
        } else if (eosTokenIds.isEmpty()) {
            o.putNull("eos_token_id");
        } else {
            ArrayNode a = o.putArray("eos_token_id");
            eosTokenIds.forEach(a::add);
        }
        o.put("torch_dtype", dtype);
        return o;
    }
}
