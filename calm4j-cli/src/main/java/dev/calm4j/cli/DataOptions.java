package dev.calm4j.cli;

import dev.calm4j.data.DataRules;
import dev.calm4j.data.Dataset;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.tokenize.Tokenizer;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.List;

/**
 * How data files become examples (a picocli mixin): BOS and EOS from the model's config unless turned off. Use the
 * same flags for training and evaluation, so exact match scores the sequences the model was trained on.
 */
final class DataOptions {
    @Option(names = "--no-eos", description = "do not append the model's EOS id to every completion/text (by default it is "
            + "appended as a target, so the model learns to stop)")
    boolean noEos;

    @Option(names = "--no-bos", description = "do not prepend the model's BOS id to every sequence")
    boolean noBos;

    @Option(names = "--max-line-bytes", paramLabel = "N", defaultValue = "1048576",
            description = "refuse data lines longer than N bytes, checked before tokenizing (default ${DEFAULT-VALUE}; "
                    + "plain text is tokenized whole, at most 16 x N bytes)")
    long maxLineBytes = dev.calm4j.data.Dataset.DEFAULT_MAX_LINE_BYTES;

    DataRules rules(ModelConfig c, boolean separatePrompt) {
        return DataRules.forModel(c, !noEos, !noBos, separatePrompt);
    }

    /** These flags as typed, to repeat them in a suggested command ("" when none). */
    String flags() {
        return (noEos ? " --no-eos" : "") + (noBos ? " --no-bos" : "");
    }

    /** The model folder's tokenizer, or null when it has none (the data must then be pre-tokenized ids). */
    static Tokenizer tokenizerOf(Path modelDir) {
        return Tokenizer.exists(modelDir) ? Tokenizer.load(modelDir) : null;
    }

    /**
     * Reads {@code file} (null when {@code file} is null). Without a tokenizer, a message about text fields gets
     * {@code noTokenizerHint} appended: where this command takes its tokenizer from.
     */
    Dataset read(Path file, Tokenizer tok, DataRules rules, String noTokenizerHint) {
        return file == null ? null : Dataset.read(file, tok, rules, noTokenizerHint, maxLineBytes);
    }

    /** The hint for {@link #read} when the tokenizer comes from a model folder. */
    static String noTokenizerIn(Path modelDir) {
        return modelDir + " has no tokenizer.json";
    }

    /** In separate-prompt mode every augment reads the examples' augment ids: they must lie in its vocabulary. */
    static void checkAugmentVocab(Dataset data, List<? extends ModelConfig> augments) {
        if (data != null) {
            data.checkAugmentVocab(augments);
        }
    }

    static String describe(Dataset d) {
        return String.format("%s: %,d examples, %,d target tokens", d.source(), d.size(), d.targetTokens());
    }
}
