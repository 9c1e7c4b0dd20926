package dev.calm4j.nn;

import org.bytedeco.pytorch.DoubleOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;

import static org.bytedeco.pytorch.global.torch.rms_norm;
import static org.bytedeco.pytorch.global.torch.silu;

/** The handful of layer functions every model family shares. Pure functions of tensors; no state. */
public final class Ops {
    private Ops() {}

    /**
     * {@code x W^T + b} for {@code x [..., in]}, {@code W [out, in]}, {@code b [out]} or null.
     *
     * <p>Why the branch: OpenBLAS's sgemm with one row runs at ~9 GFLOP/s, while {@code mv} (gemv) runs at ~60
     * (shared/reference/java-stack.md), and one-row linears are all that decoding does. Autograd is identical.
     */
    public static Tensor linear(Tensor x, Tensor w, Tensor b) {
        long in = w.size(1);
        if (x.numel() == in && x.dim() >= 1) {
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

    /** RMSNorm over the last dimension: {@code x / sqrt(mean(x^2) + eps) * w} (libtorch's fused kernel). */
    public static Tensor rmsNorm(Tensor x, Tensor w, double eps) {
        return rms_norm(x, new long[] {x.size(-1)}, new TensorOptional(w), new DoubleOptional(eps));
    }

    /** SwiGLU feed-forward: {@code down(silu(gate(x)) * up(x))}. */
    public static Tensor swiGlu(Tensor x, Tensor gate, Tensor gateB, Tensor up, Tensor upB, Tensor down, Tensor downB) {
        return linear(silu(linear(x, gate, gateB)).mul(linear(x, up, upB)), down, downB);
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
