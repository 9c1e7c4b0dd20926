package dev.calm4j.lm;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.calm4j.Torch;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.LmSession;
import dev.calm4j.generate.Sampler;
import dev.calm4j.nn.Tensors;
import dev.calm4j.testing.TestModels;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Logits of tiny random Llama / Qwen2 / Mistral checkpoints against an independent float64 PyTorch reference
 * ({@code tools/make_golden.py}; fixtures under src/test/resources/golden). Covers F32/F16/BF16 storage, GQA, tied
 * heads, q/k/v and MLP biases, explicit head_dim, sliding window, linear and llama3 rope scaling, 4.x and 5.x
 * configs.
 */
class GoldenLogitsTest {
    @BeforeAll
    static void init() {
        Torch.init();
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama", "llama_gqa_tied_bf16", "qwen2", "mistral_gqa", "llama_attn_bias"})
    void logitsAndGreedyMatchReference(String name) throws Exception {
        Path dir = Path.of(getClass().getResource("/golden/" + name + "/config.json").toURI()).getParent();
        JsonNode g = new ObjectMapper().readTree(dir.resolve("golden.json").toFile());
        long[][] ids = new long[g.get("input_ids").size()][];
        for (int r = 0; r < ids.length; r++) {
            JsonNode row = g.get("input_ids").get(r);
            ids[r] = new long[row.size()];
            for (int c = 0; c < row.size(); c++) {
                ids[r][c] = row.get(c).asLong();
            }
        }
        JsonNode want = g.get("logits");
        try (CausalLm m = LmFamilies.load(dir); NoGradGuard ng = new NoGradGuard()) {
            Tensor logits = m.forward(TestModels.ids(ids));                        // [B, T, V]
            float[] got = Tensors.toFloats(logits);
            int v = (int) logits.size(2);
            double worst = 0;
            for (int b = 0; b < ids.length; b++) {
                for (int t = 0; t < ids[b].length; t++) {
                    for (int k = 0; k < v; k++) {
                        double d = Math.abs(got[(b * ids[b].length + t) * v + k] - want.get(b).get(t).get(k).asDouble());
                        worst = Math.max(worst, d);
                    }
                }
            }
            assertTrue(worst <= 1e-4, name + ": max abs diff " + worst + " > 1e-4");

            long[] from = new long[g.get("greedy_from").size()];
            for (int i = 0; i < from.length; i++) {
                from[i] = g.get("greedy_from").get(i).asLong();
            }
            long[] expected = new long[g.get("greedy_ids").size()];
            for (int i = 0; i < expected.length; i++) {
                expected[i] = g.get("greedy_ids").get(i).asLong();
            }
            Generator.Result r = Generator.generate((b, max) -> LmSession.cached(m, b, max), List.of(from),
                    m.config().vocabSize(), m.config().maxPositionEmbeddings(),
                    new Generator.Options(expected.length, Sampler.greedy(), Set.of(), false), null);
            assertArrayEquals(expected, r.generated().get(0), name + ": greedy continuation (KV-cached)");
        }
    }
}
