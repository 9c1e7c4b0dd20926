package dev.calm4j.lm;

import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch.ScalarType;

import static org.bytedeco.pytorch.global.torch.zeros;

/**
 * Keys and values of every self-attention layer of one model, preallocated to {@code maxLength} positions so a
 * decode step writes in place instead of concatenating. Each model owns its own cache; a composed model holds one
 * per model plus one per bridge (never a shared one: that is a known bug of the official CALM code).
 *
 * <p>Create it outside any {@code PointerScope}: it lives across decode steps and is freed by {@link #close()}.
 */
public final class KvCache implements AutoCloseable {
    private final Layer[] layers;
    private final int maxLength;

    public KvCache(int numLayers, long batch, long kvHeads, int maxLength, long headDim, ScalarType dtype) {
        this.maxLength = maxLength;
        this.layers = new Layer[numLayers];
        for (int i = 0; i < numLayers; i++) {
            layers[i] = new Layer(batch, kvHeads, maxLength, headDim, dtype);
        }
    }

    public Layer layer(int i) {
        return layers[i];
    }

    public int numLayers() {
        return layers.length;
    }

    /** Positions held (those of layer 0; all layers agree after a full forward). */
    public int length() {
        return layers[0].length;
    }

    public int maxLength() {
        return maxLength;
    }

    @Override
    public void close() {
        for (Layer l : layers) {
            l.k.close();
            l.v.close();
        }
    }

    /** One layer's keys and values, {@code [B, H_kv, maxLength, d]}, filled up to {@code length}. */
    public static final class Layer {
        private final Tensor k;
        private final Tensor v;
        private int length;

        Layer(long batch, long heads, int maxLength, long headDim, ScalarType dtype) {
            long[] shape = {batch, heads, maxLength, headDim};
            this.k = zeros(shape, new TensorOptions(dtype));
            this.v = zeros(shape, new TensorOptions(dtype));
        }

        public int length() {
            return length;
        }

        /** Views of the held keys and values, {@code [B, H_kv, length, d]}. */
        public Tensor[] held() {
            return new Tensor[] {k.narrow(2, 0, length), v.narrow(2, 0, length)};
        }

        /** Writes {@code [B, H_kv, t, d]} new keys/values after the held ones; returns views of all held ones. */
        public Tensor[] append(Tensor newK, Tensor newV) {
            long t = newK.size(2);
            if (length + t > k.size(2)) {
                throw new dev.calm4j.Calm4jException("KV cache full: " + length + " + " + t + " positions exceed its "
                        + k.size(2) + " (raise max length)");
            }
            if (newK.size(0) != k.size(0) || newK.size(1) != k.size(1) || newK.size(3) != k.size(3)) {
                throw new IllegalArgumentException("KV cache shape mismatch");
            }
            k.narrow(2, length, t).copy_(newK);
            v.narrow(2, length, t).copy_(newV);
            length += (int) t;
            return new Tensor[] {k.narrow(2, 0, length), v.narrow(2, 0, length)};
        }
    }
}
