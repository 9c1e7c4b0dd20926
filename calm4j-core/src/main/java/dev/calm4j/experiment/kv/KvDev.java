package dev.calm4j.experiment.kv;

import dev.calm4j.Torch;
import dev.calm4j.data.Dataset;
import dev.calm4j.data.Example;
import dev.calm4j.eval.EvalModel;
import dev.calm4j.eval.Evaluator;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.Set;

/**
 * Development driver: java ... KvDev OUT_DIR [augment|anchor|both|stamp] (recipe overrides via -Dkv.* properties;
 * {@code -Dkv.bInit=DIR} continues training from a saved m_B instead of starting from scratch;
 * {@code -Dkv.bHint=W} pulls the twins' states towards their real rows'; every other {@code -Dkv.*} overrides one recipe
 * field, e.g. {@code -Dkv.aLinear}, {@code -Dkv.aSlot}, {@code -Dkv.bPlaceNorm}, {@code -Dkv.bDigitNoise}, {@code -Dkv.bNoiseRamp}, and
 * {@code -Dkv.bStages=steps:twin:noise:placeNorm:digitNoise:ramp:lr;...} for m_B's later stages, "" for none).
 */
public final class KvDev {
    private static double dbl(String property, double fallback) {
        return Double.parseDouble(System.getProperty(property, Double.toString(fallback)));
    }

    public static void main(String[] args) throws Exception {
        Torch.init();
        Path out = Path.of(args[0]);
        String which = args.length > 1 ? args[1] : "both";
        KvRecipe d = KvRecipe.defaults();
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
                Integer.getInteger("kv.bNoiseRamp", d.anchorNoiseRamp()),
                System.getProperty("kv.bStages") == null ? d.anchorStages() : KvRecipe.AnchorStage.parse(System.getProperty("kv.bStages")),
                Integer.getInteger("kv.batch", d.batch()), dbl("kv.lr", d.lr()));
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
