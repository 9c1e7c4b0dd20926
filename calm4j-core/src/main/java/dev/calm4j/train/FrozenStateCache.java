package dev.calm4j.train;

import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.Batch;
import dev.calm4j.data.Batcher;
import dev.calm4j.data.Dataset;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.nn.Tensors;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The states of every training row that no bridge influences, computed once instead of once per epoch: each augment's
 * connected layers, and the anchor's output of its lowest bridged block (blocks 0..that one run before any bridge adds
 * to the stream).
 *
 * <p>Why: the base models never change while bridges train, and a run sees its data many times (the KV job: 15,000
 * rows, 4 or more epochs), so recomputing these is pure waste. On that job a CALM step took 182 ms without the cache
 * and 117 with it, the same batches (docs/performance.md). Cached states are exact for right-padded rows: under causal
 * self-attention a real position's states do not depend on the padding after it (they agree with a fresh forward up
 * to the float rounding of differently shaped matmuls). Padding positions get zeros: only padding positions of the
 * anchor can see them (the cross mask is causal, or drops a separate prompt's padding), and no loss is taken there.
 *
 * <p>States are kept per frozen model (by instance) and layers, not per composition, so one cache can serve several
 * compositions over the same base models (the KV job's seeds of CALM and of its encoder control share one): each row
 * runs through each model once per job. It is safe to use from several training threads at once; for results that do
 * not depend on the threads' timing, {@link #prefill} it first.
 *
 * <p>States live on the Java heap, not as native tensors: the cache outlives every training step's
 * {@link PointerScope}, and the JVM frees it with its last user. They are packed into large float arrays (16 MiB each)
 * rather than one small array per row, so that the garbage collector has a few large objects to keep instead of tens
 * of thousands of small ones. A budget bounds the cache (rows past the budget are recomputed every time, as without a
 * cache).
 */
public final class FrozenStateCache {
    /**
     * The default budget: 1 GiB of cached floats, or a quarter of the JVM's maximum heap if that is less (the KV job's
     * shared cache holds ~300 MiB).
     */
    public static final long DEFAULT_BUDGET_FLOATS = Math.min(1L << 28, Runtime.getRuntime().maxMemory() / 16);
    private static final int CHUNK = 1 << 22;                       // floats per storage array (16 MiB)

    private final long budgetFloats;
    private final Map<Key, Source> sources = new HashMap<>();      // guarded by this
    private final List<float[]> chunks = new ArrayList<>();        // guarded by this
    private int used = CHUNK;                                       // floats used in the last chunk
    private long floats;
    private long hits;
    private long misses;

    public FrozenStateCache(long budgetFloats) {
        if (budgetFloats < 0) {
            throw new IllegalArgumentException("budget: expected >= 0 floats, got " + budgetFloats);
        }
        this.budgetFloats = budgetFloats;
    }

    /** A frozen model (by instance) and the layers cached from it; {@code below}: the anchor's lowest bridged block. */
    private record Key(IdentityOf model, List<Integer> layers, boolean below) {}

    /** Identity equality for a model, whatever its class's equals says. */
    private record IdentityOf(CausalLm model) {
        @Override
        public boolean equals(Object o) {
            return o instanceof IdentityOf i && i.model == model;
        }

        @Override
        public int hashCode() {
            return System.identityHashCode(model);
        }
    }

    /** One model's cached rows. */
    private static final class Source {
        final List<Integer> layers;           // ascending; for the anchor, its lowest bridged block
        final int width;
        final ScalarType dtype;
        final Map<Row, Slot> rows = new HashMap<>();      // guarded by the cache

        Source(List<Integer> layers, int width, ScalarType dtype) {
            this.layers = layers;
            this.width = width;
            this.dtype = dtype;
        }
    }

    /** How one source's states of a batch are computed: an augment's layers, or the anchor below the bridges. */
    @FunctionalInterface
    private interface Compute {
        Map<Integer, Tensor> states(Tensor ids);
    }

    /** Where a cached row's states are: {@code layers x n x width} floats from {@code offset} in one chunk. */
    private record Slot(float[] chunk, int offset) {}

    /** One input row: its real token ids (right padding stripped). */
    private record Row(long[] ids) {
        @Override
        public boolean equals(Object o) {
            return o instanceof Row r && Arrays.equals(ids, r.ids);
        }

        @Override
        public int hashCode() {
            return Arrays.hashCode(ids);
        }
    }

    /** The batch's frozen states for {@code calm}, as {@link CalmModel#forwardGiven} takes them. */
    public CalmModel.Given states(CalmModel calm, Batch b) {
        Row[] anchorRows = rows(b.inputs(), b.real(), b.rows(), b.length());
        Row[] augmentRows = anchorRows;
        int augmentLength = b.length();
        if (calm.mode() == Mode.SEPARATE_PROMPT) {
            if (b.augmentIds() == null) {
                throw new dev.calm4j.Calm4jException("separate_prompt training needs augment prompts in the data");
            }
            augmentRows = rows(b.augmentIds(), b.augmentReal(), b.rows(), b.augmentLength());
            augmentLength = b.augmentLength();
        }
        List<Map<Integer, Tensor>> augs = new ArrayList<>();
        for (int a = 0; a < calm.augments().size(); a++) {
            List<Integer> ls = calm.plan().augmentLayers(a);
            if (ls.isEmpty()) {
                augs.add(null);
                continue;
            }
            CausalLm m = calm.augments().get(a);
            int augment = a;
            augs.add(tensors(source(new Key(new IdentityOf(m), ls, false), m), augmentRows, augmentLength,
                    ids -> calm.augmentStates(augment, ids, null)));
        }
        int below = calm.lowestBridgedLayer();
        Source anchor = source(new Key(new IdentityOf(calm.anchor()), List.of(below), true), calm.anchor());
        Tensor h = tensors(anchor, anchorRows, b.length(), ids -> Map.of(below, calm.anchorBelow(ids, null))).get(below);
        return new CalmModel.Given(augs, h);
    }

    /**
     * Computes and caches the frozen states of every row of {@code data} for compositions like {@code calm} (the same
     * base model instances, plan and mode; its bridges play no part), in dataset order and batches of
     * {@code batchSize}. Why: a row's states round differently with the shape of the batch they are computed in, so a
     * cache that several runs fill as they go would give each run states that depend on which run met a row first,
     * and two runs at once would not be repeatable. Filled up front, every run reads the same states whatever the
     * timing (and larger batches compute them faster).
     */
    public void prefill(CalmModel calm, Dataset data, int batchSize) {
        for (Batch b : Batcher.sequential(data, batchSize)) {
            try (PointerScope scope = new PointerScope()) {
                states(calm, b);
            }
        }
    }

    private synchronized Source source(Key k, CausalLm m) {
        return sources.computeIfAbsent(k, x -> new Source(k.layers(), m.hiddenSize(), m.computeDtype()));
    }

    private static Row[] rows(long[] ids, boolean[] real, int rows, int len) {
        Row[] keys = new Row[rows];
        for (int r = 0; r < rows; r++) {
            int n = 0;
            while (n < len && real[r * len + n]) {
                n++;
            }
            keys[r] = new Row(Arrays.copyOfRange(ids, r * len, r * len + n));
        }
        return keys;
    }

    /** A source's states {@code [B, len, width]} per layer for the rows, zeros at the padding. */
    private Map<Integer, Tensor> tensors(Source s, Row[] keys, int len, Compute compute) {
        int layers = s.layers.size();
        float[][] flat = new float[layers][keys.length * len * s.width];     // zeros at the padding positions
        Map<Row, List<Integer>> missing = new LinkedHashMap<>();
        synchronized (this) {
            for (int r = 0; r < keys.length; r++) {
                Slot slot = s.rows.get(keys[r]);
                if (slot == null) {
                    missing.computeIfAbsent(keys[r], k -> new ArrayList<>()).add(r);
                    continue;
                }
                int n = keys[r].ids().length * s.width;
                for (int i = 0; i < layers; i++) {
                    System.arraycopy(slot.chunk(), slot.offset() + i * n, flat[i], r * len * s.width, n);
                }
            }
            int missed = missing.values().stream().mapToInt(List::size).sum();
            hits += keys.length - missed;
            misses += missed;
        }
        if (!missing.isEmpty()) {
            compute(s, missing, flat, len, compute);                        // outside the lock: other runs go on
        }
        Map<Integer, Tensor> m = new LinkedHashMap<>();
        for (int i = 0; i < layers; i++) {
            Tensor t = Tensors.floats(flat[i], keys.length, len, s.width);
            m.put(s.layers.get(i), s.dtype == ScalarType.Float ? t : t.to(s.dtype));
        }
        return m;
    }

    /** Runs the source's model over the rows not cached (one forward), fills their places in {@code flat}, caches them. */
    private void compute(Source s, Map<Row, List<Integer>> missing, float[][] flat, int len, Compute compute) {
        List<Row> todo = new ArrayList<>(missing.keySet());
        int t = Math.max(1, todo.stream().mapToInt(k -> k.ids().length).max().orElse(1));
        long[] ids = new long[todo.size() * t];
        Arrays.fill(ids, Batcher.PAD_ID);
        for (int i = 0; i < todo.size(); i++) {
            long[] row = todo.get(i).ids();
            System.arraycopy(row, 0, ids, i * t, row.length);
        }
        int layers = s.layers.size();
        float[][] computed = new float[layers][];
        try (PointerScope scope = new PointerScope(); NoGradGuard ng = new NoGradGuard()) {
            Map<Integer, Tensor> states = compute.states(Tensors.longs(ids, todo.size(), t));
            for (int i = 0; i < layers; i++) {
                computed[i] = Tensors.toFloats(states.get(s.layers.get(i)));  // [M * t * width]
            }
        }
        for (int j = 0; j < todo.size(); j++) {
            int n = todo.get(j).ids().length * s.width;
            for (int r : missing.get(todo.get(j))) {
                for (int i = 0; i < layers; i++) {
                    System.arraycopy(computed[i], j * t * s.width, flat[i], r * len * s.width, n);
                }
            }
        }
        synchronized (this) {
            for (int j = 0; j < todo.size(); j++) {
                Row k = todo.get(j);
                int n = k.ids().length * s.width;
                int size = layers * n;
                if (s.rows.containsKey(k) || floats + size > budgetFloats || size > CHUNK) {
                    continue;                                               // cached meanwhile, or no room
                }
                if (used + size > CHUNK) {
                    chunks.add(new float[CHUNK]);
                    used = 0;
                }
                float[] chunk = chunks.get(chunks.size() - 1);
                for (int i = 0; i < layers; i++) {
                    System.arraycopy(computed[i], j * t * s.width, chunk, used + i * n, n);
                }
                s.rows.put(k, new Slot(chunk, used));
                used += size;
                floats += size;
            }
        }
    }

    /** Row lookups served from the cache so far (each model's counted apart). */
    public synchronized long hits() {
        return hits;
    }

    /** Row lookups whose states had to be computed so far. */
    public synchronized long misses() {
        return misses;
    }

    /** Floats of cached states (4 bytes each; the storage arrays hold up to 16 MiB more). */
    public synchronized long floats() {
        return floats;
    }
}
