package dev.calm4j.api;

import dev.calm4j.Calm4jException;
import dev.calm4j.data.Dataset;

import java.nio.file.Path;
import java.util.List;

/**
 * What a single {@link LanguageModel} and a {@link Composition} both do: turn text into ids and back with the
 * (anchor) model's {@code tokenizer.json}, generate, read data and score it. So code can compare a composition with
 * its anchor alone.
 *
 * <p>Every method throws {@link Calm4jException} for an error a caller can cause (a missing file, a bad field, a
 * prompt longer than the context, a closed model), with a message that names the file or the field and what was
 * expected.
 */
public sealed interface TextModel extends AutoCloseable permits LanguageModel, Composition {

    /** The (anchor) model's basics. */
    ModelInfo info();

    /**
     * The ids of {@code text}, without the tokenizer's special tokens (BOS is added by {@link GenerateOptions#addBos()}
     * and by the data rules, never twice).
     *
     * @throws Calm4jException when the model folder has no {@code tokenizer.json}
     */
    long[] encode(String text);

    /**
     * The text of {@code ids}, special tokens left out.
     *
     * @throws Calm4jException when the model folder has no {@code tokenizer.json}
     */
    String decode(long[] ids);

    /**
     * Generates a continuation of {@code prompt}.
     *
     * @return the new text only (not the prompt), ending before a stop string if one was met
     * @throws Calm4jException without a tokenizer, or when the prompt plus {@link GenerateOptions#maxNewTokens()}
     *     exceed the context, or a prompt is empty without BOS
     */
    String generate(String prompt, GenerateOptions options);

    /**
     * Generates a continuation of each prompt, as one batch (rows do not affect each other's results).
     *
     * @return the new text of each prompt, in order
     * @throws Calm4jException as {@link #generate(String, GenerateOptions)}, or when {@code prompts} is empty
     */
    List<String> generate(List<String> prompts, GenerateOptions options);

    /**
     * Generates from token ids (BOS prepended when {@link GenerateOptions#addBos()} and not already there).
     *
     * @return the new ids, a stop id included when one ended the generation
     * @throws Calm4jException when an id lies outside the vocabulary, or the prompt plus
     *     {@link GenerateOptions#maxNewTokens()} exceed the context
     */
    long[] generateIds(long[] promptIds, GenerateOptions options);

    /**
     * Reads a data file with this model's rules: BOS prepended, the model's EOS appended to every completion as a
     * target (as {@code calm compose} and {@code calm eval} do by default). {@code .jsonl} lines are
     * {@code {"prompt", "completion"}}, {@code {"text"}}, or pre-tokenized {@code {"prompt_ids", "completion_ids"}} /
     * {@code {"ids"}}; a {@code separate_prompt} composition also reads {@code "augment_prompt"} when present.
     *
     * @throws Calm4jException {@code file:line: ...} for the first bad line (wrong field, too long, unknown id)
     */
    default Dataset readData(Path file) {
        return readData(file, true, true);
    }

    /**
     * As {@link #readData(Path)}, choosing whether EOS is appended and BOS prepended (the command line's
     * {@code --no-eos}, {@code --no-bos}). Score data read the way the training data was.
     *
     * @throws Calm4jException {@code file:line: ...} for the first bad line
     */
    Dataset readData(Path file, boolean appendEos, boolean prependBos);

    /**
     * Scores {@code file} (read by {@link #readData(Path)}): greedy exact match and perplexity, 16 examples a batch.
     *
     * @throws Calm4jException for a bad data file
     */
    default Evaluation evaluate(Path file) {
        return evaluate(readData(file), Engine.EVAL_BATCH);
    }

    /**
     * Scores {@code data}: greedy exact match (stopping at EOS) and perplexity, {@code batchSize} examples a forward.
     *
     * @throws Calm4jException when {@code data} does not fit this model (ids outside its vocabulary, examples longer
     *     than its context, no augment prompts for a {@code separate_prompt} composition) or {@code batchSize < 1}
     */
    Evaluation evaluate(Dataset data, int batchSize);

    /** Frees the native memory this object owns; using it afterwards throws {@link Calm4jException}. */
    @Override
    void close();
}
