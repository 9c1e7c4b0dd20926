package dev.calm4j.cli;

import dev.calm4j.Calm4jException;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.DataRules;
import dev.calm4j.data.Dataset;
import dev.calm4j.eval.EvalModel;
import dev.calm4j.eval.Evaluator;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.tokenize.Tokenizer;
import dev.calm4j.train.Lora;
import dev.calm4j.train.LoraObjective;
import dev.calm4j.train.TrainConfig;
import dev.calm4j.train.TrainLoop;
import org.bytedeco.pytorch.global.torch.ScalarType;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

@Command(name = "lora", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Fine-tune LoRA adapters on a frozen model: the paper's parameter-matched baseline for CALM. "
                + "Writes PEFT's layout (adapter_model.safetensors + adapter_config.json), so HF PEFT loads the adapters too.",
                "--match-bridges picks the rank whose adapter parameter count is closest to the bridges of the given "
                        + "composition (--model as anchor, --augment, --connections, --heads as for calm compose).",
                "--alpha defaults to the rank (scale alpha/r = 1, the scale of PEFT's defaults r=8, alpha=8), so the "
                        + "learning rate means the same whatever rank is chosen."},
        footer = {"", "Examples:",
                Examples.DEMO_NOTE,
                Examples.DEMO,
                "  calm lora --model " + Examples.M_B + " --rank 8 --data " + Examples.TRAIN + " --eval " + Examples.HELD_OUT
                        + " --out runs/lora-r8 --steps 800",
                "  calm lora --model " + Examples.M_B + " --match-bridges --augment " + Examples.M_A + " --connections '3->1'"
                        + " --heads 8 --data " + Examples.TRAIN + " --out runs/lora-matched --steps 800",
                "  calm lora --model " + Examples.M_B + " --rank 4 --targets q_proj,k_proj,v_proj,o_proj --alpha 16"
                        + " --data " + Examples.TRAIN + " --out runs/lora-r4 --steps 800"})
final class LoraCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--model", required = true, paramLabel = "DIR", description = "the model folder to adapt (frozen)")
    Path model;

    @Option(names = "--rank", paramLabel = "R", description = "LoRA rank")
    Integer rank;

    @Option(names = "--match-bridges", description = "choose the rank that matches the bridge parameter count of a composition")
    boolean matchBridges;

    @Option(names = "--augment", paramLabel = "DIR", description = "with --match-bridges: an augmenting model of the composition; repeat for several")
    List<Path> augments;

    @Option(names = "--connections", paramLabel = "SPEC", description = "with --match-bridges: the composition's connections (default: the paper's)")
    String connections;

    @Option(names = "--heads", paramLabel = "H", description = "with --match-bridges: the composition's bridge heads (default: the model's)")
    Integer heads;

    @Option(names = "--targets", defaultValue = "q_proj,v_proj", split = ",", paramLabel = "MODULES",
            description = "linears to adapt, of " + "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj (default ${DEFAULT-VALUE}, PEFT's for Llama)")
    List<String> targets;

    @Option(names = "--alpha", paramLabel = "A", description = "LoRA alpha; the update is scaled by alpha/rank (default: the rank)")
    Double alpha;

    @Option(names = "--data", required = true, paramLabel = "FILE", description = "training data")
    Path data;

    @Option(names = "--eval", paramLabel = "FILE", description = "held-out data: eval loss of the adapted model and of the model alone")
    Path eval;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "adapter folder to write")
    Path out;

    @Mixin
    TrainOptions train;

    @Mixin
    DataOptions dataOptions;

    @Override
    public Integer call() {
        PrintWriter o = spec.commandLine().getOut();
        boolean hasAugments = augments != null && !augments.isEmpty();
        if (rank != null && matchBridges) {
            throw new Calm4jException("--rank and --match-bridges exclude each other");
        }
        if (rank == null && !matchBridges) {
            throw new Calm4jException("give --rank R, or --match-bridges --augment DIR to match a composition's bridges");
        }
        if (!matchBridges && (hasAugments || connections != null || heads != null)) {
            throw new Calm4jException("--augment, --connections and --heads describe the composition for --match-bridges; "
                    + "they do nothing with --rank");
        }
        if (matchBridges && !hasAugments) {
            throw new Calm4jException("--match-bridges needs the composition's --augment DIR (repeat for several)");
        }
        for (String t : targets) {
            if (!Lora.MODULES.contains(t)) {
                throw new Calm4jException("--targets: '" + t + "' is not one of " + String.join(",", Lora.MODULES));
            }
        }
        if (alpha != null && !(alpha > 0)) {
            throw new Calm4jException("--alpha must be > 0, got " + alpha);
        }
        ModelConfig cfgModel = LmFamilies.readConfig(model);
        Compositions comp = null;
        if (matchBridges) {
            List<ModelConfig> augCfgs = new ArrayList<>();
            for (Path p : augments) {
                augCfgs.add(LmFamilies.readConfig(p));
            }
            // Only the bridge shapes matter here, not which token ids the augment reads.
            comp = Compositions.resolve(model, cfgModel, augments, augCfgs, connections, heads, Mode.SEPARATE_PROMPT);
        }
        ScalarType dtype = train.computeDtype();
        TrainConfig cfg = train.config(out);

        Dataset trainData;
        Dataset evalData;
        try (Tokenizer tok = DataOptions.tokenizerOf(model)) {
            DataRules rules = dataOptions.rules(cfgModel, false);
            trainData = dataOptions.read(data, tok, rules, DataOptions.noTokenizerIn(model));
            evalData = dataOptions.read(eval, tok, rules, DataOptions.noTokenizerIn(model));
        }

        CausalLm loaded = LmFamilies.load(model, train.weightDtype(), dtype);
        if (!(loaded instanceof LlamaModel base)) {
            loaded.close();
            throw new Calm4jException(model + ": LoRA supports the Llama family (llama, mistral, qwen2)");
        }
        try (base) {
            int r;
            if (matchBridges) {
                r = Lora.rankMatching(base, targets, comp.bridgeParameters());
            } else {
                r = rank;
            }
            double a = alpha != null ? alpha : r;
            try (Lora lora = Lora.init(base, targets, r, a, train.seed)) {
                o.printf("model           %s%n", Compositions.describe(model, cfgModel));
                o.printf("lora            rank %d, alpha %s, on %s: %,d parameters (%s of the model)%n", r, fmt(a),
                        String.join(",", lora.targets()), lora.parameterCount(),
                        Compositions.percent(lora.parameterCount(), cfgModel.parameterCount()));
                if (comp != null) {
                    long bridges = comp.bridgeParameters();
                    o.printf("bridges         %,d parameters (%s, %d bridge(s) from %d augment(s)); LoRA/bridges = %.3f%n",
                            bridges, comp.plan().spec(), comp.plan().size(), comp.augments().size(),
                            (double) lora.parameterCount() / bridges);
                }
                o.printf("train data      %s%n", DataOptions.describe(trainData));
                if (evalData != null) {
                    o.printf("eval data       %s%n", DataOptions.describe(evalData));
                }
                double baseEval = Double.NaN;
                if (evalData != null && train.writes()) {        // reported by rank 0 alone
                    baseEval = Evaluator.perplexity(EvalModel.of(base), evalData, train.batch).meanLoss();
                    o.printf("model alone     eval loss %s (perplexity %s)%n", Training.loss(baseEval), Training.ppl(baseEval));
                }
                o.flush();
                TrainLoop.Result res = Training.run(new LoraObjective(base, model, lora), trainData, evalData, cfg, out,
                        train, o);
                o.printf("done            %d steps in %.1f s, %,.0f tokens/s%n", res.steps(), res.seconds(),
                        res.tokensPerSecond());
                o.printf("train loss      %s (last logged window)%n", Training.loss(res.finalLoss()));
                if (evalData != null) {
                    o.printf("eval loss       %s (perplexity %s); model alone %s (perplexity %s)%n",
                            Training.loss(res.evalLoss()), Training.ppl(res.evalLoss()), Training.loss(baseEval),
                            Training.ppl(baseEval));
                }
                Training.printFiles(o, out, List.of("adapter_model.safetensors", "adapter_config.json", "metrics.jsonl",
                        "loss.png", "train_config.json", "checkpoint"));
                o.printf("next            calm eval --model %s --lora %s --data %s --metric exact%s%n", model, out,
                        eval != null ? eval : "EVAL.jsonl", dataOptions.flags());
            }
        }
        return 0;
    }

    private static String fmt(double x) {
        return x == Math.rint(x) ? String.valueOf((long) x) : String.valueOf(x);
    }
}
