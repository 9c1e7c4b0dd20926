package dev.calm4j.experiment.code;

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
import dev.calm4j.eval.EvalModel;
import dev.calm4j.experiment.language.Corpus;
import dev.calm4j.experiment.language.LanguageExperiment;
import dev.calm4j.experiment.language.LanguageRecipe;
import dev.calm4j.io.AtomicFiles;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.lm.llama.LlamaWeights;
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
import java.util.concurrent.Callable;

/**
 * The paper's code experiment (§4.3, Table 4) on real Java: the language experiment's English anchor m_B, which has
 * never seen code, is composed with m_A, a small model of the training projects' code (Javadoc included, its own
 * tokenizer), and trained on ~7 % of their (method, summary) pairs plus some of their code and of m_B's English.
 * Evaluated on projects no model trained on: code → text (a method's Javadoc summary, smoothed BLEU-4 and chrF),
 * bits per character of their code, next-line exact match, and the anchor's English before and after composition.
 * Rows: each base model alone, LoRA on m_B (parameters matched to the bridges), CALM, CALM over a random m_A, m_A as
 * an encoder, and the skyline (m_B further pretrained on the training code, then trained on D_C like the LoRA row).
 */
public final class CodeExperiment {
    /** Where a method ends and its summary starts: a Javadoc opening, which m_A has seen before methods. */
    static final String SUMMARY_MARK = "\n/**";

    /**
     * Everything that defines a run (written next to its results as config.json).
     *
     * @param data the fetched jars' folder ({@code experiments/code/data}, {@code scripts/fetch-data.sh})
     * @param dataRecipe {@code experiments/code/code_data.json}: projects, split, extraction
     * @param languageData the language experiment's text (its anchor's English: some in D_C, held-out addresses)
     * @param anchor the language experiment's m_B
     * @param spanish the language experiment's m_A, the second augment of the two-augment composition
     * @param modelsDir m_A and the skyline, or where {@code retrain} writes them
     * @param controls which of {@link #CONTROLS} train beside CALM
     * @param jobs training runs at once
     */
    public record Config(CodeRecipe recipe, Path data, Path dataRecipe, Path languageData, Path anchor, Path spanish,
                         Path modelsDir,
                         Path out, boolean retrain, List<Long> seeds, List<String> controls,
                         LanguageExperiment.Config.Bridges bridges, LanguageExperiment.Config.Training training,
                         Composition composition, int jobs) {
        public static final List<String> CONTROLS = List.of("lora", "calm_random_augment", "calm_encoder", "skyline",
                "two_augments");

        public Config {
            seeds = List.copyOf(seeds);
            controls = List.copyOf(controls);
            if (seeds.isEmpty() || jobs < 1) {
                throw new IllegalArgumentException("at least one seed and jobs >= 1 expected");
            }
            for (String c : controls) {
                if (!CONTROLS.contains(c)) {
                    throw new IllegalArgumentException("controls: expected some of " + CONTROLS + ", got " + c);
                }
            }
        }

        /**
         * What D_C holds beside the split's pairs, and how much of the held-out projects is evaluated.
         *
         * @param codeMix pieces of the D_C files' code, as a share of D_C's pairs (loss on all of it)
         * @param englishMix pieces of m_B's English, as a share of D_C's pairs, so the bridges leave it alone
         * @param codeChunkChars code pieces (D_C and test) are cut at line ends to at most this many characters
         * @param testPairs methods of the held-out projects summarised per row (a seeded sample)
         * @param testNextLines next-line examples of the held-out projects per row
         * @param testCode pieces of the held-out projects' code for bits per character
         * @param heldOutEnglish pieces of the held-out addresses for the anchor's English
         * @param nextLineTokens tokens a row may write for a next line
         * @param dataSeed draws every sample above
         */
        public record Composition(double codeMix, double englishMix, int codeChunkChars, int testPairs, int testNextLines,
                                  int testCode, int heldOutEnglish, int nextLineTokens, long dataSeed) {
            public static final Composition DEFAULT = new Composition(0.5, 0.25, 400, 200, 100, 64, 64, 32, 11);

            public Composition {
                if (!(codeMix >= 0) || !(englishMix >= 0) || codeChunkChars < 32 || testPairs < 1 || testNextLines < 1
                        || testCode < 1 || heldOutEnglish < 1 || nextLineTokens < 1) {
                    throw new IllegalArgumentException("composition: mixes >= 0, code chunks >= 32 characters, test "
                            + "sizes and next-line tokens >= 1 expected");
                }
            }
        }

        public static Config defaults(Path data, Path languageData, Path anchor, Path modelsDir, Path out) {
            return new Config(CodeRecipe.defaults(), data, Path.of("experiments/code", CodeDataRecipe.FILE), languageData,
                    anchor, anchor.resolveSibling("m_A"), modelsDir, out, false, List.of(1L, 2L, 3L), CONTROLS, LanguageExperiment.Config.Bridges.DEFAULT,
                    LanguageExperiment.Config.Training.DEFAULT, Composition.DEFAULT,
                    Math.max(1, Math.min(2, Runtime.getRuntime().availableProcessors())));
        }

        /** Minutes, for CI: one seed, CALM and LoRA only, fewer steps and test examples. */
        public Config quick() {
            Composition k = composition;
            return new Config(recipe, data, dataRecipe, languageData, anchor, spanish, modelsDir, out, retrain, List.of(seeds.get(0)),
                    controls.contains("lora") ? List.of("lora") : List.of(), bridges,
                    new LanguageExperiment.Config.Training(Math.min(100, training.steps()), training.batch(), training.lr(),
                            training.decayFraction()),
                    new Composition(k.codeMix(), k.englishMix(), k.codeChunkChars(), Math.min(48, k.testPairs()),
                            Math.min(48, k.testNextLines()), Math.min(32, k.testCode()), Math.min(32, k.heldOutEnglish()),
                            k.nextLineTokens(), k.dataSeed()),
                    jobs);
        }

        ObjectNode toJson() {
            ObjectNode o = CodeModels.JSON.valueToTree(this);
            o.put("data", data.toString());
            o.put("dataRecipe", dataRecipe.toString());
            o.put("languageData", languageData.toString());
            o.put("anchor", anchor.toString());
            o.put("spanish", spanish.toString());
            o.put("modelsDir", modelsDir.toString());
            o.put("out", out.toString());
            return o;
        }
    }

    private final Config cfg;
    private final PrintStream log;
    private final LanguageExperiment.RunListeners listeners;

    public CodeExperiment(Config cfg, PrintStream log, LanguageExperiment.RunListeners listeners) {
        this.cfg = cfg;
        this.log = log;
        this.listeners = listeners;
    }

    private TrainListener listener(String name, boolean messages) {
        return listeners.withCurve(name, messages, cfg.jobs(), log);
    }

    // ---- the formats -------------------------------------------------------------------------------------------

    /** Code → text: the method, flat, then a Javadoc opening; the completion is the summary after one space. */
    static String summaryPrompt(CodeData.Pair p) {
        return CodeText.flatten(p.code()) + SUMMARY_MARK;
    }

    static String summaryCompletion(CodeData.Pair p) {
        return " " + p.summary();
    }

    /** Next line: the method's lines so far, flat; the completion is a newline and the line. */
    static String linePrompt(CodeData.NextLineExample e) {
        return CodeText.flatten(e.prefix());
    }

    static String lineCompletion(CodeData.NextLineExample e) {
        return "\n" + e.target().strip();
    }

    /**
     * {@code text} as the writer of {@code tok} can spell it: encoded and decoded without special tokens, so the
     * characters its vocabulary lacks (they encode as {@code <unk>}) are gone. The anchor has no piece for a newline,
     * {@code { } = < > | #}: the lines a row writing through it is held to are the lines it could write.
     */
    static String spellable(Tokenizer tok, String text) {
        return tok.decode(tok.encode(text, false), true);
    }

    /**
     * Whether a row's output for a next-line example gives the line: its first line (leading whitespace skipped; a
     * writer without newlines has one line) begins with {@code line}, whitespace runs compared as one space.
     */
    static boolean beginsWith(String output, String line) {
        String h = output.stripLeading();
        int nl = h.indexOf('\n');
        if (nl >= 0) {
            h = h.substring(0, nl);
        }
        String want = dev.calm4j.eval.ExactMatch.normalize(line);
        String got = dev.calm4j.eval.ExactMatch.normalize(h);
        return want.isEmpty() ? got.isEmpty() : got.startsWith(want);
    }

    // ---- the data ----------------------------------------------------------------------------------------------

    /** The composition stage's files, written into {@code out/data} and read back as any user's data would be. */
    record Files(Path pairs, Path code, Path english, Path codeEncoder, Path englishEncoder, Path testPairs,
                 Path testLines, Path testCode, Path testCodeEncoder, Path heldOut, Path heldOutEncoder,
                 List<CodeData.Pair> testPairList, List<CodeData.NextLineExample> testLineList) {}

    /** A model that reads the rows: its tokenizer and its positions. */
    record Reader(Tokenizer tokenizer, int positions) {}

    /**
     * Whether a row of {@code text} (with BOS and EOS, and {@code room} tokens more to write) fits every reader's
     * positions: the anchor's, the code m_A's, and with two augments the Spanish m_A's, so every row is held to the
     * same examples.
     */
    private static boolean fits(String text, List<Reader> readers, int room) {
        for (Reader r : readers) {
            if (r.tokenizer().encode(text, false).length + 2 + room > r.positions()) {
                return false;
            }
        }
        return true;
    }

    Files writeData(CodeData data, Corpus corpus, List<Reader> readers) {
        Path dir = cfg.out().resolve("data");
        Config.Composition k = cfg.composition();
        Random r = new Random(k.dataSeed());
        List<CodeData.Pair> dcPairs = new ArrayList<>();
        for (CodeData.Pair p : data.dcPairs) {
            if (fits(summaryPrompt(p) + summaryCompletion(p), readers, 0)) {
                dcPairs.add(p);
            }
        }
        List<String> dcCode = new ArrayList<>();
        for (var f : data.dcFiles) {
            for (String c : CodeText.chunks(CodeText.flatten(CodeText.body(f.text())), k.codeChunkChars())) {
                if (fits(c, readers, 0)) {
                    dcCode.add(c);
                }
            }
        }
        Collections.shuffle(dcCode, r);
        dcCode = dcCode.subList(0, Math.min(dcCode.size(), (int) Math.round(k.codeMix() * dcPairs.size())));
        List<String> english = new ArrayList<>(corpus.anchorDocs());
        Collections.shuffle(english, r);
        english = english.subList(0, Math.min(english.size(), (int) Math.round(k.englishMix() * dcPairs.size())));

        List<CodeData.Pair> test = new ArrayList<>(data.testPairs);
        Collections.shuffle(test, r);
        test = take(test, k.testPairs(), p -> fits(summaryPrompt(p) + summaryCompletion(p), readers, 0));
        List<CodeData.NextLineExample> lines = new ArrayList<>(data.testNextLine);
        Collections.shuffle(lines, r);
        // Room for the line the row writes: the prompt and the cap of new tokens must fit.
        lines = take(lines, k.testNextLines(), e -> fits(linePrompt(e) + lineCompletion(e), readers, k.nextLineTokens()));
        List<String> testCode = new ArrayList<>();
        for (var f : data.testFiles) {
            for (String c : CodeText.chunks(CodeText.flatten(CodeText.body(f.text())), k.codeChunkChars())) {
                testCode.add(c);
            }
        }
        Collections.shuffle(testCode, r);
        testCode = take(testCode, k.testCode(), c -> fits(c, readers, 0));
        List<String> held = new ArrayList<>(corpus.heldOutEnglish());
        Collections.shuffle(held, r);
        held = held.subList(0, Math.min(k.heldOutEnglish(), held.size()));

        return new Files(pairs(dir.resolve("composition_pairs.jsonl"), dcPairs),
                texts(dir.resolve("composition_code.jsonl"), dcCode, null),
                texts(dir.resolve("composition_english.jsonl"), english, null),
                // The encoder control's copies: m_A reads a prompt before the anchor starts, and text rows have
                // none; a blank one, since any of the row's own text would show the anchor what it is to predict.
                texts(dir.resolve("composition_code_encoder.jsonl"), dcCode, " "),
                texts(dir.resolve("composition_english_encoder.jsonl"), english, " "),
                pairs(dir.resolve("test_pairs.jsonl"), test), lines(dir.resolve("test_next_line.jsonl"), lines),
                texts(dir.resolve("test_code.jsonl"), testCode, null), texts(dir.resolve("test_code_encoder.jsonl"), testCode, " "),
                texts(dir.resolve("english_heldout.jsonl"), held, null),
                texts(dir.resolve("english_heldout_encoder.jsonl"), held, " "), test, lines);
    }

    private static <T> List<T> take(List<T> shuffled, int n, java.util.function.Predicate<T> ok) {
        List<T> out = new ArrayList<>();
        for (T t : shuffled) {
            if (out.size() == n) {
                break;
            }
            if (ok.test(t)) {
                out.add(t);
            }
        }
        return out;
    }

    private static Path pairs(Path file, List<CodeData.Pair> pairs) {
        return promptRows(file, pairs, p -> new String[] {summaryPrompt(p), summaryCompletion(p),
                p.project() + "/" + p.path() + ":" + p.line()});
    }

    private static Path lines(Path file, List<CodeData.NextLineExample> lines) {
        return promptRows(file, lines, e -> new String[] {linePrompt(e), lineCompletion(e),
                e.project() + "/" + e.path() + ":" + e.line()});
    }

    /** One {@code {"prompt", "completion", "where"}} row per item ({@code row} gives the three). */
    private static <T> Path promptRows(Path file, List<T> items, java.util.function.Function<T, String[]> row) {
        List<Map<String, Object>> rows = new ArrayList<>();
        for (T item : items) {
            String[] r = row.apply(item);
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("prompt", r[0]);
            m.put("completion", r[1]);
            m.put("where", r[2]);
            rows.add(m);
        }
        Dataset.writeJsonl(file, rows);
        return file;
    }

    private static Path texts(Path file, List<String> texts, String augmentPrompt) {
        return LanguageExperiment.texts(file, texts, augmentPrompt);
    }

    // ---- the run -----------------------------------------------------------------------------------------------

    /** The evaluation sets as one row reads them (through its writer's tokenizer, its prompt handling). */
    record Eval(Dataset pairs, Dataset lines, Dataset code, Dataset english, List<String> lineRefs) {}

    private Eval eval(Files f, Tokenizer tok, DataRules rules, boolean encoder, List<CodeData.NextLineExample> lines) {
        DataRules rr = rules.withSeparatePrompt(encoder);
        List<String> refs = lines.stream().map(e -> spellable(tok, e.target().strip())).toList();
        return new Eval(Dataset.read(f.testPairs(), tok, rr), Dataset.read(f.testLines(), tok, rr),
                Dataset.read(encoder ? f.testCodeEncoder() : f.testCode(), tok, rr),
                Dataset.read(encoder ? f.heldOutEncoder() : f.heldOut(), tok, rr), refs);
    }

    /** Runs everything; returns results.json's content (also written, with report.md, predictions and PNGs). */
    public ObjectNode run() throws IOException {
        long t0 = System.nanoTime();
        java.nio.file.Files.createDirectories(cfg.out());
        log.println("reading the sources ...");
        CodeData data = CodeData.load(cfg.data().resolve("downloads"), CodeDataRecipe.load(cfg.dataRecipe()));
        log.printf("  %,d training files, %,d pairs (D_C %,d pairs + %,d files); held out %s: %,d files, %,d pairs, "
                        + "%,d next-line examples%n", data.trainFiles.size(), data.trainPairs.size(), data.dcPairs.size(),
                data.dcFiles.size(), data.recipe.split().heldOut(), data.testFiles.size(), data.testPairs.size(),
                data.testNextLine.size());
        Corpus corpus = Corpus.load(cfg.languageData(), LanguageRecipe.defaults().split());
        CodeModels models = new CodeModels(cfg.recipe(), cfg.modelsDir(), cfg.anchor(), log, this::listener);
        models.ensure(data, cfg.retrain());
        AtomicFiles.writeString(cfg.out().resolve("config.json"),
                CodeModels.JSON.writeValueAsString(cfg.toJson()) + "\n");

        ObjectNode results = CodeModels.JSON.createObjectNode();
        results.set("config", cfg.toJson());
        Map<String, CodeRow> rows = new LinkedHashMap<>();
        List<String> failures = new ArrayList<>();          // runs that failed, named with their error
        Path aDir = models.augment();
        Path bDir = models.anchor();
        try (Tokenizer tokA = Tokenizer.load(aDir); Tokenizer tokB = Tokenizer.load(bDir);
             CausalLm mA = LmFamilies.load(aDir); CausalLm mB = LmFamilies.load(bDir)) {
            List<Reader> fitReaders = new ArrayList<>(List.of(new Reader(tokA, mA.config().maxPositionEmbeddings()),
                    new Reader(tokB, mB.config().maxPositionEmbeddings())));
            Tokenizer tokEs = null;
            if (cfg.controls().contains("two_augments") && java.nio.file.Files.isRegularFile(cfg.spanish().resolve("config.json"))) {
                tokEs = Tokenizer.load(cfg.spanish());
                fitReaders.add(new Reader(tokEs, LmFamilies.readConfig(cfg.spanish()).maxPositionEmbeddings()));
            }
            Files files = writeData(data, corpus, fitReaders);
            if (tokEs != null) {
                tokEs.close();
            }
            DataRules rulesB = DataRules.forModel(mB.config(), true, true, false);
            DataRules rulesA = DataRules.forModel(mA.config(), true, true, false);
            List<String> refs = files.testPairList().stream().map(CodeData.Pair::summary).toList();
            Dataset dcPairs = Dataset.read(files.pairs(), tokB, rulesB);
            int maxNew = LanguageExperiment.maxNewTokens(dcPairs);
            results.put("max_new_tokens", maxNew);
            Eval evalB = eval(files, tokB, rulesB, false, files.testLineList());
            Eval evalA = eval(files, tokA, rulesA, false, files.testLineList());
            Eval evalEnc = eval(files, tokB, rulesB, true, files.testLineList());
            results.put("test_pairs", evalB.pairs().size());
            results.put("test_next_lines", evalB.lines().size());
            results.put("test_code_pieces", evalB.code().size());
            results.put("test_code_chars", chars(evalB.code()));
            results.put("next_lines_the_anchor_spells_whole", countWhole(tokB, files.testLineList()));

            // A floor: the method's name, split into words, as its summary ("getCharsetName" -> "get charset name").
            List<String> names = files.testPairList().stream().map(p -> words(p.name())).toList();
            rows.put("method_name", CodeRow.of("method_name", List.of(names), refs, null, null, null, null, null));

            log.println("evaluating the base models ...");
            rows.put("m_B", evaluate("m_B", EvalModel.of(mB), tokB, evalB, maxNew, refs, true));
            rows.put("m_A", evaluate("m_A", EvalModel.of(mA), tokA, evalA, maxNew * 2, refs, false));
            log(rows.get("m_B"));
            log(rows.get("m_A"));

            CompositionPlan plan = new CompositionPlan(CompositionPlan.parse(cfg.bridges().connections()));
            long bridgeParams = 0;
            for (Connection c : plan.connections()) {
                bridgeParams += Bridge.parameterCount(mA.hiddenSize(), mB.hiddenSize());
            }
            results.put("bridge_parameters", bridgeParams);
            int rank = Lora.rankMatching((LlamaModel) mB, LanguageExperiment.LORA_TARGETS, bridgeParams);
            results.put("lora_rank", rank);
            results.put("lora_parameters", rank * Lora.paramsPerRank((LlamaModel) mB, LanguageExperiment.LORA_TARGETS));
            boolean[] own = TextAlignment.ownTokens(bDir, List.of(aDir));
            List<AugmentReader> readers = List.of(own[0] ? new AugmentReader(tokA, mA.config(), aDir.toString()) : null);

            Dataset dc = LanguageExperiment.concat(LanguageExperiment.concat(dcPairs, Dataset.read(files.code(), tokB, rulesB), ""),
                    Dataset.read(files.english(), tokB, rulesB), "D_C: " + dcPairs.size() + " (method, summary) pairs + "
                            + lineCount(files.code()) + " pieces of code + " + lineCount(files.english()) + " of English");
            DataRules enc = rulesB.withSeparatePrompt(true);
            Dataset dcEnc = LanguageExperiment.concat(LanguageExperiment.concat(Dataset.read(files.pairs(), tokB, enc),
                    Dataset.read(files.codeEncoder(), tokB, enc), ""), Dataset.read(files.englishEncoder(), tokB, enc),
                    "D_C, prompts to the augment");
            results.put("composition_examples", dc.size());
            results.put("composition_pairs", dcPairs.size());

            Spanish two = cfg.controls().contains("two_augments") ? spanish(corpus, tokB, rulesB, bDir) : null;
            if (two != null) {
                LanguageResult alone = languageEval(EvalModel.of(mB), tokB, two.task(), evalB);
                results.set("language_task_m_B", languageJson(List.of(alone), two.task().refs(), List.of()));
            }
            List<Callable<Run>> runs = new ArrayList<>();
            List<Planned> planned = new ArrayList<>();      // each run's row and seed, to name one that fails
            for (long seed : cfg.seeds()) {
                TrainConfig tc = LanguageExperiment.schedule(cfg.training(), seed);
                Path runDir = cfg.out().resolve("seed-" + seed);
                planned.add(new Planned("calm", seed));
                runs.add(() -> calmRun("calm", seed, mB, mA, aDir, bDir, plan, readers, own, dc, evalB, tokB, maxNew,
                        refs, tc, runDir.resolve("calm"), Mode.SAME_SEQUENCE));
                if (cfg.controls().contains("lora")) {
                    planned.add(new Planned("lora", seed));
                    runs.add(() -> loraRun("lora", seed, (LlamaModel) mB, bDir, rank, dc, evalB, tokB, maxNew, refs, tc,
                            runDir.resolve("lora")));
                }
                if (cfg.controls().contains("calm_random_augment")) {
                    planned.add(new Planned("calm_random_augment", seed));
                    runs.add(() -> {
                        LlamaConfig ac = (LlamaConfig) mA.config();
                        Path rnd = runDir.resolve("random_m_A");
                        try (LlamaModel m = new LlamaModel(ac, LlamaWeights.random(ac, 1000 + seed, 0.02, ScalarType.Float),
                                ScalarType.Float)) {
                            LmFamilies.save(m, rnd);
                            java.nio.file.Files.copy(aDir.resolve("tokenizer.json"), rnd.resolve("tokenizer.json"),
                                    StandardCopyOption.REPLACE_EXISTING);
                            return calmRun("calm_random_augment", seed, mB, m, rnd, bDir, plan, readers, own, dc, evalB,
                                    tokB, maxNew, refs, tc, runDir.resolve("calm_random_augment"), Mode.SAME_SEQUENCE);
                        }
                    });
                }
                if (cfg.controls().contains("calm_encoder")) {
                    planned.add(new Planned("calm_encoder", seed));
                    runs.add(() -> calmRun("calm_encoder", seed, mB, mA, aDir, bDir, plan, readers, own, dcEnc, evalEnc,
                            tokB, maxNew, refs, tc, runDir.resolve("calm_encoder"), Mode.SEPARATE_PROMPT));
                }
                if (two != null) {
                    planned.add(new Planned("calm_spanish", seed));
                    runs.add(() -> spanishRun(seed, mB, two, bDir, tokB, tc, runDir.resolve("calm_spanish"), evalB));
                    TrainConfig tc2 = LanguageExperiment.schedule(new LanguageExperiment.Config.Training(
                            2 * cfg.training().steps(), cfg.training().batch(), cfg.training().lr(),
                            cfg.training().decayFraction()), seed);
                    planned.add(new Planned("calm_two_augments", seed));
                    runs.add(() -> twoAugmentRun(seed, mB, mA, aDir, bDir, two, plan, own[0], readers.get(0), dc, evalB, tokB, maxNew,
                            refs, tc2, runDir.resolve("calm_two_augments")));
                }
                if (cfg.controls().contains("skyline")) {
                    planned.add(new Planned("skyline", seed));
                    runs.add(() -> {
                        try (LlamaModel sky = (LlamaModel) LmFamilies.load(models.skyline())) {
                            return loraRun("skyline", seed, sky, models.skyline(), rank, dc, evalB, tokB, maxNew, refs, tc,
                                    runDir.resolve("skyline"));
                        }
                    });
                }
            }
            log.printf("training %d runs on %s, bridges %s (%,d parameters; LoRA rank %d), %d at a time ...%n",
                    runs.size(), dc, plan, bridgeParams, rank, Math.min(cfg.jobs(), runs.size()));
            Map<String, List<Run>> done = new LinkedHashMap<>();
            List<Parallel.Outcome<Run>> outcomes = Parallel.runEach(runs, cfg.jobs(), this::logRun);
            var failedRuns = results.putArray("failed_runs");
            for (int i = 0; i < outcomes.size(); i++) {
                Parallel.Outcome<Run> o = outcomes.get(i);
                if (o.ok()) {
                    done.computeIfAbsent(o.result().model(), k -> new ArrayList<>()).add(o.result());
                    continue;
                }
                // A run that fails is reported; the ones that finished are kept (an hour's job is not lost to one).
                Planned who = planned.get(i);
                String error = String.valueOf(o.error().getMessage());
                failures.add(who.row() + ", seed " + who.seed() + ": " + error);
                log.println("  seed " + who.seed() + ", " + who.row() + " FAILED: " + error);
                failedRuns.addObject().put("row", who.row()).put("seed", who.seed()).put("error", error);
            }
            ObjectNode language = results.putObject("language_task");
            List<Map<String, Object>> languagePredictions = new ArrayList<>();
            if (results.has("language_task_m_B")) {
                language.set("m_B", results.remove("language_task_m_B"));
            }
            for (Map.Entry<String, List<Run>> e : done.entrySet()) {
                List<Run> rs = e.getValue();
                if (rs.get(0).language() != null) {
                    language.set(e.getKey(), languageJson(rs.stream().map(Run::language).toList(), two.task().refs(),
                            rs.stream().map(Run::seed).toList()));
                    for (Run x : rs) {
                        for (int i = 0; i < x.language().hyps().size(); i++) {
                            Map<String, Object> m = new LinkedHashMap<>();
                            m.put("row", x.model());
                            m.put("seed", x.seed());
                            m.put("task", "spanish_to_english");
                            m.put("where", "test verse " + i + " of language/data/test_pairs.jsonl");
                            m.put("reference", two.task().refs().get(i));
                            m.put("hypothesis", x.language().hyps().get(i));
                            languagePredictions.add(m);
                        }
                    }
                }
                if (rs.get(0).row() == null) {
                    continue;
                }
                CodeRow row = CodeRow.of(e.getKey(), rs.stream().map(x -> x.row().summaries().get(0)).toList(), refs,
                        rs.stream().map(x -> x.row().nextLines().get(0)).toList(), evalB.lineRefs(),
                        mean(rs, x -> x.row().summaryBits()), mean(rs, x -> x.row().codeBits()),
                        mean(rs, x -> x.row().englishBits()));
                row.seeds().addAll(rs.stream().map(Run::seed).toList());
                rows.put(e.getKey(), row);
            }
            if (two != null) {
                two.model().close();
                two.tokenizer().close();
            }
            writePredictions(files, rows, languagePredictions);
            ObjectNode cmp = results.putObject("paired_differences");
            for (String[] ab : new String[][] {{"calm", "lora"}, {"calm", "skyline"}, {"calm", "calm_random_augment"},
                    {"calm", "m_A"}}) {
                if (rows.containsKey(ab[0]) && rows.containsKey(ab[1])) {
                    cmp.set(ab[0] + " - " + ab[1], pairedChrF(rows.get(ab[0]), rows.get(ab[1]), refs));
                }
            }
        }
        ObjectNode out = results.putObject("rows");
        rows.forEach((k, v) -> out.set(k, v.toJson()));
        results.putArray("seeds").addAll(cfg.seeds().stream().map(s -> CodeModels.JSON.getNodeFactory().numberNode(s)).toList());
        ObjectNode versions = results.putObject("versions");
        versions.put("calm4j", String.valueOf(CodeExperiment.class.getPackage().getImplementationVersion()));
        versions.put("java", System.getProperty("java.version"));
        results.put("wall_time_s", (System.nanoTime() - t0) / 1e9);
        AtomicFiles.writeString(cfg.out().resolve("results.json"), CodeModels.JSON.writeValueAsString(results) + "\n");
        CodeReport.write(cfg, results);
        if (!failures.isEmpty()) {
            throw new Calm4jException(failures.size() + " run(s) failed (" + failures.get(0) + (failures.size() > 1
                    ? "; …" : "") + "); the others are in " + cfg.out().resolve("report.md") + ", the failures listed there");
        }
        return results;
    }

    /**
     * chrF of row A minus row B on the same test methods, with a paired bootstrap interval; seeds are paired in
     * order, and a row of one output list (a base model) is paired with each of the other's.
     */
    private static ObjectNode pairedChrF(CodeRow a, CodeRow b, List<String> refs) {
        List<String> ha = new ArrayList<>();
        List<String> hb = new ArrayList<>();
        List<String> r = new ArrayList<>();
        int n = Math.max(a.summaries().size(), b.summaries().size());
        for (int s = 0; s < n; s++) {
            ha.addAll(a.summaries().get(Math.min(s, a.summaries().size() - 1)));
            hb.addAll(b.summaries().get(Math.min(s, b.summaries().size() - 1)));
            r.addAll(refs);
        }
        dev.calm4j.eval.Score d = dev.calm4j.eval.ChrF.pairedDifference(ha, hb, r, CodeRow.BOOTSTRAP, 1);
        ObjectNode o = CodeModels.JSON.createObjectNode();
        o.put("chrf_difference", d.value());
        o.putArray("ci95").add(d.ci95()[0]).add(d.ci95()[1]);
        o.put("n", d.n());
        return o;
    }

    private void logRun(Run x) {
        StringBuilder sb = new StringBuilder(String.format(java.util.Locale.ROOT, "  seed %d, %s: loss %.4f (%.0f s)",
                x.seed(), x.model(), x.train().finalLoss(), x.train().seconds()));
        if (x.row() != null) {
            sb.append(String.format(java.util.Locale.ROOT, "; summaries BLEU %.1f chrF %.1f; next line %.1f %%",
                    x.row().bleu().value(), x.row().chrf().value(), x.row().exactMatch().value()));
        }
        if (x.row() != null) {
            sb.append(String.format(java.util.Locale.ROOT, "; summary %.3f, code %.3f, English %.3f bits/char",
                    x.row().summaryBits(), x.row().codeBits(), x.row().englishBits()));
        }
        if (x.language() != null) {
            sb.append(String.format(java.util.Locale.ROOT, "; Spanish -> English chrF %.1f, reference %.3f bits/char",
                    x.language().chrf(), x.language().referenceBits()));
            if (x.row() == null) {
                sb.append(String.format(java.util.Locale.ROOT, ", English %.3f bits/char", x.language().englishBits()));
            }
        }
        log.println(sb);
    }

    // ---- two augments: the Spanish m_A beside the code m_A -----------------------------------------------------

    /** The second augment, its reader and the language experiment's task (its D_C and test verses, written here). */
    record Spanish(Path dir, CausalLm model, Tokenizer tokenizer, AugmentReader reader, boolean own, LanguageTask task) {}

    private Spanish spanish(Corpus corpus, Tokenizer tokB, DataRules rulesB, Path bDir) throws IOException {
        Path dir = cfg.spanish();
        check(java.nio.file.Files.isRegularFile(dir.resolve("model.safetensors")), dir
                + ": no Spanish augment (the language experiment's m_A) for the two-augment composition");
        LanguageExperiment.Config d = LanguageExperiment.Config.defaults(cfg.languageData(), dir.getParent(),
                cfg.out().resolve("language"));
        LanguageExperiment.Config.Composition k = d.composition();
        // The language experiment's D_C as it draws it; as many test verses as this run summarises methods.
        d = new LanguageExperiment.Config(d.recipe(), d.data(), d.modelsDir(), d.out(), false, d.seeds(), d.controls(),
                d.bridges(), d.training(), new LanguageExperiment.Config.Composition(k.pairShare(), k.englishMix(),
                        Math.min(k.testVerses(), cfg.composition().testPairs()), k.heldOutEnglish(), k.dataSeed()),
                List.of(), d.jobs());
        LanguageExperiment lang = new LanguageExperiment(d, log, LanguageExperiment.RunListeners.NONE);
        LanguageExperiment.Files4 f = lang.writeData(corpus);
        Dataset pairs = Dataset.read(f.train(), tokB, rulesB);
        Dataset dc = LanguageExperiment.concat(pairs, Dataset.read(f.english(), tokB, rulesB),
                "the language experiment's D_C");
        Dataset test = Dataset.read(f.test(), tokB, rulesB);
        List<String> refs = new ArrayList<>();
        for (String line : java.nio.file.Files.readAllLines(f.test())) {
            if (!line.isBlank()) {
                refs.add(CodeModels.JSON.readTree(line).get("completion").asText().substring(1));
            }
        }
        CausalLm m = LmFamilies.load(dir);
        Tokenizer tok = Tokenizer.load(dir);
        boolean own = TextAlignment.ownTokens(bDir, List.of(dir))[0];
        return new Spanish(dir, m, tok, own ? new AugmentReader(tok, m.config(), dir.toString()) : null, own,
                new LanguageTask(dc, test, refs, LanguageExperiment.maxNewTokens(pairs)));
    }

    private LanguageResult languageEval(EvalModel m, Tokenizer tokB, LanguageTask t, Eval ev) {
        List<String> hyps = LanguageExperiment.translate(m, tokB, t.test(), t.maxNew());
        return new LanguageResult(hyps, dev.calm4j.eval.ChrF.corpus(hyps, t.refs()), LanguageExperiment.bitsPerChar(m, t.test()),
                LanguageExperiment.bitsPerChar(m, ev.english()));
    }

    private static ObjectNode languageJson(List<LanguageResult> rs, List<String> refs, List<Long> seeds) {
        List<String> h = new ArrayList<>();
        List<String> r = new ArrayList<>();
        ObjectNode o = CodeModels.JSON.createObjectNode();
        var perSeed = o.putArray("chrf_per_seed");
        for (LanguageResult x : rs) {
            h.addAll(x.hyps());
            r.addAll(refs);
            perSeed.add(dev.calm4j.eval.ChrF.corpus(x.hyps(), refs));
        }
        dev.calm4j.eval.Score c = dev.calm4j.eval.ChrF.corpus(h, r, CodeRow.BOOTSTRAP, 1);
        o.put("chrf", c.value());
        o.putArray("ci95").add(c.ci95()[0]).add(c.ci95()[1]);
        o.put("n", c.n());
        o.put("reference_bits_per_char", rs.stream().mapToDouble(LanguageResult::referenceBits).average().orElse(Double.NaN));
        o.put("heldout_english_bits_per_char", rs.stream().mapToDouble(LanguageResult::englishBits).average().orElse(Double.NaN));
        seeds.forEach(o.putArray("seeds")::add);
        return o;
    }

    /** The language experiment's CALM (the Spanish m_A alone, its D_C), held to its task: the single-augment baseline. */
    private Run spanishRun(long seed, CausalLm mB, Spanish es, Path bDir, Tokenizer tokB, TrainConfig tc, Path dir, Eval ev) {
        CompositionPlan plan = new CompositionPlan(CompositionPlan.parse(cfg.bridges().connections()));
        List<AugmentReader> readers = java.util.Collections.singletonList(es.reader());
        try (CalmModel calm = CalmModel.create(mB, List.of(es.model()), plan, Mode.SAME_SEQUENCE, cfg.bridges().heads(),
                cfg.bridges().queryInit(), cfg.bridges().recency(), seed, new boolean[] {es.own()})) {
            var r = TrainLoop.run(new BridgeObjective(calm, bDir, List.of(es.dir()),
                            new FrozenStateCache(FrozenStateCache.DEFAULT_BUDGET_FLOATS), readers), es.task().dc(), null, tc,
                    dir, false, listener("seed " + seed + ", calm_spanish", false));
            return new Run("calm_spanish", seed, r, null, languageEval(EvalModel.of(calm, readers, tokB), tokB, es.task(), ev));
        }
    }

    /**
     * The anchor with both augments, each with its own bridges (the same connections) and tokenizer, trained on the
     * union of the two D_Cs for twice the steps (each D_C is seen as often as in its single-augment run), held to both
     * tasks.
     */
    private Run twoAugmentRun(long seed, CausalLm mB, CausalLm mA, Path aDir, Path bDir, Spanish es, CompositionPlan plan,
                              boolean ownCode, AugmentReader codeReader, Dataset dc, Eval ev, Tokenizer tokB, int maxNew, List<String> refs,
                              TrainConfig tc, Path dir) {
        List<Connection> both = new ArrayList<>();
        for (Connection c : plan.connections()) {
            both.add(new Connection(0, c.augmentLayer(), c.anchorLayer()));
            both.add(new Connection(1, c.augmentLayer(), c.anchorLayer()));
        }
        List<AugmentReader> readers = java.util.Arrays.asList(es.reader(), codeReader);
        Dataset union = LanguageExperiment.concat(es.task().dc(), dc, "the union of the two D_Cs");
        try (CalmModel calm = CalmModel.create(mB, List.of(es.model(), mA), new CompositionPlan(both), Mode.SAME_SEQUENCE,
                cfg.bridges().heads(), cfg.bridges().queryInit(), cfg.bridges().recency(), seed,
                new boolean[] {es.own(), ownCode})) {
            var r = TrainLoop.run(new BridgeObjective(calm, bDir, List.of(es.dir(), aDir),
                            new FrozenStateCache(FrozenStateCache.DEFAULT_BUDGET_FLOATS), readers), union, null, tc, dir, false,
                    listener("seed " + seed + ", calm_two_augments", false));
            EvalModel m = EvalModel.of(calm, readers, tokB);
            // A row whose text outgrows the Spanish m_A's positions while it writes (its tokenizer spends far more
            // tokens on code than the anchor's) stops there, as any composition stops at the end of a model's context.
            CodeRow code = evaluate("calm_two_augments", m, tokB, ev, maxNew, refs, true);
            return new Run("calm_two_augments", seed, r, code, languageEval(m, tokB, es.task(), ev));
        }
    }

    private static Double mean(List<Run> rs, java.util.function.Function<Run, Double> f) {
        return rs.stream().map(f).filter(java.util.Objects::nonNull).mapToDouble(Double::doubleValue).average().orElse(Double.NaN);
    }

    private static long chars(Dataset d) {
        long n = 0;
        for (Example e : d.examples()) {
            n += e.text() == null ? 0 : e.text().value().length();
        }
        return n;
    }

    private static int countWhole(Tokenizer tok, List<CodeData.NextLineExample> lines) {
        int n = 0;
        for (CodeData.NextLineExample e : lines) {
            String t = e.target().strip();
            if (dev.calm4j.eval.ExactMatch.normalize(spellable(tok, t)).equals(dev.calm4j.eval.ExactMatch.normalize(t))) {
                n++;
            }
        }
        return n;
    }

    private static long lineCount(Path file) throws IOException {
        try (var s = java.nio.file.Files.lines(file)) {
            return s.filter(l -> !l.isBlank()).count();
        }
    }

    /** A method name as words: camel case and underscores split, lower case. */
    static String words(String name) {
        return name.replaceAll("([a-z0-9])([A-Z])", "$1 $2").replaceAll("([A-Z]+)([A-Z][a-z])", "$1 $2").replace('_', ' ')
                .toLowerCase(java.util.Locale.ROOT).strip();
    }

    /** A finished composition-stage run: its code-task row (null for a run not evaluated on code) and language results. */
    record Run(String model, long seed, TrainLoop.Result train, CodeRow row, LanguageResult language) {
        Run(String model, long seed, TrainLoop.Result train, CodeRow row) {
            this(model, seed, train, row, null);
        }
    }

    /** A training run as planned: its row and seed (what names it if it fails). */
    record Planned(String row, long seed) {}

    /** A row's Spanish → English translations of the language experiment's test verses, and its likelihoods. */
    record LanguageResult(List<String> hyps, double chrf, double referenceBits, double englishBits) {}

    /** The language experiment's task as the two-augment rows are held to it. */
    record LanguageTask(Dataset dc, Dataset test, List<String> refs, int maxNew) {}

    private Run calmRun(String name, long seed, CausalLm mB, CausalLm mA, Path aDir, Path bDir, CompositionPlan plan,
                        List<AugmentReader> readers, boolean[] own, Dataset dc, Eval ev, Tokenizer tokB, int maxNew,
                        List<String> refs, TrainConfig tc, Path dir, Mode mode) {
        try (CalmModel calm = CalmModel.create(mB, List.of(mA), plan, mode, cfg.bridges().heads(),
                cfg.bridges().queryInit(), cfg.bridges().recency(), seed, own)) {
            var r = TrainLoop.run(new BridgeObjective(calm, bDir, List.of(aDir),
                            new FrozenStateCache(FrozenStateCache.DEFAULT_BUDGET_FLOATS), readers), dc, null, tc, dir, false,
                    listener("seed " + seed + ", " + name, false));
            return new Run(name, seed, r, evaluate(name, EvalModel.of(calm, readers, tokB), tokB, ev, maxNew, refs, true));
        }
    }

    private Run loraRun(String name, long seed, LlamaModel base, Path baseDir, int rank, Dataset dc, Eval ev,
                        Tokenizer tokB, int maxNew, List<String> refs, TrainConfig tc, Path dir) {
        try (Lora lora = Lora.init(base, LanguageExperiment.LORA_TARGETS, rank, 2.0 * rank, seed)) {
            var r = TrainLoop.run(new LoraObjective(base, baseDir, lora), dc, null, tc, dir, false,
                    listener("seed " + seed + ", " + name, false));
            return new Run(name, seed, r, evaluate(name, EvalModel.of(lora.apply(base)), tokB, ev, maxNew, refs, true));
        }
    }

    /**
     * Greedy summaries of the test methods and next lines, their scores, the reference summaries' and the held-out
     * code's bits per character and (with {@code english}) the held-out English's.
     */
    CodeRow evaluate(String name, EvalModel m, Tokenizer tok, Eval ev, int maxNew, List<String> refs, boolean english) {
        List<String> summaries = LanguageExperiment.translate(m, tok, ev.pairs(), maxNew);
        List<String> lines = LanguageExperiment.translate(m, tok, ev.lines(), cfg.composition().nextLineTokens());
        return CodeRow.of(name, List.of(summaries), refs, List.of(lines), ev.lineRefs(),
                LanguageExperiment.bitsPerChar(m, ev.pairs()), LanguageExperiment.bitsPerChar(m, ev.code()),
                english ? LanguageExperiment.bitsPerChar(m, ev.english()) : null);
    }

    private void log(CodeRow r) {
        log.printf("  %s: summaries BLEU %.1f chrF %.1f [%.1f, %.1f]; next line %.1f %%; summary %.3f, code %.3f "
                        + "bits/char%s%n", r.name(), r.bleu().value(), r.chrf().value(), r.chrf().ci95()[0],
                r.chrf().ci95()[1], r.exactMatch().value(), r.summaryBits(), r.codeBits(),
                r.englishBits() == null ? "" : String.format(", held-out English %.3f bits/char", r.englishBits()));
    }

    private void writePredictions(Files f, Map<String, CodeRow> rows, List<Map<String, Object>> more) {
        List<Map<String, Object>> out = new ArrayList<>();
        for (CodeRow r : rows.values()) {
            for (int s = 0; s < r.summaries().size(); s++) {
                Long seed = r.seeds().isEmpty() ? null : r.seeds().get(s);
                for (int i = 0; i < f.testPairList().size(); i++) {
                    CodeData.Pair p = f.testPairList().get(i);
                    Map<String, Object> m = new LinkedHashMap<>();
                    m.put("row", r.name());
                    m.put("seed", seed);
                    m.put("task", "summary");
                    m.put("where", p.project() + "/" + p.path() + ":" + p.line());
                    m.put("source", p.code());
                    m.put("reference", p.summary());
                    m.put("hypothesis", r.summaries().get(s).get(i));
                    out.add(m);
                }
                if (r.nextLines() == null) {
                    continue;
                }
                for (int i = 0; i < f.testLineList().size(); i++) {
                    CodeData.NextLineExample e = f.testLineList().get(i);
                    Map<String, Object> m = new LinkedHashMap<>();
                    m.put("row", r.name());
                    m.put("seed", seed);
                    m.put("task", "next_line");
                    m.put("where", e.project() + "/" + e.path() + ":" + e.line());
                    m.put("source", e.prefix());
                    m.put("reference", e.target().strip());
                    m.put("hypothesis", r.nextLines().get(s).get(i));
                    out.add(m);
                }
            }
        }
        out.addAll(more);
        Dataset.writeJsonl(cfg.out().resolve("predictions.jsonl"), out);
    }

    static void check(boolean ok, String message) {
        if (!ok) {
            throw new Calm4jException(message);
        }
    }
}
