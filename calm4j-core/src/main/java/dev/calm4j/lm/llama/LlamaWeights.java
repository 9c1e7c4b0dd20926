package dev.calm4j.lm.llama;

import dev.calm4j.lm.WeightSpec;
import dev.calm4j.lm.WeightSpec.Entry;
import dev.calm4j.lm.WeightSpec.Init;
import dev.calm4j.io.WeightFiles;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Every tensor of a Llama-family checkpoint, under Hugging Face's names, in one list ({@link #spec}): loading,
 * saving, random init and parameter counting all read that list, so a name cannot be spelled two ways.
 */
public final class LlamaWeights implements AutoCloseable {

    /** One transformer block's tensors; biases are null when the config has none. */
    public record Block(Tensor inputNorm, Tensor q, Tensor qBias, Tensor k, Tensor kBias, Tensor v, Tensor vBias,
                        Tensor o, Tensor oBias, Tensor postNorm, Tensor gate, Tensor gateBias, Tensor up,
                        Tensor upBias, Tensor down, Tensor downBias) {}

    /**
     * One block's projections that read the same input, stored side by side so that each group is one matmul:
     * {@code qkv} is q's rows, then k's, then v's ({@code [qd + 2 kv, D]}), {@code gateUp} is gate's rows, then up's
     * ({@code [2 ff, D]}); biases likewise, or null. The block's q, k, v, gate and up (and {@link #named()}) are views
     * of these rows, so a checkpoint keeps its names and an in-place update of one is seen by both.
     */
    public record Fused(Tensor qkv, Tensor qkvBias, Tensor gateUp, Tensor gateUpBias) {}

    private final LlamaConfig config;
    private final Map<String, Tensor> tensors;   // HF name -> tensor, spec order
    private final Tensor embed;
    private final Tensor norm;
    private final Tensor lmHead;                 // == embed when tied
    private final Block[] blocks;
    private final Fused[] fused;                 // per block, or null where the projections are separate tensors

    private LlamaWeights(LlamaConfig c, Map<String, Tensor> given, boolean fuse) {
        this.config = c;
        Map<String, Tensor> tensors = fuse ? new LinkedHashMap<>(given) : given;
        this.fused = new Fused[c.numHiddenLayers()];
        if (fuse) {
            for (int i = 0; i < fused.length; i++) {
                fused[i] = fuse(tensors, "model.layers." + i + ".");
                dev.calm4j.Torch.trimNativeHeap();      // the block's separate copies, freed: their pages back now
            }
        }
        this.tensors = tensors;
        this.embed = tensors.get("model.embed_tokens.weight");
        this.norm = tensors.get("model.norm.weight");
        this.lmHead = c.tieWordEmbeddings() ? embed : tensors.get("lm_head.weight");
        this.blocks = new Block[c.numHiddenLayers()];
        for (int i = 0; i < blocks.length; i++) {
            String p = "model.layers." + i + ".";
            blocks[i] = new Block(tensors.get(p + "input_layernorm.weight"),
                    tensors.get(p + "self_attn.q_proj.weight"), tensors.get(p + "self_attn.q_proj.bias"),
                    tensors.get(p + "self_attn.k_proj.weight"), tensors.get(p + "self_attn.k_proj.bias"),
                    tensors.get(p + "self_attn.v_proj.weight"), tensors.get(p + "self_attn.v_proj.bias"),
                    tensors.get(p + "self_attn.o_proj.weight"), tensors.get(p + "self_attn.o_proj.bias"),
                    tensors.get(p + "post_attention_layernorm.weight"),
                    tensors.get(p + "mlp.gate_proj.weight"), tensors.get(p + "mlp.gate_proj.bias"),
                    tensors.get(p + "mlp.up_proj.weight"), tensors.get(p + "mlp.up_proj.bias"),
                    tensors.get(p + "mlp.down_proj.weight"), tensors.get(p + "mlp.down_proj.bias"));
        }
    }

    /**
     * Concatenates one block's q, k, v (and gate, up) rows into one tensor each and puts views of its rows back under
     * the original names, freeing the separate copies: no memory is added. Why: a frozen block then runs one matmul
     * for q, k, v and one for gate and up instead of five, which saves libtorch's per-op work and, in the backward
     * pass through frozen blocks, three input-gradient matmuls and their sums.
     */
    static Fused fuse(Map<String, Tensor> t, String p) {                  // package-private: tested
        String[] qkv = {p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"};
        String[] gateUp = {p + "mlp.gate_proj", p + "mlp.up_proj"};
        return new Fused(fuseRows(t, qkv, ".weight"), fuseRows(t, qkv, ".bias"),
                fuseRows(t, gateUp, ".weight"), fuseRows(t, gateUp, ".bias"));
    }

    /** The named tensors' rows in one tensor, each name then a view of its rows; null when the names have none. */
    private static Tensor fuseRows(Map<String, Tensor> t, String[] prefixes, String suffix) {
        if (t.get(prefixes[0] + suffix) == null) {
            return null;
        }
        Tensor[] parts = new Tensor[prefixes.length];
        for (int j = 0; j < parts.length; j++) {
            parts[j] = t.get(prefixes[j] + suffix);
        }
        Tensor all;
        // The vector holds a reference to every part: closed here, or the parts' memory would stay alive until a GC.
        try (org.bytedeco.pytorch.TensorVector v = new org.bytedeco.pytorch.TensorVector(parts)) {
            all = org.bytedeco.pytorch.global.torch.cat(v, 0);
        }
        long row = 0;
        for (int j = 0; j < parts.length; j++) {
            long n = parts[j].size(0);
            t.put(prefixes[j] + suffix, all.narrow(0, row, n));
            row += n;
            parts[j].close();
        }
        return all;
    }

    /** The tensors a checkpoint of this config holds, in the order HF lists them. */
    public static List<Entry> spec(LlamaConfig c) {
        long d = c.hiddenSize();
        long qd = c.queryDim();
        long kv = c.kvDim();
        long ff = c.intermediateSize();
        List<Entry> s = new ArrayList<>();
        s.add(new Entry("model.embed_tokens.weight", new long[] {c.vocabSize(), d}, Init.NORMAL));
        for (int i = 0; i < c.numHiddenLayers(); i++) {
            String p = "model.layers." + i + ".";
            s.add(new Entry(p + "input_layernorm.weight", new long[] {d}, Init.ONES));
            s.add(new Entry(p + "self_attn.q_proj.weight", new long[] {qd, d}, Init.NORMAL));
            if (c.qkvBias()) {
                s.add(new Entry(p + "self_attn.q_proj.bias", new long[] {qd}, Init.ZEROS));
            }
            s.add(new Entry(p + "self_attn.k_proj.weight", new long[] {kv, d}, Init.NORMAL));
            if (c.qkvBias()) {
                s.add(new Entry(p + "self_attn.k_proj.bias", new long[] {kv}, Init.ZEROS));
            }
            s.add(new Entry(p + "self_attn.v_proj.weight", new long[] {kv, d}, Init.NORMAL));
            if (c.qkvBias()) {
                s.add(new Entry(p + "self_attn.v_proj.bias", new long[] {kv}, Init.ZEROS));
            }
            s.add(new Entry(p + "self_attn.o_proj.weight", new long[] {d, qd}, Init.NORMAL));
            if (c.oBias()) {
                s.add(new Entry(p + "self_attn.o_proj.bias", new long[] {d}, Init.ZEROS));
            }
            s.add(new Entry(p + "post_attention_layernorm.weight", new long[] {d}, Init.ONES));
            for (String m : new String[] {"gate_proj", "up_proj"}) {
                s.add(new Entry(p + "mlp." + m + ".weight", new long[] {ff, d}, Init.NORMAL));
                if (c.mlpBias()) {
                    s.add(new Entry(p + "mlp." + m + ".bias", new long[] {ff}, Init.ZEROS));
                }
            }
            s.add(new Entry(p + "mlp.down_proj.weight", new long[] {d, ff}, Init.NORMAL));
            if (c.mlpBias()) {
                s.add(new Entry(p + "mlp.down_proj.bias", new long[] {d}, Init.ZEROS));
            }
        }
        s.add(new Entry("model.norm.weight", new long[] {d}, Init.ONES));
        if (!c.tieWordEmbeddings()) {
            s.add(new Entry("lm_head.weight", new long[] {c.vocabSize(), d}, Init.NORMAL));
        }
        return s;
    }

    /**
     * Loads and checks every tensor of the spec: a missing tensor or a wrong shape is refused with the tensor's name
     * before the model exists. Tensors the spec does not use (e.g. old {@code rotary_emb.inv_freq} buffers) are
     * ignored, as HF does.
     */
    public static LlamaWeights load(LlamaConfig c, WeightFiles files, String source, ScalarType dtype) {
        return new LlamaWeights(c, WeightSpec.load(spec(c), files, source, dtype), true);
    }

    /** Fresh weights as HF initialises them: normal(0, std) matrices, unit norms, zero biases; seeded. */
    public static LlamaWeights random(LlamaConfig c, long seed, double std, ScalarType dtype) {
        return new LlamaWeights(c, WeightSpec.random(spec(c), seed, std, dtype), true);
    }

    /**
     * The same weights with some replaced (by HF name), sharing every other tensor: how LoRA presents
     * {@code W + s B A} to the unchanged forward. Closing the result frees nothing it shares. The result has no
     * {@link #fused} projections: a replaced q or gate is no longer a row block of the fused tensor.
     */
    public LlamaWeights withReplaced(Map<String, Tensor> replaced) {
        Map<String, Tensor> t = new LinkedHashMap<>(tensors);
        for (Map.Entry<String, Tensor> e : replaced.entrySet()) {
            if (!t.containsKey(e.getKey())) {
                throw new IllegalArgumentException("no weight named " + e.getKey());
            }
            t.put(e.getKey(), e.getValue());
        }
        return new LlamaWeights(config, t, false);
    }

    /** The same tensors with every block's projections run one by one: the plain path, to compare the fused one with. */
    public LlamaWeights unfused() {
        return new LlamaWeights(config, tensors, false);
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

    /**
     * Block {@code i}'s fused projections, or null when the block must run them one by one: they were never fused
     * ({@link #withReplaced}), or one of them is being trained (the fused tensor is not the leaf that autograd
     * accumulates a gradient into).
     */
    public Fused fused(int i) {
        Fused f = fused[i];
        Block b = blocks[i];
        if (f == null || b.q().requires_grad() || b.k().requires_grad() || b.v().requires_grad()
                || b.gate().requires_grad() || b.up().requires_grad()) {
            return null;
        }
        return f;
    }

    @Override
    public void close() {
        tensors.values().forEach(Tensor::close);
        for (Fused f : fused) {
            if (f != null) {
                for (Tensor t : new Tensor[] {f.qkv(), f.qkvBias(), f.gateUp(), f.gateUpBias()}) {
                    if (t != null) {
                        t.close();
                    }
                }
            }
        }
    }
}
