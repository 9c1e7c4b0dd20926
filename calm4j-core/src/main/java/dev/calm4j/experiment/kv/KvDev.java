package dev.calm4j.experiment.kv;

import dev.calm4j.Torch;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.Batch;
import dev.calm4j.data.Batcher;
import dev.calm4j.data.Dataset;
import dev.calm4j.data.Example;
import dev.calm4j.eval.EvalModel;
import dev.calm4j.eval.Evaluator;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.nn.Scoped;
import dev.calm4j.train.BridgeObjective;
import dev.calm4j.train.FrozenStateCache;
import dev.calm4j.train.Lora;
import dev.calm4j.train.LoraObjective;
import dev.calm4j.train.Objective;
import dev.calm4j.train.TrainConfig;
import dev.calm4j.train.TrainLoop;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.AdamW;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.Set;

/**
 * Development driver: java ... KvDev OUT_DIR [augment|anchor|both|stamp], or KvDev MODELS_DIR steps|curve (the main
 * job's training step times, {@link #stepTimes}; one CALM run's held-out accuracy as it trains, {@link #curve}) (recipe overrides via -Dkv.* properties;
 * {@code -Dkv.bInit=DIR} continues training from a saved m_B instead of starting from scratch;
 * {@code -Dkv.bHint=W} pulls the twins' states towards their real rows'; every other {@code -Dkv.*} overrides one
 * recipe field, e.g. {@code -Dkv.bDecay=F} (m_B's first stage holds its peak rate and decays over its last F),
 * {@code -Dkv.bLetters=MIN:MAX} (its twin operands' letters), {@code -Dkv.aLinear}, {@code -Dkv.aSlot}, {@code -Dkv.bPlaceNorm}, {@code -Dkv.bDigitNoise}, {@code -Dkv.bNoiseRamp}, and
 * {@code -Dkv.bStages=steps:twin:noise:placeNorm:digitNoise:ramp:lr;...} for m_B's later stages, "" for none).
 */
public final class KvDev {
    private static double dbl(String property, double fallback) {
        return Double.parseDouble(System.getProperty(property, Double.toString(fallback)));
    }

    /**
     * Times the main job's training steps (batch 64 of its D_C; one libtorch thread, one BLAS thread): CALM with and
     * without the frozen-state cache and length grouping, and the LoRA control. Uses the first 30 batches' worth of
     * D_C so that the cache is warm after 40 untimed steps (a 1,000-step run sees each row 4-5 times), then times 12
     * steps of each configuration in turn, 6 rounds, and prints each one's median round: this VM's speed drifts by
     * tens of percent over a minute, and interleaving keeps the ratios fair. The step is TrainLoop's, written out here
     * to time its forward, backward and AdamW apart (as {@code calm bench} does).
     */
    static void stepTimes(Path models) throws Exception {
        Torch.setBlasThreads(1);
        org.bytedeco.pytorch.global.torch.set_num_threads(1);
        KvExperiment.Config cfg = KvExperiment.Config.defaults(models, models);
        TrainConfig tc = KvExperiment.schedule(cfg.composeSteps(), cfg.composeBatch(), cfg.composeLr(), 1L, 1, cfg.decayFraction());
        List<Example> dc = new KvExperiment(cfg, System.out, false).data(cfg.recipe().task()).composition();
        Dataset d = Dataset.of(new ArrayList<>(dc.subList(0, 30 * cfg.composeBatch())), "D_C, first 30 batches");
        List<String> names = List.of("calm, no cache, plain shuffle", "calm, cache, plain shuffle",
                "calm, cache, length groups of 8", "lora, plain shuffle", "lora, length groups of 8");
        try (CausalLm mA = LmFamilies.load(models.resolve("m_A")); CausalLm mB = LmFamilies.load(models.resolve("m_B"))) {
            CompositionPlan plan = new CompositionPlan(CompositionPlan.parse(cfg.connections()));
            List<AutoCloseable> open = new ArrayList<>();
            List<Runnable> steppers = new ArrayList<>();
            List<double[]> ms = new ArrayList<>();            // per configuration: {forward, backward, AdamW, positions} of its last step
            try {
                for (String run : names) {
                    CalmModel calm = CalmModel.create(mB, List.of(mA), plan, Mode.SAME_SEQUENCE, cfg.heads(), 1);
                    Lora lora = Lora.init((LlamaModel) mB, List.of("q_proj", "v_proj"), 27, 54, 1);
                    open.add(calm);
                    open.add(lora);
                    Objective obj = run.startsWith("lora") ? new LoraObjective((LlamaModel) mB, models.resolve("m_B"), lora)
                            : new BridgeObjective(calm, models.resolve("m_B"), List.of(models.resolve("m_A")),
                                    run.contains("no cache") ? null : new FrozenStateCache(FrozenStateCache.DEFAULT_BUDGET_FLOATS));
                    var params = obj.parameters().values();
                    AdamW opt = TrainLoop.optimizer(params, tc);
                    Batcher batcher = new Batcher(d, cfg.composeBatch(), 1, run.endsWith("8") ? 8 : 1);
                    double[] last = new double[4];
                    ms.add(last);
                    steppers.add(() -> {
                        params.forEach(p -> p.set_requires_grad(true));
                        Batch b = batcher.next();
                        long t0 = System.nanoTime();
                        opt.zero_grad();
                        long t1;
                        long t2;
                        try (PointerScope scope = new PointerScope()) {
                            Tensor l = Scoped.keep(() -> obj.lossSum(b));
                            l.item_double();
                            t1 = System.nanoTime();
                            l.div(new Scalar((double) b.targetCount())).backward();
                            t2 = System.nanoTime();
                        }
                        opt.step();
                        long t3 = System.nanoTime();
                        last[0] = (t1 - t0) / 1e6;
                        last[1] = (t2 - t1) / 1e6;
                        last[2] = (t3 - t2) / 1e6;
                        last[3] = b.length();                           // positions per row: the batch's padded length
                        params.forEach(p -> p.set_requires_grad(false));
                    });
                }
                for (Runnable r : steppers) {
                    for (int i = 0; i < 40; i++) {
                        r.run();                                   // warm: JIT, allocator, and the cache filled
                    }
                }
                int rounds = 6;
                int per = 12;
                double[][][] rows = new double[names.size()][rounds][4];   // [config][round] -> means of {fwd, bwd, opt, positions}
                for (int round = 0; round < rounds; round++) {
                    for (int c = 0; c < names.size(); c++) {
                        for (int i = 0; i < per; i++) {
                            steppers.get(c).run();
                            for (int k = 0; k < 4; k++) {
                                rows[c][round][k] += ms.get(c)[k] / per;
                            }
                        }
                    }
                }
                for (int c = 0; c < names.size(); c++) {
                    double[][] r = rows[c];
                    java.util.Arrays.sort(r, java.util.Comparator.comparingDouble(x -> x[0] + x[1] + x[2]));
                    double[] med = r[rounds / 2];
                    System.out.printf("%-34s %6.1f ms/step (forward %.1f, backward %.1f, AdamW %.1f); %.1f positions per row"
                            + " (rounds: %.0f-%.0f ms)%n", names.get(c), med[0] + med[1] + med[2], med[0], med[1], med[2], med[3],
                            r[0][0] + r[0][1] + r[0][2], r[rounds - 1][0] + r[rounds - 1][1] + r[rounds - 1][2]);
                }
            } finally {
                for (AutoCloseable c : open) {
                    c.close();
                }
            }
        }
    }

    /**
     * Trains one CALM run of the main job (its D_C, shipped models and bridge defaults; TrainLoop's optimizer and
     * step) and prints the loss and greedy exact match on the held-out-key eval set every {@code -Dcurve.every} steps.
     * Overrides: {@code -Dcurve.steps}, {@code -Dcurve.lr}, {@code -Dcurve.decay} (the decay fraction),
     * {@code -Dcurve.group} (length group), {@code -Dcurve.heads}, {@code -Dcurve.seed}, {@code -Dcurve.batch},
     * {@code -Dcurve.qinit} (the bridges' query init), {@code -Dcurve.mix} (NUM-MATH in D_C), {@code -Dcurve.examples}
     * (KV-MATH in D_C), {@code -Dcurve.connections}.
     */
    static void curve(Path models) throws Exception {
        Torch.setBlasThreads(1);
        KvExperiment.Config c0 = KvExperiment.Config.defaults(models, models);
        KvExperiment.Config cfg = new KvExperiment.Config(c0.recipe(), models, models, c0.seeds(), c0.composeSteps(), c0.composeBatch(),
                c0.composeLr(), System.getProperty("curve.connections", c0.connections()), c0.heads(),
                Integer.getInteger("curve.examples", c0.compositionExamples()), c0.evalExamples(), c0.controls(), false,
                c0.probeSteps(), dbl("curve.mix", c0.numMathMix()), c0.lengthGroup(), c0.decayFraction(), dbl("curve.qinit", c0.queryInit()), 1);
        int every = Integer.getInteger("curve.every", 200);
        long seed = Long.getLong("curve.seed", 1L);
        TrainConfig base = KvExperiment.schedule(Integer.getInteger("curve.steps", cfg.composeSteps()),
                Integer.getInteger("curve.batch", cfg.composeBatch()), dbl("curve.lr", cfg.composeLr()), seed,
                Integer.getInteger("curve.group", cfg.lengthGroup()), dbl("curve.decay", cfg.decayFraction()));
        TrainConfig tc = new TrainConfig(base.steps(), base.batchSize(), 1, base.lr(), Integer.getInteger("curve.warmup", base.warmupSteps()),
                dbl("curve.minlr", base.minLrRatio()), 0, dbl("curve.beta1", base.beta1()), dbl("curve.beta2", base.beta2()), base.eps(),
                dbl("curve.clip", base.clipNorm()), 0, 0, base.logEvery(), seed, base.lengthGroup(), base.decayFraction());
        System.out.println("curve: " + tc.toJson());
        KvExperiment.Data data = new KvExperiment(cfg, System.out, false).data(cfg.recipe().task());
        Dataset dc = Dataset.of(data.composition(), "D_C");
        Dataset held = Dataset.of(data.eval().get("kv_math_heldout_keys"), "KV-MATH, held-out keys");
        try (CausalLm mA = LmFamilies.load(models.resolve("m_A")); CausalLm mB = LmFamilies.load(models.resolve("m_B"));
             CalmModel calm = CalmModel.create(mB, List.of(mA), new CompositionPlan(CompositionPlan.parse(cfg.connections())),
                     Mode.SAME_SEQUENCE, Integer.getInteger("curve.heads", cfg.heads()), cfg.queryInit(), seed)) {
            BridgeObjective obj = new BridgeObjective(calm, models.resolve("m_B"), List.of(models.resolve("m_A")));
            var params = obj.parameters().values();
            AdamW opt = TrainLoop.optimizer(params, tc);
            Batcher batcher = new Batcher(dc, tc.batchSize(), seed, tc.lengthGroup());
            long t0 = System.nanoTime();
            double window = 0;
            long targets = 0;
            double gradSum = 0;                                  // the gradient's norm before clipping, summed over the window
            int gradSteps = 0;
            for (int step = 0; step < tc.steps(); step++) {
                params.forEach(p -> p.set_requires_grad(true));
                TrainLoop.Step st = TrainLoop.step(obj, opt, params, List.of(batcher.next()), tc, step);
                params.forEach(p -> p.set_requires_grad(false));
                window += st.lossSum();
                targets += st.targets();
                gradSum += st.gradNorm();
                gradSteps++;
                if ((step + 1) % every == 0 || step + 1 == tc.steps()) {
                    var acc = Evaluator.exactMatch(EvalModel.of(calm), held, 100, Set.of(KvTask.EOS), null).accuracy();
                    System.out.printf("step %d  lr %.2e  loss %.4f  grad norm %.3f  held-out keys %.1f%%  (%.0f s)%n", step + 1,
                            st.lr(), window / targets, gradSum / gradSteps, 100 * acc.value(), (System.nanoTime() - t0) / 1e9);
                    window = 0;
                    targets = 0;
                    gradSum = 0;
                    gradSteps = 0;
                }
            }
            // What the bridges must not break: the anchor's own arithmetic, beside m_B alone on the same sums.
            Dataset num = Dataset.of(data.eval().get("num_math"), "NUM-MATH");
            System.out.printf("NUM-MATH: composition %.1f%%, m_B alone %.1f%%%n",
                    100 * Evaluator.exactMatch(EvalModel.of(calm), num, 100, Set.of(KvTask.EOS), null).accuracy().value(),
                    100 * Evaluator.exactMatch(EvalModel.of(mB), num, 100, Set.of(KvTask.EOS), null).accuracy().value());
        }
    }

    /** {@code -Dkv.bLetters=MIN:MAX} (null: the defaults' first stage). */
    static int[] letters(String spec, KvRecipe d) {
        if (spec == null) {
            return new int[] {d.anchorTwinMinLetters(), d.anchorTwinMaxLetters()};
        }
        String[] f = spec.split(":");
        try {
            if (f.length == 2) {
                return new int[] {Integer.parseInt(f[0].trim()), Integer.parseInt(f[1].trim())};
            }
        } catch (NumberFormatException e) {
            // the message below
        }
        throw new IllegalArgumentException("kv.bLetters: '" + spec + "': expected MIN:MAX, e.g. 1:2");
    }

    public static void main(String[] args) throws Exception {
        Torch.init();
        Path out = Path.of(args[0]);
        String which = args.length > 1 ? args[1] : "both";
        KvRecipe d = KvRecipe.defaults();
        int[] letters = letters(System.getProperty("kv.bLetters"), d);
        KvRecipe r = new KvRecipe(Integer.getInteger("kv.keys", d.keys()), d.operands(), d.taskSeed(),
                Integer.getInteger("kv.aHidden", d.augmentHidden()), Integer.getInteger("kv.aLayers", d.augmentLayers()),
                Integer.getInteger("kv.aHeadDim", d.augmentHeadDim()), Integer.getInteger("kv.aSteps", d.augmentSteps()),
                Integer.getInteger("kv.aAux", d.augmentAuxLayer()), dbl("kv.aWd", d.augmentWeightDecay()),
                Boolean.parseBoolean(System.getProperty("kv.aLinear", Boolean.toString(d.augmentLinearReadout()))),
                Boolean.parseBoolean(System.getProperty("kv.aSlot", Boolean.toString(d.augmentSlotReadout()))),
                Integer.getInteger("kv.bHidden", d.anchorHidden()), Integer.getInteger("kv.bLayers", d.anchorLayers()),
                Integer.getInteger("kv.bHeadDim", d.anchorHeadDim()), Integer.getInteger("kv.bSteps", d.anchorSteps()),
                Integer.getInteger("kv.bAux", d.anchorAuxLayer()), dbl("kv.bAuxW", d.anchorAuxWeight()),
                dbl("kv.bWd", d.anchorWeightDecay()), dbl("kv.bTwin", d.anchorTwinFraction()),
                Boolean.parseBoolean(System.getProperty("kv.bCode", Boolean.toString(d.anchorTwinCode()))),
                dbl("kv.bNoise", d.anchorTwinNoise()), dbl("kv.bNorm", d.anchorTwinCodeNorm()),
                Boolean.parseBoolean(System.getProperty("kv.bGather", Boolean.toString(d.anchorTwinGather()))),
                dbl("kv.bPlaceNorm", d.anchorPlaceNorm()), dbl("kv.bDigitNoise", d.anchorDigitNoise()),
                Integer.getInteger("kv.bNoiseRamp", d.anchorNoiseRamp()), dbl("kv.bDecay", d.anchorDecayFraction()),
                letters[0], letters[1],
                System.getProperty("kv.bStages") == null ? d.anchorStages() : KvRecipe.AnchorStage.parse(System.getProperty("kv.bStages")),
                Integer.getInteger("kv.batch", d.batch()), dbl("kv.lr", d.lr()));
        if (which.equals("curve")) {       // held-out-key accuracy during one CALM training of the main job
            curve(out);
            return;
        }
        if (which.equals("steps")) {       // ms per training step of the main job's runs, on its D_C and shipped models
            stepTimes(out);
            return;
        }
        if (which.equals("stamp")) {      // records the recipe next to models trained with it
            Files.createDirectories(out);
            Files.writeString(out.resolve("kv_recipe.json"), KvExperiment.JSON.writeValueAsString(KvExperiment.JSON.valueToTree(r)) + "\n");
            return;
        }
        KvTask t = r.task();
        Files.createDirectories(out);
        Path tok = out.resolve("tokenizer.json");
        t.writeTokenizer(tok);
        Random rnd = new Random(7);
        List<Example> subs = new ArrayList<>();
        List<Example> num = new ArrayList<>();
        List<Example> math = new ArrayList<>();
        for (KvTask.Expr e : t.exprs(t.keys(), 300, Set.of(), rnd)) {
            subs.add(KvTask.kvSubs(e));
            num.add(KvTask.numMath(e));
            math.add(KvTask.kvMath(e));
        }
        long t0 = System.nanoTime();
        if (!which.equals("anchor")) {
            var res = r.trainAugment(t, out.resolve("m_A"), tok, false, System.out);
            System.out.printf("m_A trained: loss %.4f in %.0f s (%.0f tok/s)%n", res.finalLoss(), res.seconds(), res.tokensPerSecond());
            try (CausalLm m = LmFamilies.load(out.resolve("m_A"))) {
                System.out.println("m_A KV-SUBS " + Evaluator.exactMatch(EvalModel.of(m), Dataset.of(subs, "subs"), 100, Set.of(2), null).accuracy());
                System.out.println("m_A KV-MATH " + Evaluator.exactMatch(EvalModel.of(m), Dataset.of(math, "math"), 100, Set.of(2), null).accuracy());
            }
        }
        if (!which.equals("augment")) {
            String init = System.getProperty("kv.bInit");
            var res = r.trainAnchor(t, out.resolve("m_B"), tok, false, System.out, new KvRecipe.AnchorDev(
                    init == null ? null : Path.of(init), dbl("kv.bHint", 0)));
            System.out.printf("m_B trained: loss %.4f in %.0f s (%.0f tok/s)%n", res.finalLoss(), res.seconds(), res.tokensPerSecond());
            try (CausalLm m = LmFamilies.load(out.resolve("m_B"))) {
                System.out.println("m_B NUM-MATH " + Evaluator.exactMatch(EvalModel.of(m), Dataset.of(num, "num"), 100, Set.of(2), null).accuracy());
            }
        }
        System.out.printf("total %.0f s%n", (System.nanoTime() - t0) / 1e9);
    }
}
