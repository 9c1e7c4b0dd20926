package dev.calm4j.lm;

import dev.calm4j.nn.Rotary;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.ScalarOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * The attention geometry of rotary decoders whose layers differ in their window (Qwen3's and SmolLM3's sliding
 * layers): {@link #causal} builds the full-attention context once per forward call, with the sliding layers' narrower
 * one beside it ({@link AttentionContext#sliding}, as Gemma's), so the record handed to every block stays one
 * {@link AttentionContext} and no block builds a mask.
 */
public final class CausalContexts {
    private CausalContexts() {}

    /**
     * Causal attention over {@code past} cached and {@code t} new positions, with the rotary cos/sin of their
     * positions (cast to {@code dtype}). Left-padded rows ({@code keyPadding}, true = real) get the positions HF's
     * {@code generate} gives them: the number of real tokens before each one. With {@code window > 0}, the sliding
     * layers' geometry ({@link #windowed}) rides along as {@link AttentionContext#sliding}.
     */
    public static AttentionContext causal(Rotary rotary, ScalarType dtype, long past, long t, Tensor keyPadding,
                                          int window) {
        Tensor mask = null;
        boolean causal = false;
        if (keyPadding != null || (t > 1 && past > 0)) {
            mask = AttentionContext.buildMask(past, t, keyPadding, 0);
        } else if (t > 1) {
            causal = true;                                    // plain causal, the kernel's fast path
        }
        Tensor[] cs;
        if (keyPadding == null) {
            cs = rotary.range(past, t);                       // [1, 1, T, hd]
        } else {
            Tensor positions = keyPadding.to(ScalarType.Long).cumsum(1).sub(new Scalar(1))
                    .clamp(new ScalarOptional(new Scalar(0)), new ScalarOptional())
                    .narrow(1, past, t);                      // [B, T]
            cs = rotary.gather(positions, past + t - 1);      // [B, 1, T, hd]
        }
        Tensor cos = dtype == ScalarType.Float ? cs[0] : cs[0].to(dtype);
        Tensor sin = dtype == ScalarType.Float ? cs[1] : cs[1].to(dtype);
        AttentionContext full = new AttentionContext(past, t, mask, causal, cos, sin);
        return window > 0 ? new AttentionContext(past, t, mask, causal, cos, sin, windowed(full, window)) : full;
    }

    /**
     * The geometry of a layer with a sliding window of {@code window} keys (a query sees itself and the
     * {@code window - 1} keys before it, HF's {@code kv_idx > q_idx - window}), derived from {@code ctx}, the
     * full-attention one: its mask (causal, padding) AND the window band, which is exactly
     * {@link AttentionContext#buildMask} with the window. {@code ctx} itself when the window cannot bite
     * ({@code window <= 0}, or no query has more than {@code window} keys).
     */
    public static AttentionContext windowed(AttentionContext ctx, int window) {
        long past = ctx.past();
        long t = ctx.length();
        if (window <= 0 || past + t <= window) {
            return ctx;
        }
        Tensor band = AttentionContext.buildMask(past, t, null, window);                 // [1, 1, T, past+T]
        Tensor mask = ctx.mask() == null ? band : ctx.mask().logical_and(band);
        return new AttentionContext(past, t, mask, false, ctx.cos(), ctx.sin());
    }
}
