package dev.calm4j.compose;

import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.generate.CalmSession;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.Sampler;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.nn.Tensors;
import dev.calm4j.testing.TestModels;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import static org.bytedeco.pytorch.global.torch.randn;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** docs/design.md §3 invariants 1, 2, 4, 5, 6 for the composition (3 is in TrainLoopTest). */
class CalmInvariantsTest {
    @TempDir
    static Path tmp;
    static Path anchorDir;
    static Path augmentDir;
    static CausalLm anchor;
    static CausalLm augment;

    static final long[][] IDS = {{1, 5, 6, 7, 8, 9, 10, 11}, {1, 30, 31, 32, 33, 34, 35, 36}};

    @BeforeAll
    static void setUp() {
        Torch.init();
        anchorDir = TestModels.write(tmp.resolve("anchor"), TestModels.tinyLlama(), 21);
        augmentDir = TestModels.write(tmp.resolve("augment"), TestModels.tinyAugment(), 22);
        anchor = LmFamilies.load(anchorDir);
        augment = LmFamilies.load(augmentDir);
    }

    @AfterAll
    static void tearDown() {
        anchor.close();
        augment.close();
    }

    static CalmModel calm(Mode mode, String connections, boolean randomOutput) {
        CalmModel m = CalmModel.create(anchor, List.of(augment), new CompositionPlan(CompositionPlan.parse(connections)),
                mode, 4, 5);
        if (randomOutput) {
            perturb(m, 0.3);
        }
        return m;
    }

    /** Makes the bridges non-trivial (as if trained): W_O and the rest get random values. */
    static void perturb(CalmModel m, double std) {
        // Seeded: with the global generator the values (and so the logits' scale) depended on which tests ran first.
        org.bytedeco.pytorch.Generator g = org.bytedeco.pytorch.global.torch.createCPUGenerator(1234);
        try (NoGradGuard ng = new NoGradGuard()) {
            for (Tensor t : m.bridgeTensors().values()) {
                t.add_(randn(Tensors.shape(t), new org.bytedeco.pytorch.GeneratorOptional(g),
                        new org.bytedeco.pytorch.TensorOptions(org.bytedeco.pytorch.global.torch.ScalarType.Float))
                        .mul(new org.bytedeco.pytorch.Scalar(std)));
            }
        }
    }

    static List<CalmModel.AugmentPrompt> prompts(Mode mode) {
        if (mode == Mode.SAME_SEQUENCE) {
            return null;
        }
        long[] ids = {1, 12, 13, 14, 15, 1, 16, 17, 0, 0};
        boolean[] real = {true, true, true, true, true, true, true, true, false, false};
        return List.of(new CalmModel.AugmentPrompt(Tensors.longs(ids, 2, 5), Tensors.bools(real, 2, 5)));
    }

    static float[] logits(CalmModel m, long[][] ids, Mode mode) {
        try (NoGradGuard ng = new NoGradGuard()) {
            return Tensors.toFloats(m.forward(TestModels.ids(ids), null, prompts(mode), null));
        }
    }

    @Test
    void zeroInitBridgesAreExactlyTheAnchor() {
        float[] alone;
        try (NoGradGuard ng = new NoGradGuard()) {
            alone = Tensors.toFloats(anchor.forward(TestModels.ids(IDS)));
        }
        for (Mode mode : Mode.values()) {
            try (CalmModel m = calm(mode, "0->0,1->1,1->2", false)) {
                double d = TestModels.maxAbsDiff(alone, logits(m, IDS, mode));
                assertTrue(d < 1e-5, mode + ": untrained composition differs from the anchor by " + d);
            }
        }
    }

    @Test
    void randomQueriesAtInitStillGiveExactlyTheAnchor() {
        float[] alone;
        try (NoGradGuard ng = new NoGradGuard()) {
            alone = Tensors.toFloats(anchor.forward(TestModels.ids(IDS)));
        }
        CompositionPlan plan = new CompositionPlan(CompositionPlan.parse("0->0,1->2"));
        try (CalmModel zero = CalmModel.create(anchor, List.of(augment), plan, Mode.SAME_SEQUENCE, 4, 5);
             CalmModel same = CalmModel.create(anchor, List.of(augment), plan, Mode.SAME_SEQUENCE, 4, 0.0, 5);
             CalmModel random = CalmModel.create(anchor, List.of(augment), plan, Mode.SAME_SEQUENCE, 4, 0.1, 5)) {
            assertTrue(TestModels.maxAbsDiff(alone, logits(random, IDS, Mode.SAME_SEQUENCE)) < 1e-5, "W_O = 0 whatever q is");
            Tensor q = random.bridges().get(0).named().get("q.weight");
            double bound = 0.1 / Math.sqrt(anchor.hiddenSize());
            double max = q.abs().max().item_double();
            assertTrue(max > bound / 2 && max <= bound, "q drawn at a tenth of nn.Linear's bound " + bound + ", max " + max);
            // queryInit 0 is the old init, draw for draw: the same seed gives the same k and v.
            assertEquals(0.0, TestModels.maxAbsDiff(Tensors.toFloats(zero.bridges().get(1).named().get("k.weight")),
                    Tensors.toFloats(same.bridges().get(1).named().get("k.weight"))));
            assertEquals(0.0, same.bridges().get(0).named().get("q.weight").abs().max().item_double());
        }
        Calm4jException e = assertThrows(Calm4jException.class, () -> CalmModel.create(anchor, List.of(augment),
                plan, Mode.SAME_SEQUENCE, 4, 1.5, 5));
        assertTrue(e.getMessage().contains("query init"), e.getMessage());
    }

    @Test
    void bridgesChangeTheOutputOnceTrained() {
        try (CalmModel zero = calm(Mode.SAME_SEQUENCE, "1->1", false); CalmModel trained = calm(Mode.SAME_SEQUENCE, "1->1", true)) {
            assertTrue(TestModels.maxAbsDiff(logits(zero, IDS, Mode.SAME_SEQUENCE), logits(trained, IDS, Mode.SAME_SEQUENCE)) > 1e-2);
        }
    }

    @Test
    void noLookAhead() {
        for (boolean trained : new boolean[] {false, true}) {
            try (CalmModel m = calm(Mode.SAME_SEQUENCE, "0->0,1->2", trained)) {
                float[] base = logits(m, IDS, Mode.SAME_SEQUENCE);
                int t = IDS[0].length;
                int v = anchor.config().vocabSize();
                for (int change = 1; change < t; change++) {
                    long[][] ids = {IDS[0].clone(), IDS[1].clone()};
                    ids[0][change] = (ids[0][change] + 7) % v;
                    ids[1][change] = (ids[1][change] + 3) % v;
                    float[] other = logits(m, ids, Mode.SAME_SEQUENCE);
                    for (int b = 0; b < 2; b++) {
                        for (int pos = 0; pos < t; pos++) {
                            double d = 0;
                            for (int k = 0; k < v; k++) {
                                int i = (b * t + pos) * v + k;
                                d = Math.max(d, Math.abs(base[i] - other[i]));
                            }
                            if (pos < change) {
                                assertTrue(d < 1e-5, "trained=" + trained + ": changing token " + change
                                        + " moved logits at position " + pos + " by " + d);
                            } else if (pos == change && trained) {
                                assertTrue(d > 0, "the changed token itself must matter");
                            }
                        }
                    }
                }
            }
        }
    }

    @Test
    void cachedGenerationEqualsRecomputation() {
        for (Mode mode : Mode.values()) {
            try (CalmModel m = calm(mode, "0->0,1->1,1->2", true)) {
                List<long[]> prompts = List.of(new long[] {1, 5, 6, 7}, new long[] {1, 8});
                List<long[][]> aug = mode == Mode.SEPARATE_PROMPT
                        ? List.<long[][]>of(new long[][] {{1, 12, 13}, {1, 14, 15, 16, 17}}) : null;
                Generator.Options opt = new Generator.Options(10, Sampler.greedy(), Set.of(), true);
                Generator.Result a = Generator.generate((b, max) -> CalmSession.cached(m, b, max, aug), prompts,
                        anchor.config().vocabSize(), 128, opt, null);
                Generator.Result r = Generator.generate((b, max) -> CalmSession.recompute(m, b, aug), prompts,
                        anchor.config().vocabSize(), 128, opt, null);
                for (int row = 0; row < 2; row++) {
                    assertArrayEquals(r.generated().get(row), a.generated().get(row), mode + " row " + row);
                    for (int s = 0; s < a.stepLogits().size(); s++) {
                        double d = TestModels.maxAbsDiff(a.stepLogits().get(s)[row], r.stepLogits().get(s)[row]);
                        assertTrue(d < 1e-4, mode + " row " + row + " step " + s + ": cached vs recomputed " + d);
                    }
                }
                // Batch-row independence (invariant 6): the short row alone gives the same logits as in the batch.
                List<long[][]> aug1 = mode == Mode.SEPARATE_PROMPT ? List.<long[][]>of(new long[][] {{1, 14, 15, 16, 17}}) : null;
                Generator.Result alone = Generator.generate((b, max) -> CalmSession.cached(m, b, max, aug1),
                        List.of(prompts.get(1)), anchor.config().vocabSize(), 128, opt, null);
                assertArrayEquals(alone.generated().get(0), a.generated().get(1));
                for (int s = 0; s < alone.stepLogits().size(); s++) {
                    double d = TestModels.maxAbsDiff(alone.stepLogits().get(s)[0], a.stepLogits().get(s)[1]);
                    assertTrue(d < 1e-4, mode + " step " + s + ": padded row differs from the row alone by " + d);
                }
            }
        }
    }

    @Test
    void checkpointRoundTripAndMismatchRefusal() {
        Path dir = tmp.resolve("bridges");
        float[] want;
        try (CalmModel m = calm(Mode.SAME_SEQUENCE, "0->0,1->2", true)) {
            want = logits(m, IDS, Mode.SAME_SEQUENCE);
            CalmConfig cfg = new CalmConfig(m.mode(), m.heads(),
                    BridgeCheckpoint.describe(anchorDir, dir, anchor, dev.calm4j.io.ModelFingerprint.of(anchorDir)),
                    List.of(BridgeCheckpoint.describe(augmentDir, dir, augment, dev.calm4j.io.ModelFingerprint.of(augmentDir))),
                    m.plan().connections(), null);
            BridgeCheckpoint.save(dir, m, cfg);
        }
        try (BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(dir, null, null, false, ScalarType.Float)) {
            assertArrayEquals(want, logits(l.model(), IDS, Mode.SAME_SEQUENCE));
            assertEquals("../anchor", l.config().anchor().path());
        }
        // Another anchor (same shapes, other weights): refused, unless overridden.
        Path other = TestModels.write(tmp.resolve("other-anchor"), TestModels.tinyLlama(), 99);
        Calm4jException e = assertThrows(Calm4jException.class,
                () -> BridgeCheckpoint.load(dir, other, null, false, ScalarType.Float).close());
        assertTrue(e.getMessage().contains("different anchor") && e.getMessage().contains("--allow-mismatch"), e.getMessage());
        BridgeCheckpoint.load(dir, other, null, true, ScalarType.Float).close();
        // Swapped roles: shapes cannot fit, refused before anything is computed.
        e = assertThrows(Calm4jException.class, () -> BridgeCheckpoint.load(dir, augmentDir, List.of(anchorDir), true,
                ScalarType.Float).close());
        assertTrue(e.getMessage().contains("does not exist") || e.getMessage().contains("shape"), e.getMessage());
    }

    @Test
    void planDefaultsAndParsing() {
        assertEquals(List.of(new Connection(0, 3, 3), new Connection(0, 7, 7)), CompositionPlan.paperDefault(0, 8, 8));
        assertEquals(List.of(new Connection(0, 3, 7)), CompositionPlan.paperDefault(0, 4, 8));
        assertEquals(List.of(new Connection(0, 1, 1)), CompositionPlan.paperDefault(0, 2, 2));
        assertEquals(List.of(new Connection(0, 3, 5), new Connection(1, 2, 9)), CompositionPlan.parse("3->5, 1:2->9"));
        assertThrows(Calm4jException.class, () -> CompositionPlan.parse("3-5"));
        assertThrows(Calm4jException.class, () -> CompositionPlan.parse("a->1"));
        Calm4jException e = assertThrows(Calm4jException.class,
                () -> new CompositionPlan(CompositionPlan.parse("5->1")).validate(3, new int[] {2}));
        assertTrue(e.getMessage().contains("augment layer 5"), e.getMessage());
    }
}
