package dev.calm4j.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.data.Batch;
import dev.calm4j.data.Batcher;
import dev.calm4j.data.Dataset;
import dev.calm4j.data.Example;
import dev.calm4j.io.AtomicFiles;
import dev.calm4j.io.RunLock;
import dev.calm4j.nn.Scoped;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.AdamW;
import org.bytedeco.pytorch.AdamWOptions;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;

/**
 * The one training loop: libtorch's AdamW, linear warmup + cosine schedule, global-norm clipping, gradient
 * accumulation, periodic evaluation, periodic resumable checkpoints (atomic) and a JSONL metrics log; progress goes to
 * a {@link TrainListener} (the CLI draws bars and plots from it). Used for bridges, for the LoRA baseline and for
 * pretraining small LMs.
 *
 * <p>Output directory: the objective's result (e.g. bridges.safetensors + calm_config.json) at the end,
 * {@code metrics.jsonl}, {@code train_config.json}, {@code numerics.json} (the BLAS kernel, threads and
 * CPU that rounded the sums: {@link dev.calm4j.Torch#numerics}), and {@code checkpoint/} (trainable tensors,
 * optimizer state, data position) for {@code --resume}.
 */
public final class TrainLoop {
    private static final ObjectMapper JSON = new ObjectMapper();

    private TrainLoop() {}

    /**
     * @param finalLoss mean training loss per target token over the last logged window
     * @param evalLoss mean eval loss per target token at the end (NaN without eval data)
     */
    public record Result(int steps, double finalLoss, double evalLoss, double seconds, double tokensPerSecond,
                         List<double[]> curve, String describe) {}

    public static Result run(Objective obj, Dataset train, Dataset eval, TrainConfig cfg, Path out, boolean resume,
                             TrainListener listener) {
        return run(obj, train, eval, cfg, out, resume, listener, Integer.MAX_VALUE, out);
    }

    /** As {@link #run}, with the objective's result written to {@code resultDir} instead of {@code out}. */
    public static Result run(Objective obj, Dataset train, Dataset eval, TrainConfig cfg, Path out, boolean resume,
                             TrainListener listener, Path resultDir) {
        return run(obj, train, eval, cfg, out, resume, listener, Integer.MAX_VALUE, resultDir);
    }

    /** As {@link #run}, but stops (as if killed) after {@code killAfter} steps: for testing --resume. */
    static Result run(Objective obj, Dataset train, Dataset eval, TrainConfig cfg, Path out, boolean resume,
                      TrainListener listener, int killAfter) {
        return run(obj, train, eval, cfg, out, resume, listener, killAfter, out);
    }

    static Result run(Objective obj, Dataset train, Dataset eval, TrainConfig cfg, Path out, boolean resume,
                      TrainListener listener, int killAfter, Path resultDir) {
        return run(obj, train, eval, cfg, out, resume, listener, killAfter, resultDir, DataParallel.SINGLE);
    }

    /**
     * As {@link #run}, as one rank of a data-parallel run: each rank trains on its own part of every global batch of
     * {@code batch.size x dp.size()} rows and the gradients are summed across ranks before clipping, so every rank
     * holds the same tensors after every step and the run trains as one process with the global batch would. Rank 0
     * alone touches {@code out} (lock, checkpoints, metrics, results); the others only compute. Every rank gets the
     * result.
     */
    public static Result run(Objective obj, Dataset train, Dataset eval, TrainConfig cfg, Path out, boolean resume,
                             TrainListener listener, Path resultDir, DataParallel dp) {
        return run(obj, train, eval, cfg, out, resume, listener, Integer.MAX_VALUE, resultDir, dp);
    }

    static Result run(Objective obj, Dataset train, Dataset eval, TrainConfig cfg, Path out, boolean resume,
                      TrainListener listener, int killAfter, Path resultDir, DataParallel dp) {
        Map<String, Tensor> params = obj.parameters();
        if (params.isEmpty()) {
            throw new IllegalArgumentException("nothing to train");
        }
        if (!dp.writes()) {
            return locked(obj, train, eval, cfg, out, resume, listener, killAfter, resultDir, params, dp);
        }
        try (RunLock lock = RunLock.acquire(out)) {
            return locked(obj, train, eval, cfg, out, resume, listener, killAfter, resultDir, params, dp);
        }
    }

    private static Result locked(Objective obj, Dataset train, Dataset eval, TrainConfig cfg, Path out, boolean resume,
                                 TrainListener listener, int killAfter, Path resultDir, Map<String, Tensor> params,
                                 DataParallel dp) {
        cfg = agreed(cfg, dp);
        for (Tensor p : params.values()) {
            p.set_requires_grad(true);
        }
        AdamW optimizer = optimizer(params.values(), cfg);
        boolean writes = dp.writes();

        Path ckpt = out.resolve("checkpoint");
        Path metricsFile = out.resolve("metrics.jsonl");
        int start = 0;
        TrainConfig.Batching batching = cfg.batching();
        int global = batching.size() * dp.size();         // rows of one micro-batch over all ranks
        Batcher batcher = new Batcher(train, global, cfg.seed(), batching.lengthGroup());
        List<double[]> curve = new ArrayList<>();        // {step, train loss, eval loss or NaN}
        if (writes) {
            String recovered = Checkpoint.recover(out);
            if (recovered != null) {
                listener.message(recovered);
            }
        }
        // Rank 0's folder decides; the others get its checkpoint over the wire (another host has no copy).
        boolean has = dp.sum(new double[] {writes && resume && Files.isDirectory(ckpt) ? 1 : 0}, "the start")[0] > 0;
        if (has) {
            Checkpoint.State s = writes ? Checkpoint.load(out, cfg, params, optimizer, dp.size())
                    : null;
            if (!dp.single()) {
                s = Checkpoint.share(out, cfg, params, optimizer, dp);
            }
            start = s.step();
            batcher = Batcher.resume(train, global, cfg.seed(), batching.lengthGroup(), s.dataPosition());
            if (writes) {
                curve.addAll(readCurve(metricsFile, start));
            }
            listener.message("resumed from " + ckpt + " at step " + start
                    + (s.worldSize() != dp.size() ? " (written by " + s.worldSize() + " rank(s), continued by "
                    + dp.size() + ")" : ""));
        } else {
            if (resume) {
                listener.message("no checkpoint in " + out + ": starting from step 0");
            }
            dp.broadcast(params.values(), "the initial weights");      // as DDP: every rank starts from rank 0's
        }
        // the kernels and threads that round this run's sums: the same seed elsewhere can follow another trajectory
        ObjectNode numerics = JSON.valueToTree(dev.calm4j.Torch.numerics());
        numerics.put("ranks", dp.size());
        if (writes) {
            rewriteMetrics(metricsFile, start);
            writeString(out.resolve("train_config.json"), cfg.toJson().toPrettyString() + "\n");
            writeString(out.resolve("numerics.json"), numerics.toPrettyString() + "\n");
        }
        listener.message(String.format("training %s on %d examples (%d target tokens), %d steps of %d x %d%s",
                obj.describe(), train.size(), train.targetTokens(), cfg.steps(), batching.size(),
                batching.accumulation(), dp.single() ? "" : " on each of " + dp.size() + " ranks"));

        long tokens = 0;
        long t0 = System.nanoTime();
        double window = 0;
        long windowTargets = 0;
        double lastLoss = Double.NaN;
        double evalLoss = Double.NaN;
        listener.started(start, cfg.steps());
        for (int step = start; step < cfg.steps(); step++) {
            if (step >= killAfter) {
                return new Result(step, Double.NaN, Double.NaN, 0, 0, curve, obj.describe());
            }
            List<Batch> micro = new ArrayList<>();
            int stepTargets = 0;
            for (int m = 0; m < batching.accumulation(); m++) {
                List<Example> rows = batcher.nextRows();
                stepTargets += Batch.targetCount(rows);
                micro.add(dp.single() ? Batch.of(rows, Batcher.PAD_ID) : Batcher.part(rows, dp.rank(), dp.size()));
                for (Example e : rows) {
                    tokens += e.length() - 1;                // every rank's positions: the run's throughput
                }
            }
            Step st = step(obj, optimizer, params.values(), micro, stepTargets, cfg, step, dp,
                    listener::stopRequested);
            double lossSum = st.lossSum();
            double gradNorm = st.gradNorm();
            double lr = st.lr();
            int targets = st.targets();

            window += lossSum;
            windowTargets += targets;
            int done = step + 1;
            boolean last = done == cfg.steps();
            if (done % cfg.intervals().log() == 0 || last) {
                lastLoss = window / windowTargets;
                double secs = (System.nanoTime() - t0) / 1e9;
                ObjectNode m = JSON.createObjectNode();
                m.put("step", done);
                m.put("loss", lastLoss);
                m.put("lr", lr);
                m.put("grad_norm", gradNorm);
                m.put("tokens_per_s", tokens / Math.max(secs, 1e-9));
                m.put("elapsed_s", secs);
                TrainConfig.Intervals every = cfg.intervals();
                boolean evalNow = eval != null && ((every.eval() > 0 && done % every.eval() == 0) || last);
                double ev = Double.NaN;
                if (evalNow) {
                    ev = evalLoss(obj, eval, batching.size(), dp);
                    evalLoss = ev;
                    m.put("eval_loss", ev);
                }
                if (writes) {
                    appendLine(metricsFile, m.toString());
                }
                curve.add(new double[] {done, lastLoss, ev});
                window = 0;
                windowTargets = 0;
                listener.logged(new TrainListener.Metrics(done, cfg.steps(), lastLoss, lr, gradNorm,
                        tokens / Math.max(secs, 1e-9), secs, ev));
            } else if (eval != null && cfg.intervals().eval() > 0 && done % cfg.intervals().eval() == 0) {
                evalLoss = evalLoss(obj, eval, batching.size(), dp);
                ObjectNode m = JSON.createObjectNode().put("step", done).put("eval_loss", evalLoss);
                if (writes) {
                    appendLine(metricsFile, m.toString());
                }
                double secs = (System.nanoTime() - t0) / 1e9;
                listener.logged(new TrainListener.Metrics(done, cfg.steps(), Double.NaN, lr, gradNorm,
                        tokens / Math.max(secs, 1e-9), secs, evalLoss));
            }
            listener.stepped(done);
            boolean saveNow = cfg.intervals().save() > 0 && done % cfg.intervals().save() == 0 && !last;
            if (saveNow && writes) {
                Checkpoint.save(out, done, batcher.position(), cfg, params, optimizer, dp.size());
            }
            if (!last && (st.stop() || (dp.single() && listener.stopRequested()))) {   // ranks: all at the same step
                if (!saveNow && writes) {
                    Checkpoint.save(out, done, batcher.position(), cfg, params, optimizer, dp.size());
                }
                dp.barrier("the checkpoint of step " + done);
                throw new Stopped(done, cfg.steps(), ckpt);
            }
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        if (!dp.single() && cfg.steps() > start) {
            int ran = cfg.steps() - start;
            listener.message(String.format("all-reduce      %,d bytes of gradients per step: %.1f ms of transfer and "
                    + "%.1f ms packing and waiting for the slowest rank per step of %.0f ms (rank %d)", dp.reducedBytes() / ran,
                    1e3 * dp.transferSeconds() / ran, 1e3 * dp.waitSeconds() / ran, 1e3 * secs / ran, dp.rank()));
        }
        for (Tensor p : params.values()) {
            p.set_requires_grad(false);
        }
        ObjectNode provenance = JSON.createObjectNode();
        provenance.set("train_config", cfg.toJson());
        if (Double.isFinite(lastLoss)) {
            provenance.put("final_train_loss", lastLoss);
        }
        if (Double.isFinite(evalLoss)) {
            provenance.put("final_eval_loss", evalLoss);
        }
        provenance.put("train_examples", train.size());
        provenance.put("train_source", train.source());
        provenance.set("numerics", numerics);
        if (writes) {
            obj.save(resultDir, provenance);
            Checkpoint.save(out, cfg.steps(), batcher.position(), cfg, params, optimizer, dp.size());
        }
        dp.barrier("the end of the run");         // rank 0's files are complete before any rank reports success
        Result result = new Result(cfg.steps(), lastLoss, evalLoss, secs, tokens / Math.max(secs, 1e-9), curve,
                obj.describe());
        listener.finished(result, out);
        return result;
    }

    /**
     * Rank 0's settings, on every rank: what a rank computes from its own flags can differ (defaults taken from a
     * checkpoint that only rank 0's host holds), and ranks that trained with different settings would drift apart.
     */
    private static TrainConfig agreed(TrainConfig cfg, DataParallel dp) {
        if (dp.single()) {
            return cfg;
        }
        byte[] b = dp.broadcast(dp.writes() ? cfg.toJson().toString().getBytes(StandardCharsets.UTF_8) : null,
                "the training settings");
        try {
            return JSON.readValue(b, TrainConfig.class);
        } catch (IOException e) {
            throw new IllegalStateException("rank 0's training settings do not read back: " + e.getMessage(), e);
        }
    }

    /** The run stopped on request after {@code step} of {@code steps} steps, resumable from {@code checkpoint}. */
    public static final class Stopped extends Calm4jException {
        private static final long serialVersionUID = 1L;
        private final int step;

        Stopped(int step, int steps, Path checkpoint) {
            super("stopped at step " + step + " of " + steps + "; checkpoint saved in " + checkpoint
                    + " (continue with --resume)");
            this.step = step;
        }

        public int step() {
            return step;
        }
    }

    /** AdamW over {@code params} with the run's betas, eps and weight decay (the schedule sets its rate each step). */
    public static AdamW optimizer(Collection<Tensor> params, TrainConfig cfg) {
        TrainConfig.Optimizer o = cfg.optimizer();
        AdamWOptions opts = new AdamWOptions(cfg.schedule().lr());
        opts.weight_decay().put(o.weightDecay());
        opts.eps().put(o.eps());
        Betas.set(opts, o.beta1(), o.beta2());
        return new AdamW(new TensorVector(params.toArray(new Tensor[0])), opts);
    }

    /**
     * What one optimizer step did: summed loss and target count over its micro-batches (over all ranks), gradient
     * norm, rate, and whether a rank asked to stop after it.
     */
    public record Step(double lossSum, int targets, double gradNorm, double lr, boolean stop) {}

    /**
     * One optimizer step (0-based {@code step}) over its micro-batches: gradients of the mean loss over all their
     * targets, the divergence check, global-norm clipping, the scheduled rate, AdamW. {@code params} must require grad.
     */
    public static Step step(Objective obj, AdamW optimizer, Collection<Tensor> params, List<Batch> micro, TrainConfig cfg,
                            int step) {
        int targets = 0;
        for (Batch b : micro) {
            targets += b.targetCount();
        }
        return step(obj, optimizer, params, micro, targets, cfg, step, DataParallel.SINGLE, () -> false);
    }

    /**
     * As above, as one rank of {@code dp}: {@code micro} are this rank's parts of the step's global micro-batches,
     * which hold {@code targets} target tokens over all ranks. Each rank's loss is divided by that global count, so
     * the sum of the ranks' gradients (taken across ranks right after backward, before the divergence check and
     * clipping) is exactly the gradient of the global batch's mean loss. {@code stopRequested}: whether this rank
     * wishes to stop after this step (asked after its backward pass); the step reports whether any rank did.
     */
    static Step step(Objective obj, AdamW optimizer, Collection<Tensor> params, List<Batch> micro, int targets,
                     TrainConfig cfg, int step, DataParallel dp, java.util.function.BooleanSupplier stopRequested) {
        optimizer.zero_grad();
        double lossSum = 0;
        for (Batch b : micro) {
            try (PointerScope scope = new PointerScope()) {
                Tensor l = Scoped.keep(() -> obj.lossSum(b));   // forward's tensors freed before backward
                lossSum += l.item_double();
                l.div(new Scalar((double) targets)).backward();       // mean over all targets of the step
            }
        }
        boolean stop = stopRequested.getAsBoolean();
        if (!dp.single()) {
            dp.reached(step);
            double[] summed = dp.sumGradients(new ArrayList<>(params), new double[] {lossSum, stop ? 1 : 0}, step);
            lossSum = summed[0];
            stop = summed[1] > 0;
        }
        if (!Double.isFinite(lossSum)) {
            throw new Calm4jException("training diverged at step " + step + " (loss " + lossSum
                    + "); lower --lr or raise --warmup");
        }
        double gradNorm = clip(params, cfg.optimizer().clipNorm());
        double lr = cfg.lrAt(step);
        optimizer.param_groups().get(0).options().set_lr(lr);
        optimizer.step();
        return new Step(lossSum, targets, gradNorm, lr, stop);
    }

    /** Mean loss per target token (nats) over a dataset, without gradient. */
    public static double evalLoss(Objective obj, Dataset data, int batchSize) {
        return evalLoss(obj, data, batchSize, DataParallel.SINGLE);
    }

    /** As above, each rank of {@code dp} taking every {@code dp.size()}-th batch; every rank gets the whole mean. */
    static double evalLoss(Objective obj, Dataset data, int batchSize, DataParallel dp) {
        double sum = 0;
        long targets = 0;
        try (NoGradGuard ng = new NoGradGuard()) {
            List<Batch> batches = Batcher.sequential(data, batchSize);
            for (int i = dp.rank(); i < batches.size(); i += dp.size()) {
                Batch b = batches.get(i);
                try (PointerScope scope = new PointerScope()) {
                    sum += obj.lossSum(b).item_double();
                }
                targets += b.targetCount();
            }
        }
        double[] total = dp.sum(new double[] {sum, targets}, "the evaluation");
        return total[0] / Math.max(1, total[1]);
    }

    /** Global L2 norm of all gradients; scales them down to {@code max} when above it (0 = never). */
    static double clip(Iterable<Tensor> params, double max) {
        double sq = 0;
        try (PointerScope scope = new PointerScope()) {
            List<Tensor> grads = new ArrayList<>();
            for (Tensor p : params) {
                Tensor g = p.grad();
                if (g.defined()) {
                    grads.add(g);
                    sq += g.pow(new Scalar(2)).sum().item_double();
                }
            }
            double norm = Math.sqrt(sq);
            if (max > 0 && norm > max) {
                Scalar f = new Scalar(max / (norm + 1e-6));
                for (Tensor g : grads) {
                    g.mul_(f);
                }
            }
            return norm;
        }
    }

    /**
     * The metrics lines up to {@code upTo}, parsed. A last line that is not a whole JSON object is the append a kill
     * interrupted, and is dropped; a bad line before it is refused as {@code file:line}.
     */
    private static List<Map.Entry<String, JsonNode>> metricsUpTo(Path metrics, int upTo) {
        List<Map.Entry<String, JsonNode>> kept = new ArrayList<>();
        if (!Files.exists(metrics)) {
            return kept;
        }
        dev.calm4j.io.StrictJson.requireRegularFile(metrics, "the run's metrics log");
        List<String> lines;
        try {
            lines = Files.readAllLines(metrics, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new Calm4jException(metrics + ": unreadable (" + e.getMessage() + ")");
        }
        for (int i = 0; i < lines.size(); i++) {
            String line = lines.get(i);
            if (line.isBlank()) {
                continue;
            }
            JsonNode m;
            try {
                m = dev.calm4j.io.StrictJson.parse(line.getBytes(StandardCharsets.UTF_8), metrics + ":" + (i + 1));
            } catch (Calm4jException e) {
                if (i == lines.size() - 1) {
                    break;                       // torn by a kill during the append
                }
                throw e;
            }
            if (!m.isObject() || !m.path("step").isIntegralNumber()) {
                throw new Calm4jException(metrics + ":" + (i + 1) + ": expected an object with an integer 'step'");
            }
            if (m.get("step").asLong() <= upTo) {
                kept.add(Map.entry(line, m));
            }
        }
        return kept;
    }

    private static List<double[]> readCurve(Path metrics, int upTo) {
        List<double[]> c = new ArrayList<>();
        for (Map.Entry<String, JsonNode> e : metricsUpTo(metrics, upTo)) {
            JsonNode m = e.getValue();
            if (m.has("loss")) {
                c.add(new double[] {m.get("step").asDouble(), m.get("loss").asDouble(),
                    m.has("eval_loss") ? m.get("eval_loss").asDouble() : Double.NaN});
            }
        }
        return c;
    }

    /** Keeps the metrics lines up to {@code step} (all of them on a fresh start: none). */
    private static void rewriteMetrics(Path metrics, int step) {
        List<String> keep = new ArrayList<>();
        if (step > 0) {
            metricsUpTo(metrics, step).forEach(e -> keep.add(e.getKey()));
        }
        try {
            AtomicFiles.writeString(metrics, keep.isEmpty() ? "" : String.join("\n", keep) + "\n");
        } catch (IOException e) {
            throw new Calm4jException(metrics + ": cannot write (" + e.getMessage() + ")");
        }
    }

    private static void appendLine(Path file, String line) {
        try {
            Files.writeString(file, line + "\n", StandardCharsets.UTF_8, java.nio.file.StandardOpenOption.CREATE,
                    java.nio.file.StandardOpenOption.APPEND);
        } catch (IOException e) {
            throw new Calm4jException(file + ": cannot write (" + e.getMessage() + ")");
        }
    }

    private static void writeString(Path file, String s) {
        try {
            AtomicFiles.writeString(file, s);
        } catch (IOException e) {
            throw new Calm4jException(file + ": cannot write (" + e.getMessage() + ")");
        }
    }
}
