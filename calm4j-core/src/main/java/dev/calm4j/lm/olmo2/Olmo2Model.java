package dev.calm4j.lm.olmo2;

import dev.calm4j.lm.AttentionContext;
import dev.calm4j.lm.CausalContexts;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.KvCache;
import dev.calm4j.nn.Ops;
import dev.calm4j.nn.Rotary;
import dev.calm4j.nn.Scoped;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.Map;

import static org.bytedeco.pytorch.global.torch.embedding;

/**
 * The OLMo 2 decoder. Two differences from Llama, both for training stability: the block's norms moved from the
 * sublayers' inputs to their outputs (each sublayer reads the raw residual stream, and what it adds back is
 * normalised), and q and k are RMS-normalised over their whole projection (all heads together, not per head as in
 * Qwen3) before rotary.
 *
 * <pre>
 *   h = embed(ids)                                                        [B, T, D]
 *   for each block i:  q = rope(split(qn(q(h)))), k = rope(split(kn(k(h)))), v = split(v(h))   [B, H, T, hd]
 *                      h = h + n1(o(attn(q, k, v)))
 *                      h = h + n2(down(silu(gate(h)) * up(h)))          -> "layer i" = this h
 *   logits = head(norm(h))                                                [B, T, V]
 * </pre>
 * As in HF, rotary runs in float32 whatever the compute dtype (HF's Olmo2 keeps cos/sin in float32 and casts the
 * rotated q/k back).
 */
public final class Olmo2Model implements CausalLm {
    private final Olmo2Config config;
    private final Olmo2Weights weights;
    private final Rotary rotary;
    private final ScalarType dtype;

    public Olmo2Model(Olmo2Config config, Olmo2Weights weights, ScalarType dtype) {
        this.config = config;
        this.weights = weights;
        this.dtype = dtype;
        this.rotary = new Rotary(config.headDim(), config.maxPositionEmbeddings(), config.ropeTheta(),
                config.ropeScaling());
    }

    @Override
    public Olmo2Config config() {
        return config;
    }

    public Olmo2Weights weights() {
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

    /** Causal attention with float32 cos/sin (see the class comment). */
    @Override
    public AttentionContext context(long past, long t, Tensor keyPadding) {
        return CausalContexts.causal(rotary, ScalarType.Float, past, t, keyPadding, 0);
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
        Olmo2Weights.Block w = weights.block(i);
        double eps = config.rmsNormEps();
        int heads = config.numAttentionHeads();
        int kvHeads = config.numKeyValueHeads();

        Tensor q = Ops.rmsNorm(Ops.linear(h, w.q(), w.qBias()), w.qNorm(), eps);        // [B, T, H*hd], all heads
        Tensor k = Ops.rmsNorm(Ops.linear(h, w.k(), w.kBias()), w.kNorm(), eps);        // [B, T, Hkv*hd]
        Tensor v = Ops.splitHeads(Ops.linear(h, w.v(), w.vBias()), kvHeads);             // [B, Hkv, T, hd]
        q = rope(Ops.splitHeads(q, heads), ctx);                                         // [B, H, T, hd]
        k = rope(Ops.splitHeads(k, kvHeads), ctx);                                       // [B, Hkv, T, hd]
        if (cache != null) {
            if (cache.length() != ctx.past()) {
                throw new IllegalStateException("layer " + i + ": cache holds " + cache.length()
                        + " positions but the context says " + ctx.past());
            }
            Tensor[] kv = cache.append(k, v);                                            // [B, Hkv, past+T, hd]
            k = kv[0];
            v = kv[1];
        }
        Tensor a = Ops.attention(q, k, v, ctx.mask(), ctx.causal(), kvHeads != heads);  // [B, H, T, hd]
        h = h.add(Ops.rmsNorm(Ops.linear(Ops.mergeHeads(a), w.o(), w.oBias()), w.postAttentionNorm(), eps));

        Tensor m = Ops.swiGlu(h, w.gate(), null, w.up(), null, w.down(), null);         // [B, T, D]
        return h.add(Ops.rmsNorm(m, w.postFeedforwardNorm(), eps));
    }

    /** Rotary in float32, the result back in the compute dtype. */
    private Tensor rope(Tensor x, AttentionContext ctx) {
        if (dtype == ScalarType.Float) {
            return Rotary.apply(x, ctx.cos(), ctx.sin());
        }
        return Rotary.apply(x.to(ScalarType.Float), ctx.cos(), ctx.sin()).to(dtype);
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
