package dev.calm4j.train;

import dev.calm4j.Torch;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.Batch;
import dev.calm4j.data.Batcher;
import dev.calm4j.data.Example;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.nn.Tensors;
import dev.calm4j.testing.TestModels;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The frozen-state cache changes nothing but speed: the loss and every bridge gradient match a step that runs the
 * whole models, whether a row's states were computed in this batch or in another batch padded to another length.
 */
class FrozenStateCacheTest {
    @TempDir
    Path tmp;

    Path anchorDir;
    Path augDir;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    /** A tiny random anchor and augment, written as HF folders (every test composes these two). */
    @BeforeEach
    void models() {
        anchorDir = TestModels.write(tmp.resolve("anchor"), TestModels.tinyLlama(), 41);
        augDir = TestModels.write(tmp.resolve("augment"), TestModels.tinyAugment(), 42);
    }

    /** Rows of 3..9 tokens with 1-2 target tokens at the end; in separate-prompt mode a 2..6-token prompt of its own. */
    static List<Example> rows(int n, long seed, boolean prompts) {
        Random r = new Random(seed);
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int len = 3 + r.nextInt(7);
            long[] ids = new long[len];
            boolean[] target = new boolean[len];
            for (int j = 0; j < len; j++) {
                ids[j] = 1 + r.nextInt(40);
                target[j] = j >= len - 2;
            }
            long[] aug = null;
            if (prompts) {
                aug = new long[2 + r.nextInt(5)];
                for (int j = 0; j < aug.length; j++) {
                    aug[j] = 1 + r.nextInt(40);
                }
            }
            out.add(new Example(ids, target, aug, i + 1));
        }
        return out;
    }

    /** Bridges with every tensor random (fresh ones have W_O = 0: their output would not depend on the augment). */
    static void randomBridges(CalmModel calm, long seed) {
        Random r = new Random(seed);
        try (NoGradGuard ng = new NoGradGuard(); PointerScope s = new PointerScope()) {
            for (Tensor t : calm.bridgeTensors().values()) {
                float[] v = new float[(int) t.numel()];
                for (int i = 0; i < v.length; i++) {
                    v[i] = (float) (0.2 * r.nextGaussian());
                }
                t.copy_(Tensors.floats(v, Tensors.shape(t)));
            }
        }
    }

    record Step(double loss, Map<String, float[]> grads) {}

    static Step step(BridgeObjective obj, Batch b) {
        Map<String, Tensor> params = obj.parameters();
        params.values().forEach(p -> p.set_requires_grad(true));
        try (PointerScope s = new PointerScope()) {
            for (Tensor p : params.values()) {
                if (p.grad().defined()) {
                    p.grad().zero_();
                }
            }
            Tensor l = obj.lossSum(b);
            double loss = l.item_double();
            l.backward();
            Map<String, float[]> g = new java.util.LinkedHashMap<>();
            params.forEach((k, v) -> g.put(k, Tensors.toFloats(v.grad())));
            return new Step(loss, g);
        } finally {
            params.values().forEach(p -> p.set_requires_grad(false));
        }
    }

    static void assertSame(Step want, Step got, String what) {
        assertEquals(want.loss(), got.loss(), 1e-4 * Math.abs(want.loss()), what + ": loss");
        for (String k : want.grads().keySet()) {
            double diff = TestModels.maxAbsDiff(want.grads().get(k), got.grads().get(k));
            double scale = 1e-6;
            for (float x : want.grads().get(k)) {
                scale = Math.max(scale, Math.abs(x));
            }
            assertTrue(diff <= 1e-4 * scale, what + ": gradient of " + k + " differs by " + diff + " (scale " + scale + ")");
        }
    }

    void check(Mode mode) {
        boolean prompts = mode == Mode.SEPARATE_PROMPT;
        try (CausalLm anchor = LmFamilies.load(anchorDir); CausalLm aug = LmFamilies.load(augDir);
             CalmModel calm = compose(anchor, aug, "0->0,1->1", mode)) {
            randomBridges(calm, 5);
            BridgeObjective plain = new BridgeObjective(calm, anchorDir, List.of(augDir), (FrozenStateCache) null);
            BridgeObjective cached = new BridgeObjective(calm, anchorDir, List.of(augDir));
            assertEquals(null, plain.stateCache());
            List<Example> all = rows(12, 7, prompts);
            Batch first = Batch.of(all.subList(0, 8), Batcher.PAD_ID);
            // computed in this batch (every row a miss)
            assertSame(step(plain, first), step(cached, first), mode + ", rows computed now");
            assertEquals(16, cached.stateCache().misses());                    // 8 rows x (augment, anchor)
            // the same rows again, now from the cache
            assertSame(step(plain, first), step(cached, first), mode + ", rows from the cache");
            assertEquals(16, cached.stateCache().hits());
            // rows cached under one batch's padding, reused in a batch of another length, beside new rows
            List<Example> mixed = new ArrayList<>(all.subList(8, 12));
            mixed.add(all.get(0));
            mixed.add(all.get(3));
            Batch second = Batch.of(mixed, Batcher.PAD_ID);
            assertSame(step(plain, second), step(cached, second), mode + ", mixed batch");
            assertEquals(20, cached.stateCache().hits());
            assertEquals(24, cached.stateCache().misses());
            assertTrue(cached.stateCache().floats() > 0);
        }
    }

    /** The tests' composition: 4 heads, seed 3, over the given plan. */
    private static CalmModel compose(CausalLm anchor, CausalLm aug, String plan, Mode mode) {
        return CalmModel.create(anchor, List.of(aug), new CompositionPlan(CompositionPlan.parse(plan)), mode, 4, 3);
    }

    @Test
    void sameSequenceStepsMatchRunningTheAugment() {
        check(Mode.SAME_SEQUENCE);
    }

    @Test
    void separatePromptStepsMatchRunningTheAugment() {
        check(Mode.SEPARATE_PROMPT);
    }

    /** One cache shared by two compositions over the same base models (other bridges, other modes), from two threads. */
    @Test
    void oneCacheServesSeveralCompositionsOverTheSameModels() throws Exception {
        try (CausalLm anchor = LmFamilies.load(anchorDir); CausalLm aug = LmFamilies.load(augDir)) {
            CompositionPlan plan = new CompositionPlan(CompositionPlan.parse("1->1"));
            FrozenStateCache shared = new FrozenStateCache(FrozenStateCache.DEFAULT_BUDGET_FLOATS);
            List<Example> all = rows(10, 11, true);
            Batch b = Batch.of(all, Batcher.PAD_ID);
            java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(2);
            try {
                List<java.util.concurrent.Future<Void>> done = new ArrayList<>();
                for (long seed : new long[] {3, 4, 5, 6}) {
                    done.add(pool.submit(() -> {
                        Mode mode = seed % 2 == 0 ? Mode.SEPARATE_PROMPT : Mode.SAME_SEQUENCE;
                        try (CalmModel calm = CalmModel.create(anchor, List.of(aug), plan, mode, 4, seed)) {
                            randomBridges(calm, seed);
                            Step want = step(new BridgeObjective(calm, anchorDir, List.of(augDir), (FrozenStateCache) null), b);
                            BridgeObjective cached = new BridgeObjective(calm, anchorDir, List.of(augDir), shared);
                            assertSame(want, step(cached, b), "seed " + seed + ", first");
                            assertSame(want, step(cached, b), "seed " + seed + ", again");
                        }
                        return null;
                    }));
                }
                for (var f : done) {
                    f.get();
                }
            } finally {
                pool.shutdown();
            }
            // 8 steps of 10 rows, each looking up the anchor and the augment; each distinct (model, input) computed
            // once unless two threads missed it at the same moment: the anchor's 10 rows, the augment's 10 full rows
            // and its 10 prompts.
            assertEquals(8 * 10 * 2, shared.hits() + shared.misses());
            assertTrue(shared.misses() >= 30 && shared.misses() <= 60, "misses " + shared.misses());
        }
    }

    /** Prefilled, a cache serves every row of the data without computing any, and steps still match. */
    @Test
    void aPrefilledCacheServesEveryRowAndStepsStillMatch() {
        try (CausalLm anchor = LmFamilies.load(anchorDir); CausalLm aug = LmFamilies.load(augDir);
             CalmModel calm = compose(anchor, aug, "0->0,1->1", Mode.SAME_SEQUENCE)) {
            randomBridges(calm, 8);
            List<Example> all = rows(13, 12, false);
            FrozenStateCache cache = new FrozenStateCache(FrozenStateCache.DEFAULT_BUDGET_FLOATS);
            cache.prefill(calm, dev.calm4j.data.Dataset.of(all, "rows"), 5);        // batches of 5, 5 and 3 rows
            assertEquals(26, cache.misses());                                     // 13 rows x (augment, anchor)
            BridgeObjective plain = new BridgeObjective(calm, anchorDir, List.of(augDir), (FrozenStateCache) null);
            BridgeObjective cached = new BridgeObjective(calm, anchorDir, List.of(augDir), cache);
            Batch b = Batch.of(List.of(all.get(12), all.get(0), all.get(7), all.get(3)), Batcher.PAD_ID);
            assertSame(step(plain, b), step(cached, b), "prefilled");
            assertEquals(26, cache.misses(), "nothing computed after the prefill");
        }
    }

    @Test
    void aBudgetOfNothingCachesNothingAndStillGivesTheSameStep() {
        try (CausalLm anchor = LmFamilies.load(anchorDir); CausalLm aug = LmFamilies.load(augDir);
             CalmModel calm = compose(anchor, aug, "1->0", Mode.SAME_SEQUENCE)) {
            randomBridges(calm, 6);
            BridgeObjective plain = new BridgeObjective(calm, anchorDir, List.of(augDir), (FrozenStateCache) null);
            BridgeObjective tiny = new BridgeObjective(calm, anchorDir, List.of(augDir), new FrozenStateCache(1));
            Batch b = Batch.of(rows(6, 9, false), Batcher.PAD_ID);
            assertSame(step(plain, b), step(tiny, b), "budget 1");
            assertSame(step(plain, b), step(tiny, b), "budget 1, again");
            assertEquals(0, tiny.stateCache().floats());
            assertEquals(24, tiny.stateCache().misses());
        }
    }

    @Test
    void givenStatesOfTheWrongShapeAreRefusedBeforeLibtorch() {
        assertTrue(TestModels.tinyAugment().hiddenSize() != TestModels.tinyLlama().hiddenSize(), "the widths tell them apart");
        try (CausalLm anchor = LmFamilies.load(anchorDir); CausalLm aug = LmFamilies.load(augDir);
             CalmModel calm = compose(anchor, aug, "1->0", Mode.SAME_SEQUENCE);
             PointerScope s = new PointerScope()) {
            Tensor ids = TestModels.ids(new long[][] {{1, 2, 3}, {4, 5, 6}});
            Tensor wrong = Tensors.floats(new float[2 * 2 * aug.hiddenSize()], 2, 2, aug.hiddenSize());
            var e = assertThrows(IllegalArgumentException.class,
                    () -> calm.forwardGiven(ids, null, null, new CalmModel.Given(List.of(Map.of(1, wrong)), null)));
            assertTrue(e.getMessage().contains("layer 1") && e.getMessage().contains("[2, 3, "), e.getMessage());
            var missing = assertThrows(IllegalArgumentException.class,
                    () -> calm.forwardGiven(ids, null, null, new CalmModel.Given(List.of(Map.of(0, wrong)), null)));
            Tensor right = Tensors.floats(new float[2 * 3 * aug.hiddenSize()], 2, 3, aug.hiddenSize());
            var below = assertThrows(IllegalArgumentException.class,
                    () -> calm.forwardGiven(ids, null, null, new CalmModel.Given(List.of(Map.of(1, right)), right)));
            assertTrue(below.getMessage().contains("anchor block 0") && below.getMessage().contains(", " + anchor.hiddenSize() + "]"),
                    below.getMessage());
            assertTrue(missing.getMessage().contains("no states given for layer 1"), missing.getMessage());
        }
    }
}
