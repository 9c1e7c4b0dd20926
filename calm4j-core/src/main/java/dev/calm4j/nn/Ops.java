package dev.calm4j.nn;

import org.bytedeco.pytorch.DoubleOptional;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.global.torch.ScalarType;

import static org.bytedeco.pytorch.global.torch.layer_norm;
import static org.bytedeco.pytorch.global.torch.rms_norm;
import static org.bytedeco.pytorch.global.torch.scaled_dot_product_attention;
import static org.bytedeco.pytorch.global.torch.silu;
import static org.bytedeco.pytorch.global.torch.softmax;

/** The handful of layer functions every model family shares. Pure functions of tensors; no state. */
public final class Ops {
    private Ops() {}

    /**
     * {@code x W^T + b} for {@code x [..., in]}, {@code W [out, in]}, {@code b [out]} or null.
     *
     * <p>Why the branch: OpenBLAS's sgemm with one row runs at ~9 GFLOP/s, while {@code mv} (gemv) runs at ~60
     * (measured on the machines this was written on), and one-row linears are all that decoding does. Autograd is identical.
     */
    public static Tensor linear(Tensor x, Tensor w, Tensor b) {
        ScalarType xt = x.scalar_type().intern();
        if (xt != w.scalar_type().intern()) {
            // bf16-mixed: weights stored in bf16, activations in float32. The matmul runs in the weights' dtype (the
            // fast kernels), its output comes back to float32, where the residual stream adds it without rounding.
            return plainLinear(x.to(w.scalar_type()), w, b).to(xt);
        }
        return plainLinear(x, w, b);
    }

    private static Tensor plainLinear(Tensor x, Tensor w, Tensor b) {
        long in = w.size(1);
        // Not for bf16 weights: there libtorch's one-row matmul (oneDNN) beats its bf16 gemv (a 110M Llama decoding
        // in bf16: 16.7-19.4 against 16.4-17.9 tokens/s, three interleaved runs each).
        if (x.numel() == in && x.dim() >= 1 && w.scalar_type().intern() != ScalarType.BFloat16) {
            long[] outShape = x.sizes().vec().get();
            outShape[outShape.length - 1] = w.size(0);
            Tensor y = w.mv(x.reshape(in));
            if (b != null) {
                y = y.add(b);
            }
            return y.reshape(outShape);
        }
        return b == null ? org.bytedeco.pytorch.global.torch.linear(x, w)
                : org.bytedeco.pytorch.global.torch.linear(x, w, new TensorOptional(b));
    }

    /**
     * {@code x W^T + b} for a {@code W} whose rows are several projections' stacked ({@code [sizes[0] + sizes[1] + ...,
     * in]}), split back into one tensor per projection ({@code [..., sizes[j]]}, views of one result). The same
     * numbers as one {@link #linear} per projection up to the matmul's summation order; in the backward pass the
     * parts' gradients are concatenated once (split's backward) and the input gradient is one matmul.
     */
    public static Tensor[] linearSplit(Tensor x, Tensor w, Tensor b, long... sizes) {
        org.bytedeco.pytorch.TensorVector parts = linear(x, w, b).split(sizes, -1);
        Tensor[] out = new Tensor[sizes.length];
        for (int j = 0; j < sizes.length; j++) {
            out[j] = parts.get(j);
        }
        return out;
    }

    /** RMSNorm over the last dimension: {@code x / sqrt(mean(x^2) + eps) * w} (libtorch's fused kernel). */
    public static Tensor rmsNorm(Tensor x, Tensor w, double eps) {
        return rms_norm(x, new long[] {x.size(-1)}, new TensorOptional(like(w, x)), new DoubleOptional(eps));
    }

    /** LayerNorm over the last dimension with a weight and a bias: {@code (x - mean) / sqrt(var + eps) * w + b}. */
    public static Tensor layerNorm(Tensor x, Tensor w, Tensor b, double eps) {
        return layer_norm(x, new long[] {x.size(-1)}, new TensorOptional(like(w, x)), new TensorOptional(like(b, x)), eps,
                false);
    }

    /** A norm's weight in the dtype of what it normalises: the same tensor unless bf16 weights meet float32 states. */
    private static Tensor like(Tensor w, Tensor x) {
        return w == null || w.scalar_type().intern() == x.scalar_type().intern() ? w : w.to(x.scalar_type());
    }

    /**
     * GELU: with {@code tanh}, the tanh approximation {@code 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))} (HF's
     * {@code gelu_new}, GPT-2's); without, the exact {@code x Phi(x)} (HF's {@code gelu}).
     */
    public static Tensor gelu(Tensor x, boolean tanh) {
        return tanh ? org.bytedeco.pytorch.global.torch.gelu(x, "tanh") : org.bytedeco.pytorch.global.torch.gelu(x);
    }

    /** SwiGLU feed-forward: {@code down(silu(gate(x)) * up(x))}. */
    public static Tensor swiGlu(Tensor x, Tensor gate, Tensor gateB, Tensor up, Tensor upB, Tensor down, Tensor downB) {
        return linear(silu(linear(x, gate, gateB)).mul(linear(x, up, upB)), down, downB);
    }

    /**
     * {@link #swiGlu} with gate's and up's rows stacked in one weight {@code [2 ff, in]} (gate first), and their biases
     * likewise (or null): one matmul for both.
     */
    public static Tensor swiGluFused(Tensor x, Tensor gateUp, Tensor gateUpB, Tensor down, Tensor downB) {
        long ff = gateUp.size(0) / 2;
        Tensor[] gu = linearSplit(x, gateUp, gateUpB, ff, ff);                           // [..., ff] each
        return linear(silu(gu[0]).mul(gu[1]), down, downB);
    }

    /**
     * {@code softmax(q k^T / sqrt(d) + mask) v} for {@code q [B, H, T, d]} and {@code k, v [B, H_kv, S, d]}, by
     * libtorch's fused SDPA kernel.
     *
     * @param mask boolean, broadcastable to {@code [B, H, T, S]}, true = may attend; or null
     * @param causal the plain causal mask (query i sees keys 0..i)
     * @param gqa {@code H_kv} divides {@code H}: key/value head {@code h / (H / H_kv)} serves query head h
     *
     * <p>Reduced precision (bf16/fp16) runs the kernel in fp32 and casts the result back: libtorch 2.10's CPU SDPA
     * in bf16 took 376 ms forward on the bench shapes (B 8, H 8, T 256, d 64) against 18 ms in fp32 (docs/performance.md);
     * the casts of q, k, v and the output are cheap next to either, and the softmax is the more accurate for it. On a
     * CPU with AVX512_BF16 (Zen 5, 2026-12-07) it is still so: at B 4 bf16 SDPA took 320 ms of CPU against 10 ms for
     * this path, and attention written out as bf16 matmuls with an fp32 softmax 14-21 ms forward and 30-47 ms with
     * its backward against 30-33 ms.
     * The kernel runs with OpenBLAS single-threaded ({@link dev.calm4j.Torch#withSingleThreadedBlas}): it calls sgemm
     * once per small block, and a two-thread OpenBLAS pool made it 5-20x slower on the 2-core machine.
     */
    public static Tensor attention(Tensor q, Tensor k, Tensor v, Tensor mask, boolean causal, boolean gqa) {
        return attention(q, k, v, mask, causal, gqa, Double.NaN);
    }

    /**
     * As {@link #attention(Tensor, Tensor, Tensor, Tensor, boolean, boolean)}, with the scores scaled by {@code scale}
     * instead of {@code 1/sqrt(d)} (NaN = that default), for families that scale otherwise (Gemma:
     * {@code query_pre_attn_scalar^-0.5}; GPT-2 without {@code scale_attn_weights}, or by the inverse layer index).
     */
    public static Tensor attention(Tensor q, Tensor k, Tensor v, Tensor mask, boolean causal, boolean gqa, double scale) {
        ScalarType dtype = q.scalar_type().intern();
        boolean reduced = dtype == ScalarType.BFloat16 || dtype == ScalarType.Half;
        if (reduced) {
            q = q.to(ScalarType.Float);
            k = k.to(ScalarType.Float);
            v = v.to(ScalarType.Float);
        }
        Tensor qf = q;
        Tensor kf = k;
        Tensor vf = v;
        Tensor a = dev.calm4j.Torch.withSingleThreadedBlas(() -> scaled_dot_product_attention(qf, kf, vf,
                mask == null ? new TensorOptional() : new TensorOptional(mask), 0.0, causal,
                Double.isNaN(scale) ? new DoubleOptional() : new DoubleOptional(scale), gqa));
        dev.calm4j.Torch.singleThreadedBlasInBackward(a, qf, kf, vf);
        return reduced ? a.to(dtype) : a;
    }

    /**
     * Attention with soft-capped scores, written out (SDPA has no cap): {@code s = cap * tanh(scale q k^T / cap)},
     * masked keys to -inf, softmax in float32, times v. Gemma 2 caps at 50 to keep its logits bounded; the cap sits
     * between the scaling and the mask, where no fused kernel can put it. Reduced precision (bf16/fp16) is computed
     * in float32 and cast back, as {@link #attention} does.
     *
     * @param q {@code [B, H, T, d]}
     * @param k keys {@code [B, H_kv, S, d]}, {@code H_kv} dividing {@code H} (query head h reads key head
     *          {@code h / (H / H_kv)}, as HF's {@code repeat_kv})
     * @param v values, same shape as k
     * @param mask boolean, broadcastable to {@code [B, H, T, S]}, true = may attend; every row must allow a key; or
     *             null for none
     * @return {@code [B, H, T, d]}
     */
    public static Tensor softcappedAttention(Tensor q, Tensor k, Tensor v, Tensor mask, double scale, double cap) {
        ScalarType dtype = q.scalar_type().intern();
        boolean reduced = dtype == ScalarType.BFloat16 || dtype == ScalarType.Half;
        if (reduced) {
            q = q.to(ScalarType.Float);
            k = k.to(ScalarType.Float);
            v = v.to(ScalarType.Float);
        }
        long groups = q.size(1) / k.size(1);
        if (groups > 1) {                                          // [B, H_kv, S, d] -> [B, H, S, d]
            k = k.repeat_interleave(groups, new org.bytedeco.pytorch.LongOptional(1), new org.bytedeco.pytorch.LongOptional());
            v = v.repeat_interleave(groups, new org.bytedeco.pytorch.LongOptional(1), new org.bytedeco.pytorch.LongOptional());
        }
        Tensor s = q.matmul(k.transpose(2, 3)).mul(new Scalar(scale));                      // [B, H, T, S]
        s = s.div(new Scalar(cap)).tanh().mul(new Scalar(cap));
        if (mask != null) {
            s = s.masked_fill(mask.logical_not(), new Scalar(Double.NEGATIVE_INFINITY));
        }
        Tensor a = softmax(s, -1).matmul(v);                                                  // [B, H, T, d]
        return reduced ? a.to(dtype) : a;
    }

    /**
     * GELU-gated feed-forward with the tanh approximation (HF {@code gelu_pytorch_tanh}):
     * {@code down(gelu(gate(x)) * up(x))}.
     */
    public static Tensor geluTanhGlu(Tensor x, Tensor gate, Tensor up, Tensor down) {
        return linear(gelu(linear(x, gate, null), true).mul(linear(x, up, null)), down, null);
    }

    /** {@code [B, T, H*d] -> [B, H, T, d]}. */
    public static Tensor splitHeads(Tensor x, int heads) {
        return x.view(x.size(0), x.size(1), heads, -1).transpose(1, 2);
    }

    /** {@code [B, H, T, d] -> [B, T, H*d]}. */
    public static Tensor mergeHeads(Tensor x) {
        return x.transpose(1, 2).reshape(x.size(0), x.size(2), x.size(1) * x.size(3));
    }
}
