package dev.calm4j.lm.gpt2;

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
 * Every tensor of a GPT-2 checkpoint, under Hugging Face's names, in one list ({@link #spec}).
 *
 * <p>Names: {@code GPT2LMHeadModel.save_pretrained} writes {@code transformer.h.0.attn.c_attn.weight}, the hub's
 * original GPT-2 files ({@code GPT2Model} checkpoints) {@code h.0.attn.c_attn.weight}; both load (the head, when
 * untied, is {@code lm_head.weight} either way). Held and saved under the first form. The hub files' causal-mask
 * buffers ({@code attn.bias}, {@code attn.masked_bias}) are ignored, as HF does.
 *
 * <p>GPT-2's {@code Conv1D} stores its weights {@code [in, out]}, the transpose of a linear layer's. They are held
 * as stored, so {@link #named} is the checkpoint and training updates what is saved; the forward reads them through
 * a transposed view ({@code Gpt2Model.conv1d}), a stride swap that the matrix kernels take as it is, never a copy.
 * (A view made once here would be cut off from autograd: a view taken before training switches gradients on for
 * its base does not pass them on.)
 */
public final class Gpt2Weights implements AutoCloseable {

    /** The prefix {@code GPT2LMHeadModel} gives the body's tensors. */
    public static final String PREFIX = "transformer.";

    /** One transformer block's tensors, as stored: Conv1D weights {@code [in, out]} (c_attn's columns q | k | v). */
    public record Block(Tensor ln1, Tensor ln1Bias, Tensor attn, Tensor attnBias, Tensor attnProj, Tensor attnProjBias,
                        Tensor ln2, Tensor ln2Bias, Tensor fc, Tensor fcBias, Tensor mlpProj, Tensor mlpProjBias) {}

    /** A tensor the config requires: its HF name (with {@link #PREFIX}), shape as stored, and fresh value. */

    private final Map<String, Tensor> tensors;   // HF name -> tensor as stored, spec order
    private final Tensor wte;
    private final Tensor wpe;
    private final Tensor lnF;
    private final Tensor lnFBias;
    private final Tensor lmHead;                 // == wte when tied
    private final Block[] blocks;

    private Gpt2Weights(Gpt2Config c, Map<String, Tensor> tensors) {
        this.tensors = tensors;
        this.wte = tensors.get(PREFIX + "wte.weight");
        this.wpe = tensors.get(PREFIX + "wpe.weight");
        this.lnF = tensors.get(PREFIX + "ln_f.weight");
        this.lnFBias = tensors.get(PREFIX + "ln_f.bias");
        this.lmHead = c.tieWordEmbeddings() ? wte : tensors.get("lm_head.weight");
        this.blocks = new Block[c.numHiddenLayers()];
        for (int i = 0; i < blocks.length; i++) {
            String p = PREFIX + "h." + i + ".";
            blocks[i] = new Block(tensors.get(p + "ln_1.weight"), tensors.get(p + "ln_1.bias"),
                    tensors.get(p + "attn.c_attn.weight"), tensors.get(p + "attn.c_attn.bias"),
                    tensors.get(p + "attn.c_proj.weight"), tensors.get(p + "attn.c_proj.bias"),
                    tensors.get(p + "ln_2.weight"), tensors.get(p + "ln_2.bias"),
                    tensors.get(p + "mlp.c_fc.weight"), tensors.get(p + "mlp.c_fc.bias"),
                    tensors.get(p + "mlp.c_proj.weight"), tensors.get(p + "mlp.c_proj.bias"));
        }
    }

    /** The tensors a checkpoint of this config holds (with {@link #PREFIX}), in the order HF lists them. */
    public static List<Entry> spec(Gpt2Config c) {
        long d = c.hiddenSize();
        long f = c.innerSize();
        List<Entry> s = new ArrayList<>();
        s.add(new Entry(PREFIX + "wte.weight", new long[] {c.vocabSize(), d}, Init.NORMAL));
        s.add(new Entry(PREFIX + "wpe.weight", new long[] {c.maxPositionEmbeddings(), d}, Init.NORMAL));
        for (int i = 0; i < c.numHiddenLayers(); i++) {
            String p = PREFIX + "h." + i + ".";
            s.add(new Entry(p + "ln_1.weight", new long[] {d}, Init.ONES));
            s.add(new Entry(p + "ln_1.bias", new long[] {d}, Init.ZEROS));
            s.add(new Entry(p + "attn.c_attn.weight", new long[] {d, 3 * d}, Init.NORMAL));     // Conv1D: [in, out]
            s.add(new Entry(p + "attn.c_attn.bias", new long[] {3 * d}, Init.ZEROS));
            s.add(new Entry(p + "attn.c_proj.weight", new long[] {d, d}, Init.NORMAL));
            s.add(new Entry(p + "attn.c_proj.bias", new long[] {d}, Init.ZEROS));
            s.add(new Entry(p + "ln_2.weight", new long[] {d}, Init.ONES));
            s.add(new Entry(p + "ln_2.bias", new long[] {d}, Init.ZEROS));
            s.add(new Entry(p + "mlp.c_fc.weight", new long[] {d, f}, Init.NORMAL));
            s.add(new Entry(p + "mlp.c_fc.bias", new long[] {f}, Init.ZEROS));
            s.add(new Entry(p + "mlp.c_proj.weight", new long[] {f, d}, Init.NORMAL));
            s.add(new Entry(p + "mlp.c_proj.bias", new long[] {d}, Init.ZEROS));
        }
        s.add(new Entry(PREFIX + "ln_f.weight", new long[] {d}, Init.ONES));
        s.add(new Entry(PREFIX + "ln_f.bias", new long[] {d}, Init.ZEROS));
        if (!c.tieWordEmbeddings()) {
            s.add(new Entry("lm_head.weight", new long[] {c.vocabSize(), d}, Init.NORMAL));
        }
        return s;
    }

    /**
     * Loads and checks every tensor of the spec, under whichever naming the files use (with or without
     * {@link #PREFIX}): a missing tensor or a wrong shape is refused with the tensor's name before anything is
     * allocated.
     */
    public static Gpt2Weights load(Gpt2Config c, WeightFiles files, String source, ScalarType dtype) {
        // The body's prefix as these files spell it: save_pretrained's, else the hub's bare names.
        String prefix = !files.contains(PREFIX + "wte.weight") && files.contains("wte.weight") ? "" : PREFIX;
        return new Gpt2Weights(c, WeightSpec.load(spec(c), files, source, dtype, name -> stored(name, prefix)));
    }

    private static String stored(String name, String prefix) {
        return name.startsWith(PREFIX) ? prefix + name.substring(PREFIX.length()) : name;
    }

    /** Fresh weights: normal(0, std) matrices and embeddings, LayerNorms at identity (ones, zero bias), zero biases. */
    public static Gpt2Weights random(Gpt2Config c, long seed, double std, ScalarType dtype) {
        return new Gpt2Weights(c, WeightSpec.random(spec(c), seed, std, dtype));
    }

    /** Every tensor as stored (Conv1D weights {@code [in, out]}), under its HF name with {@link #PREFIX}. */
    public Map<String, Tensor> named() {
        return tensors;
    }

    public Tensor wte() {
        return wte;
    }

    public Tensor wpe() {
        return wpe;
    }

    public Tensor lnF() {
        return lnF;
    }

    public Tensor lnFBias() {
        return lnFBias;
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
