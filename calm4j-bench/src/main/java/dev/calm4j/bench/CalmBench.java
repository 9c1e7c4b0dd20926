package dev.calm4j.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Connection;
import dev.calm4j.compose.Mode;
import dev.calm4j.generate.CalmSession;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.LmSession;
import dev.calm4j.generate.Sampler;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.lm.llama.LlamaWeights;
import dev.calm4j.nn.Scoped;
import dev.calm4j.train.Losses;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.AdamW;
import org.bytedeco.pytorch.AdamWOptions;
import org.bytedeco.pytorch.GeneratorOptional;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.bytedeco.pytorch.global.torch.randint;

/**
 * The composition benchmark behind {@code calm bench}: the same composed model, modes, step definitions, FLOP rules
 * and JSON field meanings as the PyTorch-eager peer {@code calm4j-bench/scripts/calm_torch.py}, so the two can be compared
 * number for number. Random weights from HF config.json files, random token ids, fixed seeds; warm-up steps are not
 * timed.
 *
 * <ul>
 *   <li>{@code calm-train}: augment forward (no grad) + anchor forward with bridges + backward + AdamW on the bridges
 *   <li>{@code calm-forward}: the composed forward and loss under no-grad
 *   <li>{@code anchor-full-ft}: the anchor alone, every weight trained with AdamW (the memory/speed contrast)
 *   <li>{@code calm-decode}: greedy generation with every cache ({@code --prompt} tokens, then {@code --new-tokens}),
 *       next to the anchor alone and the augment alone decoding the same way, so the composition's overhead is a ratio
 * </ul>
 */
public final class CalmBench {
    public static final List<String> MODES = List.of("calm-train", "calm-forward", "anchor-full-ft", "calm-decode");
    private static final ObjectMapper JSON = new ObjectMapper();

    private CalmBench() {}

    /**
     * @param threads libtorch intra-op threads for the run (0 = {@link #defaultThreads} of the mode)
     * @param blasThreads OpenBLAS threads for the run (0 = {@link #defaultBlasThreads} of the mode)
     * @param gemmSizes matrix sizes n of the GEMM peak (in the run's dtype) measured in this process after the run
     *     (empty = skip)
     * @param plain run every block's projections one by one instead of the fused q|k|v and gate|up matmuls, to
     *     measure what the fusion gives
     * @param labelled the share of each row's positions that carry a label (the last ones; the others are a prompt
     *     without loss), in (0, 1]
     * @param fullLogits build the full-vocabulary logits at every position and let the loss ignore the unlabelled
     *     ones, instead of applying the head only where there is a label, to measure what skipping them gives
     */
    public record Options(Path anchor, Path augment, String connections, int batch, int seq, int steps, int warmup,
                          int threads, int blasThreads, String mode, String dtype, long seed, int prompt, int newTokens,
                          double lr, int[] gemmSizes, boolean plain, double labelled, boolean fullLogits) {
        public Options {
            if (!(labelled > 0 && labelled <= 1)) {
                throw new Calm4jException("--labelled: the share of positions with a label must be in (0, 1], got "
                        + labelled);
            }
            if (!MODES.contains(mode)) {
                throw new Calm4jException("--mode: '" + mode + "' is not one of " + String.join(", ", MODES));
            }
            if (!List.of("fp32", "bf16", "bf16-mixed").contains(dtype)) {
                throw new Calm4jException("--dtype: '" + dtype + "' is not one of fp32, bf16, bf16-mixed");
            }
            if (batch < 1 || seq < 1 || steps < 1 || warmup < 0 || threads < 0 || blasThreads < 0 || prompt < 1
                    || newTokens < 2) {
                throw new Calm4jException("--batch, --seq, --steps, --prompt must be >= 1, --new-tokens >= 2, "
                        + "--warmup, --threads and --blas-threads >= 0");
            }
        }

        /** What the activations compute in: bf16 only under {@code bf16} ({@code bf16-mixed} keeps them float32). */
        ScalarType scalarType() {
            return dtype.equals("bf16") ? ScalarType.BFloat16 : ScalarType.Float;
        }

        /** What the frozen weights are held in, and so what the matmuls run in. */
        ScalarType weightType() {
            return dtype.startsWith("bf16") ? ScalarType.BFloat16 : ScalarType.Float;
        }
    }

    /**
     * libtorch intra-op threads used when {@code --threads} is not given, per mode, as measured on the 2-core
     * reference machine (docs/performance.md): OpenBLAS keeps its own pool of one thread per core for the matmuls
     * either way. Training and forward: 2, so attention and elementwise work also use both cores (with OpenBLAS's
     * worker sleeping between matmuls, {@link dev.calm4j.Torch#NATIVE_ENV}); 1 thread was 10-30 % slower. Decode: 1
     * (calm4j's library default), since one-row steps are too small to split and a second OpenMP thread only adds
     * wake-ups (about 20 % fewer tokens/s).
     */
    public static int defaultThreads(String mode) {
        return mode.equals("calm-decode") || Runtime.getRuntime().availableProcessors() < 2 ? 1 : 2;
    }

    /** OpenBLAS threads used when {@code --blas-threads} is not given, per mode (see {@link #defaultThreads}). */
    public static int defaultBlasThreads(String mode) {
        return Runtime.getRuntime().availableProcessors();
    }

    public static ObjectNode run(Options o, PrintStream log) {
        int threads = o.threads() > 0 ? o.threads() : defaultThreads(o.mode());
        org.bytedeco.pytorch.global.torch.set_num_threads(threads);
        int blasBefore = dev.calm4j.Torch.blasThreads();
        dev.calm4j.Torch.setBlasThreads(o.blasThreads() > 0 ? o.blasThreads() : defaultBlasThreads(o.mode()));
        try {
            return runWithThreads(o, log);
        } finally {
            dev.calm4j.Torch.setBlasThreads(blasBefore);
        }
    }

    private static ObjectNode runWithThreads(Options o, PrintStream log) {
        LlamaConfig anchorCfg = LlamaConfig.read(o.anchor());
        LlamaConfig augmentCfg = o.mode().equals("anchor-full-ft") ? null : LlamaConfig.read(o.augment());
        List<Connection> conns = CompositionPlan.parse(o.connections());

        ObjectNode res = JSON.createObjectNode();
        res.put("mode", o.mode());
        res.put("anchor", o.anchor().getFileName().toString());
        if (augmentCfg != null) {
            res.put("augment", o.augment().getFileName().toString());
            res.put("connections", o.connections());
        }
        res.put("batch", o.batch());
        if (!o.mode().equals("calm-decode")) {
            res.put("seq", o.seq());
            res.put("steps", o.steps());
        }
        res.put("warmup", o.warmup());
        res.put("dtype", o.dtype());
        res.put("threads", org.bytedeco.pytorch.global.torch.get_num_threads());
        res.put("blas_threads", dev.calm4j.Torch.blasThreads());
        for (String v : new String[] {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_CORETYPE"}) {
            String val = dev.calm4j.Torch.nativeEnv(v);
            res.put(v.toLowerCase(java.util.Locale.ROOT), val == null ? "unset" : val);
        }
        res.put("blas", dev.calm4j.Torch.blasConfig());
        res.put("libtorch", "2.10.0 (org.bytedeco:pytorch 2.10.0-1.5.13)");
        res.put("java", System.getProperty("java.version"));
        res.put("cpu", dev.calm4j.Torch.cpuModel());
        dev.calm4j.CpuFeatures cpu = dev.calm4j.CpuFeatures.current();
        res.put("cpu_features", cpu.describe());
        res.put("torch_cpu_capability", org.bytedeco.pytorch.global.torch.get_cpu_capability().getString());
        res.put("projections", o.plain() ? "plain" : "fused");
        if (!o.mode().equals("calm-decode")) {
            res.put("labelled", o.labelled());
            res.put("loss_head", o.fullLogits() ? "every position" : "labelled positions");
        }
        if (o.weightType() == ScalarType.BFloat16 && !cpu.nativeBf16() && log != null) {
            log.println("  note: this CPU lists neither avx512_bf16 nor amx_bf16: libtorch emulates bf16 matmuls, far "
                    + "slower than fp32");
        }

        long t0 = System.nanoTime();
        if (o.mode().equals("calm-decode")) {
            decode(o, anchorCfg, augmentCfg, conns, res, log);
        } else {
            trainOrForward(o, anchorCfg, augmentCfg, conns, res, log);
        }
        res.put("peak_rss_mb", ProcStats.peakRssMb());
        res.put("peak_rss_mib", ProcStats.peakRssMb());          // the peer's name for the same figure
        if (o.gemmSizes().length > 0) {
            double peak = GemmPeak.measure(o.gemmSizes(), 2, 5, o.weightType());   // the matmuls' dtype
            res.put("gemm_peak_gflops", peak);
            res.put("gemm_peak_dtype", o.dtype());
            res.put("peak_fraction", res.get("gflops_per_s").asDouble() / peak);
        }
        res.put("wall_s", (System.nanoTime() - t0) / 1e9);
        return res;
    }

    // ------------------------------------------------------------------------------------------------------
    // calm-train, calm-forward, anchor-full-ft
    // ------------------------------------------------------------------------------------------------------

    private static void trainOrForward(Options o, LlamaConfig anchorCfg, LlamaConfig augmentCfg,
                                       List<Connection> conns, ObjectNode res, PrintStream log) {
        boolean fullFt = o.mode().equals("anchor-full-ft");
        boolean train = !o.mode().equals("calm-forward");
        LlamaModel anchor = model(anchorCfg, o.seed(), o, o.plain());
        LlamaModel augment = fullFt ? null : model(augmentCfg, o.seed() + 1, o, o.plain());
        CalmModel calm = fullFt ? null : CalmModel.create(anchor, List.of(augment), new CompositionPlan(conns),
                Mode.SAME_SEQUENCE, anchorCfg.numAttentionHeads(), o.seed() + 2);
        Map<String, Tensor> trainable = fullFt ? anchor.namedWeights() : calm.bridgeTensors();
        long trainableCount = trainable.values().stream().mapToLong(Tensor::numel).sum();
        long all = anchorCfg.parameterCount() + (fullFt ? 0 : augmentCfg.parameterCount() + calm.bridgeParameterCount());
        AdamW opt = null;
        if (train) {
            trainable.values().forEach(p -> p.set_requires_grad(true));
            opt = new AdamW(new TensorVector(trainable.values().toArray(new Tensor[0])), new AdamWOptions(o.lr()));
        }
        double rssInit = ProcStats.peakRssMb();
        int prompt = (int) Math.round(o.seq() * (1 - o.labelled()));    // positions per row without a label
        if (prompt >= o.seq()) {
            throw new Calm4jException("--labelled " + o.labelled() + " leaves no labelled position in a row of " + o.seq());
        }
        long labelledCount = (long) o.batch() * (o.seq() - prompt);
        org.bytedeco.pytorch.Generator gen = org.bytedeco.pytorch.global.torch.createCPUGenerator(o.seed() + 1);
        int vocab = anchorCfg.vocabSize();
        double[] times = new double[o.steps()];
        // Where a timed step's time goes: forward (with the loss), backward, optimizer step; CPU ops are synchronous,
        // so wall-clock stamps between the phases attribute the time exactly.
        double[][] phases = new double[3][o.steps()];
        double lossFirst = Double.NaN;
        double lossLast = Double.NaN;
        ArrayNode rssTrace = JSON.createArrayNode();
        int traceEvery = Math.max(1, o.steps() / 10);
        double rssFirst = Double.NaN;
        ProcStats.ContentionMeter meter = null;
        for (int s = 0; s < o.warmup() + o.steps(); s++) {
            if (s == o.warmup()) {
                meter = new ProcStats.ContentionMeter();             // watch the timed steps only
            }
            double loss;
            long start;
            long forwardEnd;
            try (PointerScope scope = new PointerScope()) {
                Tensor batch = randint(vocab, new long[] {o.batch(), o.seq() + 1}, new GeneratorOptional(gen),
                        new TensorOptions(ScalarType.Long));
                Tensor ids = batch.narrow(1, 0, o.seq());
                Tensor targets = batch.narrow(1, 1, o.seq()).clone();
                if (prompt > 0) {
                    targets.narrow(1, 0, prompt).fill_(new org.bytedeco.pytorch.Scalar(-100));   // no loss there
                }
                long[] labels = dev.calm4j.nn.Tensors.toLongs(targets.reshape(-1));
                start = System.nanoTime();
                if (train) {
                    // The forward's Java handles (logits included) freed before backward, as TrainLoop does.
                    Tensor l = Scoped.keep(() -> meanLoss(o, fullFt ? anchor : calm.anchor(), fullFt ? null : calm, ids,
                            labels, labelledCount));
                    forwardEnd = System.nanoTime();
                    opt.zero_grad();
                    l.backward();
                    loss = l.item_double();
                } else {
                    try (NoGradGuard ng = new NoGradGuard()) {
                        loss = meanLoss(o, calm.anchor(), calm, ids, labels, labelledCount).item_double();
                    }
                    forwardEnd = System.nanoTime();
                }
            }
            long backwardEnd = train ? System.nanoTime() : forwardEnd;   // with the step's tensors released
            if (train) {
                opt.step();
            }
            long stepEnd = System.nanoTime();
            long end = train ? stepEnd : backwardEnd;                // forward-only: no optimizer phase
            double secs = (stepEnd - start) / 1e9;
            if (s == 0) {
                lossFirst = loss;
            }
            lossLast = loss;
            if (s >= o.warmup()) {
                int k = s - o.warmup();
                times[k] = secs;
                phases[0][k] = (forwardEnd - start) / 1e9;
                phases[1][k] = (backwardEnd - forwardEnd) / 1e9;
                phases[2][k] = (end - backwardEnd) / 1e9;
                if (k == 0) {
                    rssFirst = ProcStats.rssMb();
                }
                if (k % traceEvery == 0 || k == o.steps() - 1) {
                    rssTrace.add(round1(ProcStats.rssMb()));
                }
            }
            if (log != null) {
                log.printf("  step %4d%s: %8.1f ms  loss %.4f  rss %.0f MB%n", s, s < o.warmup() ? " (warm-up)" : "",
                        secs * 1e3, loss, ProcStats.rssMb());
            }
        }
        double[] contention = meter.stop();
        double rssLast = ProcStats.rssMb();
        long tokens = (long) o.batch() * o.seq();
        double total = Arrays.stream(times).sum();
        double[] sorted = times.clone();
        Arrays.sort(sorted);
        Map<String, Long> flops = FlopCount.step(anchorCfg, augmentCfg, conns, o.batch(), o.seq(), o.mode());
        long flopsPerStep = flops.get("total");
        double tokensPerS = tokens * o.steps() / total;

        res.put("tokens_per_step", tokens);
        res.put("timed_steps", o.steps());
        res.put("tokens_per_s", tokensPerS);
        res.put("step_ms", 1e3 * GemmPeak.median(sorted));
        res.put("step_ms_min", 1e3 * sorted[0]);
        res.put("step_ms_max", 1e3 * sorted[sorted.length - 1]);
        res.put("step_s_median", GemmPeak.median(sorted));            // the peer's names
        ObjectNode phaseMs = res.putObject("phase_ms");                // medians; the peer's bench/profile_torch.py prints the same
        String[] phaseNames = {"forward", "backward", "optimizer"};
        for (int i = 0; i < 3; i++) {
            double[] p = phases[i].clone();
            Arrays.sort(p);
            phaseMs.put(phaseNames[i], 1e3 * GemmPeak.median(p));
        }
        res.put("flops_per_step", flopsPerStep);
        ObjectNode breakdown = res.putObject("flops_breakdown");
        flops.forEach((k, v) -> {
            if (!k.equals("total")) {
                breakdown.put(k, v);
            }
        });
        // Same averaging as tokens_per_s: FLOPs of the timed steps / their total time.
        double gflops = flopsPerStep * (double) o.steps() / total / 1e9;
        res.put("gflops_per_s", gflops);
        res.put("achieved_gflops", gflops);
        res.put("loss_first", lossFirst);
        res.put("loss_last", lossLast);
        res.put("trainable_params", train ? trainableCount : 0);
        res.put("frozen_params", all - (train ? trainableCount : 0));
        res.put("other_cpu_frac", contention[0]);
        res.put("steal_frac", contention[1]);
        res.put("rss_after_init_mb", rssInit);
        res.put("rss_first_mb", rssFirst);
        res.put("rss_last_mb", rssLast);
        res.set("rss_trace_mb", rssTrace);

        if (train) {
            trainable.values().forEach(p -> p.set_requires_grad(false));
        }
        if (calm != null) {
            calm.close();
        }
        anchor.close();
        if (augment != null) {
            augment.close();
        }
    }

    /**
     * Mean cross-entropy over the labelled positions of {@code ids}: through the composition {@code calm}, or the
     * anchor alone when it is null; with the head only where there are labels, or (--full-logits) at every position.
     */
    private static Tensor meanLoss(Options o, CausalLm anchor, CalmModel calm, Tensor ids, long[] labels, long labelled) {
        Tensor hidden = calm != null ? calm.hidden(ids, null, null, null) : anchor.hidden(ids, null, null);
        Tensor sum = o.fullLogits() ? Losses.sum(anchor.logits(hidden), labels) : Losses.sum(hidden, anchor::logits, labels);
        return sum.div(new org.bytedeco.pytorch.Scalar(labelled));
    }

    // ------------------------------------------------------------------------------------------------------
    // calm-decode
    // ------------------------------------------------------------------------------------------------------

    private static void decode(Options o, LlamaConfig anchorCfg, LlamaConfig augmentCfg, List<Connection> conns,
                               ObjectNode res, PrintStream log) {
        LlamaModel anchor = model(anchorCfg, o.seed(), o, o.plain());
        LlamaModel augment = model(augmentCfg, o.seed() + 1, o, o.plain());
        CalmModel calm = CalmModel.create(anchor, List.of(augment), new CompositionPlan(conns), Mode.SAME_SEQUENCE,
                anchorCfg.numAttentionHeads(), o.seed() + 2);
        // Trained-looking bridges: W_O = 0 would not change the work, but keep the composition non-trivial.
        try (NoGradGuard ng = new NoGradGuard(); PointerScope scope = new PointerScope()) {
            org.bytedeco.pytorch.Generator g = org.bytedeco.pytorch.global.torch.createCPUGenerator(o.seed() + 3);
            for (Map.Entry<String, Tensor> e : calm.bridgeTensors().entrySet()) {
                if (e.getKey().endsWith(".o.weight")) {
                    Tensor w = e.getValue();
                    w.copy_(org.bytedeco.pytorch.global.torch.randn(w.sizes().vec().get(), new GeneratorOptional(g),
                            new TensorOptions(ScalarType.Float)).mul(new org.bytedeco.pytorch.Scalar(0.02)));
                }
            }
        }
        int vocab = anchorCfg.vocabSize();
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(o.seed() + 2);
        int maxPos = Math.min(anchorCfg.maxPositionEmbeddings(), augmentCfg.maxPositionEmbeddings());
        if (o.prompt() + o.newTokens() > maxPos) {
            throw new Calm4jException("--prompt + --new-tokens (" + (o.prompt() + o.newTokens())
                    + ") exceed max_position_embeddings (" + maxPos + ")");
        }
        Generator.SessionFactory composed = (b, len) -> CalmSession.cached(calm, b, len, null);
        Generator.SessionFactory anchorAlone = (b, len) -> LmSession.cached(anchor, b, len);
        Generator.SessionFactory augmentAlone = (b, len) -> LmSession.cached(augment, b, len);
        double rssInit = ProcStats.peakRssMb();
        for (int w = 0; w < o.warmup(); w++) {                      // short warm-up generations
            for (Generator.SessionFactory f : List.of(composed, anchorAlone, augmentAlone)) {
                generate(f, prompts(rnd, o.batch(), o.prompt(), vocab), vocab, maxPos, 8);
            }
        }
        List<long[]> prompt = prompts(rnd, o.batch(), o.prompt(), vocab);
        ProcStats.ContentionMeter meter = new ProcStats.ContentionMeter();
        Generator.Result c = generate(composed, prompt, vocab, maxPos, o.newTokens());
        Generator.Result a = generate(anchorAlone, prompt, vocab, maxPos, o.newTokens());
        Generator.Result u = generate(augmentAlone, prompt, vocab, maxPos, o.newTokens());
        double[] contention = meter.stop();

        int steps = o.newTokens() - 1;
        double composedRate = o.batch() * steps / c.decodeSeconds();
        double anchorRate = o.batch() * steps / a.decodeSeconds();
        double augmentRate = o.batch() * steps / u.decodeSeconds();
        double backToBack = 1.0 / (1.0 / anchorRate + 1.0 / augmentRate);
        long keys = o.prompt() + o.newTokens() / 2;                  // mean cache length over the decode steps
        long flops = FlopCount.decodeStep(anchorCfg, augmentCfg, conns, o.batch(), keys);

        res.put("prompt_tokens", o.prompt());
        res.put("new_tokens", o.newTokens());
        res.put("tokens_per_s", composedRate);
        res.put("step_ms", 1e3 * c.decodeSeconds() / steps);
        res.put("flops_per_step", flops);
        res.put("gflops_per_s", flops * (double) steps / c.decodeSeconds() / 1e9);
        res.put("prefill_s", c.prefillSeconds());
        res.put("prefill_tokens_per_s", o.batch() * o.prompt() / c.prefillSeconds());
        res.put("decode_s", c.decodeSeconds());
        res.put("decode_tokens_per_s", composedRate);
        res.put("decode_ms_per_step", 1e3 * c.decodeSeconds() / steps);
        res.put("e2e_new_tokens_per_s", o.batch() * o.newTokens() / (c.prefillSeconds() + c.decodeSeconds()));
        res.put("anchor_decode_tokens_per_s", anchorRate);
        res.put("augment_decode_tokens_per_s", augmentRate);
        res.put("back_to_back_decode_tokens_per_s", backToBack);
        res.put("composed_vs_back_to_back", composedRate / backToBack);
        res.put("composed_vs_anchor", composedRate / anchorRate);
        ArrayNode first = res.putArray("first_tokens");
        long[] row0 = c.generated().get(0);
        for (int i = 0; i < Math.min(8, row0.length); i++) {
            first.add(row0[i]);
        }
        res.put("other_cpu_frac", contention[0]);
        res.put("steal_frac", contention[1]);
        res.put("rss_after_init_mb", rssInit);
        if (log != null) {
            log.printf("  decode tokens/s: composed %.1f, anchor %.1f, augment %.1f, back to back %.1f%n",
                    composedRate, anchorRate, augmentRate, backToBack);
        }
        calm.close();
        anchor.close();
        augment.close();
    }

    private static Generator.Result generate(Generator.SessionFactory f, List<long[]> prompts, int vocab, int maxPos,
                                             int newTokens) {
        return Generator.generate(f, prompts, vocab, maxPos,
                new Generator.Options(newTokens, Sampler.greedy(), Set.of(), false), null);
    }

    private static List<long[]> prompts(java.util.SplittableRandom rnd, int batch, int length, int vocab) {
        List<long[]> p = new ArrayList<>();
        for (int r = 0; r < batch; r++) {
            p.add(rnd.longs(length, 0, vocab).toArray());
        }
        return p;
    }

    // ------------------------------------------------------------------------------------------------------

    /**
     * A model with random weights (normal, std 0.02 = HF's initializer_range) held and computed in {@code dtype}; with
     * {@code plain}, its projections run one by one (its weights are still the fused tensors' views, and closing the
     * model frees them).
     */
    static LlamaModel model(LlamaConfig c, long seed, Options o, boolean plain) {
        LlamaWeights w = LlamaWeights.random(c, seed, 0.02, o.weightType());
        return new LlamaModel(c, plain ? w.unfused() : w, o.scalarType());
    }

    private static double round1(double x) {
        return Math.round(x * 10) / 10.0;
    }
}
