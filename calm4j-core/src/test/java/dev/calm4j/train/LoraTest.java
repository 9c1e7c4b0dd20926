package dev.calm4j.train;

import dev.calm4j.Torch;
import dev.calm4j.data.DataRules;
import dev.calm4j.data.Dataset;
import dev.calm4j.eval.Accuracy;
import dev.calm4j.eval.EvalModel;
import dev.calm4j.eval.Evaluator;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.nn.Tensors;
import dev.calm4j.testing.TestModels;
import dev.calm4j.tokenize.Tokenizer;
import org.bytedeco.pytorch.NoGradGuard;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class LoraTest {
    @TempDir
    Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    @Test
    void loraStartsAsTheBaseTrainsAndRoundTrips() throws Exception {
        Path dir = TestModels.write(tmp.resolve("m"), TestModels.tinyLlama(), 51);
        Path data = TrainLoopTest.mappingData(tmp.resolve("d.jsonl"), 4);
        try (LlamaModel base = (LlamaModel) LmFamilies.load(dir)) {
            Map<String, float[]> before = TrainLoopTest.snapshot(base.namedWeights());
            float[] baseLogits;
            long[][] ids = {{1, 5, 6, 7}};
            try (NoGradGuard ng = new NoGradGuard()) {
                baseLogits = Tensors.toFloats(base.forward(TestModels.ids(ids)));
            }
            List<String> targets = List.of("q_proj", "v_proj");
            // rank matching: per rank, q (32+32) + v (16+32) per layer x 3 layers = 336
            assertEquals(336, Lora.paramsPerRank(base, targets));
            assertEquals(3, Lora.rankMatching(base, targets, 1000));
            Lora lora = Lora.init(base, targets, 4, 8, 1);
            try (NoGradGuard ng = new NoGradGuard()) {
                assertArrayEquals(baseLogits, Tensors.toFloats(lora.apply(base).forward(TestModels.ids(ids))),
                        "B = 0: the adapted model starts as the base");
            }
            Dataset d;
            try (Tokenizer t = Tokenizer.load(dir)) {
                d = Dataset.read(data, t, new DataRules(64, base.config().vocabSize(), null, null, false));
            }
            LoraObjective obj = new LoraObjective(base, dir, lora);
            double l0 = TrainLoop.evalLoss(obj, d, 16);
            TrainLoop.Result r = TrainLoop.run(obj, d, d, TrainConfig.defaults(60, 16, 1e-2, 1), tmp.resolve("lora"),
                    false, TrainListener.NONE);
            assertTrue(r.evalLoss() < 0.7 * l0, "LoRA must learn: " + l0 + " -> " + r.evalLoss());
            Map<String, float[]> after = TrainLoopTest.snapshot(base.namedWeights());
            for (String k : before.keySet()) {
                assertArrayEquals(before.get(k), after.get(k), "base weight " + k + " changed");
            }
            try (Lora back = Lora.load(tmp.resolve("lora"), base); NoGradGuard ng = new NoGradGuard()) {
                assertArrayEquals(Tensors.toFloats(lora.apply(base).forward(TestModels.ids(ids))),
                        Tensors.toFloats(back.apply(base).forward(TestModels.ids(ids))));
            }
        }
    }

    @Test
    void exactMatchAndWilsonInterval() throws Exception {
        Accuracy a = new Accuracy(0, 20);
        assertEquals(0, a.ci95()[0], 1e-12);
        assertEquals(0.161, a.ci95()[1], 1e-3);
        Accuracy b = new Accuracy(84, 100);
        assertEquals(0.756, b.ci95()[0], 1e-3);
        assertEquals(0.899, b.ci95()[1], 1e-3);
        // A model trained to memorise the mapping gets it exactly right; an untrained one does not.
        Path dir = TestModels.write(tmp.resolve("m"), TestModels.tinyLlama(), 52);
        Path data = TrainLoopTest.mappingData(tmp.resolve("d.jsonl"), 5);
        try (LlamaModel m = (LlamaModel) LmFamilies.load(dir); Tokenizer t = Tokenizer.load(dir)) {
            Dataset d = Dataset.read(data, t, new DataRules(64, m.config().vocabSize(), 2, null, false));
            double untrained = Evaluator.exactMatch(EvalModel.of(m), d, 5, Set.of(2), null).accuracy().value();
            TrainLoop.run(new LmObjective(m, null), d, null, TrainConfig.defaults(150, 16, 1e-2, 1), tmp.resolve("o"),
                    false, TrainListener.NONE);
            Evaluator.ExactMatch em = Evaluator.exactMatch(EvalModel.of(m), d, 5, Set.of(2), null);
            assertEquals(16, em.accuracy().n());
            assertEquals(1.0, em.accuracy().value(), "memorised mapping; untrained was " + untrained);
            assertTrue(untrained < 0.2);
            Evaluator.Perplexity p = Evaluator.perplexity(EvalModel.of(m), d, 8);
            assertTrue(p.perplexity() < 1.2 && p.tokens() == 16 * 3, p.toString());
        }
    }
}
