package dev.calm4j.lm.olmo2;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.lm.HfConfigFields;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.llama.RopeScaling;

import java.util.List;
import java.util.Set;

/**
 * An OLMo 2 {@code config.json}, field for field with Hugging Face's {@code Olmo2Config} (transformers 4.x and 5.x
 * layouts). HF's defaults for fields a config leaves out: {@code rms_norm_eps} 1e-5, {@code max_position_embeddings}
 * 2048, {@code rope_theta} 10000, untied, no bias; {@code head_dim} is hidden / heads (Olmo2Config has no such
 * field, but HF's attention reads one if config.json carries it, and so does this). Special token ids are what the
 * file says (HF's fallback ids 50279 / 1 are not invented for a file that omits them).
 *
 * @param headDim per-head width
 * @param attentionBias biases on q, k, v and o projections
 * @param eosTokenIds every id that ends generation (HF allows an int or a list)
 * @param dtype the dtype the checkpoint says it is stored in
 */
public record Olmo2Config(
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
        int bosTokenId,
        List<Integer> eosTokenIds,
        String dtype) implements ModelConfig {

    public static final String MODEL_TYPE = "olmo2";
    private static final ObjectMapper JSON = new ObjectMapper();

    public Olmo2Config {
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
        ropeScaling = ropeScaling == null ? RopeScaling.NONE : ropeScaling;
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

    /** An OLMo 2 config for models made from scratch (head_dim = hidden / heads, untied, no bias, theta 5e5). */
    public static Olmo2Config of(int vocab, int hidden, int intermediate, int layers, int heads, int kvHeads,
                                 int maxPositions) {
        if (hidden % heads != 0) {
            throw new IllegalArgumentException("hidden_size (" + hidden + ") must be divisible by num_attention_heads (" + heads + ")");
        }
        return new Olmo2Config(vocab, hidden, intermediate, layers, heads, kvHeads, hidden / heads, 1e-6, 500000.0,
                RopeScaling.NONE, maxPositions, false, false, 1, List.of(2), "float32");
    }

    @Override
    public String modelType() {
        return MODEL_TYPE;
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
        long attn = d * queryDim() + 2 * d * kvDim() + (long) queryDim() * d + queryDim() + kvDim()
                + (attentionBias ? queryDim() + 2L * kvDim() + d : 0);
        long perLayer = attn + 3 * d * intermediateSize + 2 * d;
        long embed = (long) vocabSize * d;
        return embed + numHiddenLayers * perLayer + d + (tieWordEmbeddings ? 0 : embed);
    }

    /** Builds a config from HF JSON; {@code source} names the file in errors. */
    public static Olmo2Config fromJson(JsonNode c, String source) {
        HfConfigFields f = new HfConfigFields(c, source);
        f.modelType(MODEL_TYPE);
        f.silu();
        int hidden = f.bounded("hidden_size", null, 1, HfConfigFields.MAX_WIDTH);
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
        int maxPositions = f.bounded("max_position_embeddings", 2048, 1, HfConfigFields.MAX_POSITIONS);
        f.rotaryTableFits(maxPositions, headDim);
        HfConfigFields.Rope rope = f.rope(10000.0);
        try {
            return new Olmo2Config(f.bounded("vocab_size", null, 1, HfConfigFields.MAX_VOCAB), hidden,
                    f.bounded("intermediate_size", null, 1, HfConfigFields.MAX_WIDTH),
                    f.bounded("num_hidden_layers", null, 1, HfConfigFields.MAX_LAYERS), heads, kvHeads, headDim,
                    f.positive("rms_norm_eps", 1e-5), rope.theta(), rope.scaling(), maxPositions,
                    f.bool("tie_word_embeddings", false), f.bool("attention_bias", false), f.bos(), f.eos(),
                    f.dtype());
        } catch (IllegalArgumentException ex) {
            throw new Calm4jException(source + ": " + ex.getMessage());
        }
    }

    /** The config as HF transformers 4.x writes it (5.x reads it too). */
    @Override
    public ObjectNode toJson() {
        ObjectNode o = JSON.createObjectNode();
        o.putArray("architectures").add("Olmo2ForCausalLM");
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
        HfConfigFields.putSpecialTokens(o, bosTokenId, eosTokenIds);
        o.put("torch_dtype", dtype);
        return o;
    }
}
