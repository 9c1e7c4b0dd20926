package dev.calm4j.compose;

import dev.calm4j.nn.Ops;
import org.bytedeco.pytorch.Generator;
import org.bytedeco.pytorch.GeneratorOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.LinkedHashMap;
import java.util.Map;

import static org.bytedeco.pytorch.global.torch.cat;
import static org.bytedeco.pytorch.global.torch.full;
import static org.bytedeco.pytorch.global.torch.ones;
import static org.bytedeco.pytorch.global.torch.rand;
import static org.bytedeco.pytorch.global.torch.where;
import static org.bytedeco.pytorch.global.torch.zeros;

/**
 * One CALM bridge (paper §3, docs/design.md §3): a projection of the augment's layer states to the anchor's width, then
 * multi-head cross-attention with the anchor's hidden state as query, added residually.
 *
 * <pre>
 *   P = proj(H_A)                 Linear(D_A -> D_B, bias)        [B, S, D_B]
 *   K = k(P), V = v(P)            Linear(D_B -> D_B)              split into heads
 *   Q = q(H_B)                    Linear(D_B -> D_B)
 *   H_B <- H_B + o(attn(Q, K, V, mask))                           o starts at zero: identity at init
 * </pre>
 * With the recency bias ({@link #recency()}, an option; off in the paper's method) every head's scores get a fixed,
 * parameter-free penalty growing with how many visible augment tokens lie after the key (ALiBi's linear bias, Press et
 * al. 2022, with its slopes {@code 2^(-8(h+1)/H)}), so that a head can find the latest augment token without
 * positions. Why: cross-attention has no positions, and an augment that reads the text through its own tokenizer has
 * tokens that end where the anchor's do not, so the latest one (which holds the augment's guess at what comes next)
 * can only be found by content. In the language experiment's probe (experiments/language/REPORT.md) the bias closed
 * most of the gap between plain cross-attention and reading the latest augment token exactly.
 * Tensors are stored PyTorch-style ({@code [out, in]}) under the checkpoint names {@code proj.weight},
 * {@code proj.bias}, {@code q.weight}, {@code k.weight}, {@code v.weight}, {@code o.weight}.
 */
public final class Bridge implements AutoCloseable {
    public static final String[] NAMES = {"proj.weight", "proj.bias", "q.weight", "k.weight", "v.weight", "o.weight"};

    private final Tensor projW;   // [D_B, D_A]
    private final Tensor projB;   // [D_B]
    private final Tensor q;       // [D_B, D_B]
    private final Tensor k;
    private final Tensor v;
    private final Tensor o;
    private final int heads;
    private final boolean recency;

    private Bridge(Map<String, Tensor> t, int heads, boolean recency) {
        this.projW = t.get("proj.weight");
        this.projB = t.get("proj.bias");
        this.q = t.get("q.weight");
        this.k = t.get("k.weight");
        this.v = t.get("v.weight");
        this.o = t.get("o.weight");
        this.heads = heads;
        this.recency = recency;
    }

    /**
     * A fresh bridge: PyTorch's {@code nn.Linear} default init (uniform in +-1/sqrt(fan_in)) for proj, k, v; {@code q = 0}
     * (uniform attention at first, see below); and {@code o = 0}, so the untrained composition is exactly the anchor (invariant 1).
     */
    public static Bridge init(int dAugment, int dAnchor, int heads, Generator g, ScalarType dtype) {
        return init(dAugment, dAnchor, heads, 0, false, g, dtype);
    }

    /**
     * As {@link #init(int, int, int, Generator, ScalarType)}, with {@code q} drawn from {@code nn.Linear}'s init scaled
     * by {@code queryInit} (0: zeros). {@code o = 0} either way, so the composition still starts as the anchor.
     * Why a small random {@code q}: from {@code q = 0} every head attends uniformly and all heads start alike; a tenth
     * of the default scale gives each head its own soft pattern (logits of order 1 for block outputs of RMS 3-10). In
     * the key-value job it turned a run that missed the bridges' drop in loss within 1,000 steps (9 % on held-out keys)
     * into one that reached it (83 %), and was neutral to positive on others (experiments/kv-arithmetic/HISTORY.md).
     */
    public static Bridge init(int dAugment, int dAnchor, int heads, double queryInit, Generator g, ScalarType dtype) {
        return init(dAugment, dAnchor, heads, queryInit, false, g, dtype);
    }

    /** As {@link #init(int, int, int, double, Generator, ScalarType)}, with or without the recency bias. */
    public static Bridge init(int dAugment, int dAnchor, int heads, double queryInit, boolean recency, Generator g,
                              ScalarType dtype) {
        checkHeads(dAnchor, heads);
        if (!(queryInit >= 0 && queryInit <= 1)) {
            throw new dev.calm4j.Calm4jException("bridge query init: expected a scale in [0, 1], got " + queryInit);
        }
        Map<String, Tensor> t = new LinkedHashMap<>();
        t.put("proj.weight", uniform(new long[] {dAnchor, dAugment}, dAugment, g, dtype));
        t.put("proj.bias", uniform(new long[] {dAnchor}, dAugment, g, dtype));
        // q starts at zero, so every query starts attending uniformly over the augment positions it may see. With
        // nn.Linear's init, the attention logits scale with |H_B| * |H_A|, and block outputs (unnormalised residual
        // streams, RMS 3-10 in the KV experiment's models, far more in large LMs) put them at ~10: one-hot attention on
        // random positions and a vanishing softmax gradient, which kept bridges from fitting even their training data.
        // q = 0 draws nothing, so a seed gives the same k and v as before queryInit existed.
        t.put("q.weight", queryInit == 0 ? zeros(new long[] {dAnchor, dAnchor}, new TensorOptions(dtype))
                : uniform(new long[] {dAnchor, dAnchor}, dAnchor, g, dtype).mul(new org.bytedeco.pytorch.Scalar(queryInit)));
        t.put("k.weight", uniform(new long[] {dAnchor, dAnchor}, dAnchor, g, dtype));
        t.put("v.weight", uniform(new long[] {dAnchor, dAnchor}, dAnchor, g, dtype));
        t.put("o.weight", zeros(new long[] {dAnchor, dAnchor}, new TensorOptions(dtype)));
        return new Bridge(t, heads, recency);
    }

    /** A bridge from stored tensors (names as in {@link #NAMES}); shapes must already be checked. */
    public static Bridge of(Map<String, Tensor> tensors, int heads) {
        return new Bridge(tensors, heads, false);
    }

    /** As {@link #of(Map, int)}, with or without the recency bias. */
    public static Bridge of(Map<String, Tensor> tensors, int heads, boolean recency) {
        return new Bridge(tensors, heads, recency);
    }

    static void checkHeads(int dAnchor, int heads) {
        if (heads <= 0 || dAnchor % heads != 0) {
            throw new dev.calm4j.Calm4jException("bridge heads (" + heads + ") must divide the anchor hidden size ("
                    + dAnchor + ")");
        }
    }

    private static Tensor uniform(long[] shape, long fanIn, Generator g, ScalarType dtype) {
        double bound = 1.0 / Math.sqrt(fanIn);
        Tensor u = rand(shape, new GeneratorOptional(g), new TensorOptions(ScalarType.Float));   // [0, 1)
        Tensor x = u.mul(new org.bytedeco.pytorch.Scalar(2 * bound)).sub(new org.bytedeco.pytorch.Scalar(bound));
        return dtype == ScalarType.Float ? x : x.to(dtype);
    }

    /** Keys and values from augment states: {@code H_A [B, S, D_A] -> K, V [B, heads, S, D_B/heads]}. */
    public Tensor[] keysValues(Tensor augmentStates) {
        Tensor p = Ops.linear(augmentStates, as(projW, augmentStates), as(projB, augmentStates));   // [B, S, D_B]
        if (p.numel() == p.size(-1)) {                    // one position (decoding): two matrix-vector products
            return new Tensor[] {Ops.splitHeads(Ops.linear(p, as(k, p), null), heads),
                    Ops.splitHeads(Ops.linear(p, as(v, p), null), heads)};
        }
        // k's and v's rows stacked, so that both are one matmul; the stacking is redone each call (2 D_B^2 values,
        // little next to the matmul) because k and v are trained, and cat passes their gradients back.
        long d = k.size(0);
        Tensor[] kv = Ops.linearSplit(p, as(cat(new TensorVector(k, v), 0), p), null, d, d);   // [B, S, D_B] each
        return new Tensor[] {Ops.splitHeads(kv[0], heads), Ops.splitHeads(kv[1], heads)};
    }

    /**
     * {@code H_B + o(attn(q(H_B), K, V))} for anchor states {@code [B, T, D_B]} and keys/values from
     * {@link #keysValues}; {@code mask} is boolean, broadcastable to {@code [B, heads, T, S]} (true = may attend). An
     * anchor position that may see no augment position ({@link CrossMask#visible} false) gets no contribution: zero,
     * never the NaN of a softmax over nothing.
     */
    public Tensor apply(Tensor anchorStates, Tensor keys, Tensor values, CrossMask mask) {
        Tensor qh = Ops.splitHeads(Ops.linear(anchorStates, as(q, anchorStates), null), heads);   // [B, H, T, hd]
        Tensor a = recency
                ? Ops.attention(qh, keys, values, recencyBias(mask, qh.size(2), keys.size(2), heads), false, false)
                : Ops.attention(qh, keys, values, mask.mask(), mask.causal(), false);     // [B, H, T, hd]
        if (mask.visible() != null) {
            a = a.mul(mask.visible().to(a.scalar_type()));                                 // [B, 1, T, 1]: 0 or 1
        }
        return anchorStates.add(Ops.linear(Ops.mergeHeads(a), as(o, anchorStates), null));   // [B, T, D_B]
    }

    /**
     * The dtype trainable tensors are kept in when the models compute in {@code compute}: float32, or float64 for
     * models in float64 (gradient checks).
     */
    public static ScalarType masterDtype(ScalarType compute) {
        return compute.intern() == ScalarType.Double ? ScalarType.Double : ScalarType.Float;
    }

    /**
     * Weight {@code w} in the dtype of the states it multiplies. A bridge's tensors are its master weights, kept in
     * float32 whatever the models compute in ({@link #masterDtype}): under bf16 compute the bridge multiplies in bf16,
     * the cast passes the gradient back in float32, and AdamW updates float32 tensors, so steps smaller than bf16's 8
     * bits of mantissa are not rounded away. In float32 it is {@code w} itself.
     */
    private static Tensor as(Tensor w, Tensor states) {
        return w == null || w.scalar_type().intern() == states.scalar_type().intern() ? w : w.to(states.scalar_type());
    }

    /**
     * The recency bias as an additive float mask {@code [B|1, H, T, S]}: {@code -slope_h * n} where a query may see the
     * key, {@code n} being how many keys it may see after that one (0 for the latest), and {@code -inf} where it may
     * not. Counted over the keys the query may see, not over positions, so padding and another tokenizer's spans
     * change nothing, and a cached step's query (which sees every held key, {@link CrossMask#NONE}) gets what the same
     * position gets in the full forward.
     */
    static Tensor recencyBias(CrossMask mask, long t, long s, int heads) {
        Tensor allowed;                                                                   // bool, [.., T|1, S]
        if (mask.mask() != null) {
            allowed = mask.mask();
        } else if (mask.causal()) {
            allowed = ones(new long[] {t, s}, new TensorOptions(ScalarType.Bool)).tril();  // as SDPA's is_causal
        } else {
            allowed = ones(new long[] {1, s}, new TensorOptions(ScalarType.Bool));
        }
        while (allowed.dim() < 4) {
            allowed = allowed.unsqueeze(0);
        }
        Tensor after = allowed.to(ScalarType.Float).flip(new long[] {-1}).cumsum(-1).flip(new long[] {-1})
                .sub(new org.bytedeco.pytorch.Scalar(1.0));                               // [.., 1, T|1, S]
        float[] slopes = new float[heads];
        for (int h = 0; h < heads; h++) {
            slopes[h] = (float) -Math.pow(2, -8.0 * (h + 1) / heads);
        }
        Tensor bias = after.mul(dev.calm4j.nn.Tensors.floats(slopes, 1, heads, 1, 1));     // [.., H, T|1, S]
        Tensor never = full(new long[] {1}, new org.bytedeco.pytorch.Scalar(Float.NEGATIVE_INFINITY),
                new TensorOptions(ScalarType.Float));
        return where(allowed, bias, never);
    }

    public int heads() {
        return heads;
    }

    /** Whether the scores carry the recency bias (see the class comment). */
    public boolean recency() {
        return recency;
    }

    /** The bridge's tensors under their checkpoint names, in {@link #NAMES} order. */
    public Map<String, Tensor> named() {
        Map<String, Tensor> m = new LinkedHashMap<>();
        m.put("proj.weight", projW);
        m.put("proj.bias", projB);
        m.put("q.weight", q);
        m.put("k.weight", k);
        m.put("v.weight", v);
        m.put("o.weight", o);
        return m;
    }

    public long parameterCount() {
        return named().values().stream().mapToLong(Tensor::numel).sum();
    }

    /** Parameters of a bridge between widths D_A and D_B: proj (D_A*D_B + D_B) + q, k, v, o (4 D_B^2). */
    public static long parameterCount(long dAugment, long dAnchor) {
        return dAugment * dAnchor + dAnchor + 4 * dAnchor * dAnchor;
    }

    @Override
    public void close() {
        named().values().forEach(Tensor::close);
    }

    /**
     * Which augment positions each anchor query may see.
     *
     * @param mask boolean, broadcastable to {@code [B, heads, T, S]}, or null
     * @param causal let the kernel apply the plain causal mask (same sequence, no cache, no padding)
     * @param visible boolean {@code [B, 1, T, 1]}: whether each anchor position may see any augment position (where it
     *     may not, {@code mask} must still let it see one, whose result is then zeroed); null when every one may
     */
    public record CrossMask(Tensor mask, boolean causal, Tensor visible) {
        public static final CrossMask NONE = new CrossMask(null, false);

        public CrossMask(Tensor mask, boolean causal) {
            this(mask, causal, null);
        }
    }
}
