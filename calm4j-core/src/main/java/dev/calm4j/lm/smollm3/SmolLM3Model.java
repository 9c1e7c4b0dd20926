package dev.calm4j.lm.smollm3;

import dev.calm4j.lm.AttentionContext;
import dev.calm4j.lm.CausalContexts;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.KvCache;
import dev.calm4j.lm.llama.LlamaWeights;
import dev.calm4j.nn.Ops;
import dev.calm4j.nn.Rotary;
import dev.calm4j.nn.Scoped;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.Map;

import static org.bytedeco.pytorch.global.torch.embedding;

/**
 * The SmolLM3 decoder: Llama's blocks and weights, except that some layers ({@code no_rope_layers[i] == 0}, every
 * 4th by default) apply no rotary embedding ("NoPE"): their attention sees positions only through the causal mask,
 * which helps the model generalise beyond its training length. Those layers may also slide a window.
 *
 * <pre>
 *   h = embed(ids)                                                        [B, T, D]
 *   for each block i:  x = n1(h)
 *                      q = split(q(x)), k = split(k(x)), v = split(v(x))  [B, H, T, hd]
 *                      q, k = rope(q), rope(k)           only where no_rope_layers[i] == 1
 *                      h = h + o(attn_i(q, k, v))        attn_i: causal, or a sliding window (layer_types)
 *                      h = h + down(silu(gate(n2(h))) * up(n2(h)))     -> "layer i" = this h
 *   logits = head(norm(h))                                                [B, T, V]
 * </pre>
 */
public final class SmolLM3Model implements CausalLm {
    private final SmolLM3Config config;
    private final LlamaWeights weights;
    private final Rotary rotary;
    private final ScalarType dtype;

    public SmolLM3Model(SmolLM3Config config, LlamaWeights weights, ScalarType dtype) {
        this.config = config;
        this.weights = weights;
        this.dtype = dtype;
        this.rotary = new Rotary(config.headDim(), config.maxPositionEmbeddings(), config.ropeTheta(),
                config.ropeScaling());
    }

    @Override
    public SmolLM3Config config() {
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

    /** Full causal attention, with the sliding layers' narrower geometry beside it. */
    @Override
    public AttentionContext context(long past, long t, Tensor keyPadding) {
        return CausalContexts.causal(rotary, dtype, past, t, keyPadding, config.slidingWindowIfUsed());
    }

    @Override
    public Tensor embed(Tensor ids) {
        return embedding(weights.embed(), ids);                                          // [B, T, D]
    }

    @Override
    public Tensor layer(int i, Tensor h, AttentionContext ctx, KvCache.Layer cache) {
        return Scoped.keep(() -> block(i, h, ctx, cache));            // intermediates freed when the block returns
    }

    private Tensor block(int i, Tensor h, AttentionContext ctx, KvCache.Layer cache) {
        LlamaWeights.Block w = weights.block(i);
        double eps = config.rmsNormEps();
        int heads = config.numAttentionHeads();
        int kvHeads = config.numKeyValueHeads();

        LlamaWeights.Fused f = weights.fused(i);      // null: the plain path (a projection trains)

        Tensor x = Ops.rmsNorm(h, w.inputNorm(), eps);                                   // [B, T, D]
        Tensor q;
        Tensor k;
        Tensor v;
        if (f == null) {
            q = Ops.splitHeads(Ops.linear(x, w.q(), w.qBias()), heads);                   // [B, H, T, hd]
            k = Ops.splitHeads(Ops.linear(x, w.k(), w.kBias()), kvHeads);                 // [B, Hkv, T, hd]
            v = Ops.splitHeads(Ops.linear(x, w.v(), w.vBias()), kvHeads);                 // [B, Hkv, T, hd]
        } else {                                      // the same three projections as one matmul
            Tensor[] qkv = Ops.linearSplit(x, f.qkv(), f.qkvBias(), config.queryDim(), config.kvDim(), config.kvDim());
            q = Ops.splitHeads(qkv[0], heads);                                            // [B, H, T, hd]
            k = Ops.splitHeads(qkv[1], kvHeads);                                          // [B, Hkv, T, hd]
            // v's own copy: attention keeps v for its backward, and a view would keep all of q|k|v alive with it
            v = Ops.splitHeads(qkv[2].contiguous(), kvHeads);                                          // [B, Hkv, T, hd]
        }
        if (config.usesRope(i)) {
            q = Rotary.apply(q, ctx.cos(), ctx.sin());
            k = Rotary.apply(k, ctx.cos(), ctx.sin());
        }
        if (cache != null) {
            if (cache.length() != ctx.past()) {
                throw new IllegalStateException("layer " + i + ": cache holds " + cache.length()
                        + " positions but the context says " + ctx.past());
            }
            Tensor[] kv = cache.append(k, v);                                             // [B, Hkv, past+T, hd]
            k = kv[0];
            v = kv[1];
        }
        AttentionContext a = config.window(i) > 0 ? ctx.forSliding() : ctx;              // this layer's keys
        Tensor att = Ops.attention(q, k, v, a.mask(), a.causal(), kvHeads != heads);     // [B, H, T, hd]
        h = h.add(Ops.linear(Ops.mergeHeads(att), w.o(), w.oBias()));                    // [B, T, D]

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
        weights.close();
        rotary.close();
    }
}
