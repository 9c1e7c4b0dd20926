package dev.calm4j.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.experiment.code.CodeExperiment;
import dev.calm4j.experiment.code.CodeExperiment.Config;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

/** The code experiment: {@code calm experiment code}. */
@Command(name = "code", mixinStandardHelpOptions = true,
        description = "The CALM paper's code experiment on real Java: the language experiment's English anchor learns to "
                + "summarise methods of projects no model has seen, through a small model of other projects' code; and "
                + "the anchor with both that augment and the language experiment's at once. Writes report.md, "
                + "results.json, predictions.jsonl and PNGs into a run directory and prints the table.",
        footer = {"", "The sources are fetched once with experiments/code/scripts/fetch-data.sh (Maven Central), the "
                + "anchor's English with experiments/language/scripts/fetch-data.sh.",
                "", "Examples:",
                "  calm experiment code",
                "  calm experiment code --quick --out runs/code-quick",
                "  calm experiment code --retrain --models experiments/code/models"})
class CodeCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Mixin
    RealTextOptions run;

    @Option(names = "--data", paramLabel = "DIR", description = "the fetched sources (default experiments/code/data)")
    Path data;

    @Option(names = "--language-data", paramLabel = "DIR", description = "the language experiment's text, for the "
            + "anchor's English (default experiments/language/data)")
    Path languageData;

    @Option(names = "--anchor", paramLabel = "DIR", description = "the anchor (default: the language experiment's "
            + "shipped m_B, experiments/language/models/m_B; its m_A beside it is the second augment)")
    Path anchor;

    @Option(names = "--models", paramLabel = "DIR", description = "m_A and the skyline (default: the shipped experiments/code/models)")
    Path models;

    @Option(names = "--test-methods", paramLabel = "N", description = "held-out methods summarised per row")
    Integer testMethods;

    @Option(names = "--controls", split = ",", paramLabel = "NAME", description = "the rows trained beside CALM, some of "
            + "lora, calm_random_augment, calm_encoder, skyline, two_augments (default: all; --quick: lora)")
    List<String> controls;

    @Override
    public Integer call() throws Exception {
        PrintWriter w = spec.commandLine().getOut();
        run.check("--test-methods", testMethods);
        if (controls != null) {
            for (String x : controls) {
                if (!Config.CONTROLS.contains(x)) {
                    throw new Calm4jException("--controls: expected some of " + String.join(", ", Config.CONTROLS)
                            + "; got '" + x + "'");
                }
            }
        }
        Path home = KvArithmeticCommand.home();
        Path dataDir = data != null ? data : home.resolve("experiments/code/data");
        if (!Files.isDirectory(dataDir.resolve("downloads"))) {
            throw new Calm4jException(dataDir.resolve("downloads") + ": no sources; fetch them with "
                    + "experiments/code/scripts/fetch-data.sh");
        }
        Path outDir = run.outDir("code");
        Config c = Config.defaults(dataDir, languageData != null ? languageData : home.resolve("experiments/language/data"),
                anchor != null ? anchor : home.resolve("experiments/language/models/m_B"),
                models != null ? models : home.resolve("experiments/code/models"), outDir);
        c = new Config(c.recipe(), c.data(), home.resolve(c.dataRecipe()), c.languageData(), c.anchor(), c.spanish(),
                c.modelsDir(), c.out(), c.retrain(), c.seeds(), c.controls(), c.bridges(), c.training(), c.composition(),
                c.jobs());
        if (run.quick) {
            c = c.quick();
        }
        Config.Composition k = c.composition();
        c = new Config(c.recipe(), c.data(), c.dataRecipe(), c.languageData(), c.anchor(), c.spanish(), c.modelsDir(),
                c.out(), run.retrain, run.seeds != null ? run.seeds : c.seeds(),
                run.noControls ? List.of() : controls != null ? controls : c.controls(), run.bridges(c.bridges()),
                run.training(c.training()),
                new Config.Composition(k.codeMix(), k.englishMix(), k.codeChunkChars(),
                        testMethods != null ? testMethods : k.testPairs(), k.testNextLines(), k.testCode(),
                        k.heldOutEnglish(), k.nextLineTokens(), k.dataSeed()),
                run.jobs != null ? run.jobs : c.jobs());
        Files.createDirectories(outDir);
        ObjectNode r = new CodeExperiment(c, Training.printStream(w), run.bars()).run();
        RealTextOptions.printReport(w, outDir, r.path("wall_time_s").asDouble());
        return 0;
    }
}
