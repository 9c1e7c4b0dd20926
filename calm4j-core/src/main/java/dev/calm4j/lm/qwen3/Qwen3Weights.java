package dev.calm4j.lm.qwen3;

import dev.calm4j.lm.WeightSpec;
import dev.calm4j.lm.WeightSpec.Entry;
import dev.calm4j.lm.WeightSpec.Init;
import dev.calm4j.io.WeightFiles;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Every tensor of a Qwen3 checkpoint, under Hugging Face's names, in one list ({@link #spec}): Llama's tensors plus
 * a per-head RMSNorm weight for queries and keys ({@code q_norm}, {@code k_norm}, each {@code [head_dim]}).
 */
public final class Qwen3Weights implements AutoCloseable {

    /** One block's tensors; biases are null without {@code attention_bias}. */
    public record Block(Tensor inputNorm, Tensor q, Tensor qBias, Tensor k, Tensor kBias, Tensor v, Tensor vBias,
                        Tensor o, Tensor oBias, Tensor qNorm, Tensor kNorm, Tensor postNorm, Tensor gate, Tensor up,
                        Tensor down) {}

    private final Map<String, Tensor> tensors;   // HF name -> tensor, spec order
    private final Tensor embed;
    private final Tensor norm;
    private final Tensor lmHead;                 // == embed when tied
    private final Block[] blocks;

    private Qwen3Weights(Qwen3Config c, Map<String, Tensor> tensors) {
        this.tensors = tensors;
        this.embed = tensors.get("model.embed_tokens.weight");
        this.norm = tensors.get("model.norm.weight");
        this.lmHead = c.tieWordEmbeddings() ? embed : tensors.get("lm_head.weight");
        this.blocks = new Block[c.numHiddenLayers()];
        for (int i = 0; i < blocks.length; i++) {
            String p = "model.layers." + i + ".";
            String a = p + "self_attn.";
            blocks[i] = new Block(tensors.get(p + "input_layernorm.weight"),
                    tensors.get(a + "q_proj.weight"), tensors.get(a + "q_proj.bias"),
                    tensors.get(a + "k_proj.weight"), tensors.get(a + "k_proj.bias"),
                    tensors.get(a + "v_proj.weight"), tensors.get(a + "v_proj.bias"),
                    tensors.get(a + "o_proj.weight"), tensors.get(a + "o_proj.bias"),
                    tensors.get(a + "q_norm.weight"), tensors.get(a + "k_norm.weight"),
                    tensors.get(p + "post_attention_layernorm.weight"),
                    tensors.get(p + "mlp.gate_proj.weight"), tensors.get(p + "mlp.up_proj.weight"),
                    tensors.get(p + "mlp.down_proj.weight"));
        }
    }

    /** The tensors a checkpoint of this config holds, in the order HF's model lists them. */
    public static List<Entry> spec(Qwen3Config c) {
        long d = c.hiddenSize();
        long qd = c.queryDim();
        long kv = c.kvDim();
        long hd = c.headDim();
        long ff = c.intermediateSize();
        boolean bias = c.attentionBias();
        List<Entry> s = new ArrayList<>();
        s.add(new Entry("model.embed_tokens.weight", new long[] {c.vocabSize(), d}, Init.NORMAL));
        for (int i = 0; i < c.numHiddenLayers(); i++) {
            String p = "model.layers." + i + ".";
            String a = p + "self_attn.";
            s.add(new Entry(a + "q_proj.weight", new long[] {qd, d}, Init.NORMAL));
            if (bias) {
                s.add(new Entry(a + "q_proj.bias", new long[] {qd}, Init.ZEROS));
            }
            s.add(new Entry(a + "k_proj.weight", new long[] {kv, d}, Init.NORMAL));
            if (bias) {
                s.add(new Entry(a + "k_proj.bias", new long[] {kv}, Init.ZEROS));
            }
            s.add(new Entry(a + "v_proj.weight", new long[] {kv, d}, Init.NORMAL));
            if (bias) {
                s.add(new Entry(a + "v_proj.bias", new long[] {kv}, Init.ZEROS));
            }
            s.add(new Entry(a + "o_proj.weight", new long[] {d, qd}, Init.NORMAL));
            if (bias) {
                s.add(new Entry(a + "o_proj.bias", new long[] {d}, Init.ZEROS));
            }
            s.add(new Entry(a + "q_norm.weight", new long[] {hd}, Init.ONES));
            s.add(new Entry(a + "k_norm.weight", new long[] {hd}, Init.ONES));
            s.add(new Entry(p + "mlp.gate_proj.weight", new long[] {ff, d}, Init.NORMAL));
            s.add(new Entry(p + "mlp.up_proj.weight", new long[] {ff, d}, Init.NORMAL));
            s.add(new Entry(p + "mlp.down_proj.weight", new long[] {d, ff}, Init.NORMAL));
            s.add(new Entry(p + "input_layernorm.weight", new long[] {d}, Init.ONES));
            s.add(new Entry(p + "post_attention_layernorm.weight", new long[] {d}, Init.ONES));
        }
        s.add(new Entry("model.norm.weight", new long[] {d}, Init.ONES));
        if (!c.tieWordEmbeddings()) {
            s.add(new Entry("lm_head.weight", new long[] {c.vocabSize(), d}, Init.NORMAL));
        }
        return s;
    }

    /**
     * Loads and checks every tensor of the spec: a missing tensor or a wrong shape is refused with the tensor's name
     * before anything is read. Tensors the spec does not use are ignored, as HF does.
     */
    public static Qwen3Weights load(Qwen3Config c, WeightFiles files, String source, ScalarType dtype) {
        return new Qwen3Weights(c, WeightSpec.load(spec(c), files, source, dtype));
    }

    /** Fresh weights: normal(0, std) matrices, unit norms, zero biases; seeded. */
    public static Qwen3Weights random(Qwen3Config c, long seed, double std, ScalarType dtype) {
        return new Qwen3Weights(c, WeightSpec.random(spec(c), seed, std, dtype));
    }

    public Map<String, Tensor> named() {
        return tensors;
    }

    public Tensor embed() {
        return embed;
    }

    public Tensor norm() {
        return norm;
    }

    public Tensor lmHead() {
        return lmHead;
    }

    public Block block(int i) {
        return blocks[i];
    }

    @Override
    public void close() {
        tensors.values().forEach(Tensor::close);
    }
}
