package dev.calm4j.lm.llama;

import dev.calm4j.Torch;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Mode;
import dev.calm4j.lm.KvCache;
import dev.calm4j.nn.Ops;
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

import static org.bytedeco.pytorch.global.torch.createCPUGenerator;
import static org.bytedeco.pytorch.global.torch.randint;
import static org.bytedeco.pytorch.global.torch.randn;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The fused projections ({@link LlamaWeights.Fused}: q, k, v in one matmul, gate and up in another) compute what the
 * plain path computes: logits, decoding with a cache, and the bridges' gradients through the frozen anchor, in fp32
 * and bf16; and a block whose projections train runs the plain path, with gradients on the named tensors.
 */
class FusedProjectionsTest {
    /** GQA (4 query heads, 2 key-value heads) with every bias Llama allows, so that every split is exercised. */
    static final LlamaConfig CONFIG = new LlamaConfig("llama", 40, 32, 48, 2, 4, 2, 8, 1e-5, 10000.0,
            RopeScaling.NONE, 128, false, true, true, true, 0, 1, List.of(2), "float32");

    @BeforeAll
    static void init() {
        Torch.init();
    }

    /** Random weights with non-zero biases, set through the named views (so the fused tensors must see them). */
    static LlamaWeights weights(LlamaConfig c, long seed, ScalarType dtype) {
        LlamaWeights w = LlamaWeights.random(c, seed, 0.2, dtype);
        org.bytedeco.pytorch.Generator g = createCPUGenerator(seed + 100);
        try (NoGradGuard ng = new NoGradGuard()) {
            for (Map.Entry<String, Tensor> e : w.named().entrySet()) {
                if (e.getKey().endsWith(".bias")) {
                    Tensor t = e.getValue();
                    t.add_(randn(t.sizes().vec().get(), new GeneratorOptional(g), new TensorOptions(ScalarType.Float))
                            .mul(new Scalar(0.3)).to(dtype));
                }
            }
        }
        return w;
    }

    static Tensor ids(long seed, long b, long t) {
        return randint(CONFIG.vocabSize(), new long[] {b, t}, new GeneratorOptional(createCPUGenerator(seed)),
                new TensorOptions(ScalarType.Long));
    }

    static double maxAbs(Tensor a) {
        return a.to(ScalarType.Float).abs().max().item_double();
    }

    static double relDiff(Tensor a, Tensor b) {
        return maxAbs(a.to(ScalarType.Float).sub(b.to(ScalarType.Float))) / maxAbs(b);
    }

    @Test
    void fusedLogitsEqualPlainOnesInFp32AndBf16() {
        // fp32: the same products summed in another order at most; bf16: each projection's outputs are rounded to
        // bf16 either way, so differences stay at a few of its steps (2^-8 relative) after two blocks.
        for (ScalarType dt : new ScalarType[] {ScalarType.Float, ScalarType.BFloat16}) {
            double tol = dt == ScalarType.Float ? 1e-5 : 3e-2;
            LlamaWeights w = weights(CONFIG, 3, dt);
            LlamaModel fused = new LlamaModel(CONFIG, w, dt);
            LlamaModel plain = fused.withWeights(w.unfused());
            assertNotNull(w.fused(0), "frozen weights are fused at load");
            assertNull(w.unfused().fused(0), "the comparison runs the plain path");
            try (NoGradGuard ng = new NoGradGuard()) {
                Tensor x = ids(1, 3, 11);
                double d = relDiff(fused.forward(x), plain.forward(x));
                assertTrue(d < tol, dt + ": fused vs plain logits differ by " + d + " of their largest (tolerance " + tol + ")");

                // Decoding with a cache: the one-row projections (matrix-vector products) through both paths.
                try (KvCache a = fused.newCache(3, 16); KvCache b = plain.newCache(3, 16)) {
                    fused.forward(x, null, a);
                    plain.forward(x, null, b);
                    Tensor next = ids(2, 3, 1);
                    double dd = relDiff(fused.forward(next, null, a), plain.forward(next, null, b));
                    assertTrue(dd < tol, dt + ": decoding step differs by " + dd);
                }
                Tensor one = ids(4, 1, 1);                     // one row, one position: the mv path from the start
                double d1 = relDiff(fused.forward(one), plain.forward(one));
                assertTrue(d1 < tol, dt + ": one-token forward differs by " + d1);
            }
            fused.close();
        }
    }

    @Test
    void bridgeGradientsThroughFusedFrozenModelsEqualPlainOnes() {
        LlamaConfig aug = new LlamaConfig("llama", 40, 24, 48, 2, 3, 3, 8, 1e-5, 10000.0, RopeScaling.NONE, 128, false,
                false, false, false, 0, 1, List.of(2), "float32");
        for (ScalarType dt : new ScalarType[] {ScalarType.Float, ScalarType.BFloat16}) {
            double tol = dt == ScalarType.Float ? 1e-4 : 5e-2;
            LlamaWeights aw = weights(CONFIG, 5, dt);
            LlamaWeights uw = weights(aug, 6, dt);
            LlamaModel anchor = new LlamaModel(CONFIG, aw, dt);
            LlamaModel augment = new LlamaModel(aug, uw, dt);
            Map<String, Tensor> grads = new LinkedHashMap<>();
            for (boolean fused : new boolean[] {true, false}) {
                LlamaModel a = fused ? anchor : anchor.withWeights(aw.unfused());
                LlamaModel u = fused ? augment : augment.withWeights(uw.unfused());
                CalmModel calm = CalmModel.create(a, List.of(u), new CompositionPlan(CompositionPlan.parse("0->0,1->1")),
                        Mode.SAME_SEQUENCE, 4, 0.1, 9);
                try (NoGradGuard ng = new NoGradGuard()) {        // as if trained: W_O non-zero
                    for (Map.Entry<String, Tensor> e : calm.bridgeTensors().entrySet()) {
                        if (e.getKey().endsWith("o.weight")) {
                            e.getValue().add_(randn(e.getValue().sizes().vec().get(),
                                    new GeneratorOptional(createCPUGenerator(11)), new TensorOptions(ScalarType.Float))
                                    .mul(new Scalar(0.1)).to(dt));
                        }
                    }
                }
                calm.bridgeTensors().values().forEach(t -> t.set_requires_grad(true));
                Tensor logits = calm.forward(ids(7, 2, 9), null, null, null);
                logits.to(ScalarType.Float).square().mean().backward();
                for (Map.Entry<String, Tensor> e : calm.bridgeTensors().entrySet()) {
                    Tensor g = e.getValue().grad();
                    assertTrue(g.defined(), e.getKey() + " has a gradient");
                    if (fused) {
                        grads.put(e.getKey(), g.clone());
                    } else {
                        double d = relDiff(grads.get(e.getKey()), g);
                        assertTrue(d < tol, dt + " " + e.getKey() + ": fused vs plain gradient differs by " + d);
                    }
                }
                calm.close();
            }
            anchor.close();
            augment.close();
        }
    }

    @Test
    void trainedProjectionsRunThePlainPathAndGetGradients() {
        LlamaWeights w = weights(CONFIG, 8, ScalarType.Float);
        LlamaModel m = new LlamaModel(CONFIG, w, ScalarType.Float);
        // Separate copies of the same values: what the named views must behave like when they are trained.
        Map<String, Tensor> copies = new LinkedHashMap<>();
        w.named().forEach((k, v) -> copies.put(k, v.clone()));
        LlamaModel separate = m.withWeights(w.unfused().withReplaced(copies));
        w.named().values().forEach(t -> t.set_requires_grad(true));
        copies.values().forEach(t -> t.set_requires_grad(true));
        assertNull(w.fused(0), "a block whose projections train does not use the fused tensors");
        Tensor x = ids(3, 2, 7);
        m.forward(x).square().mean().backward();
        separate.forward(x).square().mean().backward();
        for (String name : List.of("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.bias",
                "model.layers.1.self_attn.v_proj.weight", "model.layers.1.mlp.gate_proj.weight",
                "model.layers.1.mlp.up_proj.bias")) {
            Tensor g = w.named().get(name).grad();
            assertTrue(g.defined(), name + " (a view of the fused rows) gets a gradient");
            assertEquals(0.0, maxAbs(g.sub(copies.get(name).grad())), 1e-6, name + ": the same gradient as a separate tensor's");
        }
        // An in-place update of a named view (an optimizer's step) is what the fused path computes with afterwards.
        try (NoGradGuard ng = new NoGradGuard()) {
            w.named().get("model.layers.0.self_attn.k_proj.weight").add_(new Scalar(0.05));
        }
        w.named().values().forEach(t -> t.set_requires_grad(false));
        assertNotNull(w.fused(0));
        try (NoGradGuard ng = new NoGradGuard()) {
            double d = relDiff(m.forward(x), m.withWeights(w.unfused()).forward(x));
            assertTrue(d < 1e-5, "after an in-place update fused and plain differ by " + d);
        }
        m.close();
    }

    /**
     * Fusing frees the separate copies: once a block's q, k, v, gate and up are rows of the fused tensors, nothing of
     * calm4j's holds the originals (a reference left behind, as the vector handed to {@code cat} once kept, holds a
     * second copy of every projection until a GC), and the names are views of the fused rows with the same values.
     */
    @Test
    void fusingLeavesNoReferenceToTheSeparateCopies() {
        Map<String, Tensor> t = new LinkedHashMap<>(dev.calm4j.lm.WeightSpec.random(LlamaWeights.spec(CONFIG), 3, 0.2,
                ScalarType.Float));
        String p = "model.layers.1.";
        String[] names = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
            "self_attn.q_proj.bias", "mlp.gate_proj.weight", "mlp.up_proj.weight"};
        Tensor[] held = new Tensor[names.length];
        double[] sums = new double[names.length];
        for (int j = 0; j < names.length; j++) {
            held[j] = new Tensor(t.get(p + names[j]));              // a second handle on the same tensor: ours
            assertEquals(2, held[j].use_count(), names[j]);
            sums[j] = held[j].sum().item_double();
        }
        LlamaWeights.Fused f = LlamaWeights.fuse(t, p);
        for (int j = 0; j < names.length; j++) {
            assertEquals(1, held[j].use_count(), names[j] + ": still referenced after fusing");
            assertEquals(sums[j], t.get(p + names[j]).sum().item_double(), 1e-4, names[j]);
            assertTrue(t.get(p + names[j]).is_view(), names[j] + " is a view of the fused rows");
        }
        assertEquals(CONFIG.queryDim() + 2 * CONFIG.kvDim(), f.qkv().size(0));
    }

    @Test
    void linearSplitEqualsOneLinearPerPart() {
        Tensor x = randn(2, 5, 6);
        Tensor w = randn(7, 6);
        Tensor b = randn(7);
        Tensor[] parts = Ops.linearSplit(x, w, b, 4, 3);
        assertEquals(0.0, maxAbs(parts[0].sub(Ops.linear(x, w.narrow(0, 0, 4), b.narrow(0, 0, 4)))), 1e-5);
        assertEquals(0.0, maxAbs(parts[1].sub(Ops.linear(x, w.narrow(0, 4, 3), b.narrow(0, 4, 3)))), 1e-5);
    }
}
