package dev.calm4j.cli;

import dev.calm4j.Calm4jException;
import dev.calm4j.compose.AugmentReader;
import dev.calm4j.compose.BridgeCheckpoint;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.DataRules;
import dev.calm4j.data.Dataset;
import dev.calm4j.eval.EvalModel;
import dev.calm4j.eval.Evaluator;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.tokenize.Tokenizer;
import dev.calm4j.train.BridgeObjective;
import dev.calm4j.train.FrozenStateCache;
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

@Command(name = "compose", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Compose a frozen anchor model with frozen augmenting models through trainable bridges (CALM) "
                + "and train only the bridges. Writes a bridge checkpoint: " + BridgeCheckpoint.WEIGHTS
                + " + calm_config.json (plus metrics.jsonl, loss.png, checkpoint/ for --resume).",
                "Data is tokenized with the anchor's tokenizer.json (pre-tokenized ids need none). Connections are "
                        + "0-based 'augment layer->anchor layer' pairs (layer i = output of block i); by default the "
                        + "paper's: every 4th augment layer, spread evenly over the anchor."},
        footer = {"", "Examples:",
                Examples.DEMO_NOTE,
                Examples.DEMO,
                "  calm compose --anchor " + Examples.M_B + " --augment " + Examples.M_A + " --data " + Examples.TRAIN
                        + " --eval " + Examples.HELD_OUT + " --out runs/calm --steps 800",
                "  # the key-value job's bridge and schedule",
                "  calm compose --anchor " + Examples.M_B + " --augment " + Examples.M_A + " --connections '3->1' --heads 8"
                        + " --query-init 0.1 --data " + Examples.TRAIN + " --eval " + Examples.HELD_OUT + " --out runs/calm-job"
                        + " --steps 800 --batch 64 --lr 2e-3 --decay-fraction 0.25 --length-group 8",
                "  # two augments: m_A and a random model of its shape (a control)",
                "  calm init --config " + Examples.M_A + "/config.json --tokenizer " + Examples.M_A + "/tokenizer.json"
                        + " --out runs/random-m_A --seed 7",
                "  calm compose --anchor " + Examples.M_B + " --augment " + Examples.M_A + " --augment runs/random-m_A"
                        + " --connections '0:3->1,1:3->1' --heads 4 --data " + Examples.TRAIN + " --out runs/calm-2 --steps 800",
                "  calm compose --anchor " + Examples.M_B + " --augment " + Examples.M_A + " --mode separate_prompt"
                        + " --data " + Examples.TRAIN + " --out runs/calm-sp --steps 800",
                "  calm compose --anchor " + Examples.M_B + " --augment " + Examples.M_A + " --data " + Examples.TRAIN
                        + " --eval " + Examples.HELD_OUT + " --out runs/calm --steps 1600 --resume",
                "  # two local processes of batch 4: the bridges of one process of batch 8",
                "  calm compose --anchor " + Examples.M_B + " --augment " + Examples.M_A + " --data " + Examples.TRAIN
                        + " --out runs/calm-dp --steps 800 --batch 4 --nproc 2"})
final class ComposeCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--anchor", required = true, paramLabel = "DIR", description = "the anchor model folder (frozen; its head makes the predictions)")
    Path anchor;

    @Option(names = "--augment", required = true, paramLabel = "DIR", description = "an augmenting model folder (frozen); repeat for several")
    List<Path> augments;

    @Option(names = "--connections", paramLabel = "SPEC",
            description = "bridges as augment layer->anchor layer pairs, e.g. '3->5,7->11', or with several augments "
                    + "'0:3->5,1:2->9' (default: the paper's plan for each augment)")
    String connections;

    @Option(names = "--heads", paramLabel = "H", description = "cross-attention heads per bridge (default: the anchor's attention heads)")
    Integer heads;

    @Option(names = "--query-init", defaultValue = "0", paramLabel = "S",
            description = "fresh bridges' query weights drawn at S x nn.Linear's init scale, in [0, 1] (default ${DEFAULT-VALUE}: "
                    + "zeros, uniform attention at first; the key-value job uses 0.1, which gives each head its own soft "
                    + "pattern and helped its bridges reach their drop in loss). The output projection starts at zero either way.")
    double queryInit;

    @Option(names = "--recency-bias", description = "add a fixed recency bias per head to the bridges' cross-attention "
            + "scores (ALiBi's slopes, over how many visible augment tokens lie after each key; no parameters): it lets "
            + "a bridge find the latest augment token, which cross-attention has no positions for; for augments with "
            + "their own tokenizers. Off by default (the paper's cross-attention); recorded in the checkpoint.")
    boolean recency;

    @Option(names = "--mode", defaultValue = "same_sequence", paramLabel = "MODE",
            description = "same_sequence (both models read the same tokens, the paper's setting) or separate_prompt "
                    + "(each augment reads the example's augment_prompt, else its prompt, once) (default ${DEFAULT-VALUE})")
    String mode;

    @Option(names = "--data", required = true, paramLabel = "FILE", description = "training data (.jsonl: prompt/completion, text, or ids)")
    Path data;

    @Option(names = "--eval", paramLabel = "FILE", description = "held-out data: eval loss of the composition and, for comparison, of the anchor alone")
    Path eval;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "bridge checkpoint folder to write")
    Path out;

    @Mixin
    TrainOptions train;

    @Mixin
    DataOptions dataOptions;

    @Override
    public Integer call() {
        PrintWriter o = spec.commandLine().getOut();
        Mode m = Mode.parse(mode, "--mode");
        ModelConfig anchorCfg = LmFamilies.readConfig(anchor);
        List<ModelConfig> augCfgs = new ArrayList<>();
        for (Path p : augments) {
            augCfgs.add(LmFamilies.readConfig(p));
        }
        if (!(queryInit >= 0 && queryInit <= 1)) {
            throw new Calm4jException("--query-init must be in [0, 1], got " + queryInit);
        }
        Compositions comp = Compositions.resolve(anchor, anchorCfg, augments, augCfgs, connections, heads, m);
        ScalarType dtype = train.computeDtype();
        TrainConfig cfg = train.config(out);

        // Data first: a bad line stops the run before any weights are loaded.
        Dataset trainData;
        Dataset evalData;
        try (Tokenizer tok = DataOptions.tokenizerOf(anchor)) {
            DataRules rules = dataOptions.rules(anchorCfg, m == Mode.SEPARATE_PROMPT);
            trainData = dataOptions.read(data, tok, rules, DataOptions.noTokenizerIn(anchor));
            evalData = dataOptions.read(eval, tok, rules, DataOptions.noTokenizerIn(anchor));
        }
        List<ModelConfig> readIds = new ArrayList<>();         // null: the augment reads through its own tokenizer
        for (int i = 0; i < augCfgs.size(); i++) {
            readIds.add(comp.ownTokens()[i] ? null : augCfgs.get(i));
        }
        DataOptions.checkAugmentVocab(trainData, readIds);
        DataOptions.checkAugmentVocab(evalData, readIds);
        boolean own = false;
        for (boolean x : comp.ownTokens()) {
            own |= x;
        }
        if (own && (trainData.examples().get(0).text() == null
                || (evalData != null && evalData.examples().get(0).text() == null))) {
            throw new Calm4jException("an augment reads the text through its own tokenizer (its tokenizer.json differs "
                    + "from the anchor's): the data must be text (\"prompt\"/\"completion\" or \"text\" fields), not token ids");
        }

        comp.print(o);
        o.printf("train data      %s%n", DataOptions.describe(trainData));
        if (evalData != null) {
            o.printf("eval data       %s%n", DataOptions.describe(evalData));
        }
        o.flush();

        List<CausalLm> augs = new ArrayList<>();
        try (CausalLm a = LmFamilies.load(anchor, train.weightDtype(), dtype)) {
            for (Path p : augments) {
                augs.add(LmFamilies.load(p, train.weightDtype(), dtype));
            }
            double anchorEval = Double.NaN;
            if (evalData != null && train.writes()) {            // reported by rank 0 alone
                anchorEval = Evaluator.perplexity(EvalModel.of(a), evalData, train.batch).meanLoss();
                o.printf("anchor alone    eval loss %s (perplexity %s)%n", Training.loss(anchorEval), Training.ppl(anchorEval));
                o.flush();
            }
            List<Tokenizer> tokenizers = new ArrayList<>();
            try (CalmModel calm = CalmModel.create(a, augs, comp.plan(), m, comp.heads(), queryInit, recency, train.seed,
                    comp.ownTokens())) {
                List<AugmentReader> readers = new ArrayList<>();
                for (int i = 0; i < augments.size(); i++) {
                    if (comp.ownTokens()[i]) {
                        Tokenizer t = Tokenizer.load(augments.get(i));
                        tokenizers.add(t);
                        readers.add(new AugmentReader(t, augCfgs.get(i), augments.get(i).toString()));
                    } else {
                        readers.add(null);
                    }
                }
                BridgeObjective obj = new BridgeObjective(calm, anchor, augments,
                        new FrozenStateCache(FrozenStateCache.DEFAULT_BUDGET_FLOATS), readers);
                TrainLoop.Result r = Training.run(obj, trainData, evalData, cfg, out, train, o);
                o.printf("done            %d steps in %.1f s, %,.0f tokens/s%n", r.steps(), r.seconds(), r.tokensPerSecond());
                o.printf("train loss      %s (last logged window)%n", Training.loss(r.finalLoss()));
                if (evalData != null) {
                    o.printf("eval loss       %s (perplexity %s); anchor alone %s (perplexity %s)%n",
                            Training.loss(r.evalLoss()), Training.ppl(r.evalLoss()), Training.loss(anchorEval),
                            Training.ppl(anchorEval));
                }
                Training.printFiles(o, out, List.of(BridgeCheckpoint.WEIGHTS, "calm_config.json", "metrics.jsonl",
                        "loss.png", "train_config.json", "checkpoint"));
                o.printf("next            calm eval --bridges %s --data %s --metric exact%s%n", out,
                        eval != null ? eval : "EVAL.jsonl", dataOptions.flags());
            } finally {
                tokenizers.forEach(Tokenizer::close);
            }
        } finally {
            augs.forEach(CausalLm::close);
        }
        return 0;
    }
}
