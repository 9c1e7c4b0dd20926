package dev.calm4j.bench;

import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Connection;
import dev.calm4j.lm.llama.LlamaConfig;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The analytic FLOP count against a count by hand, matmul by matmul, and against the numbers the PyTorch peer's
 * {@code step_flops} prints for the same shapes (calm4j-bench/scripts/calm_torch.py, Debian python3-torch 1.13).
 */
class FlopCountTest {
    // Anchor: d 4, 2 heads of 2 (1 kv head), SwiGLU 6, 3 layers, vocab 10. Augment: d 2, 1 head of 2, SwiGLU 4, 2 layers.
    static final LlamaConfig ANCHOR = LlamaConfig.llama(10, 4, 6, 3, 2, 1, 16);
    static final LlamaConfig AUGMENT = LlamaConfig.llama(10, 2, 4, 2, 1, 1, 16);
    static final List<Connection> CONNS = CompositionPlan.parse("0->0,1->1");
    static final long B = 2;
    static final long T = 3;

    @Test
    void calmTrainMatchesAHandCount() {
        long n = B * T;                                       // 6 token rows
        // Anchor block, forward: q, o (4x4), k, v (4x2: one kv head of 2), gate, up, down (4x6); QK^T and PV per head.
        long aLin = 2 * n * 4 * 4 * 2 + 2 * n * 4 * 2 * 2 + 2 * n * 4 * 6 * 3;         // 192+192 + 96+96 + 864
        long aAtt = 2 * (2 * B * 2 * T * T * 2);                                          // 288
        assertEquals(1440, aLin);
        assertEquals(288, aAtt);
        // Augment block: q, o, k, v (2x2), MLP 2x4 x3; one head of 2.
        long uBlock = 2 * n * 2 * 2 * 4 + 2 * n * 2 * 4 * 3 + 2 * (2 * B * 1 * T * T * 2);
        assertEquals(624, uBlock);
        long head = 2 * n * 4 * 10;
        // Bridge: proj 2->4, q/k/v/o 4x4, cross attention over the full T x T square at width 4.
        long proj = 2 * n * 2 * 4;
        long sq = 2 * n * 4 * 4;
        long xAtt = 2 * (2 * B * T * T * 4);
        long bridge0 = proj * 2 + sq * 2 + 2 * sq * 3 + sq * 3 + xAtt * 3;   // first bridge: its q input has no grad
        long bridge1 = proj * 2 + sq * 3 + 2 * sq * 3 + sq * 3 + xAtt * 3;
        long want = 2 * uBlock                                   // augment up to its deepest connected layer (1), x1
                + (aLin + aAtt)                                  // anchor block 0 (up to the first bridge), x1
                + 2 * (aLin * 2 + aAtt * 3)                      // anchor blocks 1, 2: dX of frozen linears, attention x3
                + head * 2                                       // lm_head: frozen weight, input needs grad
                + bridge0 + bridge1;
        Map<String, Long> got = FlopCount.step(ANCHOR, AUGMENT, CONNS, B, T, "calm-train");
        assertEquals(want, got.get("total"));
        assertEquals(17952, got.get("total"));                   // calm_torch.step_flops(..., "calm-train")
        assertEquals(1248, got.get("augment_blocks"));
        assertEquals(1728, got.get("anchor_blocks_up_to_first_bridge"));
        assertEquals(7488, got.get("anchor_blocks_above_first_bridge"));
        assertEquals(960, got.get("lm_head"));
        assertEquals(6528, got.get("bridges"));
    }

    @Test
    void otherModesMatchThePeer() {
        assertEquals(9216, FlopCount.step(ANCHOR, AUGMENT, CONNS, B, T, "calm-forward").get("total"));
        assertEquals(16992, FlopCount.step(ANCHOR, null, List.of(), B, T, "anchor-full-ft").get("total"));
    }

    @Test
    void referenceConfigsMatchThePeer() throws Exception {
        Path shared = Path.of("configs");                      // calm4j-bench/configs: the peer's configs
        LlamaConfig a = LlamaConfig.read(shared.resolve("anchor-b1.json"));
        LlamaConfig u = LlamaConfig.read(shared.resolve("augment-b1.json"));
        List<Connection> c = CompositionPlan.parse("1->3,3->7");
        // As printed by calm_torch.py (flops_per_step) for batch 8, seq 256.
        assertEquals(240786604032L, FlopCount.step(a, u, c, 8, 256, "calm-train").get("total"));
        assertEquals(149518548992L, FlopCount.step(a, u, c, 8, 256, "calm-forward").get("total"));
        assertEquals(367219703808L, FlopCount.step(a, null, List.of(), 8, 256, "anchor-full-ft").get("total"));
    }
}
