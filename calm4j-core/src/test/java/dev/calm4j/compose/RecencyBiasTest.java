package dev.calm4j.compose;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
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

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The bridges' optional recency bias ({@link Bridge#recency()}): its values, the attention it gives against one
 * written out in double precision, and the composition's invariants with it (identity at init, nothing from the
 * future, cached decoding equal to the full forward, rows independent, the checkpoint keeping it).
 */
class RecencyBiasTest {
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

    static double slope(int h, int heads) {
        return Math.pow(2, -8.0 * (h + 1) / heads);
    }

    @Test
    void theBiasCountsTheVisibleKeysAfterEachKey() {
        boolean[] m = {true, false, true, true, false,     // query 0 sees keys 0, 2, 3
                       false, false, false, false, true};  // query 1 sees key 4 only
        float[] b = Tensors.toFloats(Bridge.recencyBias(new Bridge.CrossMask(Tensors.bools(m, 1, 1, 2, 5), false), 2, 5, 2));
        int[][] after = {{2, -1, 1, 0, -1}, {-1, -1, -1, -1, 0}};                      // -1: may not see
        for (int h = 0; h < 2; h++) {
            for (int t = 0; t < 2; t++) {
                for (int s = 0; s < 5; s++) {
                    float got = b[(h * 2 + t) * 5 + s];
                    if (after[t][s] < 0) {
                        assertEquals(Float.NEGATIVE_INFINITY, got, "head " + h + " query " + t + " key " + s);
                    } else {
                        assertEquals(-slope(h, 2) * after[t][s], got, 1e-7, "head " + h + " query " + t + " key " + s);
                    }
                }
            }
        }
        // The kernel's causal mask and "every key" are the same as their explicit masks.
        boolean[] tril = new boolean[16];
        for (int t = 0; t < 4; t++) {
            for (int s = 0; s <= t; s++) {
                tril[t * 4 + s] = true;
            }
        }
        assertArrayEquals(Tensors.toFloats(Bridge.recencyBias(new Bridge.CrossMask(Tensors.bools(tril, 1, 1, 4, 4), false), 4, 4, 4)),
                Tensors.toFloats(Bridge.recencyBias(new Bridge.CrossMask(null, true), 4, 4, 4)));
        assertArrayEquals(Tensors.toFloats(Bridge.recencyBias(new Bridge.CrossMask(Tensors.bools(new boolean[] {true, true, true}, 1, 1, 1, 3), false), 1, 3, 4)),
                Tensors.toFloats(Bridge.recencyBias(Bridge.CrossMask.NONE, 1, 3, 4)));
    }

    /** The bridge against softmax(q k / sqrt(d) - slope * after) v written out in double precision. */
    @Test
    void theBridgeEqualsAttentionWrittenOut() {
        int da = 6, db = 8, heads = 2, t = 3, s = 4, hd = db / heads;
        org.bytedeco.pytorch.Generator g = org.bytedeco.pytorch.global.torch.createCPUGenerator(3);
        try (NoGradGuard ng = new NoGradGuard(); Bridge br = Bridge.init(da, db, heads, 1.0, true, g, ScalarType.Float)) {
            br.named().get("o.weight").copy_(org.bytedeco.pytorch.global.torch.randn(new long[] {db, db},
                    new org.bytedeco.pytorch.GeneratorOptional(g), new org.bytedeco.pytorch.TensorOptions(ScalarType.Float)));
            Tensor hb = org.bytedeco.pytorch.global.torch.randn(new long[] {1, t, db}, new org.bytedeco.pytorch.GeneratorOptional(g),
                    new org.bytedeco.pytorch.TensorOptions(ScalarType.Float)).mul(new org.bytedeco.pytorch.Scalar(3));
            Tensor ha = org.bytedeco.pytorch.global.torch.randn(new long[] {1, s, da}, new org.bytedeco.pytorch.GeneratorOptional(g),
                    new org.bytedeco.pytorch.TensorOptions(ScalarType.Float)).mul(new org.bytedeco.pytorch.Scalar(3));
            boolean[] m = {true, true, false, false, true, true, true, false, true, false, true, true};
            Tensor[] kv = br.keysValues(ha);
            float[] got = Tensors.toFloats(br.apply(hb, kv[0], kv[1], new Bridge.CrossMask(Tensors.bools(m, 1, 1, t, s), false)));

            float[] q = Tensors.toFloats(br.named().get("q.weight"));
            float[] o = Tensors.toFloats(br.named().get("o.weight"));
            float[] kh = Tensors.toFloats(kv[0]);           // [1, H, S, hd]
            float[] vh = Tensors.toFloats(kv[1]);
            float[] x = Tensors.toFloats(hb);
            for (int i = 0; i < t; i++) {
                double[] merged = new double[db];
                for (int h = 0; h < heads; h++) {
                    double[] qi = new double[hd];
                    for (int c = 0; c < hd; c++) {
                        for (int j = 0; j < db; j++) {
                            qi[c] += q[(h * hd + c) * db + j] * x[i * db + j];
                        }
                    }
                    int after = 0;
                    double[] score = new double[s];
                    for (int k = s - 1; k >= 0; k--) {
                        if (!m[i * s + k]) {
                            score[k] = Double.NEGATIVE_INFINITY;
                            continue;
                        }
                        double dot = 0;
                        for (int c = 0; c < hd; c++) {
                            dot += qi[c] * kh[(h * s + k) * hd + c];
                        }
                        score[k] = dot / Math.sqrt(hd) - slope(h, heads) * after++;
                    }
                    double max = Double.NEGATIVE_INFINITY, sum = 0;
                    for (double v : score) {
                        max = Math.max(max, v);
                    }
                    for (int k = 0; k < s; k++) {
                        score[k] = Math.exp(score[k] - max);
                        sum += score[k];
                    }
                    for (int k = 0; k < s; k++) {
                        for (int c = 0; c < hd; c++) {
                            merged[h * hd + c] += score[k] / sum * vh[(h * s + k) * hd + c];
                        }
                    }
                }
                for (int j = 0; j < db; j++) {
                    double want = x[i * db + j];
                    for (int c = 0; c < db; c++) {
                        want += o[j * db + c] * merged[c];
                    }
                    assertEquals(want, got[i * db + j], 1e-4 * (1 + Math.abs(want)), "position " + i + " dim " + j);
                }
            }
        }
    }

    static CalmModel calm(Mode mode, boolean trained) {
        CalmModel m = CalmModel.create(anchor, List.of(augment), new CompositionPlan(CompositionPlan.parse("0->0,1->1,1->2")),
                mode, 4, 0.1, true, 5, new boolean[1]);
        if (trained) {
            CalmInvariantsTest.perturb(m, 0.3);
        }
        return m;
    }

    static float[] logits(CalmModel m, long[][] ids, Mode mode) {
        try (NoGradGuard ng = new NoGradGuard()) {
            return Tensors.toFloats(m.forward(TestModels.ids(ids), null, CalmInvariantsTest.prompts(mode), null));
        }
    }

    @Test
    void untrainedItIsTheAnchorAndTrainedItChangesTheOutput() {
        float[] alone;
        try (NoGradGuard ng = new NoGradGuard()) {
            alone = Tensors.toFloats(anchor.forward(TestModels.ids(IDS)));
        }
        for (Mode mode : Mode.values()) {
            try (CalmModel m = calm(mode, false); CalmModel t = calm(mode, true)) {
                assertTrue(m.recency() && m.bridges().stream().allMatch(Bridge::recency));
                assertTrue(TestModels.maxAbsDiff(alone, logits(m, IDS, mode)) < 1e-5, mode + ": W_O = 0 is the anchor");
                assertTrue(TestModels.maxAbsDiff(alone, logits(t, IDS, mode)) > 1e-2, mode + ": trained bridges matter");
            }
        }
        // The bias itself changes what trained bridges give.
        try (CalmModel with = calm(Mode.SAME_SEQUENCE, true)) {
            // The same tensors without the bias (not closed: the tensors are with's).
            CalmModel without = new CalmModel(anchor, List.of(augment), with.plan(), with.bridges().stream()
                    .map(b -> Bridge.of(b.named(), b.heads(), false)).toList(), Mode.SAME_SEQUENCE, 4);
            assertTrue(TestModels.maxAbsDiff(logits(with, IDS, Mode.SAME_SEQUENCE), logits(without, IDS, Mode.SAME_SEQUENCE)) > 1e-3);
        }
    }

    @Test
    void nothingComesFromTheFuture() {
        try (CalmModel m = calm(Mode.SAME_SEQUENCE, true)) {
            float[] base = logits(m, IDS, Mode.SAME_SEQUENCE);
            int t = IDS[0].length;
            int v = anchor.config().vocabSize();
            for (int change = 1; change < t; change++) {
                long[][] ids = {IDS[0].clone(), IDS[1].clone()};
                ids[0][change] = (ids[0][change] + 7) % v;
                ids[1][change] = (ids[1][change] + 3) % v;
                float[] other = logits(m, ids, Mode.SAME_SEQUENCE);
                for (int i = 0; i < 2 * t * v; i++) {
                    int pos = (i / v) % t;
                    if (pos < change) {
                        assertTrue(Math.abs(base[i] - other[i]) < 1e-5, "token " + change + " moved position " + pos);
                    }
                }
            }
        }
    }

    @Test
    void cachedDecodingEqualsRecomputationAndRowsAreIndependent() {
        for (Mode mode : Mode.values()) {
            try (CalmModel m = calm(mode, true)) {
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
                List<long[][]> aug1 = mode == Mode.SEPARATE_PROMPT ? List.<long[][]>of(new long[][] {{1, 14, 15, 16, 17}}) : null;
                Generator.Result alone = Generator.generate((b, max) -> CalmSession.cached(m, b, max, aug1),
                        List.of(prompts.get(1)), anchor.config().vocabSize(), 128, opt, null);
                for (int s = 0; s < alone.stepLogits().size(); s++) {
                    double d = TestModels.maxAbsDiff(alone.stepLogits().get(s)[0], a.stepLogits().get(s)[1]);
                    assertTrue(d < 1e-4, mode + " step " + s + ": padded row differs from the row alone by " + d);
                }
            }
        }
    }

    @Test
    void theCheckpointKeepsItAndRefusesAnEditThatDropsIt() throws Exception {
        Path dir = tmp.resolve("bridges");
        float[] want;
        try (CalmModel m = calm(Mode.SAME_SEQUENCE, true)) {
            want = logits(m, IDS, Mode.SAME_SEQUENCE);
            CalmConfig cfg = new CalmConfig(m.mode(), m.heads(), m.recency(),
                    BridgeCheckpoint.describe(anchorDir, dir, anchor, dev.calm4j.io.ModelFingerprint.of(anchorDir)),
                    List.of(BridgeCheckpoint.describe(augmentDir, dir, augment, dev.calm4j.io.ModelFingerprint.of(augmentDir))),
                    m.plan().connections(), null);
            assertThrows(IllegalArgumentException.class, () -> BridgeCheckpoint.save(dir, m, new CalmConfig(cfg.mode(),
                    cfg.heads(), false, cfg.anchor(), cfg.augments(), cfg.connections(), null)));
            BridgeCheckpoint.save(dir, m, cfg);
        }
        try (BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(dir, null, null, false, ScalarType.Float)) {
            assertTrue(l.config().recency() && l.model().recency());
            assertArrayEquals(want, logits(l.model(), IDS, Mode.SAME_SEQUENCE));
        }
        Path file = dir.resolve(CalmConfig.FILE);
        ObjectMapper json = new ObjectMapper();
        ObjectNode c = (ObjectNode) json.readTree(file.toFile());
        c.remove("recency_bias");
        Files.writeString(file, json.writeValueAsString(c));
        Calm4jException e = assertThrows(Calm4jException.class,
                () -> BridgeCheckpoint.load(dir, null, null, false, ScalarType.Float).close());
        assertTrue(e.getMessage().contains("recency bias") && e.getMessage().contains("differs"), e.getMessage());
        c.put("recency_bias", "yes");
        Files.writeString(file, json.writeValueAsString(c));
        e = assertThrows(Calm4jException.class, () -> BridgeCheckpoint.load(dir, null, null, false, ScalarType.Float).close());
        assertTrue(e.getMessage().contains("'recency_bias' must be true or false"), e.getMessage());
        assertFalse(new CalmConfig(Mode.SAME_SEQUENCE, 4, null, List.of(), List.of(), null).recency(), "off by default");
    }
}
