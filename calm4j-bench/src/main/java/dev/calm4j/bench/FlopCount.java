package dev.calm4j.bench;

import dev.calm4j.compose.Connection;
import dev.calm4j.lm.llama.LlamaConfig;

import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Analytic matmul FLOPs of one benchmark step, counted exactly as the PyTorch-eager peer
 * ({@code calm4j-bench/scripts/calm_torch.py}, {@code step_flops}) counts them, so that GFLOP/s figures of the two compare.
 *
 * <p>Rules (ported, not re-derived): every matmul {@code (m x k) @ (k x n)} costs {@code 2 m n k} forward; its
 * backward is up to two more of the same size (dX when its input needs grad, dW when its weight is trainable), so
 * each matmul is counted with a multiplier 1, 2 or 3. Attention counts the full {@code T x T} square (QK^T and PV)
 * whatever kernel runs it (a causal-aware kernel does about half). Elementwise work (norms, rotary, softmax, SiLU,
 * loss, optimizer) and embedding lookups are not counted. In CALM training: augment x1; anchor blocks up to and
 * including the first bridged layer x1; anchor blocks above it x2 for the linear maps and x3 for QK^T/PV; lm_head
 * x2; bridge proj x2; bridge q x2 at the first bridge, x3 later; bridge k, v, o, QK^T, PV x3. In anchor-full-ft,
 * x3 everywhere. calm-forward: x1 everywhere.
 *
 * <p>{@link #decodeStep} is calm4j's own extension (the peer reports no FLOPs for decoding): the forward matmuls of
 * one cached decode step, by the same per-matmul rule with one query over {@code keys} cached positions.
 */
public final class FlopCount {
    private FlopCount() {}

    /** (linear, attention) forward FLOPs of one decoder block on {@code b x t} tokens (full square attention). */
    static long[] block(LlamaConfig c, long b, long t) {
        long n = b * t;
        long d = c.hiddenSize();
        long hd = c.headDim();
        long qo = 2 * n * d * (c.numAttentionHeads() * hd) * 2;
        long kv = 2 * n * d * (c.numKeyValueHeads() * hd) * 2;
        long mlp = 2 * n * d * c.intermediateSize() * 3;
        long att = 2 * (2 * b * c.numAttentionHeads() * t * t * hd);        // QK^T and PV
        return new long[] {qo + kv + mlp, att};
    }

    /**
     * Matmul FLOPs of one step of {@code mode} ({@code calm-train}, {@code calm-forward}, {@code anchor-full-ft}),
     * by part, with {@code total} last. {@code connections} are augment 0's (augment layer -> anchor layer).
     */
    public static Map<String, Long> step(LlamaConfig anchor, LlamaConfig augment, List<Connection> connections,
                                         long b, long t, String mode) {
        long n = b * t;
        Map<String, Long> parts = new LinkedHashMap<>();
        long[] blk = block(anchor, b, t);
        long lin = blk[0];
        long att = blk[1];
        long head = 2 * n * anchor.hiddenSize() * (long) anchor.vocabSize();

        if (mode.equals("anchor-full-ft")) {
            add(parts, "anchor_blocks", (lin + att) * anchor.numHiddenLayers(), 3);
            add(parts, "lm_head", head, 3);
            return total(parts);
        }
        if (!mode.equals("calm-train") && !mode.equals("calm-forward")) {
            throw new IllegalArgumentException("no FLOP rule for mode " + mode);
        }
        boolean train = mode.equals("calm-train");
        List<Connection> conns = connections.stream()
                .sorted(Comparator.comparingInt(Connection::anchorLayer).thenComparingInt(Connection::augmentLayer))
                .toList();
        int firstJ = conns.get(0).anchorLayer();
        int deepest = conns.stream().mapToInt(Connection::augmentLayer).max().orElseThrow();

        long[] aBlk = block(augment, b, t);
        add(parts, "augment_blocks", (aBlk[0] + aBlk[1]) * (deepest + 1), 1);
        for (int j = 0; j < anchor.numHiddenLayers(); j++) {
            if (!train) {
                add(parts, "anchor_blocks", lin + att, 1);
            } else if (j <= firstJ) {                                       // no grad flows here at all
                add(parts, "anchor_blocks_up_to_first_bridge", lin + att, 1);
            } else {                                                        // frozen weights, input needs grad
                add(parts, "anchor_blocks_above_first_bridge", lin, 2);
                add(parts, "anchor_blocks_above_first_bridge", att, 3);
            }
        }
        add(parts, "lm_head", head, train ? 2 : 1);

        long dB = anchor.hiddenSize();
        long dA = augment.hiddenSize();
        long xAtt = 2 * (2 * b * t * t * dB);                               // cross QK^T and PV
        for (int idx = 0; idx < conns.size(); idx++) {
            int qMult = idx > 0 ? 3 : 2;      // the anchor state reaching bridge idx needs grad iff a bridge fed it
            add(parts, "bridges", 2 * n * dA * dB, train ? 2 : 1);          // proj
            add(parts, "bridges", 2 * n * dB * dB, train ? qMult : 1);      // q
            add(parts, "bridges", 2 * n * dB * dB * 2, train ? 3 : 1);      // k, v
            add(parts, "bridges", 2 * n * dB * dB, train ? 3 : 1);          // o
            add(parts, "bridges", xAtt, train ? 3 : 1);
        }
        return total(parts);
    }

    /**
     * Forward matmul FLOPs of one cached decode step of {@code b} rows, each query attending over {@code keys}
     * positions: the composition when {@code augment != null}, else {@code anchor} alone with its head.
     */
    public static long decodeStep(LlamaConfig anchor, LlamaConfig augment, List<Connection> connections, long b,
                                  long keys) {
        long total = decodeModel(anchor, anchor.numHiddenLayers(), b, keys) + 2 * b * anchor.hiddenSize()
                * (long) anchor.vocabSize();
        if (augment != null) {
            int deepest = connections.stream().mapToInt(Connection::augmentLayer).max().orElseThrow();
            total += decodeModel(augment, deepest + 1, b, keys);
            long dB = anchor.hiddenSize();
            long dA = augment.hiddenSize();
            for (int k = 0; k < connections.size(); k++) {
                total += 2 * b * dA * dB + 4 * (2 * b * dB * dB) + 2 * (2 * b * keys * dB);
            }
        }
        return total;
    }

    private static long decodeModel(LlamaConfig c, int blocks, long b, long keys) {
        long d = c.hiddenSize();
        long hd = c.headDim();
        long lin = 2 * b * d * (c.numAttentionHeads() * hd) * 2 + 2 * b * d * (c.numKeyValueHeads() * hd) * 2
                + 2 * b * d * c.intermediateSize() * 3;
        long att = 2 * (2 * b * c.numAttentionHeads() * keys * hd);
        return (lin + att) * blocks;
    }

    private static void add(Map<String, Long> parts, String name, long flops, int mult) {
        parts.merge(name, flops * mult, Long::sum);
    }

    private static Map<String, Long> total(Map<String, Long> parts) {
        long sum = parts.values().stream().mapToLong(Long::longValue).sum();
        parts.put("total", sum);
        return parts;
    }
}
