package dev.calm4j.train;

import dev.calm4j.Torch;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.Batch;
import dev.calm4j.data.DataRules;
import dev.calm4j.data.Dataset;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.lm.llama.LlamaWeights;
import dev.calm4j.nn.Tensors;
import dev.calm4j.testing.TestModels;
import dev.calm4j.tokenize.Tokenizer;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TrainLoopTest {
    @TempDir
    Path tmp;

    static final TrainListener QUIET = TrainListener.NONE;
    /** Records that the loop reported the run's end, with its curve, to its listener. */
    static final class Finished implements TrainListener {
        TrainLoop.Result result;
        Path out;

        @Override
        public void finished(TrainLoop.Result r, Path o) {
            result = r;
            out = o;
        }
    }

    @BeforeAll
    static void init() {
        Torch.init();
    }

    /** Key-value lines over 16 one-letter keys: "k=" -> two digits. */
    static Path mappingData(Path file, long seed) throws Exception {
        Random r = new Random(seed);
        List<Map<String, Object>> rows = new ArrayList<>();
        String keys = "abcdefghijklmnop";
        for (int i = 0; i < keys.length(); i++) {
            String v = String.valueOf(10 + r.nextInt(90));
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("prompt", keys.charAt(i) + "=");
            row.put("completion", v);
            rows.add(row);
        }
        Dataset.writeJsonl(file, rows);
        return file;
    }

    static Dataset read(Path file, Path modelDir, CausalLm m) {
        try (Tokenizer t = Tokenizer.load(modelDir)) {
            return Dataset.read(file, t, new DataRules(64, m.config().vocabSize(), null, null, false));
        }
    }

    static Map<String, float[]> snapshot(Map<String, Tensor> w) {
        Map<String, float[]> s = new HashMap<>();
        w.forEach((k, v) -> s.put(k, Tensors.toFloats(v)));
        return s;
    }

    /** The schedule: linear warmup, the peak held until the last decayFraction of the steps, cosine to the floor. */
    @Test
    void warmupStableDecaySchedule() {
        TrainConfig cos = TrainConfig.defaults(100, 4, 1e-3, 1);                     // warmup 5, cosine over the rest
        TrainConfig wsd = cos.withDecayFraction(0.25);
        for (int s = 0; s < 5; s++) {
            assertEquals(1e-3 * (s + 1) / 6, cos.lrAt(s), 1e-15);
            assertEquals(cos.lrAt(s), wsd.lrAt(s), 1e-15, "same warmup");
        }
        for (int s = 5; s < 75; s++) {
            assertEquals(1e-3, wsd.lrAt(s), 1e-15, "held at the peak, step " + s);
        }
        assertEquals(1e-3, cos.lrAt(5), 1e-15);
        assertTrue(cos.lrAt(50) < 0.6e-3 && cos.lrAt(50) > 0.5e-3, "cosine mid-way: " + cos.lrAt(50));
        for (int s = 75; s < 99; s++) {
            assertTrue(wsd.lrAt(s + 1) < wsd.lrAt(s), "decays, step " + s);
        }
        assertEquals(1e-4, wsd.lrAt(99), 1e-15, "the floor at the last step");
        assertEquals(1e-4, cos.lrAt(99), 1e-15);
        assertEquals(0.55e-3, wsd.lrAt(75 + 12), 0.02e-3, "half-way down half-way through the decay");
        org.junit.jupiter.api.Assertions.assertThrows(dev.calm4j.Calm4jException.class, () -> cos.withDecayFraction(0));
    }

    /** Invariant 3: a bridge training step changes bridge tensors only; anchor and augment stay bitwise equal. */
    @Test
    void onlyBridgesChange() throws Exception {
        Path anchorDir = TestModels.write(tmp.resolve("anchor"), TestModels.tinyLlama(), 31);
        Path augDir = TestModels.write(tmp.resolve("augment"), TestModels.tinyAugment(), 32);
        try (CausalLm anchor = LmFamilies.load(anchorDir); CausalLm aug = LmFamilies.load(augDir)) {
            Map<String, float[]> a0 = snapshot(anchor.namedWeights());
            Map<String, float[]> g0 = snapshot(aug.namedWeights());
            try (CalmModel calm = CalmModel.create(anchor, List.of(aug), new CompositionPlan(CompositionPlan.parse("0->0,1->1")),
                    Mode.SAME_SEQUENCE, 4, 1)) {
                Map<String, float[]> b0 = snapshot(calm.bridgeTensors());
                Dataset d = read(mappingData(tmp.resolve("d.jsonl"), 1), anchorDir, anchor);
                Finished finished = new Finished();
                TrainLoop.run(new BridgeObjective(calm, anchorDir, List.of(augDir)), d, null,
                        TrainConfig.defaults(3, 4, 1e-2, 1), tmp.resolve("out"), false, finished);
                Map<String, float[]> a1 = snapshot(anchor.namedWeights());
                Map<String, float[]> g1 = snapshot(aug.namedWeights());
                for (String k : a0.keySet()) {
                    assertArrayEquals(a0.get(k), a1.get(k), "anchor tensor " + k + " changed");
                    assertFalse(anchor.namedWeights().get(k).requires_grad(), k);
                }
                for (String k : g0.keySet()) {
                    assertArrayEquals(g0.get(k), g1.get(k), "augment tensor " + k + " changed");
                }
                Map<String, float[]> b1 = snapshot(calm.bridgeTensors());
                for (String k : b0.keySet()) {
                    assertTrue(TestModels.maxAbsDiff(b0.get(k), b1.get(k)) > 0, "bridge tensor " + k + " did not train");
                }
                assertTrue(Files.exists(tmp.resolve("out/bridges.safetensors")));
                assertTrue(Files.exists(tmp.resolve("out/calm_config.json")));
                // the loss curve goes to the listener (the CLI plots it: CliComposeTest checks loss.png)
                assertEquals(tmp.resolve("out"), finished.out);
                assertEquals(3, finished.result.curve().get(finished.result.curve().size() - 1)[0]);
                assertTrue(Files.readString(tmp.resolve("out/metrics.jsonl")).contains("\"step\":3"));
                // the numerics that rounded the run: recorded in the run directory and in the bridges' provenance
                var numerics = new com.fasterxml.jackson.databind.ObjectMapper().readTree(tmp.resolve("out/numerics.json").toFile());
                org.junit.jupiter.api.Assertions.assertEquals(Integer.toString(dev.calm4j.Torch.blasThreads()), numerics.get("blas_threads").asText());
                assertTrue(!numerics.get("cpu").asText().isBlank() && !numerics.get("blas").asText().isBlank()
                        && !numerics.get("torch_cpu_capability").asText().isBlank(), numerics.toString());
                assertTrue(Files.readString(tmp.resolve("out/calm_config.json")).contains("\"numerics\""));
            }
        }
    }

    /** Interrupt after 3 steps, resume to 6: the same bridges as 6 steps straight. */
    @Test
    void resumeReproducesAnUninterruptedRun() throws Exception {
        Path anchorDir = TestModels.write(tmp.resolve("anchor"), TestModels.tinyLlama(), 33);
        Path augDir = TestModels.write(tmp.resolve("augment"), TestModels.tinyAugment(), 34);
        Path data = mappingData(tmp.resolve("d.jsonl"), 2);
        List<float[]> finals = new ArrayList<>();
        for (boolean interrupted : new boolean[] {false, true}) {
            try (CausalLm anchor = LmFamilies.load(anchorDir); CausalLm aug = LmFamilies.load(augDir)) {
                Dataset d = read(data, anchorDir, anchor);
                Path out = tmp.resolve("run-" + interrupted);
                TrainConfig six = new TrainConfig(6, new TrainConfig.Batching(4, 2, 1), TrainConfig.Schedule.cosine(5e-3, 2, 0.1),
                        new TrainConfig.Optimizer(0.01, 0.9, 0.98, 1e-8, 1.0), new TrainConfig.Intervals(1, 0, 3), 7);
                if (interrupted) {
                    try (CalmModel c = CalmModel.create(anchor, List.of(aug), new CompositionPlan(CompositionPlan.parse("1->1")),
                            Mode.SAME_SEQUENCE, 4, 9)) {
                        // A run that saves at step 3 and is then "killed": emulate by running only 3 of the 6 steps.
                        TrainLoop.run(new BridgeObjective(c, anchorDir, List.of(augDir)), d, null, six,
                                out, false, QUIET, 4);   // checkpoint at 3, killed during step 4
                    }
                }
                try (CalmModel c = CalmModel.create(anchor, List.of(aug), new CompositionPlan(CompositionPlan.parse("1->1")),
                        Mode.SAME_SEQUENCE, 4, 9)) {
                    TrainLoop.run(new BridgeObjective(c, anchorDir, List.of(augDir)), d, null, six, out, interrupted,
                            QUIET);
                    float[] all = new float[0];
                    for (Tensor t : c.bridgeTensors().values()) {
                        float[] x = Tensors.toFloats(t);
                        float[] y = new float[all.length + x.length];
                        System.arraycopy(all, 0, y, 0, all.length);
                        System.arraycopy(x, 0, y, all.length, x.length);
                        all = y;
                    }
                    finals.add(all);
                }
            }
        }
        double d = TestModels.maxAbsDiff(finals.get(0), finals.get(1));
        assertTrue(d < 1e-6, "resumed run differs from an uninterrupted one by " + d);
    }

    /**
     * End to end: the augment learned a mapping (pretrained by the same loop); the anchor never saw it. Composing them,
     * the bridges learn to read the mapping: composed loss far below the anchor alone.
     */
    @Test
    void compositionLearnsWhatTheAnchorCannot() throws Exception {
        Path data = mappingData(tmp.resolve("map.jsonl"), 3);
        Path augDir = TestModels.write(tmp.resolve("augment"), TestModels.tinyAugment(), 35);
        Path anchorDir = TestModels.write(tmp.resolve("anchor"), TestModels.tinyLlama(), 36);
        Path trained = tmp.resolve("augment-trained");
        try (CausalLm aug = LmFamilies.load(augDir)) {
            Dataset d = read(data, augDir, aug);
            TrainLoop.Result r = TrainLoop.run(new LmObjective(aug, augDir.resolve("tokenizer.json")), d, null,
                    TrainConfig.defaults(150, 16, 1e-2, 1), trained, false, QUIET);
            assertTrue(r.finalLoss() < 0.1, "the augment must memorise the mapping, loss " + r.finalLoss());
        }
        try (CausalLm anchor = LmFamilies.load(anchorDir); CausalLm aug = LmFamilies.load(trained)) {
            Dataset d = read(data, anchorDir, anchor);
            try (CalmModel calm = CalmModel.create(anchor, List.of(aug), new CompositionPlan(CompositionPlan.parse("1->2")),
                    Mode.SAME_SEQUENCE, 4, 2)) {
                BridgeObjective obj = new BridgeObjective(calm, anchorDir, List.of(trained));
                double before = TrainLoop.evalLoss(obj, d, 16);     // W_O = 0: the anchor alone
                TrainLoop.Result r = TrainLoop.run(obj, d, d, TrainConfig.defaults(200, 16, 3e-3, 1),
                        tmp.resolve("bridges"), false, QUIET);
                assertTrue(r.evalLoss() < 0.25 * before, "composed loss " + r.evalLoss() + " vs anchor alone " + before);
            }
        }
    }

    /** Float64 gradients of every bridge tensor against central finite differences, through frozen upper blocks. */
    @Test
    void bridgeGradientsMatchFiniteDifferences() {
        var ac = TestModels.tinyLlama();
        var gc = TestModels.tinyAugment();
        try (LlamaModel anchor = new LlamaModel(ac, LlamaWeights.random(ac, 41, 0.2, ScalarType.Double), ScalarType.Double);
             LlamaModel aug = new LlamaModel(gc, LlamaWeights.random(gc, 42, 0.2, ScalarType.Double), ScalarType.Double);
             CalmModel calm = CalmModel.create(anchor, List.of(aug), new CompositionPlan(CompositionPlan.parse("0->0,1->1")),
                     Mode.SAME_SEQUENCE, 4, 3)) {
            org.bytedeco.pytorch.Generator gen = org.bytedeco.pytorch.global.torch.createCPUGenerator(77);
            try (NoGradGuard ng = new NoGradGuard()) {
                for (Tensor t : calm.bridgeTensors().values()) {
                    t.add_(org.bytedeco.pytorch.global.torch.randn(Tensors.shape(t), new org.bytedeco.pytorch.GeneratorOptional(gen),
                            new org.bytedeco.pytorch.TensorOptions(ScalarType.Double)).mul(new org.bytedeco.pytorch.Scalar(0.2)));
                }
            }
            long[] ids = {1, 5, 6, 7, 8, 9, 1, 20, 21, 22, 0, 0};
            long[] labels = {5, 6, 7, 8, 9, 10, 20, 21, 22, 23, -100, -100};
            boolean[] real = {true, true, true, true, true, true, true, true, true, true, false, false};
            Batch b = new Batch(2, 6, ids, labels, real, 10, 0, null, null);
            // Mean per target token, so the finite differences' round-off (~1e-16 x loss / eps) stays far below the gradients.
            java.util.function.Function<Batch, Tensor> loss = x -> Losses.sum(calm.forward(Losses.inputs(x), null, null, null), x)
                    .div(new org.bytedeco.pytorch.Scalar((double) x.targetCount()));
            Map<String, Tensor> p = calm.bridgeTensors();
            p.values().forEach(t -> t.set_requires_grad(true));
            loss.apply(b).backward();
            Random r = new Random(5);
            double worst = 0;
            try (NoGradGuard ng = new NoGradGuard()) {
                for (Map.Entry<String, Tensor> e : p.entrySet()) {
                    Tensor w = e.getValue();
                    var data = w.data_ptr_double();
                    var grad = w.grad().contiguous().data_ptr_double();
                    for (int k = 0; k < 4; k++) {
                        int i = r.nextInt((int) w.numel());
                        double o = data.get(i);
                        double eps = 1e-5;
                        data.put(i, o + eps);
                        double lp = loss.apply(b).item_double();
                        data.put(i, o - eps);
                        double lm = loss.apply(b).item_double();
                        data.put(i, o);
                        double num = (lp - lm) / (2 * eps);
                        double an = grad.get(i);
                        double rel = Math.abs(num - an) / Math.max(1e-4, Math.abs(num) + Math.abs(an));
                        worst = Math.max(worst, rel);
                        assertTrue(rel < 1e-5, e.getKey() + "[" + i + "]: analytic " + an + " vs numeric " + num);
                    }
                }
            }
            for (Tensor t : anchor.namedWeights().values()) {
                assertFalse(t.grad().defined(), "a frozen anchor weight got a gradient");
            }
            assertTrue(worst < 1e-5);
        }
    }
}
