package dev.calm4j.cli;

import dev.calm4j.Calm4jException;
import dev.calm4j.experiment.language.LanguageExperiment;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.List;

/**
 * The flags the experiments on real text share (a picocli mixin: {@code experiment language} and {@code experiment
 * code}): where the run goes, its seeds, the composition stage's schedule and bridges, how many runs at once.
 */
final class RealTextOptions {
    @Option(names = "--out", paramLabel = "DIR", description = "run directory (default runs/<experiment>-<time>)")
    Path out;

    @Option(names = "--quick", description = "one seed, CALM and LoRA only, fewer steps and test examples: checks the direction of the claim")
    boolean quick;

    @Option(names = "--retrain", description = "make the experiment's tokenizers and base models again with the committed recipe, into --models")
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

    @Option(names = "--jobs", paramLabel = "N", description = "training runs at once (default: one per core, at most 2)")
    Integer jobs;

    @Option(names = "--no-controls", description = "train CALM only, none of the control rows")
    boolean noControls;

    @Option(names = "--no-progress", description = "no progress bars")
    boolean noProgress;

    /** Refuses what no run can use, in one line; {@code tests} is the experiment's own test-size flag, if given. */
    void check(String testsFlag, Integer tests) {
        if ((steps != null && steps <= 0) || (batch != null && batch <= 0) || (lr != null && !(lr > 0))
                || (tests != null && tests <= 0) || (jobs != null && jobs <= 0)) {
            throw new Calm4jException("--steps, --batch, --lr, " + testsFlag + " and --jobs must be > 0");
        }
        if (seeds != null && seeds.isEmpty()) {
            throw new Calm4jException("--seeds is empty");
        }
    }

    /** {@code --out}, or {@code runs/<name>-<yyyyMMdd-HHmmss>[-quick]}. */
    Path outDir(String name) {
        return out != null ? out : Path.of("runs", name + "-"
                + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")) + (quick ? "-quick" : ""));
    }

    LanguageExperiment.Config.Bridges bridges(LanguageExperiment.Config.Bridges d) {
        return new LanguageExperiment.Config.Bridges(connections != null ? connections : d.connections(), d.heads(),
                d.queryInit(), recency || d.recency());
    }

    LanguageExperiment.Config.Training training(LanguageExperiment.Config.Training t) {
        return new LanguageExperiment.Config.Training(steps != null ? steps : t.steps(), batch != null ? batch : t.batch(),
                lr != null ? lr : t.lr(), t.decayFraction());
    }

    LanguageExperiment.RunListeners bars() {
        return noProgress ? LanguageExperiment.RunListeners.NONE : name -> new Training.BarListener(name, System.err);
    }

    /** Prints the run's report and where its files are. */
    static void printReport(PrintWriter w, Path outDir, double wallSeconds) throws java.io.IOException {
        w.println();
        w.println(Files.readString(outDir.resolve("report.md")).trim());
        w.printf("%nreport: %s   results: %s   predictions: %s   wall time %.0f s%n", outDir.resolve("report.md"),
                outDir.resolve("results.json"), outDir.resolve("predictions.jsonl"), wallSeconds);
        w.flush();
    }
}
