package dev.calm4j.experiment.language;

import dev.calm4j.Calm4jException;
import dev.calm4j.data.Dataset;
import dev.calm4j.data.Example;
import dev.calm4j.io.AtomicFiles;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.lm.llama.LlamaWeights;
import dev.calm4j.tokenize.BpeTrainer;
import dev.calm4j.tokenize.Tokenizer;
import dev.calm4j.train.LmObjective;
import dev.calm4j.train.Parallel;
import dev.calm4j.train.TrainConfig;
import dev.calm4j.train.TrainListener;
import dev.calm4j.train.TrainLoop;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.function.BiFunction;

/**
 * The experiment's base models in one folder: m_A, m_B, m_B_skyline and {@code language_recipe.json}, the recipe
 * they were made with. Checks shipped models against the recipe, or makes them: each model's subword tokenizer from
 * its own text, then pretraining from random weights with calm4j's own training loop.
 */
public final class BaseModels {
    static final String STAMP = "language_recipe.json";

    private final LanguageRecipe recipe;
    private final Path dir;
    private final PrintStream log;
    private final BiFunction<String, Boolean, TrainListener> listeners;

    BaseModels(LanguageRecipe recipe, Path dir, PrintStream log, BiFunction<String, Boolean, TrainListener> listeners) {
        this.recipe = recipe;
        this.dir = dir;
        this.log = log;
        this.listeners = listeners;
    }

    Path augment() {
        return dir.resolve("m_A");
    }

    Path anchor() {
        return dir.resolve("m_B");
    }

    Path skyline() {
        return dir.resolve("m_B_skyline");
    }

    void ensure(Corpus c, boolean retrain, int jobs) throws IOException {
        Path stamp = dir.resolve(STAMP);
        String want = LanguageExperiment.JSON.writeValueAsString(LanguageExperiment.JSON.valueToTree(recipe));
        boolean have = List.of(augment(), anchor(), skyline()).stream()
                .allMatch(p -> Files.isRegularFile(p.resolve("model.safetensors"))) && Files.isRegularFile(stamp);
        if (have && !retrain) {
            String got = LanguageExperiment.JSON.writeValueAsString(LanguageExperiment.JSON.readTree(stamp.toFile()));
            if (!got.equals(want)) {
                throw new Calm4jException(stamp + ": the base models were made with another recipe; rerun with "
                        + "--retrain to make them with this one");
            }
            return;
        }
        if (!retrain) {
            throw new Calm4jException(dir + ": no base models (m_A, m_B, m_B_skyline, " + STAMP + "); run with "
                    + "--retrain to make them with the committed recipe");
        }
        Files.createDirectories(dir);
        Files.deleteIfExists(stamp);
        List<String> augmentText = augmentDocs(c);
        log.printf("training tokenizers (m_A: %,d subwords over %,d pieces; m_B: %,d over %,d) ...%n",
                recipe.augment().vocab(), augmentText.size(), recipe.anchor().vocab(), c.anchorDocs().size());
        Files.createDirectories(augment());
        Files.createDirectories(anchor());
        BpeTrainer.train(augmentText, new BpeTrainer.Options(recipe.augment().vocab(), 2, 2), augment().resolve("tokenizer.json"));
        BpeTrainer.train(c.anchorDocs(), new BpeTrainer.Options(recipe.anchor().vocab(), 2, 2), anchor().resolve("tokenizer.json"));
        boolean together = jobs > 1;
        log.println("pretraining m_A (Spanish + the training books' verse pairs)" + (together ? " and m_B (English) at once" : "") + " ...");
        List<Callable<String>> runs = List.of(
                () -> {
                    var r = pretrain(recipe.augment(), augmentText, augment(), recipe.seed() + 1, "m_A", !together);
                    return String.format("  m_A: loss %.4f, %.0f s", r.finalLoss(), r.seconds());
                },
                () -> {
                    var r = pretrain(recipe.anchor(), c.anchorDocs(), anchor(), recipe.seed() + 2, "m_B", !together);
                    return String.format("  m_B: loss %.4f, %.0f s", r.finalLoss(), r.seconds());
                });
        Parallel.run(runs, jobs, log::println);
        log.println("pretraining the skyline (m_B further on m_A's data) ...");
        var r = continueOn(anchor(), augmentText, skyline(), recipe.skyline(), recipe.seed() + 3);
        log.printf("  m_B_skyline: loss %.4f, %.0f s%n", r.finalLoss(), r.seconds());
        // The training logs stay beside the models; the resumable checkpoints (weights and optimizer state, three
        // times each model's size) are of no use once a model is finished.
        for (Path p : List.of(augment(), anchor(), skyline())) {
            dropCheckpoint(p);
        }
        AtomicFiles.writeString(stamp, want + "\n");
    }

    private static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (var s = Files.walk(dir)) {
            for (Path p : s.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.delete(p);
            }
        }
    }

    /** m_A's data: the Spanish of the training books as running text, and each training verse pair as one row. */
    static List<String> augmentDocs(Corpus c) {
        List<String> out = new ArrayList<>(c.spanishDocs());
        for (Corpus.Pair p : c.trainPairs()) {
            out.add(Corpus.text(p));
        }
        return out;
    }

    private TrainLoop.Result pretrain(LanguageRecipe.Model m, List<String> docs, Path out, long seed, String name,
                                      boolean messages) {
        return pretrain(m, docs, out, seed, name, listeners.apply(name, messages));
    }

    private TrainLoop.Result continueOn(Path from, List<String> docs, Path out, LanguageRecipe.Continue k, long seed) {
        return continueOn(from, docs, out, k, recipe.anchor().maxPositions(), recipe.anchor().weightDecay(), seed,
                "m_A's data through m_B's tokenizer", listeners.apply("m_B_skyline", true));
    }

    /**
     * Pretrains a model of shape {@code m} from random weights on {@code docs} (one row each, through the tokenizer
     * already at {@code out/tokenizer.json}) and saves it in {@code out}; the training log goes to {@code out.train}.
     */
    public static TrainLoop.Result pretrain(LanguageRecipe.Model m, List<String> docs, Path out, long seed, String name,
                                            TrainListener listener) {
        Path tok = out.resolve("tokenizer.json");
        Dataset d = rows(docs, tok, m.maxPositions(), name + " pretraining");
        LlamaConfig c = m.config(vocabSize(tok));
        try (LlamaModel model = new LlamaModel(c, LlamaWeights.random(c, seed, 0.02, ScalarType.Float), ScalarType.Float)) {
            TrainConfig cfg = schedule(m.steps(), m.batch(), m.lr(), m.weightDecay(), seed);
            return TrainLoop.run(new LmObjective(model, tok), d, null, cfg, out.resolveSibling(out.getFileName() + ".train"),
                    false, listener, out);
        }
    }

    /** Trains the model in {@code from} further on {@code docs} (through its own tokenizer) and saves it in {@code out}. */
    public static TrainLoop.Result continueOn(Path from, List<String> docs, Path out, LanguageRecipe.Continue k,
                                              int maxPositions, double weightDecay, long seed, String dataName,
                                              TrainListener listener) {
        Path tok = from.resolve("tokenizer.json");
        Dataset d = rows(docs, tok, maxPositions, dataName);
        try (LlamaModel model = (LlamaModel) LmFamilies.load(from, ScalarType.Float)) {
            TrainConfig cfg = schedule(k.steps(), k.batch(), k.lr(), weightDecay, seed);
            return TrainLoop.run(new LmObjective(model, tok), d, null, cfg, out.resolveSibling(out.getFileName() + ".train"),
                    false, listener, out);
        }
    }

    /** Deletes a finished model's resumable checkpoint (weights and optimizer state) beside it; the log stays. */
    public static void dropCheckpoint(Path model) throws IOException {
        deleteTree(model.resolveSibling(model.getFileName() + ".train").resolve("checkpoint"));
    }

    public static int vocabSize(Path tokenizerJson) {
        try {
            return LanguageExperiment.JSON.readTree(tokenizerJson.toFile()).path("model").path("vocab").size();
        } catch (IOException e) {
            throw new Calm4jException(tokenizerJson + ": cannot read (" + e.getMessage() + ")");
        }
    }

    /** Each text as one row: BOS, its tokens (at most {@code maxLength} in all), EOS; every token but BOS a target. */
    public static Dataset rows(List<String> docs, Path tokenizer, int maxLength, String name) {
        List<Example> out = new ArrayList<>();
        try (Tokenizer t = Tokenizer.load(tokenizer)) {
            for (String doc : docs) {
                long[] body = t.encode(doc, false);
                int n = Math.min(body.length + 2, maxLength);
                long[] ids = new long[n];
                ids[0] = LanguageExperiment.BOS;
                System.arraycopy(body, 0, ids, 1, Math.min(body.length, n - 1));
                if (body.length + 2 <= maxLength) {
                    ids[n - 1] = LanguageExperiment.EOS;
                }
                boolean[] target = new boolean[n];
                Arrays.fill(target, 1, n, true);
                out.add(new Example(ids, target, null, out.size() + 1));
            }
        }
        return Dataset.of(out, name);
    }

    /** Base-model pretraining: 5 % warmup, cosine to 5 % of the peak, AdamW (0.9, 0.98), clip 1.0. */
    public static TrainConfig schedule(int steps, int batch, double lr, double weightDecay, long seed) {
        return new TrainConfig(steps, new TrainConfig.Batching(batch, 1, 8),
                new TrainConfig.Schedule(lr, Math.max(1, steps / 20), 0.05, 1.0),
                TrainConfig.Optimizer.adamW(weightDecay).withBeta2(0.98), new TrainConfig.Intervals(Math.max(1, steps / 50), 0, 0),
                seed);
    }
}
