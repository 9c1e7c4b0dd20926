package dev.calm4j.lm;

import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch.ScalarType;

import static org.bytedeco.pytorch.global.torch.arange;

/**
 * The geometry of one forward call, computed once and handed to every block (never stored in the model): which
 * absolute positions the {@code t} new tokens have, which keys each may see, and the rotary cos/sin for them.
 *
 * @param past positions already in the KV cache (0 without a cache)
 * @param length new positions in this call
 * @param mask boolean {@code [B or 1, 1, t, past+t]}, true = may attend; null when {@link #causal} or no mask is
 *             needed (one query over a cache sees every key)
 * @param causal let the attention kernel apply the plain causal mask itself (fastest; only when past == 0)
 * @param cos rotary cos, {@code [B or 1, 1, t, headDim]}
 * @param sin rotary sin with its first half negated ({@link dev.calm4j.nn.Rotary#apply}), same shape
 * @param sliding the geometry of the model's sliding-window layers, where a model mixes them with global layers
 *                (Gemma 2 and 3: their own windowed mask and, for Gemma 3, their own rotary tables); null where every
 *                layer uses this one
 */
public record AttentionContext(long past, long length, Tensor mask, boolean causal, Tensor cos, Tensor sin,
                               AttentionContext sliding) {

    /** A geometry every layer shares (no separate sliding-window layers). */
    public AttentionContext(long past, long length, Tensor mask, boolean causal, Tensor cos, Tensor sin) {
        this(past, length, mask, causal, cos, sin, null);
    }

    /** The geometry of a sliding-window layer: {@link #sliding} where the model has one, else this. */
    public AttentionContext forSliding() {
        return sliding == null ? this : sliding;
    }

    /**
     * Boolean mask {@code [B or 1, 1, t, past+t]}: query {@code q} (absolute position {@code past+q}) sees key
     * {@code k} when {@code k <= past+q}, {@code k} is a real token (keyPadding, may be null), and, with a sliding
     * window {@code w > 0}, {@code k > past+q-w}. A query always sees itself, so a padding query (all of whose
     * earlier keys are padding) still has one key: a row with no key at all would make SDPA return NaN, and a NaN
     * value, even with weight 0, poisons every query that reads it.
     */
    public static Tensor buildMask(long past, long t, Tensor keyPadding, int window) {
        TensorOptions longs = new TensorOptions(ScalarType.Long);
        Tensor q = arange(new org.bytedeco.pytorch.Scalar(past), new org.bytedeco.pytorch.Scalar(past + t), longs).view(t, 1);
        Tensor k = arange(new org.bytedeco.pytorch.Scalar(past + t), longs).view(1, past + t);
        Tensor allowed = k.le(q);
        if (window > 0) {
            allowed = allowed.logical_and(k.gt(q.sub(new org.bytedeco.pytorch.Scalar(window))));
        }
        Tensor mask = allowed.view(1, 1, t, past + t);
        if (keyPadding != null) {
            Tensor self = k.eq(q).view(1, 1, t, past + t);
            mask = mask.logical_and(keyPadding.view(keyPadding.size(0), 1, 1, past + t)).logical_or(self);
        }
        return mask;
    }
}
