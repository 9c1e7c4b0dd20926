package dev.calm4j.lm.phi3;

import dev.calm4j.lm.WeightSpec;
import dev.calm4j.lm.WeightSpec.Entry;
import dev.calm4j.lm.WeightSpec.Init;
import dev.calm4j.io.WeightFiles;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.bytedeco.pytorch.global.torch.ones;

/**
 * Every tensor of a Phi-3 checkpoint, under Hugging Face's names, in one list ({@link #spec}): loading, random init
 * and saving all read that list. Phi-3 fuses q, k and v into {@code qkv_proj} ({@code [q | k | v]} rows) and the
 * MLP's gate and up projections into {@code gate_up_proj} ({@code [gate | up]} rows); the tensors are kept fused as
 * stored, so {@link #named} is the checkpoint and training updates what is saved.
 */
public final class Phi3Weights implements AutoCloseable {

    /** One transformer block's tensors. */
    public record Block(Tensor inputNorm, Tensor qkv, Tensor o, Tensor postNorm, Tensor gateUp, Tensor down) {}

    /** A tensor the config requires: its HF name, shape, and whether a fresh model draws it or sets it to ones. */

    private final Map<String, Tensor> tensors;   // HF name -> tensor, spec order
    private final Tensor embed;
    private final Tensor norm;
    private final Tensor lmHead;                 // == embed when tied
    private final Block[] blocks;

    private Phi3Weights(Phi3Config c, Map<String, Tensor> tensors) {
        this.tensors = tensors;
        this.embed = tensors.get("model.embed_tokens.weight");
        this.norm = tensors.get("model.norm.weight");
        this.lmHead = c.tieWordEmbeddings() ? embed : tensors.get("lm_head.weight");
        this.blocks = new Block[c.numHiddenLayers()];
        for (int i = 0; i < blocks.length; i++) {
            String p = "model.layers." + i + ".";
            blocks[i] = new Block(tensors.get(p + "input_layernorm.weight"), tensors.get(p + "self_attn.qkv_proj.weight"),
                    tensors.get(p + "self_attn.o_proj.weight"), tensors.get(p + "post_attention_layernorm.weight"),
                    tensors.get(p + "mlp.gate_up_proj.weight"), tensors.get(p + "mlp.down_proj.weight"));
        }
    }

    /** The tensors a checkpoint of this config holds, in the order HF lists them. */
    public static List<Entry> spec(Phi3Config c) {
        long d = c.hiddenSize();
        long ff = c.intermediateSize();
        List<Entry> s = new ArrayList<>();
        s.add(new Entry("model.embed_tokens.weight", new long[] {c.vocabSize(), d}, Init.NORMAL));
        for (int i = 0; i < c.numHiddenLayers(); i++) {
            String p = "model.layers." + i + ".";
            s.add(new Entry(p + "input_layernorm.weight", new long[] {d}, Init.ONES));
            s.add(new Entry(p + "self_attn.qkv_proj.weight", new long[] {c.queryDim() + 2L * c.kvDim(), d}, Init.NORMAL));
            s.add(new Entry(p + "self_attn.o_proj.weight", new long[] {d, c.queryDim()}, Init.NORMAL));
            s.add(new Entry(p + "post_attention_layernorm.weight", new long[] {d}, Init.ONES));
            s.add(new Entry(p + "mlp.gate_up_proj.weight", new long[] {2 * ff, d}, Init.NORMAL));
            s.add(new Entry(p + "mlp.down_proj.weight", new long[] {d, ff}, Init.NORMAL));
        }
        s.add(new Entry("model.norm.weight", new long[] {d}, Init.ONES));
        if (!c.tieWordEmbeddings()) {
            s.add(new Entry("lm_head.weight", new long[] {c.vocabSize(), d}, Init.NORMAL));
        }
        return s;
    }

    /**
     * Loads and checks every tensor of the spec: a missing tensor or a wrong shape is refused with the tensor's name
     * before anything is allocated. Tensors the spec does not use are ignored, as HF does.
     */
    public static Phi3Weights load(Phi3Config c, WeightFiles files, String source, ScalarType dtype) {
        return new Phi3Weights(c, WeightSpec.load(spec(c), files, source, dtype));
    }

    /** Fresh weights: normal(0, std) matrices and embeddings, unit norms; seeded. */
    public static Phi3Weights random(Phi3Config c, long seed, double std, ScalarType dtype) {
        return new Phi3Weights(c, WeightSpec.random(spec(c), seed, std, dtype));
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
