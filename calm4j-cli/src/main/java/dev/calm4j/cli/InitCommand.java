package dev.calm4j.cli;

import dev.calm4j.Calm4jException;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.tokenize.CharTokenizer;
import org.bytedeco.pytorch.global.torch.ScalarType;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.concurrent.Callable;

@Command(name = "init", mixinStandardHelpOptions = true,
        description = "Create a model folder with random weights from a Hugging Face config.json (for pretraining "
                + "from scratch, tests and benchmarks).",
        footer = {"", "Examples:",
                "  calm init --config " + Examples.M_A + "/config.json --tokenizer " + Examples.M_A + "/tokenizer.json"
                        + " --out runs/random-m_A --seed 7",
                "  calm init --config calm4j-bench/configs/augment-b1.json --out runs/tiny --char-alphabet 'abc0123456789+-=' --seed 7",
                "  calm init --config calm4j-bench/configs/anchor-b1.json --out runs/anchor-b1 --seed 1"})
final class InitCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--config", required = true, paramLabel = "FILE", description = "HF config.json (llama, mistral or qwen2)")
    Path config;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "model folder to write")
    Path out;

    @Option(names = "--seed", defaultValue = "0", description = "weight seed (default ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--std", defaultValue = "0.02", description = "std of the normal init of matrices (default ${DEFAULT-VALUE}, HF's)")
    double std;

    @Option(names = "--tokenizer", paramLabel = "FILE", description = "tokenizer.json to copy into the folder")
    Path tokenizer;

    @Option(names = "--char-alphabet", paramLabel = "CHARS", description = "write a character-level tokenizer.json over these characters (ids 0-3 are <pad> <s> </s> <unk>)")
    String alphabet;

    @Override
    public Integer call() throws IOException {
        if (!Files.isRegularFile(config)) {
            throw new Calm4jException(config + ": missing (expected a Hugging Face config.json)");
        }
        ModelConfig c = LmFamilies.readConfigFile(config);
        if (alphabet != null && CharTokenizer.vocabSize(alphabet) > c.vocabSize()) {
            throw new Calm4jException(config + ": field 'vocab_size' is " + c.vocabSize() + " but the character "
                    + "tokenizer needs " + CharTokenizer.vocabSize(alphabet));
        }
        if (tokenizer != null && !Files.isRegularFile(tokenizer)) {
            throw new Calm4jException(tokenizer + ": tokenizer missing");
        }
        if (!(std > 0)) {
            throw new Calm4jException("--std must be > 0, got " + std);
        }
        try (CausalLm m = LmFamilies.random(c, seed, std, ScalarType.Float)) {
            LmFamilies.save(m, out);
        }
        if (alphabet != null) {
            CharTokenizer.write(out.resolve("tokenizer.json"), alphabet);
        } else if (tokenizer != null) {
            Files.copy(tokenizer, out.resolve("tokenizer.json"), StandardCopyOption.REPLACE_EXISTING);
        }
        spec.commandLine().getOut().printf("wrote %s: %s, %,d parameters, seed %d%n", out, c.modelType(), c.parameterCount(), seed);
        return 0;
    }
}
