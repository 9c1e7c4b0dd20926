package dev.calm4j.lm;

import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch.ScalarType;

import static org.bytedeco.pytorch.global.torch.zeros;

/**
 * Keys and values of every self-attention layer of one model, preallocated to {@code maxLength} positions so a
 * decode step writes in place instead of concatenating. Each model owns its own cache; a composed model holds one
 * per model plus one per bridge (never a shared one: that is a known bug of the official CALM code).
 *
 * <p>Decoding that re-reads a changed tail (an augment that re-tokenizes a growing text,
 * {@link dev.calm4j.generate.AlignedCalmSession}) drops the newest positions with {@link #truncate} and, since how many
 * tokens a text will give is not known in advance, may {@link Layer#reserve} room beyond the preallocated length.
 *
 * <p>Create it outside any {@code PointerScope}: it lives across decode steps and is freed by {@link #close()}.
 */
public final class KvCache implements AutoCloseable {
    private final Layer[] layers;

    /**
     * @param numLayers layers (self-attention layers of a model, or one per bridge)
     * @param maxLength positions preallocated per layer
     */
    public KvCache(int numLayers, long batch, long kvHeads, int maxLength, long headDim, ScalarType dtype) {
        this.layers = new Layer[numLayers];
        for (int i = 0; i < numLayers; i++) {
            layers[i] = new Layer(batch, kvHeads, maxLength, headDim, dtype);
        }
    }

    /** Layer {@code i}'s keys and values. */
    public Layer layer(int i) {
        return layers[i];
    }

    /** How many layers it holds. */
    public int numLayers() {
        return layers.length;
    }

    /** Positions held (those of layer 0; all layers agree after a full forward). */
    public int length() {
        return layers[0].length;
    }

    /** Positions every layer can hold without growing (the smallest capacity among them). */
    public int maxLength() {
        int m = Integer.MAX_VALUE;
        for (Layer l : layers) {
            m = Math.min(m, l.capacity());
        }
        return m;
    }

    /**
     * Keeps only the first {@code length} positions of every layer, so that decoding resumes after them: the next
     * append overwrites the rest.
     *
     * @throws IllegalArgumentException when {@code length} is negative or more than some layer holds
     */
    public void truncate(int length) {
        for (int i = 0; i < layers.length; i++) {
            if (length < 0 || length > layers[i].length) {
                throw new IllegalArgumentException("KV cache layer " + i + ": cannot keep " + length + " of its "
                        + layers[i].length + " positions");
            }
        }
        for (Layer l : layers) {
            l.length = length;
        }
    }

    @Override
    public void close() {
        for (Layer l : layers) {
            l.k.close();
            l.v.close();
        }
    }

    /** One layer's keys and values, {@code [B, H_kv, capacity, d]}, filled up to {@code length}. */
    public static final class Layer {
        private Tensor k;            // replaced, never resized in place, when reserve() grows it
        private Tensor v;
        private int length;

        Layer(long batch, long heads, int maxLength, long headDim, ScalarType dtype) {
            long[] shape = {batch, heads, maxLength, headDim};
            this.k = zeros(shape, new TensorOptions(dtype));
            this.v = zeros(shape, new TensorOptions(dtype));
        }

        /** Positions held. */
        public int length() {
            return length;
        }

        /** Positions it can hold before {@link #append} needs {@link #reserve}. */
        public int capacity() {
            return (int) k.size(2);
        }

        /**
         * Keeps only the first {@code length} positions; the next {@link #append} writes after them.
         *
         * @throws IllegalArgumentException when {@code length} is negative or more than it holds
         */
        public void truncate(int length) {
            if (length < 0 || length > this.length) {
                throw new IllegalArgumentException("KV cache layer: cannot keep " + length + " of its " + this.length
                        + " positions");
            }
            this.length = length;
        }

        /**
         * Makes room for at least {@code capacity} positions, keeping the held ones. It grows to at least twice its
         * capacity, so a sequence that keeps growing copies its cache O(log n) times, not at every step.
         *
         * @throws IllegalArgumentException when {@code capacity} is not positive
         */
        public void reserve(int capacity) {
            if (capacity <= 0) {
                throw new IllegalArgumentException("KV cache layer: capacity must be positive, got " + capacity);
            }
            if (capacity <= capacity()) {
                return;
            }
            long grown = Math.max(capacity, 2L * capacity());
            long[] shape = {k.size(0), k.size(1), grown, k.size(3)};
            Tensor nk;
            Tensor nv;
            // A scope of our own: whatever scope the caller decodes in must not free the cache when it closes. The
            // retained new storage outlives this scope and is released by close(), as the preallocated one is.
            try (PointerScope scope = new PointerScope()) {
                nk = zeros(shape, new TensorOptions(k.scalar_type()));
                nv = zeros(shape, new TensorOptions(v.scalar_type()));
                if (length > 0) {
                    nk.narrow(2, 0, length).copy_(k.narrow(2, 0, length));
                    nv.narrow(2, 0, length).copy_(v.narrow(2, 0, length));
                }
                nk.retainReference();
                nv.retainReference();
            }
            k.close();
            v.close();
            k = nk;
            v = nv;
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
