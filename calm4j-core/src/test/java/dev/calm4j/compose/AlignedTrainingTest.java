package dev.calm4j.compose;

import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.data.Batch;
import dev.calm4j.data.DataRules;
import dev.calm4j.data.Dataset;
import dev.calm4j.eval.EvalModel;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.tokenize.Tokenizer;
import dev.calm4j.train.BridgeObjective;
import dev.calm4j.train.TrainConfig;
import dev.calm4j.train.TrainListener;
import dev.calm4j.train.TrainLoop;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Training bridges between an anchor and an augment that read the same text through different tokenizers: the
 * data is read with the anchor's tokenizer and keeps its text, the augment tokenizes each example's text with its
 * own, and every batch aligns the two by token ends ({@link AugmentReader}, {@link TextAlignment}).
 */
class AlignedTrainingTest {
    static final Path FIXTURE = Path.of("src/test/resources/golden-calm/aligned");

    @TempDir
    Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    private Path data(int rows) throws Exception {
        StringBuilder sb = new StringBuilder();
        String[] keys = {"xtyqh", "abc", "def", "sum", "key", "the", "é😀", "wo"};
        for (int i = 0; i < rows; i++) {
            sb.append("{\"prompt\": \"").append(keys[i % keys.length]).append(" plus ").append(keys[(3 * i + 1) % keys.length])
                    .append(" is\", \"completion\": \" ").append(10 + (7 * i) % 80).append("\"}\n");
        }
        return Files.writeString(tmp.resolve("d.jsonl"), sb);
    }

    @Test
    void bridgesTrainAcrossTokenizersAndTheCheckpointRemembersIt() throws Exception {
        Path anchorDir = FIXTURE.resolve("anchor");
        Path augDir = FIXTURE.resolve("augment");
        try (CausalLm anchor = LmFamilies.load(anchorDir); CausalLm aug = LmFamilies.load(augDir);
             Tokenizer at = Tokenizer.load(anchorDir); Tokenizer gt = Tokenizer.load(augDir)) {
            Dataset d = Dataset.read(data(16), at, DataRules.forModel(anchor.config(), true, true, false));
            assertTrue(d.examples().get(0).text().value().startsWith("xtyqh plus abc is"), "the example keeps its text");
            List<AugmentReader> readers = List.of(new AugmentReader(gt, aug.config(), augDir.toString()));
            CompositionPlan plan = new CompositionPlan(CompositionPlan.parse("1->0,2->2"));
            try (CalmModel calm = CalmModel.create(anchor, List.of(aug), plan, Mode.SAME_SEQUENCE, 2, 0.1, 5,
                    new boolean[] {true})) {
                BridgeObjective obj = new BridgeObjective(calm, anchorDir, List.of(augDir), null, readers);
                EvalModel composed = EvalModel.of(calm, readers, null);
                Batch b = Batch.of(d.examples().subList(0, 4), 0);
                try (NoGradGuard ng = new NoGradGuard()) {
                    // W_O = 0: the untrained composition is the anchor alone, whatever the augment reads
                    double alone = EvalModel.of(anchor).lossSum(b).item_double();
                    assertEquals(alone, composed.lossSum(b).item_double(), 1e-4 * Math.abs(alone));
                }
                java.util.Map<String, float[]> a0 = new java.util.HashMap<>();
                anchor.namedWeights().forEach((k, v) -> a0.put("anchor " + k, dev.calm4j.nn.Tensors.toFloats(v)));
                aug.namedWeights().forEach((k, v) -> a0.put("augment " + k, dev.calm4j.nn.Tensors.toFloats(v)));
                double before = TrainLoop.evalLoss(obj, d, 8);
                TrainLoop.Result r = TrainLoop.run(obj, d, null, TrainConfig.defaults(30, 8, 1e-2, 1), tmp.resolve("run"),
                        false, TrainListener.NONE);
                double after = TrainLoop.evalLoss(obj, d, 8);
                // only the bridges trained: both base models are bitwise what they were
                anchor.namedWeights().forEach((k, v) -> org.junit.jupiter.api.Assertions.assertArrayEquals(
                        a0.get("anchor " + k), dev.calm4j.nn.Tensors.toFloats(v), "anchor " + k));
                aug.namedWeights().forEach((k, v) -> org.junit.jupiter.api.Assertions.assertArrayEquals(
                        a0.get("augment " + k), dev.calm4j.nn.Tensors.toFloats(v), "augment " + k));
                assertTrue(after < before - 0.1, "the bridges learn across tokenizers: " + before + " -> " + after
                        + " (final train loss " + r.finalLoss() + ")");
                try (NoGradGuard ng = new NoGradGuard()) {
                    // rows are independent: a batch's loss is the sum of its rows' losses alone (padding changes nothing)
                    double whole = composed.lossSum(b).item_double();
                    double rows = 0;
                    for (int i = 0; i < 4; i++) {
                        rows += composed.lossSum(Batch.of(d.examples().subList(i, i + 1), 0)).item_double();
                    }
                    assertEquals(rows, whole, 1e-4 * Math.abs(whole));
                }
                // saved with the augment marked: loading it gives the same composition
                try (BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(tmp.resolve("run"), null, null, false, ScalarType.Float);
                     NoGradGuard ng = new NoGradGuard()) {
                    assertTrue(l.model().ownTokens(0), "calm_config.json: " + Files.readString(tmp.resolve("run/calm_config.json")));
                    double loaded = EvalModel.of(l.model(), readers, null).lossSum(b).item_double();
                    assertEquals(composed.lossSum(b).item_double(), loaded, 1e-5 * Math.abs(loaded));
                }
            }
        }
    }

    @Test
    void inSeparatePromptModeAnAugmentReadsItsPromptThroughItsOwnTokenizer() throws Exception {
        Path anchorDir = FIXTURE.resolve("anchor");
        Path augDir = FIXTURE.resolve("augment");
        Path file = Files.writeString(tmp.resolve("p.jsonl"),
                "{\"prompt\": \"sum of\", \"completion\": \" 57\", \"augment_prompt\": \"xtyqh and é😀\"}\n"
                        + "{\"prompt\": \"abc\", \"completion\": \" 12\"}\n");
        try (CausalLm anchor = LmFamilies.load(anchorDir); CausalLm aug = LmFamilies.load(augDir);
             Tokenizer at = Tokenizer.load(anchorDir); Tokenizer gt = Tokenizer.load(augDir)) {
            Dataset d = Dataset.read(file, at, DataRules.forModel(anchor.config(), true, true, true));
            List<AugmentReader> readers = List.of(new AugmentReader(gt, aug.config(), "augment"));
            try (CalmModel calm = CalmModel.create(anchor, List.of(aug), new CompositionPlan(CompositionPlan.parse("2->2")),
                    Mode.SEPARATE_PROMPT, 2, 0.1, 5, new boolean[] {true})) {
                Batch b = Batch.of(d.examples(), 0);
                CalmModel.AugmentPrompt p = AugmentReader.prompts(calm, b, readers).get(0);
                long[] row0 = gt.encodeWithEnds("xtyqh and é😀", true).ids();
                long[] row1 = gt.encodeWithEnds("abc", true).ids();            // no augment_prompt: the prompt's text
                long[] got = dev.calm4j.nn.Tensors.toLongs(p.ids());
                int s = (int) p.ids().size(1);
                assertEquals(Math.max(row0.length, row1.length), s);
                org.junit.jupiter.api.Assertions.assertArrayEquals(row0, java.util.Arrays.copyOfRange(got, 0, row0.length));
                org.junit.jupiter.api.Assertions.assertArrayEquals(row1, java.util.Arrays.copyOfRange(got, s, s + row1.length));
                try (NoGradGuard ng = new NoGradGuard()) {
                    double loss = EvalModel.of(calm, readers, null).lossSum(b).item_double();
                    assertTrue(Double.isFinite(loss), "scores with the augment's own tokens: " + loss);
                }
            }
        }
    }

    @Test
    void tokenIdDataIsRefusedWhenAnAugmentNeedsText() throws Exception {
        Path anchorDir = FIXTURE.resolve("anchor");
        Path augDir = FIXTURE.resolve("augment");
        Path ids = Files.writeString(tmp.resolve("ids.jsonl"), "{\"prompt_ids\": [5, 6], \"completion_ids\": [7]}\n");
        try (CausalLm anchor = LmFamilies.load(anchorDir); CausalLm aug = LmFamilies.load(augDir);
             Tokenizer gt = Tokenizer.load(augDir)) {
            Dataset d = Dataset.read(ids, null, DataRules.forModel(anchor.config(), true, true, false));
            List<AugmentReader> readers = new ArrayList<>(List.of(new AugmentReader(gt, aug.config(), "augment")));
            try (CalmModel calm = CalmModel.create(anchor, List.of(aug), new CompositionPlan(CompositionPlan.parse("2->2")),
                    Mode.SAME_SEQUENCE, 2, 0.1, 5, new boolean[] {true})) {
                var e = assertThrows(Calm4jException.class,
                        () -> EvalModel.of(calm, readers, null).lossSum(Batch.of(d.examples(), 0)));
                assertTrue(e.getMessage().contains("must be text"), e.getMessage());
            }
        }
    }
}
