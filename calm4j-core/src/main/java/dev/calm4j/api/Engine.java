package dev.calm4j.api;

import dev.calm4j.Calm4jException;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.DataRules;
import dev.calm4j.data.Dataset;
import dev.calm4j.data.Example;
import dev.calm4j.eval.EvalModel;
import dev.calm4j.eval.Evaluator;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.Sampler;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.tokenize.Tokenizer;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.function.Function;

/**
 * What a {@link LanguageModel} and a {@link Composition} share: text in and out through the (anchor) model's
 * tokenizer, data read with its rules, generation and evaluation through the core's {@link Generator} and
 * {@link Evaluator}.
 */
final class Engine {
    /** Examples per forward in {@code evaluate(Path)}, as the command line's {@code eval --batch}. */
    static final int EVAL_BATCH = 16;

    private final ModelConfig config;            // the (anchor) model's: vocabulary, context, BOS, EOS
    private final Path modelDir;                 // where its tokenizer.json is (or is missing)
    private final Tokenizer tokenizer;           // null when the folder has none
    private final EvalModel evalModel;
    private final Mode mode;
    private final List<ModelConfig> augments;    // empty for a single model; null where an augment has its own tokenizer

    Engine(ModelConfig config, Path modelDir, Tokenizer tokenizer, EvalModel evalModel, Mode mode,
           List<ModelConfig> augments) {
        this.config = config;
        this.modelDir = modelDir;
        this.tokenizer = tokenizer;
        this.evalModel = evalModel;
        this.mode = mode;
        this.augments = java.util.Collections.unmodifiableList(new java.util.ArrayList<>(augments));   // nulls allowed
    }

    ModelConfig config() {
        return config;
    }

    /** The tokenizer, or null when the folder has none. */
    Tokenizer tokenizer() {
        return tokenizer;
    }

    private Tokenizer tokenizer(String forWhat) {
        if (tokenizer == null) {
            throw new Calm4jException(modelDir.resolve("tokenizer.json") + ": tokenizer missing, needed to " + forWhat
                    + " (a model without one takes token ids: generateIds, or data with \"ids\" fields)");
        }
        return tokenizer;
    }

    /** Ids of {@code text} without the tokenizer's special tokens (BOS comes from the options or the data rules). */
    long[] encode(String text) {
        if (text == null) {
            throw new Calm4jException("text to encode is null");
        }
        return tokenizer("encode text").encode(text, false);
    }

    String decode(long[] ids) {
        return tokenizer("decode ids").decode(ids, true);
    }

    /** The text of generated ids, ending before the first stop string. */
    String text(long[] generated, GenerateOptions o) {
        String s = decode(generated);
        int cut = firstStop(s, o.stopStrings());
        return cut < 0 ? s : s.substring(0, cut);
    }

    private static int firstStop(String s, List<String> stops) {
        int first = -1;
        for (String stop : stops) {
            int i = s.indexOf(stop);
            if (i >= 0 && (first < 0 || i < first)) {
                first = i;
            }
        }
        return first;
    }

    /** {@code ids} led by BOS when the options say so. */
    long[] prompt(long[] ids, GenerateOptions o) {
        if (o == null) {
            throw new Calm4jException("GenerateOptions must not be null (use GenerateOptions.greedy(n))");
        }
        return o.addBos() ? Generator.withBos(ids, config.bosTokenId()) : ids;
    }

    /**
     * Generates from prompts already shaped by {@link #prompt}.
     *
     * @param sessions the session factory for these prompts (a composition builds its augments' prompts from them)
     */
    List<long[]> generate(List<long[]> prompts, GenerateOptions o,
                          Function<List<long[]>, Generator.SessionFactory> sessions) {
        if (o == null) {
            throw new Calm4jException("GenerateOptions must not be null (use GenerateOptions.greedy(n))");
        }
        Set<Integer> stop = new HashSet<>(o.stopIds());
        if (o.stopAtEos()) {
            stop.addAll(config.eosTokenIds());
        }
        Sampler sampler = o.isGreedy() ? Sampler.greedy() : Sampler.sample(o.temperature(), o.topK(), o.topP(), o.seed());
        Generator.StopRule rule = null;
        if (!o.stopStrings().isEmpty()) {
            Tokenizer tok = tokenizer("find stop strings");
            rule = (row, gen) -> firstStop(tok.decode(gen, true), o.stopStrings()) >= 0;
        }
        return Generator.generate(sessions.apply(prompts), prompts, config.vocabSize(), config.maxPositionEmbeddings(),
                new Generator.Options(o.maxNewTokens(), sampler, stop, false), null, rule).generated();
    }

    Dataset readData(Path file, boolean appendEos, boolean prependBos) {
        if (file == null) {
            throw new Calm4jException("data file must not be null");
        }
        DataRules rules = DataRules.forModel(config, appendEos, prependBos, mode == Mode.SEPARATE_PROMPT);
        Dataset d = Dataset.read(file, tokenizer, rules, modelDir + " has no tokenizer.json");
        d.checkAugmentVocab(augments);
        return d;
    }

    /**
     * Checks that {@code data} fits this model (read with another model's rules, it might not): ids in the
     * vocabulary, examples within the context, augment ids present and in range in {@code separate_prompt} mode.
     */
    void checkFits(Dataset data, String what) {
        if (data == null) {
            throw new Calm4jException(what + " must not be null");
        }
        for (Example e : data.examples()) {
            String where = data.source() + ":" + e.line() + ": ";
            if (e.length() > config.maxPositionEmbeddings()) {
                throw new Calm4jException(where + "the example is " + e.length() + " tokens, longer than the model "
                        + "context (" + config.maxPositionEmbeddings() + ")");
            }
            for (long id : e.ids()) {
                if (id >= config.vocabSize()) {
                    throw new Calm4jException(where + "token id " + id + " is outside the model's vocabulary [0, "
                            + config.vocabSize() + ") (was the data read for another model?)");
                }
            }
            if (mode == Mode.SEPARATE_PROMPT && !e.hasAugment()) {
                throw new Calm4jException(where + "the example has no augment prompt, which a separate_prompt "
                        + "composition reads (read the data with this composition's readData)");
            }
        }
        data.checkAugmentVocab(augments);
    }

    Evaluation evaluate(Dataset data, int batchSize) {
        checkFits(data, "evaluation data");
        if (batchSize < 1) {
            throw new Calm4jException("evaluation batch size must be > 0, got " + batchSize);
        }
        Evaluator.ExactMatch em = Evaluator.exactMatch(evalModel, data, batchSize, new HashSet<>(config.eosTokenIds()),
                null);
        Evaluator.Perplexity p = Evaluator.perplexity(evalModel, data, batchSize);
        return new Evaluation(data.source(), data.size(), em.accuracy(), p.meanLoss(), p.perplexity(), p.tokens(),
                new ArrayList<>(em.predictions()));
    }

    /** Closes the tokenizer (only the engine that opened it does). */
    void close() {
        if (tokenizer != null) {
            tokenizer.close();
        }
    }
}
