package dev.calm4j.data;

import dev.calm4j.Calm4jException;
import dev.calm4j.lm.ModelConfig;

/**
 * How raw data becomes {@link Example}s for one model.
 *
 * @param maxLength      the model context: a longer sequence is refused with a message, never truncated silently
 * @param vocabSize      every token id must lie in {@code [0, vocabSize)}
 * @param eosId          when non-null, appended after every completion and every text, as a target (the model learns
 *                       to stop); null appends nothing
 * @param bosId          when non-null, prepended to every sequence that does not already start with it, never a target
 * @param separatePrompt when true, every example gets {@link Example#augmentIds()}: the {@code augment_prompt} /
 *                       {@code augment_prompt_ids} field if present, else the prompt part of the sequence
 */
public record DataRules(int maxLength, int vocabSize, Integer eosId, Integer bosId, boolean separatePrompt) {

    public DataRules {
        // These usually come from a model config or command-line flags, so a bad value is a user error.
        if (maxLength < 2) {
            throw new Calm4jException("data rules: maxLength must be at least 2 (one token to read, one to predict), got "
                    + maxLength);
        }
        if (vocabSize < 1) {
            throw new Calm4jException("data rules: vocabSize must be positive, got " + vocabSize);
        }
        checkSpecial("eosId", eosId, vocabSize);
        checkSpecial("bosId", bosId, vocabSize);
    }

    /** No BOS, no EOS, shared prompt. */
    public static DataRules of(int maxLength, int vocabSize) {
        return new DataRules(maxLength, vocabSize, null, null, false);
    }

    /**
     * The rules for data a model trains or is scored on: its context length and vocabulary, its first EOS id appended
     * to every completion and text when {@code appendEos} (and the model has one), its BOS id prepended when
     * {@code prependBos} (and the model has one). The command line's defaults are both true ({@code --no-eos} and
     * {@code --no-bos} turn them off); training and evaluation must use the same choice.
     *
     * @param separatePrompt give every example augment ids (a {@code separate_prompt} composition)
     * @throws Calm4jException when the config's special ids lie outside its vocabulary
     */
    public static DataRules forModel(ModelConfig model, boolean appendEos, boolean prependBos, boolean separatePrompt) {
        Integer eos = !appendEos || model.eosTokenIds().isEmpty() ? null : model.eosTokenIds().get(0);
        Integer bos = !prependBos || model.bosTokenId() < 0 ? null : model.bosTokenId();
        return new DataRules(model.maxPositionEmbeddings(), model.vocabSize(), eos, bos, separatePrompt);
    }

    public DataRules withEos(Integer eos) {
        return new DataRules(maxLength, vocabSize, eos, bosId, separatePrompt);
    }

    public DataRules withBos(Integer bos) {
        return new DataRules(maxLength, vocabSize, eosId, bos, separatePrompt);
    }

    public DataRules withSeparatePrompt(boolean separate) {
        return new DataRules(maxLength, vocabSize, eosId, bosId, separate);
    }

    private static void checkSpecial(String name, Integer id, int vocabSize) {
        if (id != null && (id < 0 || id >= vocabSize)) {
            throw new Calm4jException("data rules: " + name + " " + id + " is outside the vocabulary [0, " + vocabSize
                    + ")");
        }
    }
}
