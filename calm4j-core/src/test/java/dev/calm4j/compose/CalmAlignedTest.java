package dev.calm4j.compose;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.calm4j.Torch;
import dev.calm4j.nn.Tensors;
import dev.calm4j.tokenize.Tokenizer;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * An anchor and an augment that read the same text through different tokenizers: anchor token t sees augment token s
 * iff s's span ends at or before t's ({@link TextAlignment}). Against an independent PyTorch implementation of the
 * rule ({@code tools/make_aligned_golden.py}, float64), plus the invariants that make it exact: with one tokenization
 * it is today's same_sequence forward, nothing leaks from text after a position, and a position that sees nothing
 * gets nothing.
 */
class CalmAlignedTest {
    @BeforeAll
    static void init() {
        Torch.init();
    }

    /** Right-padded ids and which are real, from ragged rows. */
    private static Tensor[] padded(long[][] rows) {
        int n = 0;
        for (long[] r : rows) {
            n = Math.max(n, r.length);
        }
        long[] ids = new long[rows.length * n];
        boolean[] real = new boolean[rows.length * n];
        for (int b = 0; b < rows.length; b++) {
            for (int i = 0; i < rows[b].length; i++) {
                ids[b * n + i] = rows[b][i];
                real[b * n + i] = true;
            }
        }
        return new Tensor[] {Tensors.longs(ids, rows.length, n), Tensors.bools(real, rows.length, n)};
    }

    /** Composed logits {@code [B, T, V]}; the augment reads its own tokens, aligned by their ends. */
    private static float[] aligned(CalmModel m, long[][] anchorIds, int[][] anchorEnds, long[][] augIds, int[][] augEnds) {
        Tensor[] a = padded(anchorIds);
        Tensor[] g = padded(augIds);
        Bridge.CrossMask cross = TextAlignment.crossMask(anchorEnds, (int) a[0].size(1), augEnds, (int) g[0].size(1));
        try (NoGradGuard ng = new NoGradGuard()) {
            return Tensors.toFloats(m.forward(a[0], a[1], List.of(new CalmModel.AugmentPrompt(g[0], g[1], cross)), null));
        }
    }

    @Test
    void composedLogitsMatchTheReferenceAcrossTwoTokenizers() throws Exception {
        Path dir = Path.of("src/test/resources/golden-calm/aligned");
        JsonNode g = new ObjectMapper().readTree(dir.resolve("golden.json").toFile());
        int rows = g.get("texts").size();
        long[][] anchorIds = new long[rows][];
        long[][] augIds = new long[rows][];
        int[][] anchorEnds = new int[rows][];
        int[][] augEnds = new int[rows][];
        try (Tokenizer ta = Tokenizer.load(dir.resolve("anchor")); Tokenizer tg = Tokenizer.load(dir.resolve("augment"))) {
            for (int b = 0; b < rows; b++) {
                String text = g.get("texts").get(b).asText();
                Tokenizer.Tokens x = ta.encodeWithEnds(text, true);
                Tokenizer.Tokens y = tg.encodeWithEnds(text, true);
                anchorIds[b] = x.ids();
                anchorEnds[b] = x.ends();
                augIds[b] = y.ids();
                augEnds[b] = y.ends();
                assertArrayEquals(CalmGoldenTest.matrix(g.get("anchor_ids"))[b], x.ids(), "anchor ids, row " + b);
                assertArrayEquals(CalmGoldenTest.matrix(g.get("augment_ids"))[b], y.ids(), "augment ids, row " + b);
                assertArrayEquals(ints(g.get("anchor_ends").get(b)), x.ends(), "anchor ends, row " + b);
                assertArrayEquals(ints(g.get("augment_ends").get(b)), y.ends(), "augment ends, row " + b);
            }
        }
        try (BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(dir.resolve("bridges"), null, null, false, ScalarType.Float)) {
            float[] got = aligned(l.model(), anchorIds, anchorEnds, augIds, augEnds);
            int t = 0;
            for (long[] r : anchorIds) {
                t = Math.max(t, r.length);
            }
            int v = l.model().anchor().config().vocabSize();
            double worst = 0;
            for (int b = 0; b < rows; b++) {
                JsonNode want = g.get("logits").get(b);
                for (int i = 0; i < anchorIds[b].length; i++) {           // real positions only
                    for (int k = 0; k < v; k++) {
                        worst = Math.max(worst, Math.abs(got[(b * t + i) * v + k] - want.get(i).get(k).asDouble()));
                    }
                }
            }
            assertTrue(worst <= 1e-4, "max abs diff " + worst);
        }
    }

    private static int[] ints(JsonNode n) {
        int[] out = new int[n.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = n.get(i).asInt();
        }
        return out;
    }

    /** Ends 1, 2, ..., n: each token one character, as two identical tokenizations give. */
    private static int[] steps(int n) {
        int[] e = new int[n];
        for (int i = 0; i < n; i++) {
            e[i] = i + 1;
        }
        return e;
    }

    @Test
    void withOneTokenizationItIsTheSameSequenceForward() throws Exception {
        Path dir = CalmGoldenTest.dir("same_sequence");
        long[][] ids = CalmGoldenTest.matrix(new ObjectMapper().readTree(dir.resolve("golden.json").toFile()).get("anchor_ids"));
        try (BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(dir.resolve("bridges"), null, null, false, ScalarType.Float);
             NoGradGuard ng = new NoGradGuard()) {
            float[] plain = Tensors.toFloats(l.model().forward(padded(ids)[0], null, null, null));
            int[][] ends = {steps(ids[0].length), steps(ids[1].length)};
            float[] same = aligned(l.model(), ids, ends, ids, ends);
            double worst = 0;
            for (int i = 0; i < plain.length; i++) {
                worst = Math.max(worst, Math.abs(plain[i] - same[i]));
            }
            assertTrue(worst <= 1e-5, "the offset rule with one tokenization is the causal rule: " + worst);
        }
    }

    @Test
    void nothingLeaksFromTextAfterAPositionAndAPositionThatSeesNothingGetsNothing() throws Exception {
        Path dir = Path.of("src/test/resources/golden-calm/aligned");
        try (BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(dir.resolve("bridges"), null, null, false, ScalarType.Float)) {
            CalmModel m = l.model();
            int v = m.anchor().config().vocabSize();
            long[][] anchor = {{1, 260, 342, 223, 81}};
            int[][] anchorEnds = {{0, 3, 7, 8, 9}};
            long[][] aug = {{5, 6, 7, 8, 9, 10}};
            int[][] augEnds = {{1, 3, 4, 7, 8, 12}};          // no augment token ends at 0: anchor position 0 sees none
            float[] base = aligned(m, anchor, anchorEnds, aug, augEnds);
            for (float x : base) {
                assertTrue(Float.isFinite(x), "finite everywhere, even where a position sees nothing");
            }
            float[] alone;
            try (NoGradGuard ng = new NoGradGuard()) {
                alone = Tensors.toFloats(m.anchor().forward(padded(anchor)[0]));
            }
            for (int k = 0; k < v; k++) {
                assertEquals(alone[k], base[k], 1e-5, "position 0 sees no augment token: the anchor's own logits");
            }
            // Changing the augment's last token (it ends at 12, after every anchor token's end) changes nothing.
            long[][] changed = {{5, 6, 7, 8, 9, 77}};
            assertArrayEquals(base, aligned(m, anchor, anchorEnds, changed, augEnds), "a token ending later is unseen");
            // Changing one that ends at 7 changes anchor positions 2.. (ends 7, 8, 9), not 0-1 (ends 0, 3).
            long[][] earlier = {{5, 6, 7, 88, 9, 10}};
            float[] moved = aligned(m, anchor, anchorEnds, earlier, augEnds);
            List<Double> diffs = new ArrayList<>();
            for (int t = 0; t < anchor[0].length; t++) {
                double d = 0;
                for (int k = 0; k < v; k++) {
                    d = Math.max(d, Math.abs(moved[t * v + k] - base[t * v + k]));
                }
                diffs.add(d);
            }
            assertEquals(0.0, diffs.get(0), 0.0, diffs.toString());
            assertEquals(0.0, diffs.get(1), 0.0, diffs.toString());
            assertTrue(diffs.get(2) > 1e-4 && diffs.get(3) > 1e-4 && diffs.get(4) > 1e-4, diffs.toString());
        }
    }
}
