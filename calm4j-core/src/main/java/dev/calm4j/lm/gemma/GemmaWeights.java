package dev.calm4j.lm.gemma;

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
 * Every tensor of a Gemma 2 / Gemma 3 text checkpoint, under Hugging Face's names, in one list ({@link #spec}):
 * loading, random init and the weight names all read it, so a name cannot be spelled two ways.
 *
 * <p>Gemma's RMSNorm weights are stored as offsets: the norm multiplies by {@code 1 + w}, so their identity (and
 * their random init) is zero, not one.
 */
public final class GemmaWeights implements AutoCloseable {

    /** One transformer block's tensors; biases are null without {@code attention_bias}, q/k norms without qkNorm. */
    public record Block(Tensor inputNorm, Tensor q, Tensor qBias, Tensor k, Tensor kBias, Tensor v, Tensor vBias,
                        Tensor o, Tensor oBias, Tensor qNorm, Tensor kNorm, Tensor postAttentionNorm,
                        Tensor preFeedforwardNorm, Tensor postFeedforwardNorm, Tensor gate, Tensor up, Tensor down) {}

    /** A tensor the config requires: its HF name, shape, and how a fresh model initialises it. */

    private final Map<String, Tensor> tensors;   // HF name -> tensor, spec order
    private final Tensor embed;
    private final Tensor norm;
    private final Tensor lmHead;                 // == embed when tied
    private final Block[] blocks;

    private GemmaWeights(GemmaConfig c, Map<String, Tensor> tensors) {
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
                    tensors.get(p + "pre_feedforward_layernorm.weight"),
                    tensors.get(p + "post_feedforward_layernorm.weight"),
                    tensors.get(p + "mlp.gate_proj.weight"), tensors.get(p + "mlp.up_proj.weight"),
                    tensors.get(p + "mlp.down_proj.weight"));
        }
    }

    /** The tensors a checkpoint of this config holds, in module order. */
    public static List<Entry> spec(GemmaConfig c) {
        long d = c.hiddenSize();
        long qd = c.queryDim();
        long kv = c.kvDim();
        long ff = c.intermediateSize();
        boolean bias = c.attentionBias();
        List<Entry> s = new ArrayList<>();
        s.add(new Entry("model.embed_tokens.weight", new long[] {c.vocabSize(), d}, Init.NORMAL));
        for (int i = 0; i < c.numHiddenLayers(); i++) {
            String p = "model.layers." + i + ".";
            String a = p + "self_attn.";
            s.add(new Entry(p + "input_layernorm.weight", new long[] {d}, Init.ZEROS));
            for (String[] proj : new String[][] {{"q_proj", "q"}, {"k_proj", "kv"}, {"v_proj", "kv"}}) {
                long out = proj[1].equals("q") ? qd : kv;
                s.add(new Entry(a + proj[0] + ".weight", new long[] {out, d}, Init.NORMAL));
                if (bias) {
                    s.add(new Entry(a + proj[0] + ".bias", new long[] {out}, Init.ZEROS));
                }
            }
            s.add(new Entry(a + "o_proj.weight", new long[] {d, qd}, Init.NORMAL));
            if (bias) {
                s.add(new Entry(a + "o_proj.bias", new long[] {d}, Init.ZEROS));
            }
            if (c.qkNorm()) {
                s.add(new Entry(a + "q_norm.weight", new long[] {c.headDim()}, Init.ZEROS));
                s.add(new Entry(a + "k_norm.weight", new long[] {c.headDim()}, Init.ZEROS));
            }
            s.add(new Entry(p + "post_attention_layernorm.weight", new long[] {d}, Init.ZEROS));
            s.add(new Entry(p + "pre_feedforward_layernorm.weight", new long[] {d}, Init.ZEROS));
            s.add(new Entry(p + "post_feedforward_layernorm.weight", new long[] {d}, Init.ZEROS));
            s.add(new Entry(p + "mlp.gate_proj.weight", new long[] {ff, d}, Init.NORMAL));
            s.add(new Entry(p + "mlp.up_proj.weight", new long[] {ff, d}, Init.NORMAL));
            s.add(new Entry(p + "mlp.down_proj.weight", new long[] {d, ff}, Init.NORMAL));
        }
        s.add(new Entry("model.norm.weight", new long[] {d}, Init.ZEROS));
        if (!c.tieWordEmbeddings()) {
            s.add(new Entry("lm_head.weight", new long[] {c.vocabSize(), d}, Init.NORMAL));
        }
        return s;
    }

    /**
     * Loads and checks every tensor of the spec: a missing tensor or a wrong shape is refused with the tensor's name
     * before anything is allocated. Tensors the spec does not use are ignored, as HF does (a tied checkpoint that
     * also stores {@code lm_head.weight} loads; the head is the embedding, as in HF).
     */
    public static GemmaWeights load(GemmaConfig c, WeightFiles files, String source, ScalarType dtype) {
        return new GemmaWeights(c, WeightSpec.load(spec(c), files, source, dtype));
    }

    /** Fresh weights: normal(0, std) matrices, zero norm offsets (the identity of {@code 1 + w}), zero biases; seeded. */
    public static GemmaWeights random(GemmaConfig c, long seed, double std, ScalarType dtype) {
        return new GemmaWeights(c, WeightSpec.random(spec(c), seed, std, dtype));
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
