package dev.calm4j.lm.phi3;

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
import static org.bytedeco.pytorch.global.torch.silu;

/**
 * The Phi-3 decoder (HF {@code Phi3ForCausalLM}): Llama's computation with fused projections, partial rotary
 * embeddings and LongRoPE.
 *
 * <pre>
 *   h = embed(ids)                                                      [B, T, D]
 *   for each block i:  q | k | v = qkv(n1(h));  q, k = rope(q), rope(k) on their first rotaryDim coordinates
 *                      h = h + o(attn(q, k, v))
 *                      gate | up = gate_up(n2(h));  h = h + down(up * silu(gate))   -> "layer i" = this h
 *   logits = head(norm(h))                                              [B, T, V]
 * </pre>
 *
 * <p>LongRoPE, as HF does it: one forward call uses one factor set for all its positions, the long one when its
 * last position + 1 exceeds {@code original_max_position_embeddings}, else the short one. So the one departure from
 * "cached decoding equals recomputation": a KV cache filled while the sequence was short holds keys (and, from block
 * 1 on, values) computed with the short factors, and once a decoding session crosses that length its logits differ
 * from a full forward of the whole sequence, which uses the long factors everywhere. This is what HF's model does with
 * a cache kept across the steps, and what Microsoft's original Phi-3 code does; the golden test pins it. (HF's
 * {@code generate} means to recompute at the crossing, {@code Phi3ForCausalLM.prepare_inputs_for_generation}
 * dropping the cache, which no cache of fixed per-layer keys and values can do from inside the model; and in
 * transformers 5.18 that step then sees only the last token.) A session that stays on one side of that length
 * (every session no longer than it, and every one whose first call already passes it) decodes exactly as
 * recomputation.
 */
public final class Phi3Model implements CausalLm {
    private final Phi3Config config;
    private final Phi3Weights weights;
    private final ScalarType dtype;
    private final Rotary shortRotary;   // plain rope, or longrope's short factors for positions < original
    private final Rotary longRotary;    // longrope's long factors, every position; null for plain rope

    public Phi3Model(Phi3Config config, Phi3Weights weights, ScalarType dtype) {
        this.config = config;
        this.weights = weights;
        this.dtype = dtype;
        int rd = config.rotaryDim();
        double theta = config.ropeTheta();
        LongRope lr = config.longRope();
        if (lr == null) {
            this.shortRotary = new Rotary(LongRope.inverseFrequencies(null, rd, theta), config.maxPositionEmbeddings(), 1.0);
            this.longRotary = null;
        } else {
            int shortPositions = Math.min(config.originalMaxPositionEmbeddings(), config.maxPositionEmbeddings());
            this.shortRotary = new Rotary(LongRope.inverseFrequencies(lr.shortFactor(), rd, theta), shortPositions,
                    lr.attentionFactor());
            this.longRotary = new Rotary(LongRope.inverseFrequencies(lr.longFactor(), rd, theta),
                    config.maxPositionEmbeddings(), lr.attentionFactor());
        }
    }

    @Override
    public Phi3Config config() {
        return config;
    }

    public Phi3Weights weights() {
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

    /** As Llama's, with the LongRoPE factor set of the call (see the class comment). */
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
            cs = table(past + t - 1).range(past, t);          // [1, 1, T, rd]
        } else {
            // Left-padded rows: a token's position is the number of real tokens before it (as HF generate does).
            Tensor positions = keyPadding.to(ScalarType.Long).cumsum(1).sub(new Scalar(1))
                    .clamp(new ScalarOptional(new Scalar(0)), new ScalarOptional())
                    .narrow(1, past, t);                      // [B, T]
            long last = positions.max().item_long();          // HF: max(position_ids) over the batch
            cs = table(last).gather(positions, last);         // [B, 1, T, rd]
        }
        Tensor cos = dtype == ScalarType.Float ? cs[0] : cs[0].to(dtype);
        Tensor sin = dtype == ScalarType.Float ? cs[1] : cs[1].to(dtype);
        return new AttentionContext(past, t, mask, causal, cos, sin);
    }

    /** The rotary table of a call whose highest position is {@code last}. */
    private Rotary table(long last) {
        return longRotary != null && last + 1 > config.originalMaxPositionEmbeddings() ? longRotary : shortRotary;
    }

    @Override
    public Tensor embed(Tensor ids) {
        return embedding(weights.embed(), ids);                                         // [B, T, D]
    }

    @Override
    public Tensor layer(int i, Tensor h, AttentionContext ctx, KvCache.Layer cache) {
        return Scoped.keep(() -> block(i, h, ctx, cache));           // intermediates freed when the block returns
    }

    private Tensor block(int i, Tensor h, AttentionContext ctx, KvCache.Layer cache) {
        Phi3Weights.Block w = weights.block(i);
        double eps = config.rmsNormEps();
        int heads = config.numAttentionHeads();
        int kvHeads = config.numKeyValueHeads();
        int qd = config.queryDim();
        int kvd = config.kvDim();
        long ff = config.intermediateSize();
        if (cache != null && cache.length() != ctx.past()) {
            throw new IllegalStateException("layer " + i + ": cache holds " + cache.length()
                    + " positions but the context says " + ctx.past());
        }

        Tensor x = Ops.rmsNorm(h, w.inputNorm(), eps);                                  // [B, T, D]
        Tensor qkv = Ops.linear(x, w.qkv(), null);                                      // [B, T, (H + 2 Hkv) hd]
        Tensor q = Ops.splitHeads(qkv.narrow(-1, 0, qd), heads);                        // [B, H, T, hd]
        Tensor k = Ops.splitHeads(qkv.narrow(-1, qd, kvd), kvHeads);                    // [B, Hkv, T, hd]
        Tensor v = Ops.splitHeads(qkv.narrow(-1, qd + kvd, kvd), kvHeads);              // [B, Hkv, T, hd]
        q = Rotary.applyPartial(q, ctx.cos(), ctx.sin());                              // first rotaryDim coords
        k = Rotary.applyPartial(k, ctx.cos(), ctx.sin());
        if (cache != null) {
            Tensor[] kv = cache.append(k, v);                                            // [B, Hkv, past+T, hd]
            k = kv[0];
            v = kv[1];
        }
        Tensor a = Ops.attention(q, k, v, ctx.mask(), ctx.causal(), kvHeads != heads);  // [B, H, T, hd]
        h = h.add(Ops.linear(Ops.mergeHeads(a), w.o(), null));                          // [B, T, D]

        x = Ops.rmsNorm(h, w.postNorm(), eps);
        Tensor gateUp = Ops.linear(x, w.gateUp(), null);                                // [B, T, 2F]: gate | up
        Tensor up = gateUp.narrow(-1, ff, ff).mul(silu(gateUp.narrow(-1, 0, ff)));      // [B, T, F]
        return h.add(Ops.linear(up, w.down(), null));                                    // [B, T, D]
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
        shortRotary.close();
        if (longRotary != null) {
            longRotary.close();
        }
    }
}
