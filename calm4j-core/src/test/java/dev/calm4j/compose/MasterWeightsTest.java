package dev.calm4j.compose;

import dev.calm4j.Torch;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.lm.llama.LlamaWeights;
import dev.calm4j.lm.llama.RopeScaling;
import dev.calm4j.train.Lora;
import org.bytedeco.pytorch.GeneratorOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.bytedeco.pytorch.global.torch.createCPUGenerator;
import static org.bytedeco.pytorch.global.torch.randint;
import static org.bytedeco.pytorch.global.torch.randn;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Trainable tensors are float32 master weights whatever the frozen models compute in: under bf16 compute the bridges
 * and LoRA adapters stay float32, their gradients come back in float32 (so AdamW's steps smaller than bf16's
 * resolution are kept), and the composition computes what it computes with the same tensors in float32, to bf16's
 * rounding.
 */
class MasterWeightsTest {
    static final LlamaConfig ANCHOR = new LlamaConfig("llama", 40, 32, 48, 2, 4, 4, 8, 1e-5, 10000.0, RopeScaling.NONE,
            128, false, false, false, false, 0, 1, List.of(2), "float32");
    static final LlamaConfig AUGMENT = new LlamaConfig("llama", 40, 24, 48, 2, 3, 3, 8, 1e-5, 10000.0, RopeScaling.NONE,
            128, false, false, false, false, 0, 1, List.of(2), "float32");

    @BeforeAll
    static void init() {
        Torch.init();
    }

    static Tensor ids() {
        return randint(ANCHOR.vocabSize(), new long[] {2, 9}, new GeneratorOptional(createCPUGenerator(7)),
                new TensorOptions(ScalarType.Long));
    }

    static double relDiff(Tensor a, Tensor b) {
        Tensor fa = a.to(ScalarType.Float);
        Tensor fb = b.to(ScalarType.Float);
        return fa.sub(fb).abs().max().item_double() / fb.abs().max().item_double();
    }

    @Test
    void bridgesStayFloat32UnderBf16ComputeAndComputeAsInFloat32() {
        Tensor[] logits = new Tensor[2];
        Map<String, Tensor> grads = new java.util.LinkedHashMap<>();
        ScalarType[] dtypes = {ScalarType.Float, ScalarType.BFloat16};
        for (int i = 0; i < 2; i++) {
            ScalarType dt = dtypes[i];
            LlamaModel anchor = new LlamaModel(ANCHOR, LlamaWeights.random(ANCHOR, 5, 0.2, dt), dt);
            LlamaModel augment = new LlamaModel(AUGMENT, LlamaWeights.random(AUGMENT, 6, 0.2, dt), dt);
            CalmModel calm = CalmModel.create(anchor, List.of(augment), new CompositionPlan(CompositionPlan.parse("0->0,1->1")),
                    Mode.SAME_SEQUENCE, 4, 0.1, 9);
            try (NoGradGuard ng = new NoGradGuard()) {            // as if trained: W_O non-zero, the same in both
                for (Map.Entry<String, Tensor> e : calm.bridgeTensors().entrySet()) {
                    assertEquals(ScalarType.Float, e.getValue().scalar_type().intern(), dt + ": " + e.getKey() + " is float32");
                    if (e.getKey().endsWith("o.weight")) {
                        e.getValue().add_(randn(e.getValue().sizes().vec().get(), new GeneratorOptional(createCPUGenerator(11)),
                                new TensorOptions(ScalarType.Float)).mul(new Scalar(0.1)));
                    }
                }
            }
            calm.bridgeTensors().values().forEach(t -> t.set_requires_grad(true));
            logits[i] = calm.forward(ids(), null, null, null);
            assertEquals(dt, logits[i].scalar_type().intern(), "the composition computes in the models' dtype");
            logits[i].to(ScalarType.Float).square().mean().backward();
            for (Map.Entry<String, Tensor> e : calm.bridgeTensors().entrySet()) {
                Tensor g = e.getValue().grad();
                assertTrue(g.defined(), dt + ": " + e.getKey() + " has a gradient");
                assertEquals(ScalarType.Float, g.scalar_type().intern(), dt + ": " + e.getKey() + "'s gradient is float32");
                if (i == 0) {
                    grads.put(e.getKey(), g.clone());
                } else {
                    double d = relDiff(g, grads.get(e.getKey()));
                    assertTrue(d < 0.1, e.getKey() + ": bf16 vs float32 gradient differs by " + d + " of its largest");
                }
            }
            calm.close();
        }
        double d = relDiff(logits[1], logits[0]);
        assertTrue(d < 0.05, "bf16 vs float32 logits differ by " + d + " of the largest");
    }

    @Test
    void loraAdaptersStayFloat32UnderBf16Compute() {
        LlamaModel base = new LlamaModel(ANCHOR, LlamaWeights.random(ANCHOR, 5, 0.2, ScalarType.BFloat16), ScalarType.BFloat16);
        try (Lora lora = Lora.init(base, List.of("q_proj", "v_proj"), 4, 8.0, 3)) {
            for (Map.Entry<String, Tensor> e : lora.named().entrySet()) {
                assertEquals(ScalarType.Float, e.getValue().scalar_type().intern(), e.getKey() + " is float32");
                e.getValue().set_requires_grad(true);
            }
            try (NoGradGuard ng = new NoGradGuard()) {            // B != 0, so A gets a gradient too
                lora.named().entrySet().stream().filter(e -> e.getKey().contains("lora_B")).forEach(e -> e.getValue()
                        .add_(new Scalar(0.01)));
            }
            Tensor logits = lora.apply(base).forward(ids());
            assertEquals(ScalarType.BFloat16, logits.scalar_type().intern());
            logits.to(ScalarType.Float).square().mean().backward();
            for (Map.Entry<String, Tensor> e : lora.named().entrySet()) {
                Tensor g = e.getValue().grad();
                assertTrue(g.defined() && g.scalar_type().intern() == ScalarType.Float, e.getKey() + ": a float32 gradient");
            }
        }
    }
}
