package dev.calm4j.lm.llama;

import dev.calm4j.lm.AttentionContext;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.KvCache;
import dev.calm4j.nn.Ops;
import dev.calm4j.nn.Rotary;
import dev.calm4j.nn.Scoped;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.ScalarOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.Map;

import static org.bytedeco.pytorch.global.torch.embedding;

/**
 * The Llama decoder (and Mistral, Qwen2, SmolLM, TinyLlama: the same computation with config differences).
 *
 * <pre>
 *   h = embed(ids)                                               [B, T, D]
 *   for each block i:  h = h + o(attn(rope(q(n1(h))), rope(k(n1(h))), v(n1(h))))
 *                      h = h + down(silu(gate(n2(h))) * up(n2(h)))     -> "layer i" = this h
 *   logits = head(norm(h))                                       [B, T, V]
 * </pre>
 * Attention is libtorch's fused SDPA with grouped-query heads handled by the kernel ({@code enable_gqa}). Frozen
 * blocks compute q, k, v with one matmul and gate, up with another ({@link LlamaWeights.Fused}: the weights are
 * concatenated once, at load); a block whose projections train, or whose weights LoRA replaced, runs them one by one.
 */
public final class LlamaModel implements CausalLm {
    private final LlamaConfig config;
    private final LlamaWeights weights;
    private final Rotary rotary;
    private final ScalarType dtype;
    private final boolean owner;      // false for a view over another model's tensors
    private final boolean mixed;      // bf16-mixed: weights in bf16, activations (dtype) in float32

    /**
     * @param dtype what the activations compute in. Weights in that dtype too, or bf16 weights with float32
     *     activations ("bf16-mixed", as PyTorch's autocast computes): each matmul then runs in bf16 and returns
     *     float32, and norms, rotary, attention and the residual stream stay in float32.
     */
    public LlamaModel(LlamaConfig config, LlamaWeights weights, ScalarType dtype) {
        this(config, weights, dtype, new Rotary(config.headDim(), config.maxPositionEmbeddings(), config.ropeTheta(),
                config.ropeScaling()), true);
    }

    private LlamaModel(LlamaConfig config, LlamaWeights weights, ScalarType dtype, Rotary rotary, boolean owner) {
        this.config = config;
        this.weights = weights;
        this.dtype = dtype;
        this.mixed = weights.embed().scalar_type().intern() != dtype.intern();
        this.rotary = rotary;
        this.owner = owner;
    }

    /** The same model computing with other weights (e.g. LoRA-adapted); shares everything else, owns nothing. */
    public LlamaModel withWeights(LlamaWeights other) {
        return new LlamaModel(config, other, dtype, rotary, false);
    }

    /** A model with fresh random weights (normal std 0.02, HF's default), for pretraining from scratch. */
    public static LlamaModel random(LlamaConfig config, long seed) {
        return new LlamaModel(config, LlamaWeights.random(config, seed, 0.02, ScalarType.Float), ScalarType.Float);
    }

    @Override
    public LlamaConfig config() {
        return config;
    }

    public LlamaWeights weights() {
        return weights;
    }

    @Override
    public ScalarType computeDtype() {
        return dtype;
    }

    @Override
    public Map<String, Tensor> namedWeights() {
        return weights.named();
    }

    @Override
    public AttentionContext context(long past, long t, Tensor keyPadding) {
        int window = config.slidingWindow();
        boolean windowBites = window > 0 && past + t > window;
        Tensor mask = null;
        boolean causal = false;
        if (keyPadding != null || windowBites || (t > 1 && past > 0)) {
            mask = AttentionContext.buildMask(past, t, keyPadding, window);
        } else if (t > 1) {
            causal = true;                                    // plain causal, the kernel's fast path
        }
        Tensor[] cs;
        if (keyPadding == null) {
            cs = rotary.range(past, t);                       // [1, 1, T, hd]
        } else {
            // Left-padded rows: a token's position is the number of real tokens before it (as HF generate does).
            Tensor positions = keyPadding.to(ScalarType.Long).cumsum(1).sub(new Scalar(1))
                    .clamp(new ScalarOptional(new Scalar(0)), new ScalarOptional())
                    .narrow(1, past, t);                      // [B, T]
            cs = rotary.gather(positions, past + t - 1);      // [B, 1, T, hd]
        }
        Tensor cos = dtype == ScalarType.Float ? cs[0] : cs[0].to(dtype);
        Tensor sin = dtype == ScalarType.Float ? cs[1] : cs[1].to(dtype);
        return new AttentionContext(past, t, mask, causal, cos, sin);
    }

    @Override
    public Tensor embed(Tensor ids) {
        Tensor e = embedding(weights.embed(), ids);                                     // [B, T, D]
        return mixed ? e.to(dtype) : e;                 // bf16-mixed: the residual stream starts in float32
    }

    @Override
    public Tensor layer(int i, Tensor h, AttentionContext ctx, KvCache.Layer cache) {
        return Scoped.keep(() -> block(i, h, ctx, cache));           // intermediates freed when the block returns
    }

    private Tensor block(int i, Tensor h, AttentionContext ctx, KvCache.Layer cache) {
        LlamaWeights.Block w = weights.block(i);
        double eps = config.rmsNormEps();
        int heads = config.numAttentionHeads();
        int kvHeads = config.numKeyValueHeads();

        LlamaWeights.Fused f = weights.fused(i);      // null: the plain path (a projection trains, or LoRA replaced one)

        Tensor x = Ops.rmsNorm(h, w.inputNorm(), eps);                                  // [B, T, D]
        Tensor q;
        Tensor k;
        Tensor v;
        if (f == null) {
            q = Ops.splitHeads(Ops.linear(x, w.q(), w.qBias()), heads);                  // [B, H, T, hd]
            k = Ops.splitHeads(Ops.linear(x, w.k(), w.kBias()), kvHeads);                // [B, Hkv, T, hd]
            v = Ops.splitHeads(Ops.linear(x, w.v(), w.vBias()), kvHeads);                // [B, Hkv, T, hd]
        } else {                                      // the same three projections as one matmul
            Tensor[] qkv = Ops.linearSplit(x, f.qkv(), f.qkvBias(), config.queryDim(), config.kvDim(), config.kvDim());
            q = Ops.splitHeads(qkv[0], heads);                                           // [B, H, T, hd]
            k = Ops.splitHeads(qkv[1], kvHeads);                                         // [B, Hkv, T, hd]
            // v's own copy: attention keeps v for its backward, and a view would keep all of q|k|v alive with it
            v = Ops.splitHeads(qkv[2].contiguous(), kvHeads);                                         // [B, Hkv, T, hd]
        }
        q = Rotary.apply(q, ctx.cos(), ctx.sin());
        k = Rotary.apply(k, ctx.cos(), ctx.sin());
        if (cache != null) {
            if (cache.length() != ctx.past()) {
                throw new IllegalStateException("layer " + i + ": cache holds " + cache.length()
                        + " positions but the context says " + ctx.past());
            }
            Tensor[] kv = cache.append(k, v);                                            // [B, Hkv, past+T, hd]
            k = kv[0];
            v = kv[1];
        }
        Tensor a = Ops.attention(q, k, v, ctx.mask(), ctx.causal(), kvHeads != heads);      // [B, H, T, hd]
        h = h.add(Ops.linear(Ops.mergeHeads(a), w.o(), w.oBias()));                      // [B, T, D]

        x = Ops.rmsNorm(h, w.postNorm(), eps);
        if (f == null) {
            return h.add(Ops.swiGlu(x, w.gate(), w.gateBias(), w.up(), w.upBias(), w.down(), w.downBias()));
        }
        return h.add(Ops.swiGluFused(x, f.gateUp(), f.gateUpBias(), w.down(), w.downBias()));    // gate and up in one matmul
    }

    @Override
    public Tensor logits(Tensor h) {
        return Scoped.keep(() -> Ops.linear(Ops.rmsNorm(h, weights.norm(), config.rmsNormEps()), weights.lmHead(), null));   // [B, T, V]
    }

    @Override
    public KvCache newCache(long batch, int maxLength) {
        return new KvCache(config.numHiddenLayers(), batch, config.numKeyValueHeads(), maxLength, config.headDim(), dtype);
    }

    @Override
    public void close() {
        if (owner) {
            weights.close();
            rotary.close();
        }
    }
}
