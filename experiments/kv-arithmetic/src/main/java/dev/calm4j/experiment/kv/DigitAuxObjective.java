package dev.calm4j.experiment.kv;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.data.Batch;
import dev.calm4j.lm.AttentionContext;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.nn.Ops;
import dev.calm4j.nn.Tensors;
import dev.calm4j.train.Losses;
import dev.calm4j.train.Objective;
import org.bytedeco.pytorch.Generator;
import org.bytedeco.pytorch.GeneratorOptional;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

import static org.bytedeco.pytorch.global.torch.cross_entropy_loss;
import static org.bytedeco.pytorch.global.torch.randn;
import static org.bytedeco.pytorch.global.torch.zeros;

/**
 * Pretraining with next-token loss plus an auxiliary "operand value" loss: at every operator token that follows an
 * operand, three linear heads on the output of block {@code auxLayer} predict the hundreds, tens and units digit of
 * that operand's value. For m_A the operand is a key (its value looked up in the table: the aux loss makes m_A look
 * values up <em>at the key</em>, where the bridges can read them, instead of lazily at the moment it writes them,
 * which docs/design.md §4.1 found to leave nothing readable); for m_B the operand is a number it reads.
 *
 * <p>The heads are training scaffolding: only the language model is saved. What the models read at inference is
 * the paper's text.
 */
final class DigitAuxObjective implements Objective {
    private final CausalLm model;
    private final int auxLayer;
    private final double weight;
    private final Function<String, Integer> operandValue;   // operand text -> value, or null when not an operand
    private final Tensor[] headW = new Tensor[3];             // [10, D]
    private final Tensor[] headB = new Tensor[3];             // [10]
    private final Path tokenizer;
    private final double twinProb;
    private final java.util.Random twinRng;
    private final Tensor code;                                // [30 slots, D] learned operand code, or null (no twins)
    private int calls;                                        // training calls so far (for the noise ramp)
    private final int codeSlots;                              // the code's operand slots, one table each
    private final Generator noiseGen;
    private double digitNoise;                                // > 0: the code's noise in digit space (see digitNoise)
    private int digitNoiseRamp;
    private int twinMinLetters = KvTask.KEY_MIN_LETTERS;      // each twin operand's letter count, uniform in [min, max]
    private int twinMaxLetters = KvTask.KEY_MAX_LETTERS;
    private double placeNorm;                                 // > 0: the code used centred, each place at this norm (see placeNorm)
    private final long seed;                                  // for heads made after construction
    private int slotReadout;                                  // > 0: one linear read-out per operand slot, see slotReadout
    private Tensor slotW;                                     // [slots * 30, D]
    private Tensor slotB;                                     // [slots * 30]

    /** File (beside the saved model) that holds the learned operand code, for the anchor-side oracle. */
    static final String CODE_FILE = "operand_code.safetensors";

    /** The aux loss alone (no twins): per-place heads fitted by cross entropy, or per-slot ones ({@link #slotReadout}). */
    DigitAuxObjective(CausalLm model, int auxLayer, double weight, Function<String, Integer> operandValue,
                      long seed, Path tokenizer) {
        this(model, auxLayer, weight, operandValue, seed, tokenizer, 0, 0);
    }

    /**
     * @param twinProb fraction of rows replaced, above block {@code auxLayer}, by an <em>operand-blind twin</em>: the same expression with every
     *     operand rewritten as a random letter string of 2-6 letters (the shape of a key; see {@link #twinLetters}), whose blocks
     *     {@code 0..auxLayer} see only those letters, and whose states at the output of block {@code auxLayer} get
     *     the operands' code (below) <em>added</em> to their own. Added, not swapped in, because that is all a bridge
     *     can do: it adds to the anchor's stream. (With the real rows' operator states as what the twins get,
     *     swapping trained m_B to 46 % on such twins, but adding the real state to an m_B trained that way gave 1 %.)
     *     The blocks above must then do the arithmetic with letters in between: exactly what a bridge that writes
     *     the keys' values will ask of them. The letters are random (no key's value is ever shown), so m_B learns
     *     nothing about keys.
     * @param operandSlots the twins get a <em>learned linear code</em> of every operand's digits, operand {@code j}
     *     from its own table, {@code C[30 j + hundreds] + C[30 j + 10 + tens] + C[30 j + 20 + units]} ({@code C} a
     *     trainable {@code [30 operandSlots, D]} table trained with the model and saved beside it as
     *     {@value #CODE_FILE}; operands past the last slot use the last table), added at the row's {@code =} <em>and
     *     at every position after it</em>; 0 (with {@code twinProb} 0): no twins and no code. Why a code: a bridge's
     *     value path is linear in the augment's states, and a linear map from m_A's states generalises across keys
     *     to a linear digit code but not to m_B's own (nonlinear) operator states
     *     (experiments/kv-arithmetic/diagnostics, linmap vs codemap). A fixed N(0, 1) code swamped the operator's
     *     identity after RMSNorm (m_B fell to 16 % on NUM-MATH); a learned one starts small and finds its own scale.
     *     Why from the {@code =} on: with the codes at the operators, each answer position has to fetch both
     *     operands' digits through attention heads of 16 dimensions, and m_B learnt only what travels easily, an
     *     approximate magnitude (answers within 10, units at chance); here every answer position holds both
     *     operands locally, in separate subspaces. A bridge can write that: at {@code =} and after it, its heads
     *     can attend to both of m_A's operators, each through its own output map.
     */
    DigitAuxObjective(CausalLm model, int auxLayer, double weight, Function<String, Integer> operandValue,
                      long seed, Path tokenizer, double twinProb, int operandSlots) {
        if (operandSlots < 0 || (twinProb > 0 && operandSlots == 0)) {
            throw new IllegalArgumentException("operand-blind twins need an operand code of >= 1 slot, got " + operandSlots);
        }
        this.codeSlots = operandSlots;
        this.twinProb = twinProb;
        this.twinRng = new java.util.Random(seed + 7);
        this.seed = seed;
        this.model = model;
        this.auxLayer = auxLayer;
        this.weight = weight;
        this.operandValue = operandValue;
        this.tokenizer = tokenizer;
        Generator g = org.bytedeco.pytorch.global.torch.createCPUGenerator(seed);
        int d = model.hiddenSize();
        for (int i = 0; i < 3; i++) {
            headW[i] = randn(new long[] {10, d}, new GeneratorOptional(g), new TensorOptions(ScalarType.Float))
                    .mul(new Scalar(0.02));
            headB[i] = zeros(new long[] {10}, new TensorOptions(ScalarType.Float));
        }
        this.code = operandSlots == 0 ? null       // drawn after the heads, from the same generator
                : randn(new long[] {30L * operandSlots, d}, new GeneratorOptional(g), new TensorOptions(ScalarType.Float)).mul(new Scalar(0.02));
        this.noiseGen = org.bytedeco.pytorch.global.torch.createCPUGenerator(seed + 13);
    }

    /**
     * Noise <em>in digit space</em> on the twins' code: each twin operand's place gets
     * {@code sum_d q_d C[place, d]} with {@code q = onehot(digit) + level * N(0, I_10)}, the level drawn per
     * operand from {@code U(0, sigma)} and {@code sigma} ramped up over {@code rampCalls} training calls. Why: a ridge
     * (or any linear) map fitted onto the code predicts vectors in the span of the code's rows, so a bridge's error is
     * a wrong mixture of the place's digit rows, not isotropic noise on the rows, which lies mostly outside
     * that span and teaches the blocks above to ignore what a bridge never gets wrong.
     */
    DigitAuxObjective digitNoise(double sigma, int rampCalls) {
        if (code == null) {
            throw new IllegalStateException("digit-space noise needs the learned operand code");
        }
        if (!(sigma >= 0) || rampCalls < 0) {
            throw new IllegalArgumentException("digit-space noise: level " + sigma + " and ramp " + rampCalls + " must be >= 0");
        }
        this.digitNoise = sigma;
        this.digitNoiseRamp = rampCalls;
        return this;
    }

    /**
     * Each twin operand becomes {@code min..max} random letters (the default 2-6 is a key's shape, {@link KvTask}).
     * Why shorter: a twin row's tokens are most of a twin-only stage's cost, and its letters carry nothing (the
     * operands reach the blocks above through the code); the default draws the same random numbers as before.
     */
    DigitAuxObjective twinLetters(int min, int max) {
        if (min < 1 || max < min) {
            throw new IllegalArgumentException("twin letters: 1 <= min <= max expected, got " + min + ".." + max);
        }
        this.twinMinLetters = min;
        this.twinMaxLetters = max;
        return this;
    }

    /**
     * The learned code is used (and saved) <em>normalised per place</em>: each place's ten rows minus their mean,
     * scaled so that their RMS norm is {@code norm} ({@link #normalisePlaces}); the table itself still trains. Why: a
     * free code shrank its units rows to a tenth of its hundreds' spread, so a bridge's error on the hundreds alone
     * swamped the units and the reader it trained was exact-only (experiments/kv-arithmetic/diagnostics/mixnoise.py);
     * with every place at one norm and no common offset, digit-space noise of one level costs every place the same
     * margin.
     */
    DigitAuxObjective placeNorm(double norm) {
        if (code == null) {
            throw new IllegalStateException("a per-place norm needs the learned operand code");
        }
        if (!(norm >= 0) || Double.isInfinite(norm)) {
            throw new IllegalArgumentException("per-place code norm " + norm + " must be finite and >= 0");
        }
        this.placeNorm = norm;
        return this;
    }

    /**
     * m_A's read-out: {@code slots} linear heads, one per operand slot (the j-th operand of
     * an expression), each regressing, by squared error at <em>every</em> real position, the one-hot digits of operand j
     * at the operator right after operand j and zero everywhere else ({@code weight * ||W h + b - target||^2} summed over
     * positions, slots and places). Why: m_B reads a gathered code, {@code code(v1, slot 0) + code(v2, slot 1)} at the
     * {@code =}, so a bridge has to put each operand's value into its own slot. With one shared read-out both operators
     * hold their values in the same directions, and a head that attends to both mixes them symmetrically: a ridge map
     * from {@code (h(op1) + h(=)) / 2} reads all six digits of held-out keys 3-58 % of the time, against 99.3 % from the
     * two states side by side (experiments/kv-arithmetic/diagnostics/mixroute.py), and trained bridges spread each
     * head over both operators and the letters (experiments/kv-arithmetic/diagnostics/bridgeprobe.py). With
     * slot-specific directions, and nothing in them away from the operators, any attention that covers both
     * operators carries both values apart, and a linear value path maps them to m_B's code. Why squared error and not
     * cross entropy: a bridge's value path is linear in the augment's states, and cross entropy only asks the
     * digits to be separable (ridge onto the one-hot digits from 100 keys had held-out R^2 0.5, and bridges stayed at
     * 0.5 % on held-out keys); squared error asks the one-hot digits to be a linear function of the state, and any
     * linear code of the digits (m_B's included) is then one too (R^2 0.998; experiments/kv-arithmetic/HISTORY.md,
     * 2026-12-01). Replaces the per-place heads.
     */
    DigitAuxObjective slotReadout(int slots) {
        if (slots < 0) {
            throw new IllegalArgumentException("operand slots " + slots + " must be >= 0");
        }
        this.slotReadout = slots;
        if (slots > 0) {
            Generator g = org.bytedeco.pytorch.global.torch.createCPUGenerator(seed + 19);
            slotW = randn(new long[] {30L * slots, model.hiddenSize()}, new GeneratorOptional(g),
                    new TensorOptions(ScalarType.Float)).mul(new Scalar(0.02));
            slotB = zeros(new long[] {30L * slots}, new TensorOptions(ScalarType.Float));
        }
        return this;
    }

    /** {@code code} [30 k, D] with each place's 10 rows centred and scaled to RMS row norm {@code norm}. */
    static Tensor normalisePlaces(Tensor code, double norm) {
        long d = code.size(1);
        Tensor g = code.view(-1, 10, d);                                                              // [3k, 10, D]
        Tensor c = g.sub(g.mean(new long[] {1}, true, new org.bytedeco.pytorch.ScalarTypeOptional()));
        Tensor rms = c.pow(new Scalar(2)).sum(new long[] {1, 2}, true, new org.bytedeco.pytorch.ScalarTypeOptional())
                .div(new Scalar(10.0)).add(new Scalar(1e-12)).sqrt();                                  // [3k, 1, 1]
        return c.div(rms).mul(new Scalar(norm)).view(-1, d);
    }

    /** The code the twins get: the table itself, or its per-place normalisation. */
    private Tensor usedCode() {
        return placeNorm > 0 ? normalisePlaces(code, placeNorm) : code;
    }

    /** For each operand {@code k} and place {@code j}, row {@code 3k + j}: its place's index {@code 3 slot + j}. */
    private static long[] places(long[][] digits, int[] slots) {
        long[] place = new long[digits.length * 3];
        for (int i = 0; i < place.length; i++) {
            place[i] = (slots == null ? 0 : slots[i / 3]) * 3L + i % 3;
        }
        return place;
    }

    /** {@link #encode} with digit-space noise: every place's row is a noisy mixture of that place's 10 rows. */
    static Tensor encodeMixed(Tensor code, long[][] digits, int[] slots, double[] level, Generator gen) {
        int n = digits.length;
        long d = code.size(1);
        long[] place = places(digits, slots);
        float[] q = new float[n * 30];
        float[] lv = new float[n * 3];
        for (int i = 0; i < n * 3; i++) {
            q[i * 10 + (int) digits[i / 3][i % 3]] = 1f;
            lv[i] = (float) level[i / 3];
        }
        Tensor mix = Tensors.floats(q, n * 3, 10).add(randn(new long[] {n * 3L, 10}, new GeneratorOptional(gen),
                new TensorOptions(ScalarType.Float)).mul(Tensors.floats(lv, n * 3, 1)));                  // [3n, 10]
        Tensor tables = code.view(-1, 10, d).index_select(0, Tensors.longs(place, place.length));       // [3n, 10, D]
        Tensor rows = mix.unsqueeze(1).bmm(tables).squeeze(1);                                            // [3n, D]
        return rows.view(n, 3, d).sum(new long[] {1}, false, new org.bytedeco.pytorch.ScalarTypeOptional());
    }

    /**
     * m_B's later stages: training continues from the previous stage, whose model is loaded by the caller, and whose
     * learned code (saved beside it in {@code stageDir}, {@value #CODE_FILE}) replaces the fresh one here and trains
     * on.
     */
    DigitAuxObjective continueStage(Path stageDir) {
        if (code == null) {
            throw new IllegalStateException("only a learned operand code can be continued");
        }
        Path file = stageDir.resolve(CODE_FILE);
        try (dev.calm4j.io.Safetensors st = dev.calm4j.io.Safetensors.open(file)) {
            Tensor saved = st.load("code");
            if (saved.dim() != 2 || saved.size(0) != code.size(0) || saved.size(1) != code.size(1)) {
                throw new IllegalArgumentException(file + ": code " + java.util.Arrays.toString(saved.sizes().vec().get())
                        + ", expected [" + code.size(0) + ", " + code.size(1) + "]");
            }
            try (org.bytedeco.pytorch.NoGradGuard ng = new org.bytedeco.pytorch.NoGradGuard()) {
                code.copy_(saved);
            }
        }
        return this;
    }

    /**
     * Whether a saved code is a gathered one: 30 rows per operand slot, added from the '=' on (see the constructor; the
     * recipe's m_B has a slot per operand, 2 or more); a code of 30 rows, from m_Bs trained before the gathered code,
     * was added at each operator.
     */
    static boolean gathered(Tensor code) {
        return code.size(0) > 30;
    }

    /** An operand value's hundreds, tens and units digits (what the aux heads predict and the code encodes). */
    static long[] digits(int v) {
        return new long[] {(v / 100) % 10, (v / 10) % 10, v % 10};
    }

    /** {@code C[h] + C[10 + t] + C[20 + u]} for each operand value: {@code [n, D]}. */
    static Tensor encode(Tensor code, long[][] digits) {
        return encode(code, digits, null);
    }

    /** As {@link #encode(Tensor, long[][])}, operand {@code k} from slot {@code slots[k]}'s table (null: all from the first). */
    static Tensor encode(Tensor code, long[][] digits, int[] slots) {
        long[] place = places(digits, slots);
        long[] idx = new long[place.length];
        for (int i = 0; i < idx.length; i++) {
            idx[i] = place[i] * 10 + digits[i / 3][i % 3];
        }
        Tensor rows = code.index_select(0, Tensors.longs(idx, idx.length));                         // [3n, D]
        return rows.view(digits.length, 3, code.size(1)).sum(new long[] {1}, false,
                new org.bytedeco.pytorch.ScalarTypeOptional());
    }

    @Override
    public Map<String, Tensor> parameters() {
        Map<String, Tensor> p = new LinkedHashMap<>(model.namedWeights());
        if (slotReadout > 0) {
            p.put("aux.slot.weight", slotW);
            p.put("aux.slot.bias", slotB);
        } else {
            for (int i = 0; i < 3; i++) {
                p.put("aux.digit" + i + ".weight", headW[i]);
                p.put("aux.digit" + i + ".bias", headB[i]);
            }
        }
        if (code != null) {
            p.put("aux.code", code);
        }
        return p;
    }

    /**
     * Positions (row * T + t) of operators right after an operand, that operand's three digits, and its slot (how
     * many operators come before it in the row: 0 for the first operand).
     */
    record AuxLabels(long[] positions, long[][] digits, int[] slots) {}

    static AuxLabels labels(Batch b, Function<String, Integer> operandValue) {
        List<Long> pos = new ArrayList<>();
        List<long[]> dig = new ArrayList<>();
        List<Integer> slot = new ArrayList<>();
        int t = b.length();
        for (int r = 0; r < b.rows(); r++) {
            int operators = 0;
            for (int c = 1; c < t; c++) {
                long id = b.inputs()[r * t + c];
                if (!b.real()[r * t + c] || !KvTask.isOperator(id)) {
                    continue;
                }
                int j = operators++;
                int s = c;
                StringBuilder operand = new StringBuilder();
                while (s - 1 >= 0 && (KvTask.isLetter(b.inputs()[r * t + s - 1]) || KvTask.isDigit(b.inputs()[r * t + s - 1]))) {
                    s--;
                }
                for (int k = s; k < c; k++) {
                    operand.append(KvTask.ch(b.inputs()[r * t + k]));
                }
                Integer v = operand.length() == 0 ? null : operandValue.apply(operand.toString());
                if (v == null || v < 0 || v > 999) {
                    continue;
                }
                pos.add((long) r * t + c);
                dig.add(digits(v));
                slot.add(j);
            }
        }
        return new AuxLabels(pos.stream().mapToLong(Long::longValue).toArray(), dig.toArray(new long[0][]),
                slot.stream().mapToInt(Integer::intValue).toArray());
    }

    @Override
    public Tensor lossSum(Batch b) {
        if (org.bytedeco.pytorch.GradMode.is_enabled()) {
            calls++;
        }
        Tensor ids = Losses.inputs(b);
        AttentionContext ctx = model.context(0, ids.size(1), null);
        Tensor h = model.embed(ids);
        // Blocks 0..auxLayer for every row; the blocks above run on the rows without a twin, and on the twins.
        for (int i = 0; i <= auxLayer; i++) {
            h = model.layer(i, h, ctx, null);
        }
        Tensor aux = h;
        Twins tw = twinProb > 0 ? twins(b) : null;
        Tensor loss;
        if (tw == null) {
            for (int i = auxLayer + 1; i < model.numLayers(); i++) {
                h = model.layer(i, h, ctx, null);
            }
            loss = Losses.sum(model.logits(h), b);
        } else {
            loss = zeros(new long[] {}, new TensorOptions(ScalarType.Float));
            int[] keep = tw.keep();
            if (keep.length > 0) {
                long[] rows = new long[keep.length];
                long[] lab = new long[keep.length * b.length()];
                for (int k = 0; k < keep.length; k++) {
                    rows[k] = keep[k];
                    System.arraycopy(b.labels(), keep[k] * b.length(), lab, k * b.length(), b.length());
                }
                Tensor hk = h.index_select(0, Tensors.longs(rows, rows.length));
                for (int i = auxLayer + 1; i < model.numLayers(); i++) {
                    hk = model.layer(i, hk, ctx, null);
                }
                loss = loss.add(Losses.sum(model.logits(hk), lab));
            }
            Batch tb = Batch.of(tw.examples(), 0);
            Tensor tids = Losses.inputs(tb);
            AttentionContext tctx = model.context(0, tids.size(1), null);
            Tensor g = model.embed(tids);
            for (int i = 0; i < model.numLayers(); i++) {
                g = model.layer(i, g, tctx, null);
                if (i == auxLayer) {                                   // the operands' code, added in
                    long d = g.size(-1);
                    long[] dst = new long[tw.dstRow().length];
                    for (int k = 0; k < dst.length; k++) {
                        dst[k] = tw.dstRow()[k] * (long) tb.length() + tw.dstPos()[k];
                    }
                    Tensor from;
                    if (digitNoise > 0) {
                        double sigma = digitNoise * (digitNoiseRamp <= 0 ? 1 : Math.min(1.0, (double) calls / digitNoiseRamp));
                        double[] level = new double[tw.digits().length];
                        for (int k = 0; k < level.length; k++) {
                            level[k] = twinRng.nextDouble() * sigma;
                        }
                        from = encodeMixed(usedCode(), tw.digits(), tw.slots(), level, noiseGen);
                    } else {
                        from = encode(usedCode(), tw.digits(), tw.slots());
                    }
                    g = g.reshape(-1, d).index_add(0, Tensors.longs(dst, dst.length), from).view(g.sizes());
                }
            }
            loss = loss.add(Losses.sum(model.logits(g), tb));
        }
        AuxLabels l = labels(b, operandValue);
        if (slotReadout > 0) {
            return loss.add(slotLoss(b, aux, l));
        }
        if (l.positions().length > 0) {
            Tensor sel = aux.reshape(-1, aux.size(-1)).index_select(0, Tensors.longs(l.positions(), l.positions().length));
            long[] flat = new long[l.positions().length * 3];
            for (int i = 0; i < l.digits().length; i++) {
                System.arraycopy(l.digits()[i], 0, flat, i * 3, 3);
            }
            Tensor targets = Tensors.longs(flat, l.positions().length, 3);
            for (int d = 0; d < 3; d++) {
                Tensor logits = Ops.linear(sel, headW[d], headB[d]);                                 // [n, 10]
                Tensor t = targets.select(1, d).contiguous();
                Tensor ce = cross_entropy_loss(logits, t, new TensorOptional(), 2, -100, 0.0);
                loss = loss.add(ce.mul(new Scalar(weight)));
            }
        }
        return loss;
    }

    /** {@link #slotReadout}'s loss: every real position's slot heads against their targets, summed, times the weight. */
    private Tensor slotLoss(Batch b, Tensor aux, AuxLabels l) {
        int n = b.inputs().length;
        int width = 30 * slotReadout;
        float[] target = new float[n * width];                         // [rows * T, slots * 30], one-hot where labelled
        for (int i = 0; i < l.positions().length; i++) {
            if (l.slots()[i] >= slotReadout) {
                continue;                                              // an operand beyond the slots: zero targets
            }
            for (int p = 0; p < 3; p++) {
                target[(int) l.positions()[i] * width + 30 * l.slots()[i] + 10 * p + (int) l.digits()[i][p]] = 1f;
            }
        }
        long[] real = java.util.stream.IntStream.range(0, n).filter(i -> b.real()[i]).mapToLong(i -> i).toArray();
        Tensor idx = Tensors.longs(real, real.length);
        Tensor sel = aux.reshape(-1, aux.size(-1)).index_select(0, idx);                           // [n_real, D]
        Tensor tg = Tensors.floats(target, n, width).index_select(0, idx);                          // [n_real, slots * 30]
        return Ops.linear(sel, slotW, slotB).sub(tg).pow(new Scalar(2)).sum().mul(new Scalar(weight));
    }

    /**
     * Operand-blind twins of some rows, and where each operand's code goes: operand digits {@code digits[k]} from slot
     * {@code slots[k]}'s table to twin row {@code dstRow[k]}, position {@code dstPos[k]} (each twin's {@code =} and
     * every input position after it); {@code keep}: the real rows without a twin.
     */
    record Twins(List<dev.calm4j.data.Example> examples, long[][] digits, int[] slots, int[] dstRow, int[] dstPos, int[] keep) {}

    Twins twins(Batch b) {
        int t = b.length();
        List<dev.calm4j.data.Example> ex = new ArrayList<>();
        List<long[]> digits = new ArrayList<>();
        List<Integer> dstRow = new ArrayList<>();
        List<Integer> dstPos = new ArrayList<>();
        List<Integer> slots = new ArrayList<>();
        long eq = KvTask.id('=');
        List<Integer> keep = new ArrayList<>();
        for (int r = 0; r < b.rows(); r++) {
            if (twinRng.nextDouble() >= twinProb) {
                keep.add(r);
                continue;
            }
            // The real row's ids: its inputs, then the label of its last real position.
            int n = 0;
            while (n < t && b.real()[r * t + n]) {
                n++;
            }
            long[] ids = new long[n + 1];
            System.arraycopy(b.inputs(), r * t, ids, 0, n);
            ids[n] = b.labels()[r * t + n - 1];
            int eqAt = -1;
            for (int c = 0; c < n; c++) {
                if (ids[c] == eq) {
                    eqAt = c;
                    break;
                }
            }
            if (eqAt < 0) {
                keep.add(r);
                continue;
            }
            List<Long> out = new ArrayList<>();
            List<Boolean> target = new ArrayList<>();
            int firstOperand = dstPos.size();
            int slot = 0;
            int eqPos = -1;
            for (int c = 0; c <= n; c++) {
                long id = ids[c];
                if (c < eqAt && KvTask.isDigit(id)) {
                    if (c == 0 || !KvTask.isDigit(ids[c - 1])) {                // an operand starts: letters instead
                        int len = twinMinLetters + twinRng.nextInt(twinMaxLetters - twinMinLetters + 1);
                        for (int k = 0; k < len; k++) {
                            out.add(KvTask.id((char) ('a' + twinRng.nextInt(26))));
                            target.add(false);
                        }
                    }
                    continue;
                }
                if (c > 0 && c <= eqAt && KvTask.isOperator(id) && KvTask.isDigit(ids[c - 1])) {
                    int v = 0;                                         // the number just before this operator
                    for (int k = c - 1, place = 1; k >= 0 && KvTask.isDigit(ids[k]); k--, place *= 10) {
                        v += (KvTask.ch(ids[k]) - '0') * place;
                    }
                    digits.add(digits(v));
                    dstRow.add(ex.size());
                    dstPos.add(out.size());
                    slots.add(Math.min(slot, codeSlots - 1));
                    slot++;
                }
                if (c == eqAt) {
                    eqPos = out.size();
                }
                out.add(id);
                target.add(c > 0 && b.labels()[r * t + c - 1] != Batch.IGNORE_INDEX);
            }
            // every operand's code at the '=' and at each input position after it
            int operands = dstPos.size() - firstOperand;
            for (int k = firstOperand; k < firstOperand + operands; k++) {
                dstPos.set(k, eqPos);
            }
            for (int p = eqPos + 1; p <= out.size() - 2; p++) {
                for (int k = firstOperand; k < firstOperand + operands; k++) {
                    digits.add(digits.get(k));
                    slots.add(slots.get(k));
                    dstRow.add(dstRow.get(k));
                    dstPos.add(p);
                }
            }
            boolean[] tg = new boolean[target.size()];
            for (int k = 0; k < tg.length; k++) {
                tg[k] = target.get(k);
            }
            ex.add(new dev.calm4j.data.Example(out.stream().mapToLong(Long::longValue).toArray(), tg, null, 0));
        }
        if (ex.isEmpty()) {
            return null;
        }
        return new Twins(ex, digits.toArray(new long[0][]),
                slots.stream().mapToInt(Integer::intValue).toArray(), dstRow.stream().mapToInt(Integer::intValue).toArray(), dstPos.stream().mapToInt(Integer::intValue).toArray(),
                keep.stream().mapToInt(Integer::intValue).toArray());
    }

    @Override
    public void save(Path dir, ObjectNode provenance) {
        LmFamilies.save(model, dir);
        if (code != null) {
            dev.calm4j.io.Safetensors.write(dir.resolve(CODE_FILE), Map.of("code", usedCode().detach().contiguous()),
                    Map.of("what", "m_B's learned operand-digit code [30, D]: rows 0-9 hundreds, 10-19 tens, 20-29 units; "
                            + "training scaffolding, read only by the anchor-side oracle diagnostic"));
        }
        if (tokenizer != null) {
            try {
                Files.copy(tokenizer, dir.resolve("tokenizer.json"), StandardCopyOption.REPLACE_EXISTING);
            } catch (IOException e) {
                throw new dev.calm4j.Calm4jException(dir + ": cannot write tokenizer.json (" + e.getMessage() + ")");
            }
        }
    }

    @Override
    public String describe() {
        StringBuilder twins = new StringBuilder();
        if (twinProb > 0) {
            twins.append(String.format(", operand-blind twins %.2f of rows with a learned code gathered from the '='", twinProb));
            if (placeNorm > 0) {
                twins.append(String.format(", places at norm %.2f", placeNorm));
            }
            if (digitNoise > 0) {
                twins.append(String.format(", digit-space noise up to %.2f (ramp %d steps)", digitNoise, digitNoiseRamp));
            }
        }
        return String.format("%s LM + operand-digit aux loss%s at layer %d (weight %.2f)%s", model.config().modelType(),
                slotReadout > 0 ? " (one linear read-out per operand slot, " + slotReadout + " slots, zero away from the operators)"
                        : "", auxLayer, weight, twins);
    }
}
