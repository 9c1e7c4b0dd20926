package dev.calm4j.experiment.kv;

import dev.calm4j.data.Dataset;
import dev.calm4j.data.Example;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.lm.llama.LlamaWeights;
import dev.calm4j.lm.llama.RopeScaling;
import dev.calm4j.train.TrainConfig;
import dev.calm4j.train.TrainLoop;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * The committed recipe for the two base models of the KV-arithmetic experiment, trained by calm4j's own pretraining
 * path (the same {@link TrainLoop}). Shipped as fixtures; {@code --retrain} reruns it.
 */
public record KvRecipe(int keys, int operands, long taskSeed,
                       int augmentHidden, int augmentLayers, int augmentHeadDim, int augmentSteps, int augmentAuxLayer,
                       double augmentWeightDecay, boolean augmentLinearReadout,
                       int anchorHidden, int anchorLayers, int anchorHeadDim, int anchorSteps, int anchorAuxLayer,
                       double anchorAuxWeight, double anchorWeightDecay, double anchorTwinFraction,
                       boolean anchorTwinCode, double anchorTwinNoise, double anchorTwinCodeNorm, boolean anchorTwinGather,
                       double anchorPlaceNorm, double anchorDigitNoise, int anchorNoiseRamp,
                       int batch, double lr) {

    /**
     * Validates what a stamp or a development override could get wrong before anything trains. {@code augmentLinearReadout}:
     * m_A's aux heads fitted by squared error onto one-hot digits ({@link DigitAuxObjective#linearReadout}).
     * {@code anchorPlaceNorm}, {@code anchorDigitNoise}, {@code anchorNoiseRamp}: m_B's learned code used per place at one
     * norm ({@link DigitAuxObjective#placeNorm}) with digit-space noise ramped in ({@link DigitAuxObjective#digitNoise});
     * 0 turns each off.
     */
    public KvRecipe {
        if (keys < 2 || operands < 2 || augmentSteps < 1 || anchorSteps < 1 || batch < 1) {
            throw new IllegalArgumentException("kv recipe: keys, operands >= 2 and steps, batch >= 1 expected, got keys "
                    + keys + ", operands " + operands + ", steps " + augmentSteps + "/" + anchorSteps + ", batch " + batch);
        }
        if (!(lr > 0) || !(anchorPlaceNorm >= 0) || !(anchorDigitNoise >= 0) || anchorNoiseRamp < 0
                || Double.isInfinite(anchorPlaceNorm) || Double.isInfinite(anchorDigitNoise)) {
            throw new IllegalArgumentException("kv recipe: lr > 0 and finite place norm, digit noise, noise ramp >= 0 expected, got lr "
                    + lr + ", place norm " + anchorPlaceNorm + ", digit noise " + anchorDigitNoise + ", ramp " + anchorNoiseRamp);
        }
        if ((anchorPlaceNorm > 0 || anchorDigitNoise > 0) && !(anchorTwinCode && anchorTwinCodeNorm == 0)) {
            throw new IllegalArgumentException("kv recipe: anchorPlaceNorm and anchorDigitNoise need the learned operand code "
                    + "(anchorTwinCode true, anchorTwinCodeNorm 0)");
        }
    }

    public static KvRecipe defaults() {
        return new KvRecipe(500, 2, 1234,
                128, 4, 32, 1200, 3, 0.01, true,
                128, 6, 16, 2500, 1, 0.3, 0.1, 0.5, true, 0.5, 0.0, false, 0.0, 0.0, 0,
                256, 3e-3);
    }

    /** A minutes-scale version for tests: a tiny task, few steps (checks the pipeline, not the accuracy). */
    public static KvRecipe tiny() {
        return new KvRecipe(40, 2, 1234,
                32, 2, 16, 40, 1, 0.01, true,
                32, 3, 16, 40, 1, 0.3, 0.1, 0.5, true, 0.5, 0.0, false, 0.0, 0.0, 0,
                16, 3e-3);
    }

    public KvTask task() {
        return new KvTask(keys, operands, 0.2, taskSeed);
    }

    static LlamaConfig config(KvTask t, int hidden, int layers, int headDim) {
        int heads = Math.max(1, hidden / headDim);
        return new LlamaConfig("llama", t.vocabSize(), hidden, 3 * hidden, layers, heads, heads, hidden / heads, 1e-5,
                10000.0, RopeScaling.NONE, 64, false, false, false, false, 0, KvTask.BOS, List.of(KvTask.EOS), "float32");
    }

    public LlamaConfig augmentConfig(KvTask t) {
        return config(t, augmentHidden, augmentLayers, augmentHeadDim);
    }

    public LlamaConfig anchorConfig(KvTask t) {
        return config(t, anchorHidden, anchorLayers, anchorHeadDim);
    }

    /** m_A's data: KV-SUBS over every key, plus single-key lookups (each key several times). */
    public List<Example> augmentData(KvTask t) {
        Random r = new Random(taskSeed + 1);
        List<Example> out = new ArrayList<>();
        for (KvTask.Expr e : t.exprs(t.keys(), Math.max(200, augmentSteps * batch / 2), java.util.Set.of(), r)) {
            out.add(KvTask.kvSubs(e));
        }
        for (int rep = 0; rep < 4; rep++) {
            for (String k : t.keys()) {
                out.add(t.lookup(k));
            }
        }
        return out;
    }

    /** m_B's data: NUM-MATH over random operand values 1..N. */
    public List<Example> anchorData(KvTask t) {
        Random r = new Random(taskSeed + 2);
        List<Example> out = new ArrayList<>();
        int n = Math.max(200, anchorSteps * batch / 2);
        for (int i = 0; i < n; i++) {
            int[] v = new int[operands];
            char[] ops = new char[operands - 1];
            List<String> none = new ArrayList<>();
            for (int j = 0; j < operands; j++) {
                v[j] = 1 + r.nextInt(keys);
                none.add(null);
                if (j > 0) {
                    ops[j - 1] = r.nextBoolean() ? '+' : '-';
                }
            }
            out.add(KvTask.numMath(new KvTask.Expr(none, v, ops)));
        }
        return out;
    }

    /** Trains m_A (lookups made readable at the key by the aux loss) into {@code dir}. */
    public TrainLoop.Result trainAugment(KvTask t, Path dir, Path tokenizer, boolean progress, PrintStream log) {
        LlamaConfig c = augmentConfig(t);
        try (LlamaModel m = new LlamaModel(c, LlamaWeights.random(c, taskSeed + 10, 0.02, ScalarType.Float), ScalarType.Float)) {
            var values = t.lookupTable();
            DigitAuxObjective obj = new DigitAuxObjective(m, augmentAuxLayer, 1.0, values::get, taskSeed + 11, tokenizer)
                    .linearReadout(augmentLinearReadout);
            Dataset d = Dataset.of(augmentData(t), "m_A pretraining (KV-SUBS + lookups, all keys)");
            return TrainLoop.run(obj, d, null, schedule(augmentSteps, augmentWeightDecay), dir.resolveSibling(dir.getFileName() + ".train"),
                    false, progress, log, dir);
        }
    }

    /** Trains m_B on NUM-MATH (with an operand-digit aux loss at an early layer) into {@code dir}. */
    public TrainLoop.Result trainAnchor(KvTask t, Path dir, Path tokenizer, boolean progress, PrintStream log) {
        return trainAnchor(t, dir, tokenizer, progress, log, AnchorDev.NONE);
    }

    /**
     * Development options for m_B's training (KvDev's {@code -Dkv.b*} properties), off in the recipe.
     *
     * @param init a saved m_B of this recipe's shape to continue from ({@code -Dkv.bInit}): a fixed code at full scale
     *     from the first step, a learned code from the table saved beside it; or null
     * @param hint {@code > 0}: {@link DigitAuxObjective#hint}'s loss of this weight ({@code -Dkv.bHint})
     */
    record AnchorDev(Path init, double hint) {
        static final AnchorDev NONE = new AnchorDev(null, 0);
    }

    /** As above, with development options ({@link AnchorDev}). */
    TrainLoop.Result trainAnchor(KvTask t, Path dir, Path tokenizer, boolean progress, PrintStream log, AnchorDev opts) {
        Path init = opts.init();
        LlamaConfig c = anchorConfig(t);
        try (LlamaModel m = init != null ? (LlamaModel) dev.calm4j.lm.LmFamilies.load(init, ScalarType.Float)
                : new LlamaModel(c, LlamaWeights.random(c, taskSeed + 20, 0.02, ScalarType.Float), ScalarType.Float)) {
            DigitAuxObjective obj = new DigitAuxObjective(m, anchorAuxLayer, anchorAuxWeight, KvRecipe::parseNumber,
                    taskSeed + 21, tokenizer, anchorTwinFraction, anchorTwinCode, anchorTwinNoise, anchorTwinCodeNorm,
                    init != null ? 0 : anchorSteps / 2, anchorTwinGather ? operands : 0);
            if (init != null && anchorTwinCode && anchorTwinCodeNorm == 0) {
                obj.continueCode(init.resolve(DigitAuxObjective.CODE_FILE));   // the learned code trains on too
            }
            if (anchorDigitNoise > 0) {
                obj.digitNoise(anchorDigitNoise, anchorNoiseRamp);
            }
            if (opts.hint() > 0) {
                obj.hint(opts.hint());
            }
            if (anchorPlaceNorm > 0) {
                obj.placeNorm(anchorPlaceNorm);
            }
            Dataset d = Dataset.of(anchorData(t), "m_B pretraining (NUM-MATH)");
            return TrainLoop.run(obj, d, null, schedule(anchorSteps, anchorWeightDecay), dir.resolveSibling(dir.getFileName() + ".train"),
                    false, progress, log, dir);
        }
    }

    private TrainConfig schedule(int steps, double weightDecay) {
        return new TrainConfig(steps, batch, 1, lr, Math.max(1, steps / 20), 0.05, weightDecay, 0.9, 0.98, 1e-8, 1.0,
                0, 0, Math.max(1, steps / 50), taskSeed);
    }

    static Integer parseNumber(String s) {
        for (char c : s.toCharArray()) {
            if (c < '0' || c > '9') {
                return null;
            }
        }
        return s.length() > 3 ? null : Integer.parseInt(s);
    }
}
