package dev.calm4j.lm;

import dev.calm4j.Torch;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.LmSession;
import dev.calm4j.generate.Sampler;
import dev.calm4j.nn.Tensors;
import org.bytedeco.pytorch.NoGradGuard;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** A real pretrained checkpoint (llama2.c stories260K in HF layout): calm4j must reproduce llama2.c's own output. */
class Stories260KTest {
    static final long[] LLAMA2C_GREEDY = {
        461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435, 299, 362, 409, 283, 264,
        283, 452, 288, 13, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431,
        431, 293, 430, 417, 363, 416, 315, 342, 418, 424, 400, 442, 402, 303, 266, 299,
        374, 466, 396, 303, 271, 362, 390, 469, 306, 469, 423, 314, 347, 305, 356, 333};

    @BeforeAll
    static void init() {
        Torch.init();
    }

    static Path dir() {
        // A copy of llama2.c's stories260K (MIT, llama2.c; its README says how it was made), so that a clone
        // tests on its own.
        return Path.of("src/test/resources/stories260K");
    }

    @Test
    void greedyFromBosMatchesLlama2c() {
        try (CausalLm m = LmFamilies.load(dir())) {
            Generator.Result r = Generator.generate((b, max) -> LmSession.cached(m, b, max), List.of(new long[] {1}),
                    512, 512, new Generator.Options(64, Sampler.greedy(), Set.of(), false), null);
            assertArrayEquals(LLAMA2C_GREEDY, r.generated().get(0));
        }
    }

    @Test
    void firstLogitsMatchReadme() {
        try (CausalLm m = LmFamilies.load(dir()); NoGradGuard ng = new NoGradGuard()) {
            float[] logits = Tensors.toFloats(m.forward(Tensors.longs(new long[] {1}, 1, 1)));
            int[] ids = {461, 306, 295, 341, 453};
            double[] want = {9.4893, 9.3812, 8.5742, 8.3084, 7.6210};
            for (int i = 0; i < ids.length; i++) {
                assertEquals(want[i], logits[ids[i]], 2e-4, "logit of id " + ids[i]);
            }
        }
    }
}
