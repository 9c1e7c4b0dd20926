package dev.calm4j.testing;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Mode;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.LmSession;
import dev.calm4j.generate.Sampler;
import dev.calm4j.io.Safetensors;
import dev.calm4j.lm.AttentionContext;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.KvCache;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.nn.Tensors;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * One golden fixture made by Hugging Face transformers itself ({@code tools/make_family_golden_*.py}; under
 * src/test/resources/golden/&lt;case&gt;), and the checks every family's test runs against it: logits, the output
 * of block 1, a left-padded batch, greedy ids through the KV cache, cached decoding against recomputation, bad
 * configs and checkpoints, and composition at init.
 */
public final class HfGolden {
    public static final double TOLERANCE = 1e-4;
    private static final ObjectMapper JSON = new ObjectMapper();

    public final String name;
    public final Path dir;
    public final JsonNode golden;

    private HfGolden(String name, Path dir, JsonNode golden) {
        this.name = name;
        this.dir = dir;
        this.golden = golden;
    }

    public static HfGolden of(String name) {
        try {
            Path dir = Path.of(HfGolden.class.getResource("/golden/" + name + "/config.json").toURI()).getParent();
            return new HfGolden(name, dir, JSON.readTree(dir.resolve("golden.json").toFile()));
        } catch (Exception e) {
            throw new IllegalStateException("fixture " + name + ": " + e, e);
        }
    }

    public long[][] ids(String field) {
        JsonNode rows = golden.get(field);
        long[][] ids = new long[rows.size()][];
        for (int r = 0; r < ids.length; r++) {
            ids[r] = new long[rows.get(r).size()];
            for (int c = 0; c < ids[r].length; c++) {
                ids[r][c] = rows.get(r).get(c).asLong();
            }
        }
        return ids;
    }

    private static boolean[] flat(long[][] mask) {
        boolean[] b = new boolean[mask.length * mask[0].length];
        for (int r = 0; r < mask.length; r++) {
            for (int c = 0; c < mask[r].length; c++) {
                b[r * mask[r].length + c] = mask[r][c] != 0;
            }
        }
        return b;
    }

    /** Max |got - golden[field]| over {@code [B, T, X]}, at positions where {@code real} is non-zero (or all). */
    private double maxDiff(Tensor got, String field, long[][] real) {
        float[] g = Tensors.toFloats(got);
        JsonNode want = golden.get(field);
        int b = (int) got.size(0);
        int t = (int) got.size(1);
        int x = (int) got.size(2);
        assertEquals(b, want.size(), name + ": " + field + " rows");
        double worst = 0;
        for (int i = 0; i < b; i++) {
            for (int j = 0; j < t; j++) {
                if (real != null && real[i][j] == 0) {
                    continue;
                }
                JsonNode row = want.get(i).get(j);
                assertEquals(x, row.size(), name + ": " + field + " width");
                for (int k = 0; k < x; k++) {
                    worst = Math.max(worst, Math.abs(g[(i * t + j) * x + k] - row.get(k).asDouble()));
                }
            }
        }
        return worst;
    }

    private void within(double d, String what) {
        assertTrue(d <= TOLERANCE, name + ": " + what + " differ from HF by " + d + " > " + TOLERANCE);
    }

    /** Logits of the unpadded batch; returns the max difference. */
    public double logits(CausalLm m) {
        try (NoGradGuard ng = new NoGradGuard()) {
            double d = maxDiff(m.forward(TestModels.ids(ids("input_ids"))), "logits", null);
            within(d, "logits");
            return d;
        }
    }

    /** {@code layer(1)} after {@code layer(0)} equals HF's output of block 1 (hidden_states[2]). */
    public double hidden1(CausalLm m) {
        try (NoGradGuard ng = new NoGradGuard()) {
            Tensor ids = TestModels.ids(ids("input_ids"));
            AttentionContext ctx = m.context(0, ids.size(1), null);
            Tensor h = m.embed(ids);
            h = m.layer(0, h, ctx, null);
            h = m.layer(1, h, ctx, null);
            double d = maxDiff(h, "hidden_1", null);
            within(d, "block 1's output");
            return d;
        }
    }

    /** A left-padded batch (positions as HF generate gives them), compared at its real positions. */
    public double padded(CausalLm m) {
        long[][] mask = ids("padded_mask");
        try (NoGradGuard ng = new NoGradGuard()) {
            Tensor pad = Tensors.bools(flat(mask), mask.length, mask[0].length);
            double d = maxDiff(m.forward(TestModels.ids(ids("padded_ids")), pad, null), "padded_logits", mask);
            within(d, "left-padded logits");
            return d;
        }
    }

    /** 16 greedy ids through KV-cached generation equal HF's. */
    public void greedy(CausalLm m) {
        long[] from = array(golden.get("greedy_from"));
        long[] expected = array(golden.get("greedy_ids"));
        Generator.Result r = Generator.generate((b, max) -> LmSession.cached(m, b, max), List.of(from),
                m.config().vocabSize(), m.config().maxPositionEmbeddings(),
                new Generator.Options(expected.length, Sampler.greedy(), Set.of(), false), null);
        assertArrayEquals(expected, r.generated().get(0), name + ": greedy continuation (KV-cached)");
    }

    private static long[] array(JsonNode a) {
        long[] out = new long[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.get(i).asLong();
        }
        return out;
    }

    /**
     * KV-cached decoding equals recomputation: a prefix of 3, a chunk of 2 (several queries over a cache), then
     * single steps, with and without left padding; each call's logits against the full forward's at those positions.
     * Returns the max difference.
     */
    public double cachedEqualsRecomputation(CausalLm m) {
        double worst = 0;
        for (String field : new String[] {"input_ids", "padded_ids"}) {
            long[][] rows = ids(field);
            long[][] mask = field.equals("padded_ids") ? ids("padded_mask") : null;
            int b = rows.length;
            int t = rows[0].length;
            try (NoGradGuard ng = new NoGradGuard(); KvCache cache = m.newCache(b, t)) {
                Tensor all = TestModels.ids(rows);
                Tensor pad = mask == null ? null : Tensors.bools(flat(mask), b, t);
                float[] full = Tensors.toFloats(m.forward(all, pad, null));
                int v = m.config().vocabSize();
                int[][] chunks = {{0, 3}, {3, 2}, {5, 1}, {6, 1}};
                for (int[] c : chunks) {
                    Tensor ids = all.narrow(1, c[0], c[1]);
                    Tensor p = pad == null ? null : pad.narrow(1, 0, c[0] + c[1]);
                    float[] got = Tensors.toFloats(m.forward(ids, p, cache));
                    for (int r = 0; r < b; r++) {
                        for (int j = 0; j < c[1]; j++) {
                            for (int k = 0; k < v; k++) {
                                double d = Math.abs(got[(r * c[1] + j) * v + k] - full[(r * t + c[0] + j) * v + k]);
                                worst = Math.max(worst, d);
                            }
                        }
                    }
                }
                assertEquals(t, cache.length());
            }
        }
        assertTrue(worst < 1e-5, name + ": cached decoding differs from recomputation by " + worst);
        return worst;
    }

    /** Computing in bf16 stays close to float32 (and really computes in bf16). */
    public void bf16Close() {
        try (CausalLm f = LmFamilies.load(dir); CausalLm b = LmFamilies.load(dir, ScalarType.BFloat16);
             NoGradGuard ng = new NoGradGuard()) {
            assertEquals(ScalarType.BFloat16, b.computeDtype());
            Tensor ids = TestModels.ids(ids("input_ids"));
            float[] x = Tensors.toFloats(f.forward(ids));
            float[] y = Tensors.toFloats(b.forward(ids).to(ScalarType.Float));
            double scale = 0;
            for (float v : x) {
                scale = Math.max(scale, Math.abs(v));
            }
            double d = TestModels.maxAbsDiff(x, y);
            assertTrue(d < 0.05 * scale + 0.05, name + ": bf16 vs fp32 differ by " + d + " (logit scale " + scale + ")");
            assertTrue(d > 0, name + ": bf16 must actually compute in bf16");
        }
    }

    /** Saving and loading again gives the same config (but for the dtype, the compute one) and bitwise the same logits. */
    public void saveLoadRoundTrip(CausalLm m, Path to) {
        LmFamilies.save(m, to);
        try (CausalLm again = LmFamilies.load(to, m.computeDtype()); NoGradGuard ng = new NoGradGuard()) {
            ObjectNode want = m.config().toJson();
            ObjectNode got = again.config().toJson();
            want.remove("torch_dtype");
            got.remove("torch_dtype");
            assertEquals(want, got);
            assertEquals(m.config().getClass(), again.config().getClass());
            Tensor ids = TestModels.ids(ids("input_ids"));
            assertArrayEquals(Tensors.toFloats(m.forward(ids)), Tensors.toFloats(again.forward(ids)));
        }
    }

    // ------------------------------------------------------------------------------------------- bad input

    /** The fixture's config.json with {@code edit} applied, read as a config: refused with one line naming fragments. */
    public void configRefused(Consumer<ObjectNode> edit, String... fragments) {
        ObjectNode c = config();
        edit.accept(c);
        refused(() -> LmFamilies.configFromJson(c, dir.resolve("config.json").toString()), fragments);
    }

    public ObjectNode config() {
        try {
            return (ObjectNode) JSON.readTree(dir.resolve("config.json").toFile());
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    public ModelConfig readConfig(Consumer<ObjectNode> edit) {
        ObjectNode c = config();
        edit.accept(c);
        return LmFamilies.configFromJson(c, "edited/config.json");
    }

    /** A copy of the fixture in {@code to} with its config edited (weights unchanged). */
    public Path copyWith(Path to, Consumer<ObjectNode> edit) {
        try {
            Files.createDirectories(to);
            Files.copy(dir.resolve("model.safetensors"), to.resolve("model.safetensors"));
            ObjectNode c = config();
            edit.accept(c);
            Files.writeString(to.resolve("config.json"), JSON.writeValueAsString(c));
            return to;
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    /** A copy of the fixture in {@code to} whose weights lack {@code tensor}. */
    public Path copyWithout(Path to, String tensor) {
        try (CausalLm m = LmFamilies.load(dir)) {
            Files.createDirectories(to);
            Files.copy(dir.resolve("config.json"), to.resolve("config.json"));
            Map<String, Tensor> w = new LinkedHashMap<>(m.namedWeights());
            assertTrue(w.remove(tensor) != null, "no tensor " + tensor);
            Safetensors.write(to.resolve("model.safetensors"), w, Map.of("format", "pt"));
            return to;
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    public static void loadRefused(Path dir, String... fragments) {
        refused(() -> LmFamilies.load(dir).close(), fragments);
    }

    private static void refused(org.junit.jupiter.api.function.Executable body, String... fragments) {
        Calm4jException e = assertThrows(Calm4jException.class, body);
        assertTrue(!e.getMessage().contains("\n"), "one line: " + e.getMessage());
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "message '" + e.getMessage() + "' should mention '" + f + "'");
        }
    }

    // ------------------------------------------------------------------------------------------- composition

    /**
     * {@code CalmModel.create(anchor, [augment], plan, SAME_SEQUENCE, 4, seed)} on random models of these configs
     * (same vocabulary): at init (bridge output W_O = 0) the composed logits equal the anchor's alone.
     */
    public static void compositionAtInitIsTheAnchor(ModelConfig anchorConfig, ModelConfig augmentConfig) {
        if (anchorConfig.vocabSize() != augmentConfig.vocabSize()) {
            fail("the composition test needs one vocabulary");
        }
        long[][] rows = {{1, 5, 6, 7, 8, 9, 10, 11}, {1, 30, 31, 32, 33, 34, 35, 36}};
        try (CausalLm anchor = LmFamilies.random(anchorConfig, 11, 0.2, ScalarType.Float);
             CausalLm augment = LmFamilies.random(augmentConfig, 12, 0.2, ScalarType.Float);
             CalmModel calm = CalmModel.create(anchor, List.of(augment),
                     new CompositionPlan(CompositionPlan.parse("0->0,1->2")), Mode.SAME_SEQUENCE, 4, 5);
             NoGradGuard ng = new NoGradGuard()) {
            Tensor ids = TestModels.ids(rows);
            float[] alone = Tensors.toFloats(anchor.forward(ids));
            float[] composed = Tensors.toFloats(calm.forward(ids, null, null, null));
            double d = TestModels.maxAbsDiff(alone, composed);
            assertTrue(d < 1e-5, anchorConfig.modelType() + " anchor + " + augmentConfig.modelType()
                    + " augment: untrained composition differs from the anchor by " + d);
        }
    }
}
