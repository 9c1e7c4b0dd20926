package dev.calm4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.bench.CalmBench;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "bench", mixinStandardHelpOptions = true,
        description = {"Benchmark a CALM composition with random weights from two HF config.json files: the same modes, "
                + "steps, FLOP counting and JSON fields as the PyTorch-eager peer calm_torch.py (bench/compare.sh runs both).",
                "Modes: calm-train (augment fwd without grad + anchor fwd with bridges + backward + AdamW on the bridges), "
                        + "calm-forward (composed forward, no grad), anchor-full-ft (the anchor alone, every weight "
                        + "trained), calm-decode (greedy generation with every cache, next to the anchor alone and the "
                        + "augment alone)."},
        footer = {"", "Examples:",
                "  calm bench --anchor calm4j-bench/configs/anchor-b1.json --augment calm4j-bench/configs/augment-b1.json "
                        + "--connections '1->3,3->7' --batch 8 --seq 256 --steps 5 --json",
                "  calm bench --anchor calm4j-bench/configs/anchor-b1.json --mode anchor-full-ft --steps 5",
                "  calm bench --anchor calm4j-bench/configs/anchor-b1.json --augment calm4j-bench/configs/augment-b1.json "
                        + "--mode calm-decode --batch 1 --json",
                "  calm bench --anchor calm4j-bench/configs/anchor-b1.json --augment calm4j-bench/configs/augment-b1.json "
                        + "--dtype bf16 --steps 5 --json"})
final class BenchCommand implements Callable<Integer> {

    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--anchor", required = true, paramLabel = "CONFIG", description = "anchor config.json (HF Llama family)")
    Path anchor;

    @Option(names = "--augment", paramLabel = "CONFIG", description = "augmenting model config.json (every mode but anchor-full-ft)")
    Path augment;

    @Option(names = "--connections", defaultValue = "1->3,3->7", paramLabel = "PAIRS",
            description = "augment layer -> anchor layer pairs, 0-based (default ${DEFAULT-VALUE})")
    String connections;

    @Option(names = "--mode", defaultValue = "calm-train", paramLabel = "MODE",
            description = "calm-train | calm-forward | anchor-full-ft | calm-decode (default ${DEFAULT-VALUE})")
    String mode;

    @Option(names = "--batch", defaultValue = "8", paramLabel = "B", description = "rows per step (decode: prompts) (default ${DEFAULT-VALUE})")
    int batch;

    @Option(names = "--seq", defaultValue = "256", paramLabel = "T", description = "tokens per row (default ${DEFAULT-VALUE})")
    int seq;

    @Option(names = "--steps", defaultValue = "20", paramLabel = "N", description = "timed steps after the warm-up (default ${DEFAULT-VALUE})")
    int steps;

    @Option(names = "--warmup", defaultValue = "3", paramLabel = "W",
            description = "untimed steps (decode: warm-up generations of 8 tokens) (default ${DEFAULT-VALUE})")
    int warmup;

    @Option(names = "--threads", defaultValue = "0", paramLabel = "N",
            description = "libtorch intra-op threads (0 = the mode's measured best; OpenBLAS keeps its own pool) (default ${DEFAULT-VALUE})")
    int threads;

    @Option(names = "--blas-threads", defaultValue = "0", paramLabel = "N",
            description = "OpenBLAS threads for the fp32 matmuls (0 = the mode's measured best) (default ${DEFAULT-VALUE})")
    int blasThreads;

    @Option(names = "--dtype", defaultValue = "fp32", paramLabel = "fp32|bf16|bf16-mixed", description = "weights and "
            + "compute dtype; bf16-mixed: bf16 weights and matmuls, float32 activations (PyTorch's autocast) "
            + "(default ${DEFAULT-VALUE})")
    String dtype;

    @Option(names = "--seed", defaultValue = "0", paramLabel = "S", description = "seed of weights and token ids (default ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--prompt", defaultValue = "128", paramLabel = "N", description = "calm-decode prompt length (default ${DEFAULT-VALUE})")
    int prompt;

    @Option(names = "--new-tokens", defaultValue = "128", paramLabel = "N", description = "calm-decode tokens to generate (default ${DEFAULT-VALUE})")
    int newTokens;

    @Option(names = "--lr", defaultValue = "1e-3", paramLabel = "LR", description = "AdamW learning rate (default ${DEFAULT-VALUE})")
    double lr;

    @Option(names = "--gemm-sizes", defaultValue = "1024,2048", split = ",", paramLabel = "N,...",
            description = "sizes n of the n x n matmuls (in --dtype) timed after the run for gemm_peak_gflops (default ${DEFAULT-VALUE})")
    int[] gemmSizes;

    @Option(names = "--no-gemm-peak", description = "skip measuring the GEMM peak after the run")
    boolean noGemmPeak;

    @Option(names = "--plain", description = "run each block's q, k, v and gate, up projections as separate matmuls "
            + "(the default fuses them into one matmul each), to measure what the fusion gives")
    boolean plain;

    @Option(names = "--labelled", paramLabel = "SHARE", defaultValue = "1",
            description = "calm-train, calm-forward, anchor-full-ft: the share of each row's positions with a label, the "
                    + "last ones (the others are a prompt without loss, as in instruction data; default ${DEFAULT-VALUE})")
    double labelled;

    @Option(names = "--full-logits", description = "build full-vocabulary logits at every position, labelled or not "
            + "(the default applies the output head only where there is a label), to measure what that saves")
    boolean fullLogits;

    @Option(names = "--json", description = "print one JSON object (and no per-step lines)")
    boolean json;

    @Override
    public Integer call() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        requireFile(anchor, "--anchor");
        if (!mode.equals("anchor-full-ft")) {
            if (augment == null) {
                throw new Calm4jException("--augment CONFIG is required for --mode " + mode);
            }
            requireFile(augment, "--augment");
        }
        CalmBench.Options o = new CalmBench.Options(anchor, augment, connections, batch, seq, steps, warmup, threads, blasThreads,
                mode, dtype, seed, prompt, newTokens, lr, noGemmPeak ? new int[0] : gemmSizes, plain, labelled, fullLogits);
        ObjectNode res = CalmBench.run(o, json ? null : System.err);
        ObjectMapper m = new ObjectMapper();
        if (json) {
            out.println(m.writeValueAsString(res));
        } else {
            for (Iterator<Map.Entry<String, JsonNode>> it = res.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                out.printf("%28s: %s%n", e.getKey(), e.getValue().isTextual() ? e.getValue().asText() : e.getValue());
            }
        }
        out.flush();
        return 0;
    }

    private static void requireFile(Path p, String flag) {
        if (!Files.isRegularFile(p)) {
            throw new Calm4jException(flag + ": " + p + " is not a file (expected an HF config.json)");
        }
    }
}
