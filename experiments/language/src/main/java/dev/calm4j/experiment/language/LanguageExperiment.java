package dev.calm4j.experiment.language;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.compose.AugmentReader;
import dev.calm4j.compose.Bridge;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Connection;
import dev.calm4j.compose.Mode;
import dev.calm4j.compose.TextAlignment;
import dev.calm4j.data.DataRules;
import dev.calm4j.data.Dataset;
import dev.calm4j.data.Example;
import dev.calm4j.eval.ChrF;
import dev.calm4j.eval.EvalModel;
import dev.calm4j.eval.Evaluator;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.Sampler;
import dev.calm4j.io.AtomicFiles;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.lm.llama.LlamaWeights;
import dev.calm4j.plot.LossCurve;
import dev.calm4j.tokenize.Tokenizer;
import dev.calm4j.train.BridgeObjective;
import dev.calm4j.train.FrozenStateCache;
import dev.calm4j.train.Lora;
import dev.calm4j.train.LoraObjective;
import dev.calm4j.train.Parallel;
import dev.calm4j.train.TrainConfig;
import dev.calm4j.train.TrainListener;
import dev.calm4j.train.TrainLoop;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.Callable;

/**
 * The paper's language experiment (§4.2, Table 2) on real text: an English anchor m_B learns to translate Spanish
 * Bible verses into English through bridges to m_A, a small model of Spanish and of the training books' verse pairs,
 * with its own tokenizer. Rows: floors without a model, each base model alone, LoRA on m_B (parameters matched to
 * the bridges), CALM, CALM over a random m_A, m_A as an encoder, and the skyline (m_B further pretrained on m_A's
 * data, then trained on D_C like the LoRA row); chrF on whole held-out books with bootstrap intervals, the
 * reference's likelihood, and the anchor's English before and after composition.
 */
public final class LanguageExperiment {
    static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    static final int BOS = 1;
    static final int EOS = 2;

    /**
     * Everything that defines a run (written next to its results as config.json), in named parts.
     *
     * @param data the fetched text ({@code experiments/language/scripts/fetch-data.sh})
     * @param modelsDir the base models (m_A, m_B, m_B_skyline), or where {@code retrain} writes them
     * @param controls which of {@link #CONTROLS} train beside CALM
     * @param sweep D_C sizes (shares of the training pairs) at which CALM and LoRA are also trained, first seed only
     * @param jobs training runs at once
     */
    public record Config(LanguageRecipe recipe, Path data, Path modelsDir, Path out, boolean retrain, List<Long> seeds,
                         List<String> controls, Bridges bridges, Training training, Composition composition,
                         List<Double> sweep, int jobs) {
        public static final List<String> CONTROLS = List.of("lora", "calm_random_augment", "calm_encoder", "skyline");

        public Config {
            seeds = List.copyOf(seeds);
            controls = List.copyOf(controls);
            sweep = List.copyOf(sweep);
            if (seeds.isEmpty() || jobs < 1) {
                throw new IllegalArgumentException("at least one seed and jobs >= 1 expected");
            }
            for (String c : controls) {
                if (!CONTROLS.contains(c)) {
                    throw new IllegalArgumentException("controls: expected some of " + CONTROLS + ", got " + c);
                }
            }
            for (double s : sweep) {
                if (!(s > 0 && s <= 1)) {
                    throw new IllegalArgumentException("sweep: shares in (0, 1] expected, got " + s);
                }
            }
        }

        /**
         * @param connections augment layer -> anchor layer, comma-separated
         * @param recency the cross-attention's recency bias ({@link dev.calm4j.compose.Bridge#recency()}); off by
         *     default: the paper's method
         */
        public record Bridges(String connections, int heads, double queryInit, boolean recency) {
            public static final Bridges DEFAULT = new Bridges("1->1,3->5", 8, 0.1, false);

            public Bridges(String connections, int heads, double queryInit) {
                this(connections, heads, queryInit, false);
            }

            public Bridges {
                if (heads < 1 || !(queryInit >= 0 && queryInit <= 1)) {
                    throw new IllegalArgumentException("bridges: heads >= 1 and query init in [0, 1] expected");
                }
            }
        }

        /** Every composition-stage run's schedule: warmup, the peak held, then decay over the last {@code decayFraction}. */
        public record Training(int steps, int batch, double lr, double decayFraction) {
            public static final Training DEFAULT = new Training(200, 16, 3e-3, 0.3);

            public Training {
                if (steps < 1 || batch < 1 || !(lr > 0) || !(decayFraction > 0 && decayFraction <= 1)) {
                    throw new IllegalArgumentException("training: steps, batch >= 1, lr > 0, decay in (0, 1] expected");
                }
            }
        }

        /**
         * @param pairShare D_C's verse pairs as a share of the training books' pairs (the paper: ~5 % of m_A's data)
         * @param englishMix English text added to D_C, as a share of its pairs, so that the bridges learn to leave
         *     the anchor's own English alone
         * @param testVerses verses of the held-out books translated per row (a seeded sample; all when larger)
         * @param heldOutEnglish pieces of the held-out addresses for the anchor's English
         * @param dataSeed draws D_C, the test sample and the random-verse floor
         */
        public record Composition(double pairShare, double englishMix, int testVerses, int heldOutEnglish, long dataSeed) {
            public static final Composition DEFAULT = new Composition(0.05, 0.25, 200, 200, 7);

            public Composition {
                if (!(pairShare > 0 && pairShare <= 1) || !(englishMix >= 0) || testVerses < 1 || heldOutEnglish < 1) {
                    throw new IllegalArgumentException("composition: pair share in (0, 1], english mix >= 0, test "
                            + "verses and held-out English >= 1 expected");
                }
            }
        }

        public static Config defaults(Path data, Path modelsDir, Path out) {
            return new Config(LanguageRecipe.defaults(), data, modelsDir, out, false, List.of(1L, 2L, 3L), CONTROLS,
                    Bridges.DEFAULT, Training.DEFAULT, Composition.DEFAULT, List.of(0.01, 0.20),
                    Math.max(1, Math.min(2, Runtime.getRuntime().availableProcessors())));
        }

        /** Minutes, for CI: one seed, CALM and LoRA only, fewer steps and test verses, no sweep. */
        public Config quick() {
            return new Config(recipe, data, modelsDir, out, retrain, List.of(seeds.get(0)),
                    controls.contains("lora") ? List.of("lora") : List.of(), bridges,
                    new Training(Math.min(100, training.steps()), training.batch(), training.lr(), training.decayFraction()),
                    new Composition(composition.pairShare(), composition.englishMix(), Math.min(60, composition.testVerses()),
                            Math.min(60, composition.heldOutEnglish()), composition.dataSeed()),
                    List.of(), jobs);
        }

        ObjectNode toJson() {
            ObjectNode o = JSON.valueToTree(this);
            o.put("data", data.toString());
            o.put("modelsDir", modelsDir.toString());
            o.put("out", out.toString());
            return o;
        }
    }

    private final Config cfg;
    private final PrintStream log;
    private final RunListeners listeners;

    /** The listener of each training run, by a name that says which ("m_A", "seed 2, CALM"). */
    @FunctionalInterface
    public interface RunListeners {
        RunListeners NONE = name -> TrainListener.NONE;

        TrainListener forRun(String name);

        /**
         * A training run's whole listener: its loss curve written as {@code loss.png} when it ends; this run's own
         * listener only when runs go one at a time (progress bars of parallel runs would overwrite each other); and
         * with {@code messages}, its messages to {@code log}.
         */
        default TrainListener withCurve(String name, boolean messages, int jobs, PrintStream log) {
            List<TrainListener> ls = new ArrayList<>();
            ls.add(new TrainListener() {
                @Override
                public void finished(TrainLoop.Result r, Path out) {
                    LossCurve.write(out.resolve("loss.png"), r.describe(), r.curve());
                }
            });
            if (jobs == 1) {
                ls.add(forRun(name));
            }
            if (messages) {
                ls.add(TrainListener.messagesTo(log));
            }
            return TrainListener.all(ls);
        }
    }

    public LanguageExperiment(Config cfg, PrintStream log, RunListeners listeners) {
        this.cfg = cfg;
        this.log = log;
        this.listeners = listeners;
    }

    private TrainListener listener(String name, boolean messages) {
        return listeners.withCurve(name, messages, cfg.jobs(), log);
    }

    /** The composition stage's files, written into {@code out/data} and read back as any user's data would be. */
    public record Files4(Path train, Path english, Path englishEncoder, Path test, Path heldOut, Map<Double, Path[]> sweep) {}

    public Files4 writeData(Corpus c) {
        Path dir = cfg.out().resolve("data");
        Config.Composition k = cfg.composition();
        Random r = new Random(k.dataSeed());
        List<Corpus.Pair> shuffled = new ArrayList<>(c.trainPairs());
        Collections.shuffle(shuffled, r);
        List<String> english = new ArrayList<>(c.anchorDocs());
        Collections.shuffle(english, r);
        // Nested D_C sizes: the 1 % set is part of the 5 % one, which is part of the 20 % one, English included.
        Map<Double, Path[]> sweep = new LinkedHashMap<>();
        for (double s : cfg.sweep()) {
            int n = size(s, shuffled.size());
            List<String> eng = english.subList(0, Math.min(english.size(), (int) Math.round(k.englishMix() * n)));
            sweep.put(s, new Path[] {pairs(dir.resolve("composition_pairs_" + pct(s) + ".jsonl"), shuffled.subList(0, n)),
                    texts(dir.resolve("composition_english_" + pct(s) + ".jsonl"), eng, null)});
        }
        int n = size(k.pairShare(), shuffled.size());
        Path train = pairs(dir.resolve("composition_pairs.jsonl"), shuffled.subList(0, n));
        List<String> dcEnglish = english.subList(0, Math.min(english.size(), (int) Math.round(k.englishMix() * n)));
        Path eng = texts(dir.resolve("composition_english.jsonl"), dcEnglish, null);
        // The encoder control's copy: m_A reads a prompt before the anchor starts, and English rows have none; a
        // blank one, since any of the row's own text would show the anchor the tokens it is to predict.
        Path engEnc = texts(dir.resolve("composition_english_encoder.jsonl"), dcEnglish, " ");
        List<Corpus.Pair> test = new ArrayList<>(c.testPairs());
        Collections.shuffle(test, r);
        test = new ArrayList<>(test.subList(0, Math.min(k.testVerses(), test.size())));
        Path testFile = pairs(dir.resolve("test_pairs.jsonl"), test);
        List<String> held = new ArrayList<>(c.heldOutEnglish());
        Collections.shuffle(held, r);
        List<String> heldOut = held.subList(0, Math.min(k.heldOutEnglish(), held.size()));
        Path heldFile = texts(dir.resolve("english_heldout.jsonl"), heldOut, null);
        texts(dir.resolve("english_heldout_encoder.jsonl"), heldOut, " ");
        return new Files4(train, eng, engEnc, testFile, heldFile, sweep);
    }

    static int size(double share, int n) {
        return Math.max(1, (int) Math.round(share * n));
    }

    static String pct(double share) {
        return String.format("%dpct", Math.round(share * 100));
    }

    private static Path pairs(Path file, List<Corpus.Pair> pairs) {
        List<Map<String, Object>> rows = new ArrayList<>();
        for (Corpus.Pair p : pairs) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("prompt", Corpus.prompt(p));
            m.put("completion", Corpus.completion(p));
            m.put("ref", p.ref());
            rows.add(m);
        }
        Dataset.writeJsonl(file, rows);
        return file;
    }

    /** Texts as a data file, one {@code {"text"}} row each, with {@code augment_prompt} when given (the encoder control's). */
    public static Path texts(Path file, List<String> texts, String augmentPrompt) {
        List<Map<String, Object>> rows = new ArrayList<>();
        for (String t : texts) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("text", t);
            if (augmentPrompt != null) {
                m.put("augment_prompt", augmentPrompt);
            }
            rows.add(m);
        }
        Dataset.writeJsonl(file, rows);
        return file;
    }

    /** Runs everything; returns results.json's content (also written, with report.md, predictions and PNGs). */
    public ObjectNode run() throws IOException {
        long t0 = System.nanoTime();
        Files.createDirectories(cfg.out());
        log.println("reading the text ...");
        Corpus corpus = Corpus.load(cfg.data(), cfg.recipe().split());
        log.printf("  %,d training verse pairs, %,d in the held-out books %s; %,d pieces of English for m_B, %,d of "
                        + "Spanish for m_A; %d held-out addresses%n", corpus.trainPairs().size(), corpus.testPairs().size(),
                cfg.recipe().split().testBooks(), corpus.anchorDocs().size(), corpus.spanishDocs().size(),
                corpus.heldOutSpeeches().size());
        BaseModels bases = new BaseModels(cfg.recipe(), cfg.modelsDir(), log, this::listener);
        bases.ensure(corpus, cfg.retrain(), cfg.jobs());
        Files4 files = writeData(corpus);
        AtomicFiles.writeString(cfg.out().resolve("config.json"), JSON.writeValueAsString(cfg.toJson()) + "\n");

        ObjectNode results = JSON.createObjectNode();
        results.set("config", cfg.toJson());
        Map<String, Row> rows = new LinkedHashMap<>();
        Path aDir = bases.augment();
        Path bDir = bases.anchor();
        try (Tokenizer tokA = Tokenizer.load(aDir); Tokenizer tokB = Tokenizer.load(bDir);
             CausalLm mA = LmFamilies.load(aDir); CausalLm mB = LmFamilies.load(bDir)) {
            DataRules rulesB = DataRules.forModel(mB.config(), true, true, false);
            DataRules rulesA = DataRules.forModel(mA.config(), true, true, false);
            Dataset test = Dataset.read(files.test(), tokB, rulesB);
            Dataset heldOut = Dataset.read(files.heldOut(), tokB, rulesB);
            List<Corpus.Pair> testPairs = readPairs(test);
            List<String> refs = testPairs.stream().map(Corpus.Pair::en).toList();
            int maxNew = maxNewTokens(Dataset.read(files.train(), tokB, rulesB));
            results.put("max_new_tokens", maxNew);

            // Floors: what a model must beat before it can be said to translate at all.
            rows.put("copy_source", Row.of("copy_source", List.of(testPairs.stream().map(Corpus.Pair::es).toList()), refs, null, null));
            Random r = new Random(cfg.composition().dataSeed() + 1);
            List<String> random = new ArrayList<>();
            for (int i = 0; i < testPairs.size(); i++) {
                random.add(corpus.trainPairs().get(r.nextInt(corpus.trainPairs().size())).en());
            }
            rows.put("random_verse", Row.of("random_verse", List.of(random), refs, null, null));

            log.println("evaluating the base models ...");
            rows.put("m_B", evaluate("m_B", EvalModel.of(mB), tokB, test, heldOut, maxNew, refs));
            Dataset testA = Dataset.read(files.test(), tokA, rulesA);
            rows.put("m_A", evaluate("m_A", EvalModel.of(mA), tokA, testA, null, maxNew * 2, refs));
            log(rows.get("m_B"));
            log(rows.get("m_A"));

            CompositionPlan plan = new CompositionPlan(CompositionPlan.parse(cfg.bridges().connections()));
            long bridgeParams = 0;
            for (Connection c : plan.connections()) {
                bridgeParams += Bridge.parameterCount(mA.hiddenSize(), mB.hiddenSize());
            }
            results.put("bridge_parameters", bridgeParams);
            int rank = Lora.rankMatching((LlamaModel) mB, LORA_TARGETS, bridgeParams);
            results.put("lora_rank", rank);
            results.put("lora_parameters", rank * Lora.paramsPerRank((LlamaModel) mB, LORA_TARGETS));
            boolean[] own = TextAlignment.ownTokens(bDir, List.of(aDir));
            List<AugmentReader> readers = List.of(own[0] ? new AugmentReader(tokA, mA.config(), aDir.toString()) : null);

            Dataset dcPairs = Dataset.read(files.train(), tokB, rulesB);
            Dataset dcEnglish = Dataset.read(files.english(), tokB, rulesB);
            Dataset dc = concat(dcPairs, dcEnglish, "D_C: " + dcPairs.size() + " verse pairs + " + dcEnglish.size()
                    + " pieces of English");
            Dataset dcEnc = concat(Dataset.read(files.train(), tokB, rulesB.withSeparatePrompt(true)),
                    Dataset.read(files.englishEncoder(), tokB, rulesB.withSeparatePrompt(true)), "D_C, prompts to the augment");
            Dataset testEnc = Dataset.read(files.test(), tokB, rulesB.withSeparatePrompt(true));
            Dataset heldEnc = Dataset.read(files.heldOut().resolveSibling("english_heldout_encoder.jsonl"), tokB,
                    rulesB.withSeparatePrompt(true));
            results.put("composition_examples", dc.size());

            List<Callable<Run>> runs = new ArrayList<>();
            Map<String, List<Run>> done = new LinkedHashMap<>();
            for (long seed : cfg.seeds()) {
                TrainConfig tc = schedule(cfg.training(), seed);
                Path runDir = cfg.out().resolve("seed-" + seed);
                runs.add(() -> calmRun("calm", seed, mB, mA, aDir, bDir, plan, readers, own, dc, test, heldOut, tokB,
                        maxNew, refs, tc, runDir.resolve("calm"), Mode.SAME_SEQUENCE));
                if (cfg.controls().contains("lora")) {
                    runs.add(() -> loraRun("lora", seed, (LlamaModel) mB, bDir, rank, dc, test, heldOut, tokB, maxNew, refs, tc,
                            runDir.resolve("lora")));
                }
                if (cfg.controls().contains("calm_random_augment")) {
                    runs.add(() -> {
                        LlamaConfig ac = (LlamaConfig) mA.config();
                        Path rnd = runDir.resolve("random_m_A");
                        try (LlamaModel m = new LlamaModel(ac, LlamaWeights.random(ac, 1000 + seed, 0.02, ScalarType.Float), ScalarType.Float)) {
                            LmFamilies.save(m, rnd);
                            Files.copy(aDir.resolve("tokenizer.json"), rnd.resolve("tokenizer.json"), StandardCopyOption.REPLACE_EXISTING);
                            return calmRun("calm_random_augment", seed, mB, m, rnd, bDir, plan, readers, own, dc, test, heldOut,
                                    tokB, maxNew, refs, tc, runDir.resolve("calm_random_augment"), Mode.SAME_SEQUENCE);
                        }
                    });
                }
                if (cfg.controls().contains("calm_encoder")) {
                    runs.add(() -> calmRun("calm_encoder", seed, mB, mA, aDir, bDir, plan, readers, own, dcEnc, testEnc,
                            heldEnc, tokB, maxNew, refs, tc, runDir.resolve("calm_encoder"), Mode.SEPARATE_PROMPT));
                }
                if (cfg.controls().contains("skyline")) {
                    runs.add(() -> {
                        try (LlamaModel sky = (LlamaModel) LmFamilies.load(bases.skyline())) {
                            return loraRun("skyline", seed, sky, bases.skyline(), rank, dc, test, heldOut, tokB, maxNew,
                                    refs, tc, runDir.resolve("skyline"));
                        }
                    });
                }
            }
            long firstSeed = cfg.seeds().get(0);
            TrainConfig tcFirst = schedule(cfg.training(), firstSeed);
            for (Map.Entry<Double, Path[]> e : files.sweep().entrySet()) {
                String tag = pct(e.getKey());
                Dataset pairsS = Dataset.read(e.getValue()[0], tokB, rulesB);
                Dataset englishS = Dataset.read(e.getValue()[1], tokB, rulesB);
                Dataset dcS = concat(pairsS, englishS, "D_C " + tag);
                Path runDir = cfg.out().resolve("sweep-" + tag);
                runs.add(() -> calmRun("calm@" + tag, firstSeed, mB, mA, aDir, bDir, plan, readers, own, dcS, test, heldOut,
                        tokB, maxNew, refs, tcFirst, runDir.resolve("calm"), Mode.SAME_SEQUENCE));
                if (cfg.controls().contains("lora")) {
                    runs.add(() -> loraRun("lora@" + tag, firstSeed, (LlamaModel) mB, bDir, rank, dcS, test, heldOut, tokB,
                            maxNew, refs, tcFirst, runDir.resolve("lora")));
                }
            }
            log.printf("training %d runs on %s, bridges %s (%,d parameters; LoRA rank %d), %d at a time ...%n",
                    runs.size(), dc, plan, bridgeParams, rank, Math.min(cfg.jobs(), runs.size()));
            for (Run run : Parallel.run(runs, cfg.jobs(), x -> log.printf("  seed %d, %s: loss %.4f (%.0f s); chrF %.1f, "
                            + "reference %.3f bits/char%s%n", x.seed(), x.model(), x.train().finalLoss(), x.train().seconds(),
                    x.chrf().value(), x.bitsPerChar(), Double.isNaN(x.englishBits()) ? ""
                            : String.format(", held-out English %.3f bits/char", x.englishBits())))) {
                done.computeIfAbsent(run.model(), k -> new ArrayList<>()).add(run);
            }
            for (Map.Entry<String, List<Run>> e : done.entrySet()) {
                List<List<String>> hyps = e.getValue().stream().map(Run::hyps).toList();
                double bits = e.getValue().stream().mapToDouble(Run::bitsPerChar).average().orElse(Double.NaN);
                double eng = e.getValue().stream().mapToDouble(Run::englishBits).average().orElse(Double.NaN);
                Row row = Row.of(e.getKey(), hyps, refs, bits, Double.isNaN(eng) ? null : eng);
                row.seeds().addAll(e.getValue().stream().map(Run::seed).toList());
                rows.put(e.getKey(), row);
            }
            writePredictions(testPairs, rows);
        }
        ObjectNode models = results.putObject("rows");
        rows.forEach((k, v) -> models.set(k, v.toJson()));
        results.putArray("seeds").addAll(cfg.seeds().stream().map(s -> JSON.getNodeFactory().numberNode(s)).toList());
        results.putArray("held_out_addresses").addAll(corpus.heldOutSpeeches().stream()
                .map(s -> JSON.getNodeFactory().textNode(s)).toList());
        ObjectNode versions = results.putObject("versions");
        versions.put("calm4j", String.valueOf(LanguageExperiment.class.getPackage().getImplementationVersion()));
        versions.put("java", System.getProperty("java.version"));
        results.put("wall_time_s", (System.nanoTime() - t0) / 1e9);
        AtomicFiles.writeString(cfg.out().resolve("results.json"), JSON.writeValueAsString(results) + "\n");
        Report.write(cfg, results);
        return results;
    }

    public static Dataset concat(Dataset a, Dataset b, String name) {
        List<Example> all = new ArrayList<>(a.examples());
        all.addAll(b.examples());
        return Dataset.of(all, name);
    }

    /**
     * The generation cap: the 99th percentile of D_C's reference lengths in anchor tokens, plus a quarter. From the
     * training pairs, never the test books'.
     */
    public static int maxNewTokens(Dataset train) {
        int[] len = train.examples().stream().mapToInt(e -> e.completion().length).sorted().toArray();
        return (int) Math.ceil(len[(int) Math.min(len.length - 1, Math.floor(0.99 * len.length))] * 1.25);
    }

    private static List<Corpus.Pair> readPairs(Dataset test) throws IOException {
        List<Corpus.Pair> out = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of(test.source()))) {
            if (line.isBlank()) {
                continue;
            }
            var n = JSON.readTree(line);
            String prompt = n.get("prompt").asText();
            out.add(new Corpus.Pair(n.get("ref").asText(), prompt.substring(0, prompt.length() - Corpus.ARROW.length()),
                    n.get("completion").asText().substring(1)));
        }
        return out;
    }

    public static final List<String> LORA_TARGETS = List.of("q_proj", "v_proj");

    /** A finished composition-stage run. */
    record Run(String model, long seed, TrainLoop.Result train, List<String> hyps, dev.calm4j.eval.Score chrf, double bitsPerChar,
               double englishBits) {}

    private Run calmRun(String name, long seed, CausalLm mB, CausalLm mA, Path aDir, Path bDir, CompositionPlan plan,
                        List<AugmentReader> readers, boolean[] own, Dataset dc, Dataset test, Dataset heldOut,
                        Tokenizer tokB, int maxNew, List<String> refs, TrainConfig tc, Path dir, Mode mode) {
        try (CalmModel calm = CalmModel.create(mB, List.of(mA), plan, mode, cfg.bridges().heads(),
                cfg.bridges().queryInit(), cfg.bridges().recency(), seed, own)) {
            var r = TrainLoop.run(new BridgeObjective(calm, bDir, List.of(aDir),
                            new FrozenStateCache(FrozenStateCache.DEFAULT_BUDGET_FLOATS), readers), dc, null, tc, dir, false,
                    listener("seed " + seed + ", " + name, false));
            Row row = evaluate(name, EvalModel.of(calm, readers, tokB), tokB, test, heldOut, maxNew, refs);
            return new Run(name, seed, r, row.hyps().get(0), row.chrf(), row.bitsPerChar(), row.englishBits() == null ? Double.NaN : row.englishBits());
        }
    }

    private Run loraRun(String name, long seed, LlamaModel base, Path baseDir, int rank, Dataset dc, Dataset test,
                        Dataset heldOut, Tokenizer tokB, int maxNew, List<String> refs, TrainConfig tc, Path dir) {
        try (Lora lora = Lora.init(base, LORA_TARGETS, rank, 2.0 * rank, seed)) {
            var r = TrainLoop.run(new LoraObjective(base, baseDir, lora), dc, null, tc, dir, false,
                    listener("seed " + seed + ", " + name, false));
            Row row = evaluate(name, EvalModel.of(lora.apply(base)), tokB, test, heldOut, maxNew, refs);
            return new Run(name, seed, r, row.hyps().get(0), row.chrf(), row.bitsPerChar(), row.englishBits() == null ? Double.NaN : row.englishBits());
        }
    }

    /**
     * Greedy translations of the test verses, their chrF, the reference's bits per character and (with
     * {@code heldOut}) the held-out English's.
     */
    Row evaluate(String name, EvalModel m, Tokenizer tok, Dataset test, Dataset heldOut, int maxNew, List<String> refs) {
        return Row.of(name, List.of(translate(m, tok, test, maxNew)), refs, bitsPerChar(m, test),
                heldOut == null ? null : bitsPerChar(m, heldOut));
    }

    public static List<String> translate(EvalModel m, Tokenizer tok, Dataset test, int maxNew) {
        List<String> out = new ArrayList<>();
        List<Example> all = test.examples();
        for (int from = 0; from < all.size(); from += 32) {
            List<Example> rows = all.subList(from, Math.min(all.size(), from + 32));
            List<long[]> prompts = rows.stream().map(Example::prompt).toList();
            int cap = Math.min(maxNew, m.maxPositions() - prompts.stream().mapToInt(p -> p.length).max().orElse(0));
            Generator.Result r = Generator.generate((b, max) -> m.open(rows, max), prompts, m.vocabSize(),
                    m.maxPositions(), new Generator.Options(Math.max(1, cap), Sampler.greedy(), Set.of(EOS), false), null);
            for (long[] g : r.generated()) {
                out.add(tok.decode(g, true).trim());
            }
        }
        return out;
    }

    /**
     * Bits per character of the targets (a verse's English given its Spanish; or all of a piece of English), counting
     * the end of each text as one character: comparable across tokenizers, unlike loss per token.
     */
    public static double bitsPerChar(EvalModel m, Dataset d) {
        Evaluator.Perplexity p = Evaluator.perplexity(m, d, 32);
        long chars = 0;
        for (Example e : d.examples()) {
            String t = e.text() != null ? targetText(e) : null;
            chars += t == null ? e.completion().length : t.codePointCount(0, t.length()) + 1;
        }
        return p.meanLoss() * p.tokens() / Math.log(2) / chars;
    }

    /** The target's text: the text after the last non-target token's end. */
    private static String targetText(Example e) {
        int[] ends = e.text().ends();
        boolean[] t = e.target();
        int start = 0;
        for (int i = 0; i < t.length; i++) {
            if (!t[i]) {
                start = ends[i];
            } else {
                break;
            }
        }
        String v = e.text().value();
        return v.substring(v.offsetByCodePoints(0, start));
    }

    private void log(Row r) {
        log.printf("  %s: chrF %.1f [%.1f, %.1f], reference %.3f bits/char%s%n", r.name(), r.chrf().value(),
                r.chrf().ci95()[0], r.chrf().ci95()[1], r.bitsPerChar(),
                r.englishBits() == null ? "" : String.format(", held-out English %.3f bits/char", r.englishBits()));
    }

    private void writePredictions(List<Corpus.Pair> test, Map<String, Row> rows) {
        List<Map<String, Object>> out = new ArrayList<>();
        for (Row r : rows.values()) {
            for (int s = 0; s < r.hyps().size(); s++) {
                for (int i = 0; i < test.size(); i++) {
                    Map<String, Object> m = new LinkedHashMap<>();
                    m.put("row", r.name());
                    m.put("seed", r.seeds().isEmpty() ? null : r.seeds().get(s));
                    m.put("ref", test.get(i).ref());
                    m.put("source", test.get(i).es());
                    m.put("reference", test.get(i).en());
                    m.put("hypothesis", r.hyps().get(s).get(i));
                    out.add(m);
                }
            }
        }
        Dataset.writeJsonl(cfg.out().resolve("predictions.jsonl"), out);
    }

    /**
     * Every composition-stage run's schedule (CALM and the controls alike): 5 % warmup, the peak held, cosine to a
     * tenth over the last {@code decayFraction}; AdamW with beta2 0.95, no weight decay, clip 1.0 (as the key-value
     * experiment).
     */
    public static TrainConfig schedule(Config.Training t, long seed) {
        return new TrainConfig(t.steps(), new TrainConfig.Batching(t.batch(), 1, 8),
                new TrainConfig.Schedule(t.lr(), Math.max(1, t.steps() / 20), 0.1, t.decayFraction()),
                TrainConfig.Optimizer.adamW(0.0).withBeta2(0.95), new TrainConfig.Intervals(Math.max(1, t.steps() / 50), 0, 0),
                seed);
    }
}
