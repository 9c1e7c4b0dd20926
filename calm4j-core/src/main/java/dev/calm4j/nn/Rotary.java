package dev.calm4j.nn;

import dev.calm4j.lm.llama.RopeScaling;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch.ScalarType;

import static org.bytedeco.pytorch.global.torch.cat;
import static org.bytedeco.pytorch.global.torch.outer;
import static org.bytedeco.pytorch.global.torch.arange;

/**
 * Rotary position embedding in Hugging Face's convention: within a head, coordinate {@code i} pairs with
 * {@code i + d/2} ({@code rotate_half}), not with {@code i+1} as in Meta's original code.
 *
 * <p>The cos/sin tables cover the positions used so far, not {@code max_position_embeddings}: a config may declare
 * millions of positions (10^7 and more in released models), and tables of that length would cost gigabytes before a
 * single token is read. They start at {@link #INITIAL_POSITIONS} (or the maximum, when smaller: then they are built
 * once, exactly as before) and double on demand, never beyond the maximum.
 */
public final class Rotary implements AutoCloseable {
    /** Positions the tables cover at first; every model up to this context builds its whole table once. */
    public static final int INITIAL_POSITIONS = 4096;

    /** cos and sin (first half negated, see apply), both {@code [positions, width]}. */
    private record Tables(Tensor cos, Tensor sin, int positions) {}

    private final float[] invFreq;
    private final double scale;
    private final int maxPositions;
    private volatile Tables tables;

    public Rotary(int headDim, int maxPositions, double theta, RopeScaling scaling) {
        this(scaling.inverseFrequencies(headDim, theta), maxPositions, 1.0);
    }

    /**
     * Tables for the given inverse frequencies (one per rotated pair, so the tables are {@code 2 * invFreq.length}
     * wide), with cos and sin both multiplied by {@code scale} (HF's {@code attention_scaling} of scaled rope types
     * such as longrope; 1 = none), in float32 as HF computes them.
     */
    public Rotary(float[] invFreq, int maxPositions, double scale) {
        if (maxPositions <= 0) {
            throw new IllegalArgumentException("maxPositions must be > 0, got " + maxPositions);
        }
        this.invFreq = invFreq.clone();
        this.scale = scale;
        this.maxPositions = maxPositions;
        this.tables = build(Math.min(maxPositions, INITIAL_POSITIONS));
    }

    /**
     * Tables for positions {@code 0..positions-1}, owned by no {@link PointerScope}: growth can happen inside a
     * forward's scope, whose closing must not free them.
     */
    private Tables build(int positions) {
        Tensor c;
        Tensor signed;
        try (PointerScope scope = new PointerScope()) {
            Tensor inv = org.bytedeco.pytorch.global.torch.tensor(invFreq);
            Tensor pos = arange(new org.bytedeco.pytorch.Scalar(positions), new TensorOptions(ScalarType.Float));
            Tensor freqs = outer(pos, inv);                                    // [P, d/2], float32 like HF
            Tensor emb = cat(new org.bytedeco.pytorch.TensorVector(freqs, freqs), 1);   // [P, d]
            c = emb.cos();
            Tensor s = freqs.sin();
            if (scale != 1.0) {
                c = c.mul(new org.bytedeco.pytorch.Scalar(scale));
                s = s.mul(new org.bytedeco.pytorch.Scalar(scale));
            }
            signed = cat(new org.bytedeco.pytorch.TensorVector(s.neg(), s), 1);          // [P, d], first half negated
            c.retainReference();
            signed.retainReference();
        }
        return new Tables(c, signed, positions);
    }

    /** Tables covering positions {@code 0..end-1} (end at most the maximum, checked by the caller). */
    private Tables cover(long end) {
        Tables t = tables;
        if (end <= t.positions()) {
            return t;
        }
        synchronized (this) {
            t = tables;
            if (end > t.positions()) {
                long want = Math.max(end, 2L * t.positions());
                t = build((int) Math.min(want, maxPositions));
                tables = t;     // the old tables stay valid for a forward still using them; the GC frees them
            }
            return t;
        }
    }

    public int maxPositions() {
        return maxPositions;
    }

    /**
     * cos and signed sin (first half negated, see {@link #apply}) for positions {@code start..start+t-1}, shaped
     * {@code [1, 1, t, d]} to broadcast over batch and heads.
     */
    public Tensor[] range(long start, long t) {
        checkRange(start + t);
        Tables tb = cover(start + t);
        return new Tensor[] {tb.cos().narrow(0, start, t).unsqueeze(0).unsqueeze(0),
            tb.sin().narrow(0, start, t).unsqueeze(0).unsqueeze(0)};
    }

    /** cos and signed sin for per-row positions {@code [B, t]} (left-padded batches), shaped {@code [B, 1, t, d]}. */
    public Tensor[] gather(Tensor positions, long maxPosition) {
        checkRange(maxPosition + 1);
        Tables tb = cover(maxPosition + 1);
        long b = positions.size(0);
        long t = positions.size(1);
        Tensor flat = positions.reshape(-1);
        return new Tensor[] {
            tb.cos().index_select(0, flat).view(b, 1, t, -1),
            tb.sin().index_select(0, flat).view(b, 1, t, -1)};
    }

    private void checkRange(long end) {
        if (end > maxPositions) {
            throw new dev.calm4j.Calm4jException("sequence position " + (end - 1) + " exceeds max_position_embeddings ("
                    + maxPositions + ")");
        }
    }

    /**
     * {@code x * cos + rotate_half(x) * sin}, with {@code rotate_half(x) = cat(-x2, x1)}; x is {@code [B, H, T, d]}.
     * {@code signedSin} is sin with its first half negated (as {@link #range} and {@link #gather} return it), so
     * {@code rotate_half(x) * sin = cat(x2, x1) * signedSin}: three passes over x (multiply, swap the halves,
     * multiply-add in place) instead of five (negate, concatenate, two multiplies, add).
     */
    public static Tensor apply(Tensor x, Tensor cos, Tensor signedSin) {
        long half = x.size(-1) / 2;
        Tensor swapped = cat(new org.bytedeco.pytorch.TensorVector(x.narrow(-1, half, half), x.narrow(-1, 0, half)), -1);
        return x.mul(cos).addcmul_(swapped, signedSin);
    }

    /**
     * Rotary embedding of the first {@code cos.size(-1)} coordinates of each head only, the rest passed through
     * (HF's {@code partial_rotary_factor}: {@code cat(rotate(x[..., :r]), x[..., r:])}); the whole head when the
     * tables are as wide as it.
     */
    public static Tensor applyPartial(Tensor x, Tensor cos, Tensor signedSin) {
        long r = cos.size(-1);
        long d = x.size(-1);
        if (r == d) {
            return apply(x, cos, signedSin);
        }
        return cat(new org.bytedeco.pytorch.TensorVector(apply(x.narrow(-1, 0, r), cos, signedSin), x.narrow(-1, r, d - r)), -1);
    }

    /** The cos table as built so far ({@code [positions, width]}). */
    public Tensor cosTable() {
        return tables.cos();
    }

    @Override
    public void close() {
        Tables t = tables;
        t.cos().close();
        t.sin().close();
    }
}
