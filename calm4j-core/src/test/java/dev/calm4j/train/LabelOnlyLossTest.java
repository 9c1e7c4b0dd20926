package dev.calm4j.train;

import dev.calm4j.Torch;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.Batch;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.lm.llama.LlamaWeights;
import dev.calm4j.testing.TestModels;
import org.bytedeco.pytorch.GeneratorOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.bytedeco.pytorch.global.torch.createCPUGenerator;
import static org.bytedeco.pytorch.global.torch.randint;
import static org.bytedeco.pytorch.global.torch.randn;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The loss that applies the output head only where there are labels ({@link Losses#sum(Tensor,
 * java.util.function.UnaryOperator, long[])}) is the loss over full-vocabulary logits: the same value and the same
 * gradients for the bridges, for a trained anchor and with every position or none labelled.
 */
class LabelOnlyLossTest {
    static final LlamaConfig ANCHOR = TestModels.tinyLlama();       // GQA: 4 query heads, 2 key-value heads
    static final LlamaConfig AUGMENT = TestModels.tinyAugment();

    @BeforeAll
    static void init() {
        Torch.init();
    }

    static Tensor ids() {
        return randint(ANCHOR.vocabSize(), new long[] {3, 11}, new GeneratorOptional(createCPUGenerator(7)),
                new TensorOptions(ScalarType.Long));
    }

    /** Labels for a [3, 11] batch: a prompt of {@code prompt} positions per row without loss, then labels. */
    static long[] labels(int prompt) {
        Random r = new Random(prompt);
        long[] l = new long[3 * 11];
        for (int i = 0; i < l.length; i++) {
            int rowPrompt = prompt == 0 ? 0 : prompt + i / 11;     // ragged prompts; 0: every position labelled
            l[i] = i % 11 < rowPrompt ? Batch.IGNORE_INDEX : r.nextInt(ANCHOR.vocabSize());
        }
        return l;
    }

    static CalmModel composition() {
        LlamaModel anchor = new LlamaModel(ANCHOR, LlamaWeights.random(ANCHOR, 5, 0.2, ScalarType.Float), ScalarType.Float);
        LlamaModel augment = new LlamaModel(AUGMENT, LlamaWeights.random(AUGMENT, 6, 0.2, ScalarType.Float), ScalarType.Float);
        CalmModel calm = CalmModel.create(anchor, List.of(augment), new CompositionPlan(CompositionPlan.parse("0->0,1->1")),
                Mode.SAME_SEQUENCE, 4, 0.1, 9);
        try (NoGradGuard ng = new NoGradGuard()) {                 // as if trained: W_O non-zero
            for (Map.Entry<String, Tensor> e : calm.bridgeTensors().entrySet()) {
                if (e.getKey().endsWith("o.weight")) {
                    e.getValue().add_(randn(e.getValue().sizes().vec().get(), new GeneratorOptional(createCPUGenerator(11)),
                            new TensorOptions(ScalarType.Float)).mul(new Scalar(0.1)));
                }
            }
        }
        calm.bridgeTensors().values().forEach(t -> t.set_requires_grad(true));
        return calm;
    }

    /** The loss's value and every bridge gradient, by the full-logits path or the label-only one. */
    static Map<String, Tensor> lossAndGradients(CalmModel calm, long[] labels, boolean labelOnly) {
        calm.bridgeTensors().values().forEach(t -> {
            if (t.grad().defined()) {
                t.grad().zero_();
            }
        });
        Tensor h = calm.hidden(ids(), null, null, null);
        Tensor loss = labelOnly ? Losses.sum(h, calm::logits, labels) : Losses.sum(calm.logits(h), labels);
        loss.backward();
        Map<String, Tensor> out = new LinkedHashMap<>();
        out.put("loss", loss.detach().clone());
        calm.bridgeTensors().forEach((k, v) -> out.put(k, v.grad().clone()));
        return out;
    }

    @Test
    void labelOnlyLossEqualsTheFullLogitsLossAndItsGradients() {
        CalmModel calm = composition();
        for (int prompt : new int[] {0, 4, 11}) {                  // every position labelled, a prompt, none at all
            long[] labels = labels(prompt);
            Map<String, Tensor> full = lossAndGradients(calm, labels, false);
            Map<String, Tensor> only = lossAndGradients(calm, labels, true);
            double l = full.get("loss").item_double();
            assertEquals(l, only.get("loss").item_double(), 1e-5 * Math.max(1, Math.abs(l)), "prompt " + prompt);
            if (prompt == 11) {
                assertEquals(0.0, l, "no label, no loss");
            } else {
                assertTrue(l > 1, "prompt " + prompt + ": a real loss");
            }
            for (String k : full.keySet()) {
                Tensor a = full.get(k);
                Tensor b = only.get(k);
                double scale = Math.max(1e-12, a.abs().max().item_double());
                assertTrue(a.sub(b).abs().max().item_double() <= 1e-5 * scale,
                        "prompt " + prompt + ": " + k + " differs by " + a.sub(b).abs().max().item_double() / scale);
                if (!k.equals("loss") && prompt < 11) {
                    assertTrue(scale > 1e-8, "prompt " + prompt + ": " + k + " gets a gradient");
                }
            }
        }
    }

    @Test
    void promptPositionsChangeNothing() {
        // Where there is no label the head never runs: whatever the hidden state there, the loss is the same.
        CalmModel calm = composition();
        long[] labels = labels(4);
        Tensor h = calm.hidden(ids(), null, null, null).detach();
        double base = Losses.sum(h, calm::logits, labels).item_double();
        Tensor changed = h.clone();
        try (NoGradGuard ng = new NoGradGuard()) {
            changed.narrow(1, 0, 4).fill_(new Scalar(1e3));       // the first 4 positions of every row: unlabelled
        }
        assertEquals(base, Losses.sum(changed, calm::logits, labels).item_double(), 1e-6 * Math.abs(base));
    }
}
