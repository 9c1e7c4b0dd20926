package dev.calm4j.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.experiment.kv.KvExperiment;
import dev.calm4j.experiment.kv.KvExperiment.Config;
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

/** The key-value arithmetic reproduction; {@code calm demo} and {@code calm experiment kv-arithmetic}. */
@Command(name = "kv-arithmetic", mixinStandardHelpOptions = true,
        description = "Reproduce the CALM paper's key-value arithmetic experiment (Table 1) with its controls: "
                + "writes report.md, results.json and PNGs into a run directory and prints the table.",
        footer = {"", "Examples:",
                "  calm demo",
                "  calm demo --quick --out runs/kv-quick",
                "  calm experiment kv-arithmetic --seeds 1,2,3 --steps 600 --out runs/kv",
                "  calm experiment kv-arithmetic --retrain --models experiments/kv-arithmetic/models"})
class KvArithmeticCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--out", paramLabel = "DIR", description = "run directory (default runs/kv-arithmetic-<time>)")
    Path out;

    @Option(names = "--models", paramLabel = "DIR", description = "base models m_A, m_B (default: the shipped experiments/kv-arithmetic/models)")
    Path models;

    @Option(names = "--quick", description = "one seed, CALM and the LoRA control only, " + Config.QUICK_STEPS + " steps, fewer eval examples (about 2.5 minutes): checks the direction of the claim")
    boolean quick;

    @Option(names = "--retrain", description = "retrain m_A and m_B with the committed recipe into --models (tens of minutes)")
    boolean retrain;

    @Option(names = "--seeds", split = ",", paramLabel = "S", description = "composition seeds (default 1,2,3)")
    List<Long> seeds;

    @Option(names = "--steps", paramLabel = "N", description = "bridge (and control) training steps per run (default " + Config.Training.DEFAULT_STEPS + ")")
    Integer steps;

    @Option(names = "--lr", paramLabel = "LR", description = "bridge (and control) peak learning rate (default " + Config.Training.DEFAULT_LR + ")")
    Double lr;

    @Option(names = "--batch", paramLabel = "N", description = "composition batch size (default " + Config.Training.DEFAULT_BATCH + ")")
    Integer batch;

    @Option(names = "--heads", paramLabel = "N", description = "bridge cross-attention heads (default " + Config.Bridges.DEFAULT_HEADS + ")")
    Integer heads;

    @Option(names = "--eval-examples", paramLabel = "N", description = "examples per evaluation set (default " + Config.Data.DEFAULT_EVAL_EXAMPLES + ")")
    Integer evalExamples;

    @Option(names = "--composition-examples", paramLabel = "N", description = "KV-MATH examples in D_C, over the composition keys (default " + Config.Data.DEFAULT_COMPOSITION_EXAMPLES + ")")
    Integer compositionExamples;

    @Option(names = "--connections", paramLabel = "SPEC", description = "bridges, augment layer -> anchor layer (default " + Config.Bridges.DEFAULT_CONNECTIONS + ": into the block whose output m_B reads operands from)")
    String connections;

    @Option(names = "--mix-num-math", paramLabel = "F", description = "NUM-MATH examples added to D_C, as a fraction of its KV-MATH examples (default " + Config.Data.DEFAULT_NUM_MATH_MIX + ": without them the bridges break the anchor's own arithmetic; more slows their learning of the keys)")
    Double numMathMix;

    @Option(names = "--length-group", paramLabel = "G", description = "bridge and control training batch rows of like length: each run of G batches' worth of shuffled D_C is sorted by length (default " + Config.Training.DEFAULT_LENGTH_GROUP + ": less padding; 1 = plain shuffle)")
    Integer lengthGroup;

    @Option(names = "--decay-fraction", paramLabel = "F", description = "bridge and control training hold the peak --lr, then decay it (cosine, to a tenth) over the last F of the steps (default " + Config.Training.DEFAULT_DECAY_FRACTION + "; 1 = cosine over all steps)")
    Double decayFraction;

    @Option(names = "--query-init", paramLabel = "S", description = "the bridges' query weights start drawn at S x nn.Linear's init scale (default " + Config.Bridges.DEFAULT_QUERY_INIT + ": each head starts with its own soft attention, which helped the bridges reach their drop in loss; 0 = zeros, uniform attention)")
    Double queryInit;

    @Option(names = "--jobs", paramLabel = "N", description = "training runs at once, each on one thread (default: one per core, at most 2; "
            + "these small models leave a core partly idle; results can differ in the last digits with the BLAS thread count)")
    Integer jobs;

    @Option(names = "--dtype", paramLabel = "fp32|bf16|bf16-mixed", description = "what the frozen base models compute "
            + "in while they are evaluated and composed (default fp32); bf16-mixed: bf16 weights and matmuls, float32 "
            + "activations and residual stream (PyTorch's autocast); bridges and LoRA adapters train float32 master "
            + "weights either way. bf16 pays where the CPU multiplies it natively (avx512_bf16, amx_bf16)")
    String dtype;

    @Option(names = "--no-controls", description = "train and evaluate CALM only (no LoRA, random m_A, encoder)")
    boolean noControls;

    @Option(names = "--no-progress", description = "no progress bars")
    boolean noProgress;

    static Path home() {
        String h = System.getProperty("calm4j.home", System.getProperty("calm4j.repo"));   // launcher, or surefire
        return h != null ? Path.of(h) : Path.of(".");
    }

    @Override
    public Integer call() throws Exception {
        PrintWriter w = spec.commandLine().getOut();
        Path modelsDir = models != null ? models : home().resolve("experiments/kv-arithmetic/models");
        Path outDir = out != null ? out : Path.of("runs", "kv-arithmetic-"
                + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")) + (quick ? "-quick" : ""));
        if (jobs != null && jobs <= 0) {
            throw new Calm4jException("--jobs must be > 0");
        }
        if (lengthGroup != null && lengthGroup < 1) {
            throw new Calm4jException("--length-group must be >= 1 (1 = plain shuffle), got " + lengthGroup);
        }
        if (decayFraction != null && !(decayFraction > 0 && decayFraction <= 1)) {
            throw new Calm4jException("--decay-fraction must be in (0, 1], got " + decayFraction);
        }
        if (queryInit != null && !(queryInit >= 0 && queryInit <= 1)) {
            throw new Calm4jException("--query-init must be in [0, 1], got " + queryInit);
        }
        KvExperiment.Config c = KvExperiment.Config.defaults(modelsDir, outDir);
        if (quick) {
            c = c.quick();
        }
        if (steps != null && steps <= 0) {
            throw new Calm4jException("--steps must be > 0");
        }
        if ((batch != null && batch <= 0) || (heads != null && heads <= 0) || (evalExamples != null && evalExamples <= 0)
                || (compositionExamples != null && compositionExamples <= 0) || (lr != null && !(lr > 0))) {
            throw new Calm4jException("--batch, --heads, --eval-examples, --composition-examples and --lr must be > 0");
        }
        if (seeds != null && seeds.isEmpty()) {
            throw new Calm4jException("--seeds is empty");
        }
        if (numMathMix != null && !(numMathMix >= 0)) {
            throw new Calm4jException("--mix-num-math must be >= 0, got " + numMathMix);
        }
        Config.Bridges b = c.bridges();
        Config.Training t = c.training();
        Config.Data d = c.data();
        c = new Config(c.recipe(), c.modelsDir(), c.out(), retrain, seeds != null ? seeds : c.seeds(),
                noControls ? List.of() : c.controls(),
                new Config.Bridges(connections != null ? connections : b.connections(), heads != null ? heads : b.heads(),
                        queryInit != null ? queryInit : b.queryInit()),
                new Config.Training(steps != null ? steps : t.steps(), batch != null ? batch : t.batch(),
                        lr != null ? lr : t.lr(), decayFraction != null ? decayFraction : t.decayFraction(),
                        lengthGroup != null ? lengthGroup : t.lengthGroup()),
                new Config.Data(compositionExamples != null ? compositionExamples : d.compositionExamples(),
                        numMathMix != null ? numMathMix : d.numMathMix(), evalExamples != null ? evalExamples : d.evalExamples(),
                        d.probeSteps()),
                jobs != null ? jobs : c.jobs());
        if (dtype != null) {
            // one line naming the flag for anything but fp32|bf16 (float32 and bfloat16 are taken too)
            c = c.withDtype(switch (dtype) {
                case "fp32", "float32" -> "fp32";
                case "bf16", "bfloat16" -> "bf16";
                case "bf16-mixed" -> "bf16-mixed";
                default -> throw new Calm4jException("--dtype: expected fp32, bf16 or bf16-mixed, got '" + dtype + "'");
            });
        }
        Files.createDirectories(outDir);
        // UTF-8 a line at a time: the run log names "CALM m_A⊕m_B" (a byte-per-char copy printed it as mojibake)
        java.io.PrintStream log = Training.printStream(w);
        KvExperiment.RunListeners bars = noProgress ? KvExperiment.RunListeners.NONE
                : name -> new Training.BarListener(name, System.err);
        ObjectNode r = new KvExperiment(c, log, bars).run();
        w.println();
        w.println(Files.readString(outDir.resolve("report.md")).split("## Probe")[0].trim());
        w.printf("%nreport: %s   results: %s   wall time %.0f s%n", outDir.resolve("report.md"),
                outDir.resolve("results.json"), r.path("wall_time_s").asDouble());
        w.flush();
        return 0;
    }
}
