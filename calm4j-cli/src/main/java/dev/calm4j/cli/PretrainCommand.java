package dev.calm4j.cli;

import dev.calm4j.Calm4jException;
import dev.calm4j.data.Dataset;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.tokenize.Tokenizer;
import dev.calm4j.train.LmObjective;
import dev.calm4j.train.TrainConfig;
import dev.calm4j.train.TrainLoop;
import org.bytedeco.pytorch.global.torch.ScalarType;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

@Command(name = "pretrain", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Train a small causal LM from scratch (random init seeded by --seed, every weight trained) and "
                + "save it as a Hugging Face model folder (config.json, model.safetensors, tokenizer.json).",
                "Data: .jsonl with {\"text\"}, {\"prompt\",\"completion\"} or pre-tokenized {\"ids\"} / "
                        + "{\"prompt_ids\",\"completion_ids\"} per line; any other file is plain text cut into "
                        + "max_position_embeddings-token chunks."},
        footer = {"", "Examples:",
                Examples.DEMO_NOTE,
                Examples.DEMO,
                "  # m_B's shape, trained from scratch on the composition's data (no m_A)",
                "  calm pretrain --config " + Examples.M_B + "/config.json --tokenizer " + Examples.M_B + " --data " + Examples.TRAIN
                        + " --eval " + Examples.HELD_OUT + " --out runs/scratch --steps 2000 --batch 64 --lr 3e-3 --seed 1",
                "  calm pretrain --config " + Examples.M_B + "/config.json --tokenizer " + Examples.M_B + " --data " + Examples.TRAIN
                        + " --eval " + Examples.HELD_OUT + " --out runs/scratch --steps 4000 --batch 64 --lr 3e-3 --seed 1 --resume"})
final class PretrainCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--config", required = true, paramLabel = "FILE", description = "HF config.json of the model to create (llama, mistral or qwen2)")
    Path config;

    @Option(names = "--tokenizer", paramLabel = "FILE", description = "tokenizer.json (or a folder holding one); copied into --out. "
            + "Optional when the data is pre-tokenized ids")
    Path tokenizer;

    @Option(names = "--data", required = true, paramLabel = "FILE", description = "training data")
    Path data;

    @Option(names = "--eval", paramLabel = "FILE", description = "held-out data: eval loss and perplexity at the end (and every --eval-every steps)")
    Path eval;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "model folder to write (also metrics.jsonl, loss.png, checkpoint/)")
    Path out;

    @Option(names = "--init-std", defaultValue = "0.02", paramLabel = "STD", description = "std of the normal init of matrices (default ${DEFAULT-VALUE}, HF's)")
    double initStd;

    @Mixin
    TrainOptions train;

    @Mixin
    DataOptions dataOptions;

    @Override
    public Integer call() {
        PrintWriter o = spec.commandLine().getOut();
        if (!Files.isRegularFile(config)) {
            throw new Calm4jException(config + ": missing (expected a Hugging Face config.json)");
        }
        ModelConfig c = LmFamilies.readConfigFile(config);
        Path tokFile = null;
        if (tokenizer != null) {
            tokFile = Files.isDirectory(tokenizer) ? tokenizer.resolve("tokenizer.json") : tokenizer;
            if (!Files.isRegularFile(tokFile)) {
                throw new Calm4jException(tokFile + ": tokenizer missing");
            }
        }
        if (!(initStd > 0)) {
            throw new Calm4jException("--init-std must be > 0, got " + initStd);
        }
        if (train.dtype.equals(GenerateCommand.MIXED)) {
            throw new Calm4jException("--dtype bf16-mixed keeps frozen weights in bf16; pretraining trains every weight: "
                    + "use fp32 or bf16");
        }
        ScalarType dtype = train.computeDtype();
        TrainConfig cfg = train.config(out);
        if (train.writes() && !train.resume && !train.overwrite && Files.exists(out.resolve("model.safetensors"))) {
            throw new Calm4jException(out + ": already holds a model (model.safetensors); choose another --out, or pass "
                    + "--overwrite to replace it");
        }
        Dataset trainData;
        Dataset evalData;
        try (Tokenizer tok = tokFile == null ? null : Tokenizer.load(tokFile)) {
            var rules = dataOptions.rules(c, false);
            trainData = dataOptions.read(data, tok, rules, "pass --tokenizer FILE");
            evalData = dataOptions.read(eval, tok, rules, "pass --tokenizer FILE");
        }
        o.printf("model           %s: %d layers, hidden %d, %d heads, vocab %d, context %d, %,d parameters%n", c.modelType(),
                c.numHiddenLayers(), c.hiddenSize(), c.numAttentionHeads(), c.vocabSize(), c.maxPositionEmbeddings(),
                c.parameterCount());
        o.printf("train data      %s%n", DataOptions.describe(trainData));
        if (evalData != null) {
            o.printf("eval data       %s%n", DataOptions.describe(evalData));
        }
        o.flush();
        try (CausalLm m = LmFamilies.random(c, train.seed, initStd, dtype)) {
            TrainLoop.Result r = Training.run(new LmObjective(m, tokFile), trainData, evalData, cfg, out, train, o);
            o.printf("done            %d steps in %.1f s, %,.0f tokens/s%n", r.steps(), r.seconds(), r.tokensPerSecond());
            o.printf("train loss      %s (last logged window)%n", Training.loss(r.finalLoss()));
            if (evalData != null) {
                o.printf("eval loss       %s (perplexity %s)%n", Training.loss(r.evalLoss()), Training.ppl(r.evalLoss()));
            }
            Training.printFiles(o, out, List.of("config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl",
                    "loss.png", "train_config.json", "checkpoint"));
            boolean bos = !dataOptions.noBos && c.bosTokenId() >= 0;
            o.printf("next            calm generate --model %s %s --max-new-tokens 32%n", out,
                    tokFile != null ? "--prompt '...'" + (bos ? " --add-bos" : "")
                            : "--prompt-ids " + Math.max(0, c.bosTokenId()));
        }
        return 0;
    }
}
