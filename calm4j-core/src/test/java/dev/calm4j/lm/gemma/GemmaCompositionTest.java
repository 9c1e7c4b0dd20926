package dev.calm4j.lm.gemma;

import dev.calm4j.Torch;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Mode;
import dev.calm4j.generate.CalmSession;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.Sampler;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.llama.RopeScaling;
import dev.calm4j.nn.Tensors;
import dev.calm4j.testing.TestModels;
import dev.calm4j.tokenize.CharTokenizer;
import org.bytedeco.pytorch.GeneratorOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Set;

import static org.bytedeco.pytorch.global.torch.randn;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Gemma in a composition, as the anchor and as the augment, on tiny random models: with the bridges at init
 * (W_O = 0) the composed logits are the anchor's alone, and with trained-looking bridges KV-cached generation equals
 * recomputation (sliding windows of 3 bite within the 8-token inputs and the generation).
 */
class GemmaCompositionTest {
    static final String S = GemmaConfig.SLIDING;
    static final String F = GemmaConfig.FULL;
    static final long[][] IDS = {{1, 5, 6, 7, 8, 9, 10, 11}, {1, 30, 31, 32, 33, 34, 35, 36}};

    @BeforeAll
    static void init() {
        Torch.init();
    }

    static int vocab() {
        return CharTokenizer.vocabSize(TestModels.ALPHABET);
    }

    static Gemma2Config tinyGemma2() {
        return new Gemma2Config(vocab(), 32, 48, 3, 4, 2, 8, 1e-6, 10000.0, RopeScaling.NONE, 128, true, false, 16.0,
                3, Gemma2Config.alternating(3), 2.0, 5.0, 1, List.of(2), "float32");
    }

    static Gemma3TextConfig tinyGemma3() {
        return new Gemma3TextConfig(vocab(), 24, 48, 3, 2, 1, 12, 1e-6, 1000.0, new RopeScaling("linear", 2.0, 0, 0, 0),
                10.0, RopeScaling.NONE, 128, false, false, 12.0, 3, List.of(S, S, F), 0, 0, 1, List.of(2), "float32");
    }

    static float[] alone(CausalLm m) {
        try (NoGradGuard ng = new NoGradGuard()) {
            return Tensors.toFloats(m.forward(TestModels.ids(IDS)));
        }
    }

    static float[] composed(CalmModel c) {
        try (NoGradGuard ng = new NoGradGuard()) {
            return Tensors.toFloats(c.forward(TestModels.ids(IDS), null, null, null));
        }
    }

    static CausalLm random(ModelConfig c, long seed) {
        return LmFamilies.random(c, seed, 0.2, ScalarType.Float);
    }

    @Test
    void zeroInitBridgesGiveExactlyTheAnchorWithGemmaOnEitherSide() {
        List<ModelConfig[]> pairs = List.of(
                new ModelConfig[] {tinyGemma2(), TestModels.tinyAugment()},      // gemma2 anchor, llama augment
                new ModelConfig[] {tinyGemma3(), tinyGemma2()},                  // gemma3 anchor, gemma2 augment
                new ModelConfig[] {TestModels.tinyLlama(), tinyGemma3()});       // llama anchor, gemma3 augment
        for (ModelConfig[] p : pairs) {
            try (CausalLm anchor = random(p[0], 31); CausalLm augment = random(p[1], 32);
                 CalmModel c = CalmModel.create(anchor, List.of(augment),
                         new CompositionPlan(CompositionPlan.parse("0->0,1->1,1->2")), Mode.SAME_SEQUENCE, 4, 5)) {
                double d = TestModels.maxAbsDiff(alone(anchor), composed(c));
                assertTrue(d < 1e-5, p[0].modelType() + " anchor + " + p[1].modelType()
                        + " augment: untrained composition differs from the anchor by " + d);
            }
        }
    }

    @Test
    void cachedCompositionEqualsRecomputationWithAGemmaAnchor() {
        for (ModelConfig[] p : List.of(new ModelConfig[] {tinyGemma2(), tinyGemma3()},
                new ModelConfig[] {tinyGemma3(), tinyGemma2()})) {
            try (CausalLm anchor = random(p[0], 41); CausalLm augment = random(p[1], 42);
                 CalmModel m = CalmModel.create(anchor, List.of(augment),
                         new CompositionPlan(CompositionPlan.parse("0->0,2->1")), Mode.SAME_SEQUENCE, 4, 5)) {
                org.bytedeco.pytorch.Generator g = org.bytedeco.pytorch.global.torch.createCPUGenerator(1234);
                try (NoGradGuard ng = new NoGradGuard()) {
                    for (Tensor t : m.bridgeTensors().values()) {            // as if trained: W_O != 0
                        t.add_(randn(Tensors.shape(t), new GeneratorOptional(g), new TensorOptions(ScalarType.Float))
                                .mul(new Scalar(0.3)));
                    }
                }
                assertTrue(TestModels.maxAbsDiff(alone(anchor), composed(m)) > 1e-3, "the bridges must matter");
                List<long[]> prompts = List.of(new long[] {1, 5, 6, 7, 8}, new long[] {1, 8});
                Generator.Options opt = new Generator.Options(8, Sampler.greedy(), Set.of(), true);
                Generator.Result a = Generator.generate((b, max) -> CalmSession.cached(m, b, max, null), prompts,
                        vocab(), 128, opt, null);
                Generator.Result r = Generator.generate((b, max) -> CalmSession.recompute(m, b, null), prompts,
                        vocab(), 128, opt, null);
                for (int row = 0; row < 2; row++) {
                    assertArrayEquals(r.generated().get(row), a.generated().get(row), p[0].modelType() + " row " + row);
                    for (int s = 0; s < a.stepLogits().size(); s++) {
                        double d = TestModels.maxAbsDiff(a.stepLogits().get(s)[row], r.stepLogits().get(s)[row]);
                        assertTrue(d < 1e-4, p[0].modelType() + " row " + row + " step " + s + ": cached vs recomputed " + d);
                    }
                }
            }
        }
    }
}
