package dev.calm4j.lm.gemma;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.calm4j.Torch;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.LmSession;
import dev.calm4j.generate.Sampler;
import dev.calm4j.lm.AttentionContext;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.KvCache;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.nn.Tensors;
import dev.calm4j.testing.TestModels;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Tiny random Gemma 2 / Gemma 3 text checkpoints against Hugging Face transformers itself
 * ({@code tools/make_family_golden_gemma.py}): logits, the output of block 1, the KV-cached greedy continuation, and
 * cached decoding against recomputation. Sequences (10 tokens, greedy to 19) are longer than the sliding window (4),
 * so the window bites in the full forward and in decoding alike.
 *
 * <p>{@code gemma2_tied}: F32, tied head, GQA 4/2, head_dim 12, query_pre_attn_scalar 20, attention soft cap 2 and
 * final cap 3 (both bend the numbers), layers sliding/full/sliding. {@code gemma3_bf16}: BF16 storage, untied, MQA,
 * q/k norms, layers sliding/sliding/full with rope base 10 (sliding) and 1000 with linear x4 scaling (full).
 */
class GemmaGoldenTest {
    @BeforeAll
    static void init() {
        Torch.init();
    }

    static Path dir(String name) throws Exception {
        return Path.of(GemmaGoldenTest.class.getResource("/golden/" + name + "/config.json").toURI()).getParent();
    }

    static JsonNode golden(Path dir) throws Exception {
        return new ObjectMapper().readTree(dir.resolve("golden.json").toFile());
    }

    static long[][] ids(JsonNode g) {
        long[][] ids = new long[g.get("input_ids").size()][];
        for (int r = 0; r < ids.length; r++) {
            JsonNode row = g.get("input_ids").get(r);
            ids[r] = new long[row.size()];
            for (int c = 0; c < row.size(); c++) {
                ids[r][c] = row.get(c).asLong();
            }
        }
        return ids;
    }

    /** Max |got - want| over a [B][T][N] JSON array and the same-shaped row-major floats. */
    static double worst(float[] got, JsonNode want) {
        double worst = 0;
        int i = 0;
        for (JsonNode b : want) {
            for (JsonNode t : b) {
                for (JsonNode x : t) {
                    worst = Math.max(worst, Math.abs(got[i++] - x.asDouble()));
                }
            }
        }
        assertEquals(got.length, i, "shape");
        return worst;
    }

    static long[] longs(JsonNode a) {
        long[] out = new long[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.get(i).asLong();
        }
        return out;
    }

    @ParameterizedTest
    @ValueSource(strings = {"gemma2_tied", "gemma3_bf16"})
    void logitsBlockOutputAndGreedyMatchHf(String name) throws Exception {
        Path dir = dir(name);
        JsonNode g = golden(dir);
        long[][] ids = ids(g);
        try (CausalLm m = LmFamilies.load(dir); NoGradGuard ng = new NoGradGuard()) {
            assertTrue(m instanceof GemmaModel, m.getClass().getName());
            double logits = worst(Tensors.toFloats(m.forward(TestModels.ids(ids))), g.get("logits"));

            // layer(i) is the output of block i: HF's hidden_states[i + 1].
            Tensor x = TestModels.ids(ids);
            AttentionContext ctx = m.context(0, x.size(1), null);
            Tensor h = m.embed(x);
            h = m.layer(0, h, ctx, null);
            h = m.layer(1, h, ctx, null);
            double hidden = worst(Tensors.toFloats(h), g.get("hidden_1"));
            System.out.printf("%s: max |logits - HF| %.3g, max |block 1 - HF| %.3g%n", name, logits, hidden);
            assertTrue(logits <= 1e-4, name + ": logits differ from HF by " + logits);
            assertTrue(hidden <= 1e-4, name + ": block 1's output differs from HF by " + hidden);

            long[] from = longs(g.get("greedy_from"));
            long[] expected = longs(g.get("greedy_ids"));
            Generator.Result r = Generator.generate((b, max) -> LmSession.cached(m, b, max), List.of(from),
                    m.config().vocabSize(), m.config().maxPositionEmbeddings(),
                    new Generator.Options(expected.length, Sampler.greedy(), Set.of(), false), null);
            assertArrayEquals(expected, r.generated().get(0), name + ": greedy continuation (KV-cached)");
        }
    }

    /** A left-padded batch: HF's logits with attention_mask and generate's positions (pad slots count in windows). */
    @ParameterizedTest
    @ValueSource(strings = {"gemma2_tied", "gemma3_bf16"})
    void leftPaddedBatchMatchesHf(String name) throws Exception {
        Path dir = dir(name);
        JsonNode g = golden(dir);
        long[][] ids = new long[2][];
        boolean[] real = new boolean[2 * g.get("padded_ids").get(0).size()];
        for (int r = 0; r < 2; r++) {
            ids[r] = longs(g.get("padded_ids").get(r));
            for (int c = 0; c < ids[r].length; c++) {
                real[r * ids[r].length + c] = g.get("padded_mask").get(r).get(c).asInt() == 1;
            }
        }
        int t = ids[0].length;
        JsonNode want = g.get("padded_logits_tail");
        try (CausalLm m = LmFamilies.load(dir); NoGradGuard ng = new NoGradGuard()) {
            Tensor logits = m.forward(TestModels.ids(ids), Tensors.bools(real, 2, t), null);    // [B, T, V]
            int keep = want.size();
            float[] got = Tensors.toFloats(logits.narrow(0, 0, 1).narrow(1, t - keep, keep));
            double worst = 0;
            int i = 0;
            for (JsonNode row : want) {
                for (JsonNode x : row) {
                    worst = Math.max(worst, Math.abs(got[i++] - x.asDouble()));
                }
            }
            System.out.printf("%s: max |padded logits - HF| %.3g%n", name, worst);
            assertTrue(worst <= 1e-4, name + ": left-padded logits differ from HF by " + worst);
        }
    }

    /**
     * Decoding through the cache (a prefill of 3, single steps, then a chunk of 3 after the window has filled) gives
     * the full forward's logits at every position.
     */
    @ParameterizedTest
    @ValueSource(strings = {"gemma2_tied", "gemma3_bf16"})
    void cachedDecodingEqualsRecomputation(String name) throws Exception {
        Path dir = dir(name);
        long[][] ids = ids(golden(dir));
        int t = ids[0].length;
        try (CausalLm m = LmFamilies.load(dir); NoGradGuard ng = new NoGradGuard();
             KvCache cache = m.newCache(ids.length, t)) {
            Tensor all = TestModels.ids(ids);
            Tensor full = m.forward(all);                                                 // [B, T, V]
            int[][] steps = {{0, 3}, {3, 1}, {4, 1}, {5, 1}, {6, 1}, {7, 3}};
            double worst = 0;
            for (int[] s : steps) {
                Tensor step = m.forward(all.narrow(1, s[0], s[1]), null, cache);          // [B, s, V]
                float[] want = Tensors.toFloats(full.narrow(1, s[0], s[1]));
                worst = Math.max(worst, TestModels.maxAbsDiff(want, Tensors.toFloats(step)));
            }
            assertEquals(t, cache.length());
            assertTrue(worst < 1e-5, name + ": cached vs recomputed logits differ by " + worst);
        }
    }

    /** bf16 compute (the softcapped attention cast to float32 and back, the norms in float32) stays close. */
    @ParameterizedTest
    @ValueSource(strings = {"gemma2_tied", "gemma3_bf16"})
    void bf16ComputeStaysClose(String name) throws Exception {
        Path dir = dir(name);
        long[][] ids = ids(golden(dir));
        try (CausalLm f = LmFamilies.load(dir); CausalLm b = LmFamilies.load(dir, ScalarType.BFloat16);
             NoGradGuard ng = new NoGradGuard()) {
            float[] x = Tensors.toFloats(f.forward(TestModels.ids(ids)));
            float[] y = Tensors.toFloats(b.forward(TestModels.ids(ids)));
            double scale = 0;
            for (float v : x) {
                scale = Math.max(scale, Math.abs(v));
            }
            double d = TestModels.maxAbsDiff(x, y);
            assertTrue(d < 0.05 * scale + 0.05, name + ": bf16 vs fp32 differ by " + d + " (logit scale " + scale + ")");
            assertTrue(d > 0, "bf16 must actually compute in bf16");
        }
    }
}
