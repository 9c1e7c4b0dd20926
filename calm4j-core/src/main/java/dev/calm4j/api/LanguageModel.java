package dev.calm4j.api;

import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.Dataset;
import dev.calm4j.eval.EvalModel;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.LmSession;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.tokenize.Tokenizer;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A frozen causal language model loaded from a Hugging Face folder ({@code config.json}, {@code model.safetensors} or
 * a sharded index, and {@code tokenizer.json}): the Llama family (llama, mistral, qwen2). Use it alone, or as the
 * anchor or an augment of a {@link Composition}; its weights are never changed.
 *
 * <pre>{@code
 * try (LanguageModel lm = LanguageModel.load(Path.of("models/my-llama"))) {
 *     System.out.println(lm.info());
 *     System.out.println(lm.generate("Once upon a time", GenerateOptions.greedy(32)));
 * }
 * }</pre>
 *
 * <p>Not thread-safe: use one model from one thread at a time.
 */
public final class LanguageModel implements TextModel {
    private final CausalLm lm;
    private final Path dir;
    private final Precision precision;
    private final Engine engine;
    private final boolean ownedByComposition;
    private boolean closed;

    LanguageModel(CausalLm lm, Path dir, Tokenizer tokenizer, Precision precision, boolean ownedByComposition) {
        this.lm = lm;
        this.dir = dir;
        this.precision = precision;
        this.ownedByComposition = ownedByComposition;
        this.engine = new Engine(lm.config(), dir, tokenizer, EvalModel.of(lm), Mode.SAME_SEQUENCE, List.of());
    }

    /**
     * Loads the model in {@code dir} in 32-bit floats, with its {@code tokenizer.json} when the folder has one.
     *
     * @throws Calm4jException when {@code dir} is not a model folder, its {@code config.json} names a family calm4j
     *     cannot load, a weight is missing or misshapen, or the tokenizer is not a valid {@code tokenizer.json}
     */
    public static LanguageModel load(Path dir) {
        return load(dir, Precision.FP32);
    }

    /**
     * Loads the model in {@code dir}, computing in {@code precision}.
     *
     * @throws Calm4jException as {@link #load(Path)}
     */
    public static LanguageModel load(Path dir, Precision precision) {
        if (dir == null || precision == null) {
            throw new Calm4jException("LanguageModel.load: the model folder and the precision must not be null");
        }
        Torch.init();
        LmFamilies.readConfig(dir);                     // a bad folder or config fails before anything is read
        Tokenizer tok = Tokenizer.exists(dir) ? Tokenizer.load(dir) : null;
        try {
            return new LanguageModel(LmFamilies.load(dir, precision.scalarType()), dir, tok, precision, false);
        } catch (RuntimeException e) {
            if (tok != null) {
                tok.close();
            }
            throw e;
        }
    }

    /** The folder the model was loaded from. */
    public Path directory() {
        return dir;
    }

    /** The dtype the model computes in. */
    public Precision precision() {
        return precision;
    }

    /** True when the folder has a {@code tokenizer.json} (without one, text methods throw; ids still work). */
    public boolean hasTokenizer() {
        return engine.tokenizer() != null;
    }

    /** @throws Calm4jException when the model is closed */
    @Override
    public ModelInfo info() {
        return ModelInfo.of(config());
    }

    /** @throws Calm4jException when the model is closed or has no tokenizer */
    @Override
    public long[] encode(String text) {
        check();
        return engine.encode(text);
    }

    /** @throws Calm4jException when the model is closed or has no tokenizer */
    @Override
    public String decode(long[] ids) {
        check();
        return engine.decode(ids);
    }

    /** @throws Calm4jException as {@link TextModel#generate(String, GenerateOptions)}, or when the model is closed */
    @Override
    public String generate(String prompt, GenerateOptions options) {
        return generate(List.of(prompt), options).get(0);
    }

    /** @throws Calm4jException as {@link TextModel#generate(List, GenerateOptions)}, or when the model is closed */
    @Override
    public List<String> generate(List<String> prompts, GenerateOptions options) {
        check();
        List<long[]> ids = new ArrayList<>();
        for (String p : prompts) {
            ids.add(engine.prompt(engine.encode(p), options));
        }
        List<String> out = new ArrayList<>();
        for (long[] g : engine.generate(ids, options, p -> sessions())) {
            out.add(engine.text(g, options));
        }
        return out;
    }

    /** @throws Calm4jException as {@link TextModel#generateIds}, or when the model is closed */
    @Override
    public long[] generateIds(long[] promptIds, GenerateOptions options) {
        check();
        if (promptIds == null || options == null) {
            throw new Calm4jException("generateIds: the prompt ids and the options must not be null");
        }
        return engine.generate(List.of(engine.prompt(promptIds, options)), options, p -> sessions()).get(0);
    }

    private Generator.SessionFactory sessions() {
        return (b, max) -> LmSession.cached(lm, b, max);
    }

    /** @throws Calm4jException for the first bad line of {@code file}, or when the model is closed */
    @Override
    public Dataset readData(Path file, boolean appendEos, boolean prependBos) {
        check();
        return engine.readData(file, appendEos, prependBos);
    }

    /** @throws Calm4jException as {@link TextModel#evaluate(Dataset, int)}, or when the model is closed */
    @Override
    public Evaluation evaluate(Dataset data, int batchSize) {
        check();
        return engine.evaluate(data, batchSize);
    }

    /**
     * Frees the weights and the tokenizer. A model that {@link Composition#load} loaded belongs to that composition:
     * closing it does nothing; close the composition.
     */
    @Override
    public void close() {
        if (!ownedByComposition) {
            release();
        }
    }

    void release() {
        if (!closed) {
            closed = true;
            engine.close();
            if (!ownedByComposition) {
                lm.close();
            }
        }
    }

    void check() {
        if (closed) {
            throw new Calm4jException("the model loaded from " + dir + " is closed");
        }
    }

    /** The tokenizer (owned by this model), or null. */
    Tokenizer tokenizer() {
        check();
        return engine.tokenizer();
    }

    CausalLm lm() {
        check();
        return lm;
    }

    ModelConfig config() {
        check();
        return lm.config();
    }

    @Override
    public String toString() {
        return "LanguageModel[" + dir + ": " + ModelInfo.of(lm.config()) + (closed ? ", closed" : "") + "]";
    }
}
