package dev.calm4j.lm.gemma;

import dev.calm4j.lm.AttentionContext;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.KvCache;
import dev.calm4j.nn.Ops;
import dev.calm4j.nn.Rotary;
import dev.calm4j.nn.Scoped;
import dev.calm4j.nn.Tensors;
import org.bytedeco.pytorch.DoubleOptional;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.ScalarOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.Map;

import static org.bytedeco.pytorch.global.torch.embedding;
import static org.bytedeco.pytorch.global.torch.rms_norm;

/**
 * The Gemma 2 and Gemma 3 (text) decoder: one forward, the differences switched by the config ({@link GemmaConfig}).
 *
 * <pre>
 *   h = embed(ids) * sqrt(D)                                            [B, T, D]
 *   for each block i (sliding or full, per layer_types):
 *       q, k, v = q(n(h)), k(n(h)), v(n(h))                              [B, H|Hkv, T, hd]
 *       q, k = qnorm(q), knorm(k)                                        (Gemma 3)
 *       a = attn(rope_i(q), rope_i(k), v)   scale s^-0.5, s = query_pre_attn_scalar; sliding layers see the
 *                                           last sliding_window keys; Gemma 2 soft-caps the scores
 *       h = h + n(o(a))                                                  (post-attention norm)
 *       h = h + n(down(gelu_tanh(gate(n(h))) * up(n(h))))                (pre- and post-feedforward norms)
 *                                                                        -> "layer i" = this h
 *   logits = head(n(h)), then cap * tanh(logits / cap) where final_logit_softcapping is set   [B, T, V]
 * </pre>
 * Every {@code n} is Gemma's RMSNorm: in float32, times {@code 1 + w}, cast back. Sliding layers get their own
 * geometry ({@link AttentionContext#sliding}): the windowed mask and, in Gemma 3, rotary tables of their own base.
 * Attention is libtorch's fused SDPA where it computes exactly what HF does; Gemma 2's soft cap sits between the
 * scaling and the mask, so with a cap it is written out ({@link Ops#softcappedAttention}).
 */
public final class GemmaModel implements CausalLm {
    private final GemmaConfig config;
    private final GemmaWeights weights;
    private final ScalarType dtype;
    private final Rotary rotary;          // full-attention layers
    private final Rotary slidingRotary;   // sliding layers; the same object when their rotary is the same
    private final double embedScale;      // sqrt(D), rounded to the compute dtype as HF rounds it to the weights'

    public GemmaModel(GemmaConfig config, GemmaWeights weights, ScalarType dtype) {
        this.config = config;
        this.weights = weights;
        this.dtype = dtype;
        this.rotary = new Rotary(config.headDim(), config.maxPositionEmbeddings(), config.ropeTheta(), config.ropeScaling());
        boolean same = config.slidingRopeTheta() == config.ropeTheta()
                && config.slidingRopeScaling().equals(config.ropeScaling());
        this.slidingRotary = same ? rotary : new Rotary(config.headDim(), config.maxPositionEmbeddings(),
                config.slidingRopeTheta(), config.slidingRopeScaling());
        // HF: torch.tensor(hidden ** 0.5) (float32), then .to(weight dtype): in bf16, sqrt(3072) = 55.43 becomes 55.5.
        float s = (float) Math.sqrt(config.hiddenSize());
        this.embedScale = Tensors.toFloats(Tensors.floats(new float[] {s}, 1).to(dtype))[0];
    }

    @Override
    public GemmaConfig config() {
        return config;
    }

    public GemmaWeights weights() {
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

    /**
     * The full layers' geometry, with the sliding layers' in {@link AttentionContext#sliding} where it differs. With
     * a soft cap the attention is written out and needs an explicit mask wherever more than one query runs.
     */
    @Override
    public AttentionContext context(long past, long t, Tensor keyPadding) {
        Tensor positions = null;
        if (keyPadding != null) {
            // Left-padded rows: a token's position is the number of real tokens before it (as HF generate does).
            positions = keyPadding.to(ScalarType.Long).cumsum(1).sub(new Scalar(1))
                    .clamp(new ScalarOptional(new Scalar(0)), new ScalarOptional())
                    .narrow(1, past, t);                                                   // [B, T]
        }
        boolean explicit = config.attentionSoftcap() > 0;
        AttentionContext full = geometry(past, t, keyPadding, positions, 0, rotary, explicit);
        AttentionContext sliding = config.slidingDiffers()
                ? geometry(past, t, keyPadding, positions, config.slidingWindow(), slidingRotary, explicit) : null;
        return new AttentionContext(past, t, full.mask(), full.causal(), full.cos(), full.sin(), sliding);
    }

    private AttentionContext geometry(long past, long t, Tensor keyPadding, Tensor positions, int window, Rotary r,
                                      boolean explicit) {
        boolean windowBites = window > 0 && past + t > window;
        Tensor mask = null;
        boolean causal = false;
        if (keyPadding != null || windowBites || (t > 1 && (past > 0 || explicit))) {
            mask = AttentionContext.buildMask(past, t, keyPadding, window);               // [B or 1, 1, T, past+T]
        } else if (t > 1) {
            causal = true;                                    // plain causal, the kernel's fast path
        }
        Tensor[] cs = positions == null ? r.range(past, t)                               // [1, 1, T, hd]
                : r.gather(positions, past + t - 1);                                       // [B, 1, T, hd]
        Tensor cos = dtype == ScalarType.Float ? cs[0] : cs[0].to(dtype);
        Tensor sin = dtype == ScalarType.Float ? cs[1] : cs[1].to(dtype);
        return new AttentionContext(past, t, mask, causal, cos, sin);
    }

    @Override
    public Tensor embed(Tensor ids) {
        return embedding(weights.embed(), ids).mul(new Scalar(embedScale));              // [B, T, D]
    }

    @Override
    public Tensor layer(int i, Tensor h, AttentionContext ctx, KvCache.Layer cache) {
        return Scoped.keep(() -> block(i, h, ctx, cache));           // intermediates freed when the block returns
    }

    private Tensor block(int i, Tensor h, AttentionContext ctx, KvCache.Layer cache) {
        GemmaWeights.Block w = weights.block(i);
        AttentionContext g = config.sliding(i) ? ctx.forSliding() : ctx;
        int heads = config.numAttentionHeads();
        int kvHeads = config.numKeyValueHeads();

        Tensor x = norm(h, w.inputNorm());                                                 // [B, T, D]
        Tensor q = Ops.splitHeads(Ops.linear(x, w.q(), w.qBias()), heads);                  // [B, H, T, hd]
        Tensor k = Ops.splitHeads(Ops.linear(x, w.k(), w.kBias()), kvHeads);                // [B, Hkv, T, hd]
        Tensor v = Ops.splitHeads(Ops.linear(x, w.v(), w.vBias()), kvHeads);                // [B, Hkv, T, hd]
        if (config.qkNorm()) {                                                              // per head, before rotary
            q = norm(q, w.qNorm());
            k = norm(k, w.kNorm());
        }
        q = Rotary.apply(q, g.cos(), g.sin());
        k = Rotary.apply(k, g.cos(), g.sin());
        if (cache != null) {
            if (cache.length() != ctx.past()) {
                throw new IllegalStateException("layer " + i + ": cache holds " + cache.length()
                        + " positions but the context says " + ctx.past());
            }
            // Sliding layers keep every key too: the mask drops the old ones, so cache and recomputation agree.
            Tensor[] kv = cache.append(k, v);                                               // [B, Hkv, past+T, hd]
            k = kv[0];
            v = kv[1];
        }
        double scale = 1.0 / Math.sqrt(config.queryPreAttnScalar());
        double cap = config.attentionSoftcap();
        Tensor a = cap > 0
                ? Ops.softcappedAttention(q, k, v, g.mask(), scale, cap)                   // [B, H, T, hd]
                : Ops.attention(q, k, v, g.mask(), g.causal(), kvHeads != heads, scale);
        h = h.add(norm(Ops.linear(Ops.mergeHeads(a), w.o(), w.oBias()), w.postAttentionNorm()));   // [B, T, D]

        x = norm(h, w.preFeedforwardNorm());
        return h.add(norm(Ops.geluTanhGlu(x, w.gate(), w.up(), w.down()), w.postFeedforwardNorm()));
    }

    @Override
    public Tensor logits(Tensor h) {
        return Scoped.keep(() -> {
            Tensor l = Ops.linear(norm(h, weights.norm()), weights.lmHead(), null);       // [B, T, V]
            double cap = config.finalLogitSoftcapping();
            return cap > 0 ? l.div(new Scalar(cap)).tanh().mul(new Scalar(cap)) : l;
        });
    }

    /**
     * Gemma's RMSNorm over the last dimension: {@code x / sqrt(mean(x^2) + eps) * (1 + w)}, computed in float32 and
     * cast back to x's dtype (HF multiplies before the cast, where Llama casts first).
     */
    private Tensor norm(Tensor x, Tensor w) {
        ScalarType xt = x.scalar_type().intern();
        Tensor xf = xt == ScalarType.Float ? x : x.to(ScalarType.Float);
        Tensor scale = w.to(ScalarType.Float).add(new Scalar(1.0));                        // 1 + w, float32
        Tensor y = rms_norm(xf, new long[] {xf.size(-1)}, new TensorOptional(scale), new DoubleOptional(config.rmsNormEps()));
        return xt == ScalarType.Float ? y : y.to(xt);
    }

    @Override
    public KvCache newCache(long batch, int maxLength) {
        return new KvCache(config.numHiddenLayers(), batch, config.numKeyValueHeads(), maxLength, config.headDim(), dtype);
    }

    @Override
    public void close() {
        weights.close();
        rotary.close();
        if (slidingRotary != rotary) {
            slidingRotary.close();
        }
    }
}
