package dev.calm4j.experiment.kv;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Torch;
import dev.calm4j.data.Example;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.calm4j.train.TrainListener;
import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The experiment's recipe and pipeline at tiny scale: data, pretraining from scratch, composition, controls, report. */
class KvPipelineTest {
    @TempDir
    Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    @Test
    void taskAndFormats() {
        KvTask t = new KvTask(100, 2, 0.2, 7);
        assertEquals(100, t.keys().size());
        assertEquals(20, t.heldInKeys().size());
        assertEquals(100, new java.util.HashSet<>(t.values().values()).size());
        KvTask.Expr e = t.expr(t.keys(), new Random(1));
        Example subs = KvTask.kvSubs(e);
        assertEquals(e.keyText() + "=", KvTask.text(subs.prompt()));
        assertEquals(e.valueText(), KvTask.text(subs.completion()));
        assertEquals(KvTask.EOS, subs.completion()[subs.completion().length - 1]);
        assertEquals(Integer.toString(e.result()), KvTask.text(KvTask.kvMath(e).completion()));
        assertEquals(e.valueText() + "=", KvTask.text(KvTask.numMath(e).prompt()));
        List<KvTask.Expr> held = t.exprs(t.heldOutKeys(), 50, Set.of(), new Random(2));
        for (KvTask.Expr x : held) {
            for (String k : x.keys()) {
                assertTrue(!t.isHeldIn(k));
            }
        }
    }

    @Test
    void auxLabelsFindEveryOperand() {
        KvTask t = new KvTask(20, 2, 0.2, 3);
        KvTask.Expr e = t.expr(t.keys(), new Random(4));
        var b = dev.calm4j.data.Batch.of(List.of(KvTask.kvSubs(e), KvTask.numMath(e)), 0);
        var keyLabels = DigitAuxObjective.labels(b, t.values()::get);
        assertEquals(2, keyLabels.positions().length, "one label per key, at the operator after it");
        int v0 = e.values()[0];
        assertEquals(v0 / 100, keyLabels.digits()[0][0]);
        assertEquals(v0 % 10, keyLabels.digits()[0][2]);
        assertArrayEquals(new int[] {0, 1}, keyLabels.slots(), "each operand's slot: its index in the row");
        var numLabels = DigitAuxObjective.labels(b, KvRecipe::parseNumber);
        // the KV-SUBS row's completion "v1+v2" has a '+' after a number, then the NUM-MATH row: 2 operands
        assertEquals(3, numLabels.positions().length);
        assertArrayEquals(new int[] {2, 0, 1}, numLabels.slots(), "the completion's '+' is the row's third operator");
    }

    @Test
    void theSlotReadoutRegressesEachOperandIntoItsOwnSlotAndZeroEverywhereElse() {
        KvTask t = new KvTask(20, 2, 0.2, 3);
        var c = KvRecipe.tiny().augmentConfig(t);
        var f = org.bytedeco.pytorch.global.torch.ScalarType.Float;
        try (var m = new dev.calm4j.lm.llama.LlamaModel(c, dev.calm4j.lm.llama.LlamaWeights.random(c, 5, 0.02, f), f)) {
            KvTask.Expr e = t.expr(t.keys(), new Random(4));
            var b = dev.calm4j.data.Batch.of(List.of(KvTask.kvSubs(e), KvTask.kvSubs(t.expr(t.keys(), new Random(5)))), 0);
            double lm = new DigitAuxObjective(m, 1, 0.0, t.values()::get, 7, null).lossSum(b).item_double();
            DigitAuxObjective slot = new DigitAuxObjective(m, 1, 2.0, t.values()::get, 7, null).slotReadout(2);
            double total = slot.lossSum(b).item_double();
            assertTrue(slot.parameters().containsKey("aux.slot.weight") && !slot.parameters().containsKey("aux.digit0.weight"));
            assertTrue(slot.describe().contains("one linear read-out per operand slot, 2 slots"), slot.describe());

            // By hand: block 1's output, the 60 read-outs at every real position, against one-hot digits of the j-th
            // key at the j-th operator (slot j's 30 columns) and zero everywhere else (the completion's '+' included).
            var ids = dev.calm4j.train.Losses.inputs(b);
            var ctx = m.context(0, ids.size(1), null);
            var h = m.layer(1, m.layer(0, m.embed(ids), ctx, null), ctx, null);
            var w = slot.parameters().get("aux.slot.weight");
            var bias = slot.parameters().get("aux.slot.bias");
            float[] pred = dev.calm4j.nn.Tensors.toFloats(dev.calm4j.nn.Ops.linear(h, w, bias).contiguous());    // [2, T, 60]
            double want = 0;
            int labelled = 0;
            for (int r = 0; r < b.rows(); r++) {
                int operators = 0;
                StringBuilder operand = new StringBuilder();
                for (int p = 0; p < b.length(); p++) {
                    int i = r * b.length() + p;
                    long id = b.inputs()[i];
                    double[] target = new double[60];
                    if (KvTask.isOperator(id)) {
                        Integer v = t.values().get(operand.toString());
                        if (v != null && operators < 2) {
                            target[30 * operators + v / 100] = 1;
                            target[30 * operators + 10 + v / 10 % 10] = 1;
                            target[30 * operators + 20 + v % 10] = 1;
                            labelled++;
                        }
                        operators++;
                        operand.setLength(0);
                    } else if (KvTask.isLetter(id) || KvTask.isDigit(id)) {
                        operand.append(KvTask.ch(id));
                    }
                    if (!b.real()[i]) {
                        continue;
                    }
                    for (int k = 0; k < 60; k++) {
                        double d = pred[i * 60 + k] - target[k];
                        want += d * d;
                    }
                }
            }
            assertEquals(4, labelled, "two keys per row");
            assertEquals(lm + 2.0 * want, total, 1e-4 * Math.abs(total));
        }
    }

    @Test
    void operandCodeIsASumOfDigitRows() {
        org.bytedeco.pytorch.Tensor code = org.bytedeco.pytorch.global.torch.arange(new org.bytedeco.pytorch.Scalar(30 * 4))
                .to(org.bytedeco.pytorch.global.torch.ScalarType.Float).view(30, 4);
        long[][] digits = {{1, 2, 3}, {0, 0, 9}};
        float[] got = dev.calm4j.nn.Tensors.toFloats(DigitAuxObjective.encode(code, digits));
        for (int k = 0; k < 2; k++) {
            for (int c = 0; c < 4; c++) {
                float want = (digits[k][0] * 4 + c) + ((10 + digits[k][1]) * 4 + c) + ((20 + digits[k][2]) * 4 + c);
                assertEquals(want, got[k * 4 + c], 1e-4);
            }
        }
    }

    @Test
    void digitSpaceNoiseMixesOnlyTheOperandsOwnPlaceRows() {
        int d = 64;
        org.bytedeco.pytorch.Tensor code = orthonormalRows(d, 3);
        float[] rows = dev.calm4j.nn.Tensors.toFloats(code);
        long[][] digits = {{1, 2, 3}, {0, 0, 9}};
        float[] clean = dev.calm4j.nn.Tensors.toFloats(DigitAuxObjective.encode(code, digits));
        float[] level0 = dev.calm4j.nn.Tensors.toFloats(DigitAuxObjective.encodeMixed(code, digits, null, new double[] {0, 0},
                org.bytedeco.pytorch.global.torch.createCPUGenerator(5)));
        assertArrayEquals(clean, level0, 1e-5f);
        float[] noisy = dev.calm4j.nn.Tensors.toFloats(DigitAuxObjective.encodeMixed(code, digits, null, new double[] {0.3, 0},
                org.bytedeco.pytorch.global.torch.createCPUGenerator(5)));
        for (int k = 0; k < 2; k++) {
            // coordinates on the 30 orthonormal rows: the one-hot digits plus noise; nothing outside their span
            double[] coef = new double[30];
            double outside = 0, noise = 0;
            for (int i = 0; i < 30; i++) {
                for (int c = 0; c < d; c++) {
                    coef[i] += noisy[k * d + c] * rows[i * d + c];
                }
                double want = digits[k][i / 10] == i % 10 ? 1 : 0;
                noise = Math.max(noise, Math.abs(coef[i] - want));
            }
            for (int c = 0; c < d; c++) {
                double proj = 0;
                for (int i = 0; i < 30; i++) {
                    proj += coef[i] * rows[i * d + c];
                }
                outside = Math.max(outside, Math.abs(noisy[k * d + c] - proj));
            }
            assertTrue(outside < 1e-4, "operand " + k + " has " + outside + " outside its code's span");
            if (k == 0) {
                assertTrue(noise > 0.05 && noise < 0.3 * 6, "operand 0's digit-space noise " + noise);
            } else {
                assertEquals(0, noise, 1e-5, "operand 1 drew level 0");
            }
        }
    }

    /** 30 orthonormal rows of width {@code d} (Gram-Schmidt on seeded Gaussian rows): a code whose span is known. */
    private static org.bytedeco.pytorch.Tensor orthonormalRows(int d, long seed) {
        Random r = new Random(seed);
        double[][] q = new double[30][d];
        float[] flat = new float[30 * d];
        for (int i = 0; i < 30; i++) {
            for (int j = 0; j < d; j++) {
                q[i][j] = r.nextGaussian();
            }
            for (int k = 0; k < i; k++) {
                double dot = 0;
                for (int j = 0; j < d; j++) {
                    dot += q[i][j] * q[k][j];
                }
                for (int j = 0; j < d; j++) {
                    q[i][j] -= dot * q[k][j];
                }
            }
            double n = 0;
            for (int j = 0; j < d; j++) {
                n += q[i][j] * q[i][j];
            }
            for (int j = 0; j < d; j++) {
                q[i][j] /= Math.sqrt(n);
                flat[i * d + j] = (float) q[i][j];
            }
        }
        return dev.calm4j.nn.Tensors.floats(flat, 30, d);
    }

    /** A random m_B of the tiny recipe's shape. */
    private static dev.calm4j.lm.llama.LlamaModel tinyAnchor(dev.calm4j.lm.llama.LlamaConfig c) {
        return new dev.calm4j.lm.llama.LlamaModel(c, dev.calm4j.lm.llama.LlamaWeights.random(c, 3, 0.02,
                org.bytedeco.pytorch.global.torch.ScalarType.Float), org.bytedeco.pytorch.global.torch.ScalarType.Float);
    }

    @Test
    void aContinuedRunTrainsOnFromTheSavedLearnedCode() throws Exception {
        try (var m = tinyAnchor(KvRecipe.tiny().anchorConfig(KvRecipe.tiny().kvTask()))) {
            DigitAuxObjective first = learnedTwins(m, 5, 2);
            first.save(tmp.resolve("cont"), null);
            float[] saved = dev.calm4j.nn.Tensors.toFloats(first.parameters().get("aux.code"));
            DigitAuxObjective next = learnedTwins(m, 99, 2);
            assertFalse(java.util.Arrays.equals(saved, dev.calm4j.nn.Tensors.toFloats(next.parameters().get("aux.code"))),
                    "another seed, another fresh table");
            next.continueStage(tmp.resolve("cont"));
            assertArrayEquals(saved, dev.calm4j.nn.Tensors.toFloats(next.parameters().get("aux.code")));
            DigitAuxObjective oneSlot = learnedTwins(m, 5, 1);
            var e = assertThrows(IllegalArgumentException.class, () -> oneSlot.continueStage(tmp.resolve("cont")));
            assertTrue(e.getMessage().contains("expected [30, "), e.getMessage());
        }
    }

    @Test
    void aPerPlaceNormalisedCodeGivesEveryPlaceCentredRowsOfOneNormAndIsWhatIsSaved() throws Exception {
        try (var m = tinyAnchor(KvRecipe.tiny().anchorConfig(KvRecipe.tiny().kvTask()))) {
            DigitAuxObjective obj = learnedTwins(m, 5, 2).placeNorm(2.5);
            float[] raw = dev.calm4j.nn.Tensors.toFloats(obj.parameters().get("aux.code"));
            obj.save(tmp.resolve("pn"), null);
            float[] used;
            try (var st = dev.calm4j.io.Safetensors.open(tmp.resolve("pn").resolve(DigitAuxObjective.CODE_FILE))) {
                used = dev.calm4j.nn.Tensors.toFloats(st.load("code"));
            }
            int d = used.length / 60;
            for (int place = 0; place < 6; place++) {
                double[] rawMean = new double[d];
                double sq = 0, rawSq = 0;
                for (int j = 0; j < d; j++) {
                    double mean = 0;
                    for (int r = 0; r < 10; r++) {
                        int at = (place * 10 + r) * d + j;
                        mean += used[at] / 10.0;
                        rawMean[j] += raw[at] / 10.0;
                        sq += used[at] * (double) used[at];
                    }
                    assertEquals(0, mean, 1e-5, "place " + place + " is centred");
                    for (int r = 0; r < 10; r++) {
                        double c = raw[(place * 10 + r) * d + j] - rawMean[j];
                        rawSq += c * c;
                    }
                }
                assertEquals(2.5, Math.sqrt(sq / 10), 1e-4, "place " + place + "'s RMS row norm");
                double k = 2.5 / Math.sqrt(rawSq / 10);
                for (int r = 0; r < 10; r++) {                    // the table's centred rows, rescaled
                    for (int j = 0; j < d; j++) {
                        int at = (place * 10 + r) * d + j;
                        assertEquals(k * (raw[at] - rawMean[j]), used[at], 1e-4, "at " + at);
                    }
                }
            }
            var b = dev.calm4j.data.Batch.of(KvRecipe.tiny().anchorData(KvRecipe.tiny().kvTask()).subList(0, 8), 0);
            obj.parameters().get("aux.code").set_requires_grad(true);     // as TrainLoop does for every parameter
            org.bytedeco.pytorch.Tensor loss = obj.lossSum(b);
            loss.backward();
            assertTrue(Double.isFinite(loss.item_double()));
            assertTrue(obj.parameters().get("aux.code").grad().abs().sum().item_double() > 0, "the table still trains");
            assertThrows(IllegalArgumentException.class, () -> learnedTwins(m, 5, 2).placeNorm(-1));
            assertThrows(IllegalStateException.class,
                    () -> new DigitAuxObjective(m, 1, 0.3, KvRecipe::parseNumber, 5, null).placeNorm(1.0));
        }
    }

    @Test
    void twinOperandsHaveTheirSetLetterCountsAndTheDefaultIsAKeysShape() throws Exception {
        try (var m = tinyAnchor(KvRecipe.tiny().anchorConfig(KvRecipe.tiny().kvTask()))) {
            List<dev.calm4j.data.Example> rows = new java.util.ArrayList<>();
            java.util.Random r = new java.util.Random(3);
            for (int i = 0; i < 64; i++) {
                rows.add(KvTask.numMath(new KvTask.Expr(java.util.Arrays.asList(null, null),
                        new int[] {1 + r.nextInt(999), 1 + r.nextInt(999)}, new char[] {r.nextBoolean() ? '+' : '-'})));
            }
            var b = dev.calm4j.data.Batch.of(rows, 0);
            java.util.Set<Integer> seen = new java.util.TreeSet<>();
            for (var ex : learnedTwins(m, 5, 2).twinLetters(1, 2).twins(b).examples()) {
                seen.addAll(runs(ex.ids()));
            }
            assertEquals(java.util.Set.of(1, 2), seen, "operands of 1 or 2 letters, both drawn");
            seen.clear();
            var byDefault = learnedTwins(m, 5, 2).twins(b).examples();
            var explicit = learnedTwins(m, 5, 2).twinLetters(2, 6).twins(b).examples();
            for (int i = 0; i < byDefault.size(); i++) {
                seen.addAll(runs(byDefault.get(i).ids()));
                assertArrayEquals(byDefault.get(i).ids(), explicit.get(i).ids(), "2-6 is the default, the same draws");
            }
            assertEquals(java.util.Set.of(2, 3, 4, 5, 6), seen);
            var e = assertThrows(IllegalArgumentException.class, () -> learnedTwins(m, 5, 2).twinLetters(3, 2));
            assertTrue(e.getMessage().contains("3..2"), e.getMessage());
        }
    }

    /** The lengths of the runs of letters in {@code ids}. */
    private static List<Integer> runs(long[] ids) {
        List<Integer> out = new java.util.ArrayList<>();
        int run = 0;
        for (long id : ids) {
            if (KvTask.isLetter(id)) {
                run++;
            } else if (run > 0) {
                out.add(run);
                run = 0;
            }
        }
        return out;
    }

    /** Twins only, with a learned code from {@code slots} tables. */
    private static DigitAuxObjective learnedTwins(dev.calm4j.lm.llama.LlamaModel m, long seed, int slots) {
        return new DigitAuxObjective(m, 1, 0.3, KvRecipe::parseNumber, seed, null, 1.0, slots);
    }

    @Test
    void gatheredTwinsPutEveryOperandsCodeFromTheEqualsOnFromItsOwnSlot() throws Exception {
        KvRecipe k = KvRecipe.tiny();
        KvTask t = k.kvTask();
        var c = k.anchorConfig(t);
        try (var m = tinyAnchor(c)) {
            DigitAuxObjective obj = new DigitAuxObjective(m, 1, 0.3, KvRecipe::parseNumber, 5, null, 1.0, 2);
            var e = new KvTask.Expr(java.util.Arrays.asList(null, null), new int[] {123, 45}, new char[] {'-'});
            var b = dev.calm4j.data.Batch.of(List.of(KvTask.numMath(e)), 0);
            var tw = obj.twins(b);
            assertEquals(1, tw.examples().size());
            long[] ids = tw.examples().get(0).ids();
            int eq = -1;
            for (int i = 0; i < ids.length; i++) {
                if (ids[i] == KvTask.id('=')) {
                    eq = i;
                }
                if (i < eq || eq < 0) {
                    assertTrue(!KvTask.isDigit(ids[i]), "the twin's operands are letters");
                }
            }
            // "123-45=78": both operands' codes at the '=' and at the two answer inputs after it ('7', '8')
            assertEquals(ids.length - 1 - 3, eq, "'=', 7, 8, EOS");
            assertArrayEquals(new int[] {eq, eq, eq + 1, eq + 1, eq + 2, eq + 2}, tw.dstPos());
            assertArrayEquals(new int[] {0, 1, 0, 1, 0, 1}, tw.slots());
            for (int j = 0; j < 6; j += 2) {
                assertArrayEquals(new long[] {1, 2, 3}, tw.digits()[j]);
                assertArrayEquals(new long[] {0, 4, 5}, tw.digits()[j + 1]);
            }
            // Slot j reads rows 30 j + 10 place + digit.
            org.bytedeco.pytorch.Tensor code = org.bytedeco.pytorch.global.torch.arange(new org.bytedeco.pytorch.Scalar(60 * 2))
                    .to(org.bytedeco.pytorch.global.torch.ScalarType.Float).view(60, 2);
            float[] got = dev.calm4j.nn.Tensors.toFloats(DigitAuxObjective.encode(code, tw.digits(), tw.slots()));
            assertEquals((1 + 12 + 23) * 2, got[0], 1e-4);
            assertEquals((30 + 44 + 55) * 2, got[2], 1e-4);
            assertEquals(60 * c.hiddenSize(), obj.parameters().get("aux.code").numel(), "a learned table per slot");
            assertTrue(Double.isFinite(obj.lossSum(b).item_double()));
            assertThrows(IllegalArgumentException.class, () -> new DigitAuxObjective(m, 1, 0.3, KvRecipe::parseNumber, 5, null,
                    1.0, 0), "twins need a code of at least one slot");
        }
    }

    @Test
    void theRecipesCodeOptionsReachMsBTraining() throws Exception {
        // A tiny recipe with the gathered code used per place at one norm, and digit-space noise ramped in.
        KvRecipe t = KvRecipe.tiny();
        KvRecipe k = t.withAnchorStages(List.of(new KvRecipe.Stage(10, 0.5, KvTask.KEY_MIN_LETTERS, KvTask.KEY_MAX_LETTERS,
                1.2, 0.25, 5, 3e-3, KvRecipe.COSINE)));
        KvTask task = k.kvTask();
        Path tok = tmp.resolve("options-tokenizer.json");
        task.writeTokenizer(tok);
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        k.trainAnchor(task, tmp.resolve("options").resolve("m_B"), tok, TrainListener.messagesTo(new PrintStream(log)));
        // its saved code has every place centred at RMS row norm 1.2
        try (var st = dev.calm4j.io.Safetensors.open(tmp.resolve("options").resolve("m_B/" + DigitAuxObjective.CODE_FILE))) {
            float[] code = dev.calm4j.nn.Tensors.toFloats(st.load("code"));
            int d = code.length / 60;                                      // 2 operand slots x 3 places x 10 digits
            for (int place = 0; place < 6; place++) {
                double sq = 0;
                double[] mean = new double[d];
                for (int i = place * 10 * d; i < (place + 1) * 10 * d; i++) {
                    sq += code[i] * (double) code[i];
                    mean[i % d] += code[i] / 10.0;
                }
                assertEquals(1.2, Math.sqrt(sq / 10), 1e-4, "place " + place);
                for (double m : mean) {
                    assertEquals(0, m, 1e-5, "place " + place + " is centred");
                }
            }
        }
        String described = log.toString();
        assertTrue(described.contains("gathered") && described.contains("places at norm 1.20")
                && described.contains("digit-space noise up to 0.25 (ramp 5 steps)"), described);
    }

    /** A tiny recipe whose m_B has the given first-stage twin fraction, place norm and later stages. */
    private static KvRecipe staged(int steps, double twin, double placeNorm, List<KvRecipe.Stage> later) {
        List<KvRecipe.Stage> stages = new java.util.ArrayList<>();
        stages.add(new KvRecipe.Stage(steps, twin, KvTask.KEY_MIN_LETTERS, KvTask.KEY_MAX_LETTERS, placeNorm, 0.0, 0, 3e-3,
                KvRecipe.COSINE));
        stages.addAll(later);
        return KvRecipe.tiny().withAnchorStages(stages);
    }

    /** A later stage of m_B: key-shaped twins, a cosine. */
    private static KvRecipe.Stage later(int steps, double twin, double placeNorm, double noise, int ramp, double lr) {
        return new KvRecipe.Stage(steps, twin, KvTask.KEY_MIN_LETTERS, KvTask.KEY_MAX_LETTERS, placeNorm, noise, ramp, lr,
                KvRecipe.COSINE);
    }

    @Test
    void aStagedMsBIsTheChainOfItsStagesEachContinuedFromTheLast() throws Exception {
        // The recipe: 8 noiseless code-only steps, then 6 with NUM-MATH rows back and digit-space noise at another lr.
        KvRecipe.Stage later = later(6, 0.5, 1.2, 0.25, 3, 2e-3);
        KvRecipe k = staged(8, 1.0, 1.2, List.of(later));
        KvTask task = k.kvTask();
        Path tok = tmp.resolve("staged-tokenizer.json");
        task.writeTokenizer(tok);
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        Path dir = tmp.resolve("staged").resolve("m_B");
        var r = k.trainAnchor(task, dir, tok, TrainListener.messagesTo(new PrintStream(log)));
        assertEquals(14, r.steps());
        assertTrue(log.toString().contains("m_B stage 1 of 1, from m_B.stage0"), log.toString());
        assertTrue(Files.isRegularFile(KvRecipe.stageDir(dir, 0).resolve("model.safetensors")));

        // The same chain by hand: the first stage alone (a one-stage recipe), then the later stage continued from it.
        Path byHand = tmp.resolve("byhand");
        staged(8, 1.0, 1.2, List.of()).trainAnchor(task, byHand.resolve("first"), tok, TrainListener.messagesTo(new PrintStream(OutputStream.nullOutputStream())));
        k.trainAnchorStage(task, byHand.resolve("m_B"), tok, TrainListener.messagesTo(new PrintStream(OutputStream.nullOutputStream())),
                byHand.resolve("first"), later);
        for (String f : List.of("model.safetensors", DigitAuxObjective.CODE_FILE)) {
            assertArrayEquals(Files.readAllBytes(byHand.resolve("m_B").resolve(f)), Files.readAllBytes(dir.resolve(f)), f);
            assertArrayEquals(Files.readAllBytes(byHand.resolve("first").resolve(f)),
                    Files.readAllBytes(KvRecipe.stageDir(dir, 0).resolve(f)), "stage 0 " + f);
        }
        // (bit-identical to a run given stage 0 as its init, so the second stage did continue from the first)
        String words = Report.stages(k);
        assertTrue(words.contains("trained for 8 steps with twins 1.0 of the rows and no noise, then continued in 1 more stage "
                + "(6 steps, twins 0.5 of the rows, places at norm 1.2, digit-space noise up to 0.25 ramped in over 3 steps, "
                + "peak lr 0.002"), words);
        assertEquals("", Report.stages(staged(8, 1.0, 0, List.of())), "a one-stage recipe adds nothing");
    }

    @Test
    void badStagesAreRefusedWithTheFieldNamed() {
        var e = assertThrows(IllegalArgumentException.class, () -> later(0, 0.5, 0, 0, 0, 1e-3));
        assertTrue(e.getMessage().contains("steps 0"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> later(10, 1.5, 0, 0, 0, 1e-3));
        assertTrue(e.getMessage().contains("twin fraction 1.5"), e.getMessage());
        // the first stage's schedule and twin letters
        KvRecipe d = KvRecipe.defaults();
        e = assertThrows(IllegalArgumentException.class, () -> withFirstStage(d, 0.0, 1, 2));
        assertTrue(e.getMessage().contains("decayFraction") && e.getMessage().contains("got 0.0"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> withFirstStage(d, 0.25, 0, 2));
        assertTrue(e.getMessage().contains("twinMinLetters") && e.getMessage().contains("got 0 and 2"), e.getMessage());
        assertEquals(d, withFirstStage(d, 0.25, 1, 2), "the defaults: held rate, decay over the last quarter, 1-2 letters");
        String words = Report.stages(d);
        assertTrue(words.startsWith("trained for 2400 steps with twins 1.0 of the rows (operands of 1-2 letters), the peak "
                + "rate held and decayed over the last 25 % of the steps and no noise"), words);
    }

    /** {@code k} with its first m_B stage's decay fraction and twin letters replaced. */
    private static KvRecipe withFirstStage(KvRecipe k, double decay, int minLetters, int maxLetters) {
        List<KvRecipe.Stage> stages = new java.util.ArrayList<>(k.anchor().stages());
        KvRecipe.Stage f = stages.get(0);
        stages.set(0, new KvRecipe.Stage(f.steps(), f.twinFraction(), minLetters, maxLetters, f.placeNorm(), f.digitNoise(),
                f.noiseRamp(), f.lr(), decay));
        return k.withAnchorStages(stages);
    }

    @Test
    void theShippedModelsStampIsTheRecipeAndARecipeRoundTripsThroughJson() throws Exception {
        // the tests run in the module's folder; the stamp is what --retrain wrote beside the shipped models
        Path stamp = Path.of("models", "kv_recipe.json");
        assertEquals(KvRecipe.defaults(), KvRecipe.read(Files.readAllBytes(stamp), stamp.toString()));
        assertEquals(KvRecipe.tiny(), KvRecipe.read(KvRecipe.tiny().toJson().getBytes(java.nio.charset.StandardCharsets.UTF_8), "tiny"));
        var e = assertThrows(dev.calm4j.Calm4jException.class, () -> KvRecipe.read(
                KvRecipe.defaults().toJson().replace("\"keys\" : 500", "\"keys\" : 1").getBytes(java.nio.charset.StandardCharsets.UTF_8),
                "edited.json"));
        assertTrue(e.getMessage().startsWith("edited.json: not a key-value recipe") && e.getMessage().contains("keys 1"),
                e.getMessage());
    }

    @Test
    void theRecipeRefusesNonsenseValues() {
        KvRecipe t = KvRecipe.tiny();
        var e = assertThrows(IllegalArgumentException.class, () -> t.withAnchorStages(List.of(
                new KvRecipe.Stage(30, 1.0, 1, 2, 1.2, -0.25, 20, 3e-3, 0.25))));
        assertTrue(e.getMessage().contains("digit noise -0.25"), e.getMessage());
    }

    @Test
    void tinyEndToEnd() throws Exception {
        KvExperiment.Config c = new KvExperiment.Config(KvRecipe.tiny(), tmp.resolve("models"), tmp.resolve("run"), true,
                List.of(1L), KvExperiment.Config.CONTROLS, new KvExperiment.Config.Bridges("1->0,1->1", 1, 0.1),
                new KvExperiment.Config.Training(10, 8, 3e-3, 0.5, 2), new KvExperiment.Config.Data(60, 0.25, 12, 20),
                2);   // 2 jobs: runs at once
        ObjectNode r = new KvExperiment(c, new PrintStream(OutputStream.nullOutputStream()), KvExperiment.RunListeners.NONE).run();
        for (String model : List.of("m_A", "m_B", "calm", "lora", "calm_random_augment", "calm_encoder")) {
            for (String d : KvExperiment.DATASETS) {
                JsonNode cell = r.get("models").get(model).get(d);
                assertEquals(12, cell.get("n").asInt(), model + " " + d);
                double a = cell.get("accuracy").asDouble();
                assertTrue(a >= 0 && a <= 1);
            }
        }
        assertEquals(2, r.withArray("probe").size());
        for (String f : List.of("report.md", "results.json", "config.json", "loss.png", "accuracy.png",
                "data/composition_train.jsonl", "data/kv_math_heldout_keys.jsonl", "data/tokenizer.json")) {
            assertTrue(Files.exists(c.out().resolve(f)), f);
        }
        assertTrue(Files.exists(c.modelsDir().resolve("m_A/model.safetensors")));
        assertTrue(Files.exists(KvRecipe.stageDir(c.modelsDir().resolve("m_B"), 0).resolve("model.safetensors")),
                "m_B's first stage (trained beside m_A), then its later stage into m_B");
        assertTrue(Files.exists(c.modelsDir().resolve("m_B/" + DigitAuxObjective.CODE_FILE)), "the anchor's learned operand code");
        assertTrue(r.get("anchor_oracle").get("injected").asText().contains("code"), r.get("anchor_oracle").toString());
        assertTrue(Files.readString(c.out().resolve("report.md")).contains("Table 1"));
        // A second run reuses the models trained for this recipe; another recipe is refused.
        KvExperiment.Config again = new KvExperiment.Config(KvRecipe.tiny(), c.modelsDir(), tmp.resolve("run2"), false,
                List.of(2L), List.of(), new KvExperiment.Config.Bridges("1->1", 1, 0.0),
                new KvExperiment.Config.Training(5, 8, 3e-3, 1.0, 1), new KvExperiment.Config.Data(60, 0.0, 12, 10), 1);
        new KvExperiment(again, new PrintStream(OutputStream.nullOutputStream()), KvExperiment.RunListeners.NONE).run();
        KvExperiment.Config other = again.withRecipe(KvRecipe.defaults());
        var e = org.junit.jupiter.api.Assertions.assertThrows(dev.calm4j.Calm4jException.class,
                () -> new KvExperiment(other, new PrintStream(OutputStream.nullOutputStream()), KvExperiment.RunListeners.NONE).run());
        assertTrue(e.getMessage().contains("--retrain"), e.getMessage());
    }
}
