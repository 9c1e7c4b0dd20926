package dev.calm4j.api;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.compose.AugmentReader;
import dev.calm4j.compose.BridgeCheckpoint;
import dev.calm4j.compose.TextAlignment;
import dev.calm4j.compose.Bridge;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionException;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.Batch;
import dev.calm4j.data.Dataset;
import dev.calm4j.eval.EvalModel;
import dev.calm4j.generate.AlignedCalmSession;
import dev.calm4j.generate.CalmSession;
import dev.calm4j.generate.Generator;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.tokenize.Tokenizer;
import dev.calm4j.train.BridgeObjective;
import dev.calm4j.train.Objective;
import dev.calm4j.train.TrainConfig;
import dev.calm4j.train.TrainListener;
import dev.calm4j.train.TrainLoop;
import org.bytedeco.pytorch.Tensor;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * CALM: a frozen anchor model composed with frozen augmenting models through small trainable bridges (cross-attention
 * from an anchor layer to an augment layer, added to the anchor's residual stream). Only the bridges train; fresh
 * bridges add exactly zero, so an untrained composition predicts as its anchor does.
 *
 * <pre>{@code
 * try (LanguageModel anchor = LanguageModel.load(anchorDir);
 *      LanguageModel augment = LanguageModel.load(augmentDir);
 *      Composition calm = Composition.of(anchor, List.of(augment), Composition.Spec.defaults())) {
 *     TrainSummary s = calm.train(Path.of("train.jsonl"), TrainConfig.defaults(1000, 8, 1e-3, 0), out, null);
 *     System.out.println(calm.generate("k=", GenerateOptions.greedy(8)));
 * }
 * }</pre>
 *
 * <p>A composition trains, generates and scores with the anchor's tokenizer and data rules; {@link #save} writes a
 * bridge checkpoint ({@code bridges.safetensors} + {@code calm_config.json}, as {@code calm compose} does) that
 * {@link #load} and {@code calm eval/generate --bridges} read back. Not thread-safe.
 */
public final class Composition implements TextModel {

    /**
     * How to compose.
     *
     * @param connections "augment layer->anchor layer" pairs, 0-based, e.g. {@code "3->5,7->11"}, or with several
     *                    augments {@code "0:3->5,1:2->9"}; null for the paper's plan for each augment (every 4th
     *                    augment layer, spread evenly over the anchor)
     * @param heads       cross-attention heads per bridge; null for the anchor's attention heads
     * @param mode        {@code SAME_SEQUENCE} (both models read the same tokens: the paper's setting) or
     *                    {@code SEPARATE_PROMPT} (each augment reads the example's augment prompt, else its prompt,
     *                    once); null for {@code SAME_SEQUENCE}
     * @param queryInit   fresh bridges' query weights drawn at this multiple of {@code nn.Linear}'s init scale, in
     *                    [0, 1] (0: zeros, uniform attention at first)
     * @param seed        seed of the bridges' initial weights
     * @param recency     the bridges' cross-attention with a fixed recency bias per head ({@link Bridge#recency()}),
     *                    for augments that read the text through their own tokenizers; false for the paper's
     */
    public record Spec(String connections, Integer heads, Mode mode, double queryInit, long seed, boolean recency) {

        /** Without the recency bias. */
        public Spec(String connections, Integer heads, Mode mode, double queryInit, long seed) {
            this(connections, heads, mode, queryInit, seed, false);
        }

        /** @throws Calm4jException when {@code queryInit} is outside [0, 1] */
        public Spec {
            mode = mode == null ? Mode.SAME_SEQUENCE : mode;
            if (!(queryInit >= 0 && queryInit <= 1)) {
                throw new Calm4jException("Composition.Spec: queryInit must be in [0, 1], got " + queryInit);
            }
        }

        /** The paper's connections, the anchor's heads, same_sequence, zero queries, seed 0. */
        public static Spec defaults() {
            return new Spec(null, null, Mode.SAME_SEQUENCE, 0, 0);
        }

        /** This spec with other connections (null for the paper's). */
        public Spec withConnections(String c) {
            return new Spec(c, heads, mode, queryInit, seed, recency);
        }

        /** This spec with {@code h} heads per bridge (null for the anchor's). */
        public Spec withHeads(Integer h) {
            return new Spec(connections, h, mode, queryInit, seed, recency);
        }

        /** This spec in another mode. */
        public Spec withMode(Mode m) {
            return new Spec(connections, heads, m, queryInit, seed, recency);
        }

        /** This spec with another query init scale. */
        public Spec withQueryInit(double q) {
            return new Spec(connections, heads, mode, q, seed, recency);
        }

        /** This spec with or without the recency bias. */
        public Spec withRecency(boolean r) {
            return new Spec(connections, heads, mode, queryInit, seed, r);
        }

        /** This spec with another initialisation seed. */
        public Spec withSeed(long s) {
            return new Spec(connections, heads, mode, queryInit, s, recency);
        }
    }

    private final CalmModel calm;
    private final LanguageModel anchor;
    private final List<LanguageModel> augments;
    private final BridgeCheckpoint.Loaded loaded;    // non-null when this composition owns its base models
    private final Engine engine;
    private final List<AugmentReader> readers;       // per augment: its own tokenizer's reader, or null (anchor's ids)
    private BridgeObjective objective;                // made on first train or save (it fingerprints the base models)
    private ObjectNode provenance;                    // what the last training run recorded, for save
    private boolean closed;

    private Composition(CalmModel calm, LanguageModel anchor, List<LanguageModel> augments,
                        BridgeCheckpoint.Loaded loaded) {
        this.calm = calm;
        this.anchor = anchor;
        this.augments = List.copyOf(augments);
        this.loaded = loaded;
        List<AugmentReader> r = new ArrayList<>();
        for (int a = 0; a < augments.size(); a++) {
            LanguageModel m = augments.get(a);
            r.add(calm.ownTokens(a) ? new AugmentReader(m.tokenizer(), m.config(), m.directory().toString()) : null);
        }
        this.readers = java.util.Collections.unmodifiableList(r);
        List<ModelConfig> readIds = new ArrayList<>();          // null: the augment reads through its own tokenizer
        for (int a = 0; a < augments.size(); a++) {
            readIds.add(calm.ownTokens(a) ? null : augments.get(a).config());
        }
        this.engine = new Engine(anchor.config(), anchor.directory(), anchor.tokenizer(),
                EvalModel.of(calm, readers, anchor.tokenizer()), calm.mode(), readIds);
    }

    /**
     * Composes {@code anchor} with {@code augments} through fresh bridges. The models stay the caller's: close them
     * after the composition.
     *
     * @param spec how to compose; null for {@link Spec#defaults()}
     * @throws CompositionException (a {@link Calm4jException}) when the composition cannot be built: no augment, a
     *     connection naming a layer a model lacks, an augment no connection reads, heads that do not divide the
     *     anchor's hidden size, or same_sequence with an augment whose vocabulary is smaller than the anchor's;
     *     {@link CompositionException#part()} says which part of the spec is wrong
     * @throws Calm4jException when {@code connections} does not parse, a model is closed, or the models compute in
     *     different precisions
     */
    public static Composition of(LanguageModel anchor, List<LanguageModel> augments, Spec spec) {
        if (anchor == null || augments == null || augments.stream().anyMatch(java.util.Objects::isNull)) {
            throw new Calm4jException("Composition.of: the anchor and the augments must not be null");
        }
        Spec s = spec == null ? Spec.defaults() : spec;
        ModelConfig a = anchor.config();
        List<ModelConfig> augCfgs = new ArrayList<>();
        for (LanguageModel m : augments) {
            augCfgs.add(m.config());
            if (m.precision() != anchor.precision()) {
                throw new Calm4jException("augment " + m.directory() + " computes in " + m.precision() + ", the anchor "
                        + anchor.directory() + " in " + anchor.precision() + ": load them in the same precision");
            }
        }
        if (augments.isEmpty()) {
            throw new CompositionException(CompositionException.Part.AUGMENTS,
                    "a composition needs at least one augmenting model");
        }
        CompositionPlan plan = CompositionPlan.resolve(s.connections(), a, augCfgs);
        int heads = s.heads() == null ? a.numAttentionHeads() : s.heads();
        // An augment with a tokenizer of its own reads the text (same_sequence) or its prompt (separate_prompt)
        // through it (docs/design.md §3).
        List<Path> dirs = augments.stream().map(LanguageModel::directory).toList();
        boolean[] own = TextAlignment.ownTokens(anchor.directory(), dirs);
        plan.check(a, augCfgs, augments.stream().map(m -> m.directory().toString()).toList(), heads, s.mode(), own);
        CalmModel calm = CalmModel.create(anchor.lm(), augments.stream().map(LanguageModel::lm).toList(), plan, s.mode(),
                heads, s.queryInit(), s.recency(), s.seed(), own);
        return new Composition(calm, anchor, augments, null);
    }

    /**
     * Loads a bridge checkpoint (written by {@link #save}, {@link #train} or {@code calm compose}) with the base models
     * it records (their paths relative to {@code bridgesDir}), in 32-bit floats. The composition owns the models it
     * loads: closing it frees them.
     *
     * @throws Calm4jException when a file is missing or malformed, a recorded model folder does not exist, or a base
     *     model's weights differ from those the bridges were trained on (their fingerprints do not match)
     */
    public static Composition load(Path bridgesDir) {
        return load(bridgesDir, null, null, Precision.FP32);
    }

    /**
     * Loads a bridge checkpoint onto the base models in {@code anchorDir} and {@code augmentDirs} (null for the
     * recorded ones), computing in {@code precision}. Their weights must be the ones the bridges were trained on.
     *
     * @param augmentDirs one folder per augment, in the checkpoint's order; null or empty for the recorded ones
     * @throws Calm4jException as {@link #load(Path)}, or when the number of augment folders differs from the
     *     checkpoint's
     */
    public static Composition load(Path bridgesDir, Path anchorDir, List<Path> augmentDirs, Precision precision) {
        if (bridgesDir == null || precision == null) {
            throw new Calm4jException("Composition.load: the bridge folder and the precision must not be null");
        }
        Torch.init();
        BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(bridgesDir, anchorDir, augmentDirs, false,
                precision.scalarType());
        List<Tokenizer> opened = new ArrayList<>();
        try {
            LanguageModel a = new LanguageModel(l.model().anchor(), l.anchorDir(), tokenizerOf(l.anchorDir(), opened),
                    precision, true);
            List<LanguageModel> augs = new ArrayList<>();
            for (int i = 0; i < l.augmentDirs().size(); i++) {
                Path d = l.augmentDirs().get(i);
                augs.add(new LanguageModel(l.model().augments().get(i), d, tokenizerOf(d, opened), precision, true));
            }
            return new Composition(l.model(), a, augs, l);
        } catch (RuntimeException e) {
            opened.forEach(Tokenizer::close);
            l.close();
            throw e;
        }
    }

    private static Tokenizer tokenizerOf(Path dir, List<Tokenizer> opened) {
        if (!Tokenizer.exists(dir)) {
            return null;
        }
        Tokenizer t = Tokenizer.load(dir);
        opened.add(t);
        return t;
    }

    /** The anchor: its head makes the predictions. */
    public LanguageModel anchor() {
        return anchor;
    }

    /** The augmenting models, in the order connections number them. */
    public List<LanguageModel> augments() {
        return augments;
    }

    /** The connections, as {@link Spec#connections()} takes them (e.g. "3->3,7->7"). */
    public String connections() {
        return calm.plan().spec();
    }

    /** Cross-attention heads per bridge. */
    public int heads() {
        return calm.heads();
    }

    /** What the augments read. */
    public Mode mode() {
        return calm.mode();
    }

    /** Trainable parameters in all bridges together. */
    public long bridgeParameters() {
        return calm.bridgeParameterCount();
    }

    /** The anchor's basics (the composition predicts over its vocabulary, within its context). */
    @Override
    public ModelInfo info() {
        check();
        return anchor.info();
    }

    /** @throws Calm4jException when closed, or the anchor folder has no tokenizer */
    @Override
    public long[] encode(String text) {
        check();
        return engine.encode(text);
    }

    /** @throws Calm4jException when closed, or the anchor folder has no tokenizer */
    @Override
    public String decode(long[] ids) {
        check();
        return engine.decode(ids);
    }

    /**
     * Reads a data file with the anchor's tokenizer and rules (see {@link TextModel#readData(Path)}); in
     * {@code separate_prompt} mode every example also gets its augment prompt, checked against each augment's
     * vocabulary.
     *
     * @throws Calm4jException {@code file:line: ...} for the first bad line, or when closed
     */
    @Override
    public Dataset readData(Path file, boolean appendEos, boolean prependBos) {
        check();
        return engine.readData(file, appendEos, prependBos);
    }

    /**
     * Trains the bridges on {@code trainData} (read by {@link #readData(Path)}) and writes the run into {@code out};
     * see {@link #train(Dataset, Dataset, TrainConfig, Path, TrainListener)}.
     *
     * @throws Calm4jException for a bad data file, or as the full method
     */
    public TrainSummary train(Path trainData, TrainConfig config, Path out, TrainListener listener) {
        return train(readData(trainData), null, config, out, listener);
    }

    /**
     * Trains the bridges (the base models stay frozen) with AdamW, warmup and cosine decay as {@code config} says,
     * continuing from the bridges as they are. {@code out} gets the trained bridge checkpoint
     * ({@code bridges.safetensors}, {@code calm_config.json}, loadable by {@link #load}), {@code metrics.jsonl} (a
     * line per logged step), {@code train_config.json}, {@code numerics.json} and {@code checkpoint/} (optimizer
     * state); files of an earlier run there are replaced.
     *
     * @param evalData  scored at the end (and every {@code intervals.eval} steps), or null
     * @param config    e.g. {@link TrainConfig#defaults(int, int, double, long)}
     * @param listener  progress (messages, logged steps) as it happens; null for none
     * @throws Calm4jException when the data does not fit the composition (see {@link #evaluate(Dataset, int)}), a file
     *     cannot be written, or training diverges (a non-finite loss: lower the learning rate)
     */
    public TrainSummary train(Dataset trainData, Dataset evalData, TrainConfig config, Path out,
                              TrainListener listener) {
        check();
        engine.checkFits(trainData, "training data");
        if (evalData != null) {
            engine.checkFits(evalData, "evaluation data");
        }
        if (config == null || out == null) {
            throw new Calm4jException("train: the TrainConfig and the output folder must not be null");
        }
        BridgeObjective obj = objective();
        Objective recording = new Objective() {
            @Override
            public Map<String, Tensor> parameters() {
                return obj.parameters();
            }

            @Override
            public Tensor lossSum(Batch batch) {
                return obj.lossSum(batch);
            }

            @Override
            public void save(Path dir, ObjectNode p) {
                obj.save(dir, p);
                provenance = p;
            }

            @Override
            public String describe() {
                return obj.describe();
            }
        };
        TrainLoop.Result r = TrainLoop.run(recording, trainData, evalData, config, out, false,
                listener == null ? TrainListener.NONE : listener);
        double first = r.curve().stream().mapToDouble(p -> p[1]).filter(Double::isFinite).findFirst().orElse(Double.NaN);
        return new TrainSummary(r.steps(), first, r.finalLoss(), r.evalLoss(), r.seconds(), r.tokensPerSecond(), out);
    }

    private BridgeObjective objective() {
        if (objective == null) {
            objective = new BridgeObjective(calm, anchor.directory(),
                    augments.stream().map(LanguageModel::directory).toList(),
                    new dev.calm4j.train.FrozenStateCache(dev.calm4j.train.FrozenStateCache.DEFAULT_BUDGET_FLOATS), readers);
        }
        return objective;
    }

    /**
     * Writes the bridges as a checkpoint into {@code dir} ({@code bridges.safetensors} + {@code calm_config.json},
     * each atomically), recording the base models' folders relative to {@code dir} and their weight fingerprints, and
     * what the last {@link #train} run recorded. {@link #load(Path)} and {@code calm eval --bridges} read it back.
     *
     * @throws Calm4jException when {@code dir} cannot be created or written, or when closed
     */
    public void save(Path dir) {
        check();
        if (dir == null) {
            throw new Calm4jException("save: the folder must not be null");
        }
        BridgeCheckpoint.save(dir, calm, objective().config(dir, provenance));
    }

    /** @throws Calm4jException as {@link TextModel#generate(String, GenerateOptions)}, or when closed */
    @Override
    public String generate(String prompt, GenerateOptions options) {
        return generate(prompt, null, options);
    }

    /**
     * Generates a continuation of {@code prompt}; in a {@code separate_prompt} composition augment {@code a} reads
     * {@code augmentPrompts.get(a)} (encoded with the anchor's tokenizer; BOS as the options say).
     *
     * @param augmentPrompts one text per augment, or null / empty to let every augment read the prompt itself
     * @throws Calm4jException as {@link TextModel#generate(String, GenerateOptions)}; or when augment prompts are given
     *     to a {@code same_sequence} composition, their number differs from the augments', one is empty, or an id
     *     lies outside an augment's vocabulary
     */
    public String generate(String prompt, List<String> augmentPrompts, GenerateOptions options) {
        check();
        List<long[]> own = null;
        if (augmentPrompts != null && !augmentPrompts.isEmpty()) {
            if (calm.mode() != Mode.SEPARATE_PROMPT) {
                throw new Calm4jException("augment prompts are for separate_prompt compositions; this one is "
                        + calm.mode().jsonName());
            }
            own = new ArrayList<>();
            for (int a = 0; a < augmentPrompts.size(); a++) {
                long[] ids = engine.prompt(engine.encode(augmentPrompts.get(a)), options);
                if (ids.length == 0) {
                    throw new Calm4jException("augment prompt " + a + " is empty");
                }
                own.add(ids);
            }
        }
        if (alignedAugments()) {
            return generate(List.of(prompt), options).get(0);
        }
        long[] ids = engine.prompt(engine.encode(prompt), options);
        if (ownPrompts()) {
            List<long[][]> ap = CalmSession.augmentPromptsFromText(calm, List.of(prompt), augmentPrompts, ownTokenizers(),
                    text -> engine.prompt(engine.encode(text), options));
            return engine.text(engine.generate(List.of(ids), options, p -> (b, max) -> CalmSession.cached(calm, b, max, ap))
                    .get(0), options);
        }
        List<long[]> ownPrompts = own;
        return engine.text(engine.generate(List.of(ids), options, p -> sessions(p, ownPrompts)).get(0), options);
    }

    /**
     * Whether a same_sequence augment reads the text through its own tokenizer (generation then starts from prompt
     * texts).
     */
    private boolean alignedAugments() {
        return calm.mode() == Mode.SAME_SEQUENCE && readers.stream().anyMatch(java.util.Objects::nonNull);
    }

    /** Whether a separate_prompt augment reads its prompt through its own tokenizer. */
    private boolean ownPrompts() {
        return calm.mode() == Mode.SEPARATE_PROMPT && readers.stream().anyMatch(java.util.Objects::nonNull);
    }

    /** Per augment, its own tokenizer, or null where it reads the anchor's ids. */
    private List<Tokenizer> ownTokenizers() {
        List<Tokenizer> out = new ArrayList<>();
        for (int a = 0; a < augments.size(); a++) {
            out.add(calm.ownTokens(a) ? augments.get(a).tokenizer() : null);
        }
        return out;
    }

    /** @throws Calm4jException as {@link TextModel#generate(List, GenerateOptions)}, or when closed */
    @Override
    public List<String> generate(List<String> prompts, GenerateOptions options) {
        check();
        if (alignedAugments()) {
            // Each augment re-reads the grown text through its own tokenizer at every step (AlignedCalmSession); the
            // prompts are tokenized as the anchor's tokenizer reads a text, with its special tokens.
            AlignedCalmSession.Start start = AlignedCalmSession.start(calm, anchor.tokenizer(), ownTokenizers(), prompts);
            List<String> out = new ArrayList<>();
            for (long[] g : engine.generate(start.prompts(), options, p -> start.sessions())) {
                out.add(engine.text(g, options));
            }
            return out;
        }
        List<long[]> ids = new ArrayList<>();
        for (String p : prompts) {
            ids.add(engine.prompt(engine.encode(p), options));
        }
        List<String> out = new ArrayList<>();
        if (ownPrompts()) {
            List<long[][]> ap = CalmSession.augmentPromptsFromText(calm, prompts, null, ownTokenizers(),
                    text -> engine.prompt(engine.encode(text), options));
            for (long[] g : engine.generate(ids, options, p -> (b, max) -> CalmSession.cached(calm, b, max, ap))) {
                out.add(engine.text(g, options));
            }
            return out;
        }
        for (long[] g : engine.generate(ids, options, p -> sessions(p, null))) {
            out.add(engine.text(g, options));
        }
        return out;
    }

    /**
     * Generates from token ids; in a {@code separate_prompt} composition every augment reads the prompt ids.
     *
     * @throws Calm4jException as {@link TextModel#generateIds}, or when closed
     */
    @Override
    public long[] generateIds(long[] promptIds, GenerateOptions options) {
        check();
        if (promptIds == null || options == null) {
            throw new Calm4jException("generateIds: the prompt ids and the options must not be null");
        }
        return engine.generate(List.of(engine.prompt(promptIds, options)), options, p -> sessions(p, null)).get(0);
    }

    private Generator.SessionFactory sessions(List<long[]> prompts, List<long[]> own) {
        List<long[][]> augmentPrompts = CalmSession.augmentPrompts(calm, prompts, own);
        return (b, max) -> CalmSession.cached(calm, b, max, augmentPrompts);
    }

    /** @throws Calm4jException as {@link TextModel#evaluate(Dataset, int)}, or when closed */
    @Override
    public Evaluation evaluate(Dataset data, int batchSize) {
        check();
        return engine.evaluate(data, batchSize);
    }

    /**
     * Frees the bridges, and the base models when {@link #load} loaded them (models passed to {@link #of} stay open:
     * they are the caller's).
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;                                // the engine's tokenizer is the anchor's
        if (loaded != null) {
            anchor.release();
            augments.forEach(LanguageModel::release);
            loaded.close();
        } else {
            calm.close();
        }
    }

    private void check() {
        if (closed) {
            throw new Calm4jException("the composition over " + anchor.directory() + " is closed");
        }
        anchor.check();
        augments.forEach(LanguageModel::check);
    }

    @Override
    public String toString() {
        return String.format("Composition[anchor %s + %s, connections %s, %s, %d heads, %,d bridge parameters]",
                anchor.directory(), augments.stream().map(m -> m.directory().toString()).toList(), connections(),
                calm.mode().jsonName(), calm.heads(), calm.bridgeParameterCount());
    }
}
