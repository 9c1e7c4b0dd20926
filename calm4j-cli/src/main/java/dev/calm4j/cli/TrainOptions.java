package dev.calm4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.io.RunLock;
import dev.calm4j.train.Checkpoint;
import dev.calm4j.train.DataParallel;
import dev.calm4j.train.TrainConfig;
import org.bytedeco.pytorch.global.torch.ScalarType;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Training flags shared by {@code pretrain}, {@code compose} and {@code lora} (a picocli mixin). They become one
 * {@link TrainConfig}, which validates them and names the flag in its message.
 */
final class TrainOptions {
    @Option(names = "--steps", required = true, paramLabel = "N", description = "optimizer steps (required)")
    int steps;

    @Option(names = "--batch", defaultValue = "8", paramLabel = "B", description = "examples per micro-batch (default ${DEFAULT-VALUE})")
    int batch;

    @Option(names = "--accumulation", defaultValue = "1", paramLabel = "K",
            description = "micro-batches per optimizer step; effective batch = B x K (default ${DEFAULT-VALUE})")
    int accumulation;

    @Option(names = "--lr", defaultValue = "1e-3", paramLabel = "LR", description = "peak AdamW learning rate (default ${DEFAULT-VALUE})")
    double lr;

    @Option(names = "--warmup", paramLabel = "N", description = "linear warmup steps (default 5%% of --steps)")
    Integer warmup;

    @Option(names = "--min-lr-ratio", defaultValue = "0.1", paramLabel = "R",
            description = "cosine decay ends at lr x R (default ${DEFAULT-VALUE})")
    double minLrRatio;

    @Option(names = "--decay-fraction", defaultValue = "1.0", paramLabel = "F",
            description = "the cosine decay spans the last F of the steps; before it the peak --lr holds (default ${DEFAULT-VALUE}: all steps after warmup)")
    double decayFraction;

    @Option(names = "--weight-decay", defaultValue = "0", paramLabel = "WD", description = "AdamW decoupled weight decay (default ${DEFAULT-VALUE})")
    double weightDecay;

    @Option(names = "--clip", defaultValue = "1.0", paramLabel = "NORM", description = "global gradient-norm clip, 0 = off (default ${DEFAULT-VALUE})")
    double clip;

    @Option(names = "--eval-every", defaultValue = "0", paramLabel = "N", description = "evaluate on --eval every N steps; 0 = at the end only (default ${DEFAULT-VALUE})")
    int evalEvery;

    @Option(names = "--save-every", defaultValue = "0", paramLabel = "N",
            description = "write a resumable checkpoint every N steps; 0 = at the end only (default ${DEFAULT-VALUE})")
    int saveEvery;

    @Option(names = "--log-every", paramLabel = "N", description = "log the loss every N steps (default max(1, steps/100))")
    Integer logEvery;

    @Option(names = "--length-group", defaultValue = "1", paramLabel = "G",
            description = "sort each run of G batches' worth of shuffled examples by length and batch them so, in a random order: less padding (default ${DEFAULT-VALUE} = plain shuffle)")
    int lengthGroup;

    @Option(names = "--seed", defaultValue = "0", paramLabel = "S", description = "seed of initialisation and data order (default ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--resume", description = "continue the run in --out from its last checkpoint (same flags; --steps may grow)")
    boolean resume;

    @Option(names = "--overwrite", description = "start over even though --out already holds a training run")
    boolean overwrite;

    @Option(names = "--no-progress", description = "no progress bar: print one line per logged step instead (the default when not on a terminal)")
    boolean noProgress;

    @Option(names = "--dtype", defaultValue = "fp32", paramLabel = "fp32|bf16|bf16-mixed", description = "what the frozen "
            + "models compute in: fp32, bf16, or bf16-mixed (bf16 weights and matmuls, float32 activations and residual "
            + "stream, as PyTorch's autocast; Llama-family models); what trains keeps float32 master weights "
            + "(default ${DEFAULT-VALUE})")
    String dtype;

    @Option(names = "--nproc", defaultValue = "1", paramLabel = "N",
            description = "train data-parallel in N local processes (as torchrun --nproc-per-node): each takes its "
                    + "--batch rows of every global batch of N x B and they sum their gradients; rank 0 writes --out "
                    + "(default ${DEFAULT-VALUE})")
    int nproc;

    @Option(names = "--world-size", paramLabel = "N",
            description = "join a data-parallel run of N processes, on this or other hosts (default: $WORLD_SIZE; unset: one process)")
    Integer worldSize;

    @Option(names = "--world-rank", paramLabel = "R", description = "this process's rank in it, 0 to N-1; rank 0 hosts the rendezvous and writes --out (default: $RANK)")
    Integer rank;

    @Option(names = "--master-addr", paramLabel = "HOST", description = "rank 0's address (default: $MASTER_ADDR)")
    String masterAddr;

    @Option(names = "--master-port", paramLabel = "PORT", description = "rank 0's rendezvous port (default: $MASTER_PORT)")
    Integer masterPort;

    @Option(names = "--dist-timeout", defaultValue = "300", paramLabel = "S",
            description = "a rank that waits this long for another (at the rendezvous or in a step) stops with an error naming it (default ${DEFAULT-VALUE})")
    int distTimeout;

    private DataParallel dataParallel;

    /**
     * This process's place in a data-parallel run (joined on first call: the rendezvous waits for every rank), or
     * {@link DataParallel#SINGLE}. The flags override torchrun's variables.
     */
    DataParallel dataParallel() {
        if (dataParallel == null) {
            if (distTimeout <= 0) {
                throw new Calm4jException("--dist-timeout must be > 0, got " + distTimeout);
            }
            java.util.Map<String, String> env = new java.util.HashMap<>(System.getenv());
            put(env, "WORLD_SIZE", worldSize);
            put(env, "RANK", rank);
            put(env, "MASTER_ADDR", masterAddr);
            put(env, "MASTER_PORT", masterPort);
            if (rank != null) {
                env.remove("LOCAL_RANK");
            }
            DataParallel.Rendezvous r = DataParallel.Rendezvous.fromEnv(env, java.time.Duration.ofSeconds(distTimeout));
            dataParallel = r == null ? DataParallel.SINGLE : DataParallel.join(r);
        }
        return dataParallel;
    }

    private static void put(java.util.Map<String, String> env, String name, Object flag) {
        if (flag != null) {
            env.put(name, String.valueOf(flag));
        }
    }

    /** Whether this process writes --out: a single process, or rank 0. */
    boolean writes() {
        return dataParallel().writes();
    }

    /** What the models' activations compute in (float32 under bf16-mixed). */
    ScalarType computeDtype() {
        return GenerateCommand.computeDtype(dtype);
    }

    /** What the frozen models' weights are held in (bf16 under bf16-mixed). */
    ScalarType weightDtype() {
        return GenerateCommand.weightDtype(dtype);
    }

    boolean progressBar() {
        return !noProgress && System.console() != null;
    }

    /** The checkpoint's validated state.json (the recovery rule has settled any interrupted save), or null. */
    private static JsonNode savedState(Path out) {
        if (!Files.isDirectory(out)) {
            return null;
        }
        Checkpoint.State s = Checkpoint.readState(out);
        if (s == null) {
            return null;
        }
        ObjectNode o = new ObjectMapper().createObjectNode();
        o.put("step", s.step());
        o.set("train_config", s.trainConfig());
        return o;
    }

    /**
     * Checks {@code out} against --resume/--overwrite and builds the config. When resuming, the defaults that depend on
     * --steps (warmup, log interval) are taken from the checkpoint, so that growing --steps does not change them.
     */
    TrainConfig config(Path out) {
        if (resume && overwrite) {
            throw new Calm4jException("--resume and --overwrite exclude each other");
        }
        if (!writes()) {
            // Another rank: rank 0 checks and writes --out (which may not even exist on this host), and the training
            // loop takes rank 0's settings, so that its checkpoint's defaults hold on every rank.
            return build(null);
        }
        // Held until the command ends (Main releases it): nothing below may look at or change the folder unlocked.
        RunLock.acquire(out);
        if (Files.isDirectory(out)) {
            Checkpoint.recover(out);
        }
        if (!resume && !overwrite && Files.isDirectory(out.resolve(Checkpoint.DIR))) {
            String at;
            try {
                at = " at step " + Checkpoint.readState(out).step();
            } catch (Calm4jException damaged) {
                at = "";        // --overwrite must stay possible over a damaged checkpoint
            }
            throw new Calm4jException(out + ": already holds a training run (checkpoint/" + at
                    + "); pass --resume to continue it or --overwrite to start over");
        }
        // Only a run that continues reads the checkpoint: --overwrite replaces it, whatever it holds.
        JsonNode saved = resume ? savedState(out) : null;
        if (resume && saved != null) {
            int at = saved.path("step").asInt();
            if (at >= steps) {
                throw new Calm4jException(out + ": the checkpoint is already at step " + at + " of --steps " + steps
                        + "; nothing to train (raise --steps to continue)");
            }
        }
        return build(resume && saved != null ? saved.path("train_config") : null);
    }

    /** The config from the flags, with the defaults that depend on --steps taken from {@code prev} when given. */
    private TrainConfig build(JsonNode prev) {
        int w = warmup != null ? warmup
                : prev != null && prev.path("schedule").has("warmupSteps") ? prev.get("schedule").get("warmupSteps").asInt()
                : Math.max(0, steps / 20);
        int l = logEvery != null ? logEvery
                : prev != null && prev.path("intervals").has("log") ? prev.get("intervals").get("log").asInt()
                : Math.max(1, steps / 100);
        if (logEvery != null && logEvery <= 0) {
            throw new Calm4jException("--log-every must be > 0, got " + logEvery);
        }
        if (evalEvery < 0) {
            throw new Calm4jException("--eval-every must be >= 0, got " + evalEvery);
        }
        if (saveEvery < 0) {
            throw new Calm4jException("--save-every must be >= 0, got " + saveEvery);
        }
        return new TrainConfig(steps, new TrainConfig.Batching(batch, accumulation, lengthGroup),
                new TrainConfig.Schedule(lr, w, minLrRatio, decayFraction),
                new TrainConfig.Optimizer(weightDecay, 0.9, 0.999, 1e-8, clip), new TrainConfig.Intervals(l, evalEvery, saveEvery),
                seed);
    }
}
