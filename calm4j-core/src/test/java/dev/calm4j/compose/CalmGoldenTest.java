package dev.calm4j.compose;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.generate.CalmSession;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.Sampler;
import dev.calm4j.io.ModelFingerprint;
import dev.calm4j.nn.Tensors;
import dev.calm4j.testing.TestModels;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A saved bridge directory's composed forward against an independent PyTorch implementation of docs/design.md §3
 * ({@code tools/make_calm_golden.py}, float64), in both modes; and the fingerprint rule against Python's.
 */
class CalmGoldenTest {
    @BeforeAll
    static void init() {
        Torch.init();
    }

    static Path dir(String name) throws Exception {
        return Path.of(CalmGoldenTest.class.getResource("/golden-calm/" + name + "/golden.json").toURI()).getParent();
    }

    static long[][] matrix(JsonNode n) {
        long[][] out = new long[n.size()][];
        for (int r = 0; r < out.length; r++) {
            out[r] = new long[n.get(r).size()];
            for (int c = 0; c < out[r].length; c++) {
                out[r][c] = n.get(r).get(c).asLong();
            }
        }
        return out;
    }

    static double worst(float[] got, JsonNode want) {
        double w = 0;
        int i = 0;
        for (JsonNode b : want) {
            for (JsonNode t : b) {
                for (JsonNode v : t) {
                    w = Math.max(w, Math.abs(got[i++] - v.asDouble()));
                }
            }
        }
        assertEquals(got.length, i);
        return w;
    }

    @Test
    void sameSequenceMatchesPyTorch() throws Exception {
        Path d = dir("same_sequence");
        JsonNode g = new ObjectMapper().readTree(d.resolve("golden.json").toFile());
        long[][] ids = matrix(g.get("anchor_ids"));
        try (BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(d.resolve("bridges"), null, null, false, ScalarType.Float);
             NoGradGuard ng = new NoGradGuard()) {
            assertEquals(Mode.SAME_SEQUENCE, l.model().mode());
            double w = worst(Tensors.toFloats(l.model().forward(TestModels.ids(ids), null, null, null)), g.get("logits"));
            assertTrue(w <= 1e-4, "composed logits differ from PyTorch by " + w);
            double a = worst(Tensors.toFloats(l.model().anchor().forward(TestModels.ids(ids))), g.get("anchor_only_logits"));
            assertTrue(a <= 1e-4, "anchor logits differ from PyTorch by " + a);

            long[] from = matrix(new ObjectMapper().createArrayNode().add(g.get("greedy_from")))[0];
            long[] want = matrix(new ObjectMapper().createArrayNode().add(g.get("greedy_ids")))[0];
            Generator.Result r = Generator.generate((b, max) -> CalmSession.cached(l.model(), b, max, null), List.of(from),
                    64, 64, new Generator.Options(want.length, Sampler.greedy(), Set.of(), false), null);
            assertArrayEquals(want, r.generated().get(0), "composed greedy continuation with all caches");
        }
    }

    @Test
    void separatePromptMatchesPyTorch() throws Exception {
        Path d = dir("separate_prompt");
        JsonNode g = new ObjectMapper().readTree(d.resolve("golden.json").toFile());
        long[][] ids = matrix(g.get("anchor_ids"));
        long[][] aug = matrix(g.get("augment_ids"));
        long[][] mask = matrix(g.get("augment_mask"));
        boolean[] real = new boolean[aug.length * aug[0].length];
        for (int r = 0; r < aug.length; r++) {
            for (int c = 0; c < aug[0].length; c++) {
                real[r * aug[0].length + c] = mask[r][c] == 1;
            }
        }
        try (BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(d.resolve("bridges"), null, null, false, ScalarType.Float);
             NoGradGuard ng = new NoGradGuard()) {
            assertEquals(Mode.SEPARATE_PROMPT, l.model().mode());
            assertEquals(List.of(new Connection(0, 2, 0), new Connection(0, 1, 2), new Connection(0, 2, 2)),
                    l.model().plan().connections());
            var prompt = new CalmModel.AugmentPrompt(TestModels.ids(aug), Tensors.bools(real, aug.length, aug[0].length));
            double w = worst(Tensors.toFloats(l.model().forward(TestModels.ids(ids), null, List.of(prompt), null)), g.get("logits"));
            assertTrue(w <= 1e-4, "composed logits differ from PyTorch by " + w);
        }
    }

    @Test
    void fingerprintsMatchPythonAndAWrongBaseIsRefused() throws Exception {
        Path same = dir("same_sequence");
        assertEquals("sha256:48eaf97108a0ca480ea3681f8a383fdf98db0f2b3dd6017e4ec4f794252360b9", ModelFingerprint.of(same.resolve("anchor")));
        assertEquals("sha256:6405527acca643de4e2307b5899a4ed575dbe76d2e2fe769aefaa7e6580bc541", ModelFingerprint.of(same.resolve("augment")));
        Path otherAnchor = dir("separate_prompt").resolve("anchor");      // same shapes, other weights
        Calm4jException e = assertThrows(Calm4jException.class, () -> BridgeCheckpoint.load(same.resolve("bridges"),
                otherAnchor, null, false, ScalarType.Float).close());
        assertTrue(e.getMessage().contains("different anchor"), e.getMessage());
    }
}
