package dev.calm4j.generate;

import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.testing.TestModels;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GenerationTest {
    @TempDir
    static Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    private static Generator.Result run(CausalLm m, boolean cached, List<long[]> prompts, int n, Sampler s) {
        Generator.SessionFactory f = cached ? (b, max) -> LmSession.cached(m, b, max) : (b, max) -> LmSession.recompute(m);
        return Generator.generate(f, prompts, m.config().vocabSize(), m.config().maxPositionEmbeddings(),
                new Generator.Options(n, s, Set.of(), true), null);
    }

    /** Invariant 4 (anchor alone): KV-cached decoding == full recomputation, logits at every step. */
    @Test
    void cachedEqualsRecomputedEveryStep() {
        for (LlamaConfig c : List.of(TestModels.tinyLlama(), TestModels.tinyMistral(), TestModels.tinyQwen())) {
            Path dir = TestModels.write(tmp.resolve("cache-" + c.modelType()), c, 11);
            try (CausalLm m = LmFamilies.load(dir)) {
                List<long[]> prompts = List.of(new long[] {1, 7, 8, 9, 10, 11, 12});
                Generator.Result a = run(m, true, prompts, 12, Sampler.greedy());
                Generator.Result b = run(m, false, prompts, 12, Sampler.greedy());
                assertArrayEquals(b.generated().get(0), a.generated().get(0), c.modelType());
                assertEquals(b.stepLogits().size(), a.stepLogits().size());
                for (int s = 0; s < a.stepLogits().size(); s++) {
                    double d = TestModels.maxAbsDiff(a.stepLogits().get(s)[0], b.stepLogits().get(s)[0]);
                    assertTrue(d < 1e-4, c.modelType() + " step " + s + ": cached vs recomputed differ by " + d);
                }
            }
        }
    }

    /** Invariant 6 for one model: padding a row (a longer neighbour) never changes that row's logits. */
    @Test
    void paddedBatchRowsAreIndependent() {
        for (LlamaConfig c : List.of(TestModels.tinyLlama(), TestModels.tinyMistral())) {
            Path dir = TestModels.write(tmp.resolve("pad-" + c.modelType()), c, 12);
            try (CausalLm m = LmFamilies.load(dir)) {
                long[] shortP = {1, 20, 21};
                long[] longP = {1, 5, 6, 7, 8, 9, 10, 11, 12};
                Generator.Result alone = run(m, true, List.of(shortP), 8, Sampler.greedy());
                Generator.Result batch = run(m, true, List.of(longP, shortP), 8, Sampler.greedy());
                Generator.Result batchRecompute = run(m, false, List.of(longP, shortP), 8, Sampler.greedy());
                Generator.Result longAlone = run(m, true, List.of(longP), 8, Sampler.greedy());
                assertArrayEquals(alone.generated().get(0), batch.generated().get(1));
                assertArrayEquals(longAlone.generated().get(0), batch.generated().get(0));
                for (int s = 0; s < alone.stepLogits().size(); s++) {
                    double d = TestModels.maxAbsDiff(alone.stepLogits().get(s)[0], batch.stepLogits().get(s)[1]);
                    assertTrue(d < 1e-4, c.modelType() + " step " + s + ": padded row differs by " + d);
                    double e = TestModels.maxAbsDiff(batch.stepLogits().get(s)[1], batchRecompute.stepLogits().get(s)[1]);
                    assertTrue(e < 1e-4, c.modelType() + " step " + s + ": padded cached vs recomputed differ by " + e);
                }
            }
        }
    }

    @Test
    void samplingIsSeededAndStopsAtEos() {
        Path dir = TestModels.write(tmp.resolve("sample"), TestModels.tinyLlama(), 13);
        try (CausalLm m = LmFamilies.load(dir)) {
            List<long[]> p = List.of(new long[] {1, 4, 5});
            long[] a = run(m, true, p, 20, Sampler.sample(1.0, 0, 0.95, 42)).generated().get(0);
            long[] b = run(m, true, p, 20, Sampler.sample(1.0, 0, 0.95, 42)).generated().get(0);
            long[] c = run(m, true, p, 20, Sampler.sample(1.0, 0, 0.95, 43)).generated().get(0);
            assertArrayEquals(a, b);
            assertNotEquals(java.util.Arrays.toString(a), java.util.Arrays.toString(c));
            // Stop ids: make the first greedy token a stop id, and generation ends right after it.
            long first = run(m, true, p, 1, Sampler.greedy()).generated().get(0)[0];
            Generator.Result r = Generator.generate((bb, max) -> LmSession.cached(m, bb, max), p, m.config().vocabSize(),
                    128, new Generator.Options(20, Sampler.greedy(), Set.of((int) first), false), null);
            assertArrayEquals(new long[] {first}, r.generated().get(0));
        }
    }

    @Test
    void topKOneIsGreedy() {
        Path dir = TestModels.write(tmp.resolve("topk"), TestModels.tinyLlama(), 14);
        try (CausalLm m = LmFamilies.load(dir)) {
            List<long[]> p = List.of(new long[] {1, 9});
            assertArrayEquals(run(m, true, p, 10, Sampler.greedy()).generated().get(0),
                    run(m, true, p, 10, Sampler.sample(0.7, 1, 1.0, 5)).generated().get(0));
        }
    }

    @Test
    void badPromptsAreRefused() {
        Path dir = TestModels.write(tmp.resolve("bad"), TestModels.tinyLlama(), 15);
        try (CausalLm m = LmFamilies.load(dir)) {
            Calm4jException e = assertThrows(Calm4jException.class,
                    () -> run(m, true, List.of(new long[] {1, 9999}), 3, Sampler.greedy()));
            assertTrue(e.getMessage().contains("9999") && e.getMessage().contains("vocabulary"), e.getMessage());
            e = assertThrows(Calm4jException.class, () -> run(m, true, List.of(new long[] {1, 2}), 500, Sampler.greedy()));
            assertTrue(e.getMessage().contains("max_position_embeddings"), e.getMessage());
        }
    }
}
