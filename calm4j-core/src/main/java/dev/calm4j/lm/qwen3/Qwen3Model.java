package dev.calm4j.lm.qwen3;

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
 * The Qwen3 decoder: Llama's pre-norm blocks with one addition, an RMSNorm over each head of the queries and keys
 * (weights {@code [head_dim]}, shared by all heads) between the projection and rotary, which keeps attention
 * logits bounded without q/k biases (Qwen2 had them; Qwen3's {@code attention_bias} is off in released models).
 *
 * <pre>
 *   h = embed(ids)                                                        [B, T, D]
 *   for each block i:  x = n1(h)
 *                      q = rope(qn(split(q(x)))), k = rope(kn(split(k(x)))), v = split(v(x))   [B, H, T, hd]
 *                      h = h + o(attn_i(q, k, v))        attn_i: causal, or a sliding window from max_window_layers on
 *                      h = h + down(silu(gate(n2(h))) * up(n2(h)))     -> "layer i" = this h
 *   logits = head(norm(h))                                                [B, T, V]
 * </pre>
 */
public final class Qwen3Model implements CausalLm {
    private final Qwen3Config config;
    private final Qwen3Weights weights;
    private final Rotary rotary;
    private final ScalarType dtype;

    public Qwen3Model(Qwen3Config config, Qwen3Weights weights, ScalarType dtype) {
        this.config = config;
        this.weights = weights;
        this.dtype = dtype;
        this.rotary = new Rotary(config.headDim(), config.maxPositionEmbeddings(), config.ropeTheta(),
                config.ropeScaling());
    }

    @Override
    public Qwen3Config config() {
        return config;
    }

    public Qwen3Weights weights() {
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
        Qwen3Weights.Block w = weights.block(i);
        double eps = config.rmsNormEps();
        int heads = config.numAttentionHeads();
        int kvHeads = config.numKeyValueHeads();

        Tensor x = Ops.rmsNorm(h, w.inputNorm(), eps);                                   // [B, T, D]
        Tensor q = Ops.splitHeads(Ops.linear(x, w.q(), w.qBias()), heads);                // [B, H, T, hd]
        Tensor k = Ops.splitHeads(Ops.linear(x, w.k(), w.kBias()), kvHeads);              // [B, Hkv, T, hd]
        Tensor v = Ops.splitHeads(Ops.linear(x, w.v(), w.vBias()), kvHeads);              // [B, Hkv, T, hd]
        q = Ops.rmsNorm(q, w.qNorm(), eps);            // per head: over the last axis (hd), before rotary as in HF
        k = Ops.rmsNorm(k, w.kNorm(), eps);
        q = Rotary.apply(q, ctx.cos(), ctx.sin());
        k = Rotary.apply(k, ctx.cos(), ctx.sin());
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
        return h.add(Ops.swiGlu(x, w.gate(), null, w.up(), null, w.down(), null));
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
