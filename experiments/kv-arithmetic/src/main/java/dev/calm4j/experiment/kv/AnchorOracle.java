package dev.calm4j.experiment.kv;

import dev.calm4j.lm.AttentionContext;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.nn.Tensors;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * The anchor-side diagnostic, the mirror of {@link Probe}: what m_B does on a KV-MATH text ({@code k1+k2=}) when an
 * oracle adds, at the output of block {@code layer} and at each operator after an operand, m_B's own state there for
 * the numeric expression ({@code v1+v2=}). A bridge into that layer can add at most that (the true values, written
 * where m_B reads them), so this accuracy is the ceiling of the composition with those connections; an anchor that
 * reads operands from their digits instead of from the operators after them scores near zero here whatever the bridges
 * learn. Greedy decoding with full recomputation, batch 1 (a few hundred tiny forwards).
 */
final class AnchorOracle {
    private AnchorOracle() {}

    /** Exact-match count of the oracle-injected greedy answers over {@code exprs}. */
    static int correct(CausalLm mB, int layer, List<KvTask.Expr> exprs, int maxNew) {
        return correct(mB, layer, exprs, maxNew, null);
    }

    /**
     * As above, but when {@code code} ({@code [30, D]}, m_B's operand code, see {@link DigitAuxObjective}) is
     * given, what is added at each operator is that code of the operand's true value instead of m_B's numeric state:
     * the interface m_B was trained to read, and what a bridge has to write.
     */
    static int correct(CausalLm mB, int layer, List<KvTask.Expr> exprs, int maxNew, Tensor code) {
        int ok = 0;
        try (NoGradGuard ng = new NoGradGuard()) {
            for (KvTask.Expr e : exprs) {
                try (PointerScope scope = new PointerScope()) {
                    if (answer(mB, layer, e, maxNew, code).equals(Integer.toString(e.result()))) {
                        ok++;
                    }
                }
            }
        }
        return ok;
    }

    private static String answer(CausalLm m, int layer, KvTask.Expr e, int maxNew, Tensor code) {
        List<Long> numeric = ids(e.valueText() + "=");
        List<Long> keys = ids(e.keyText() + "=");
        long[] numOps = operatorPositions(numeric);
        long[] keyOps = operatorPositions(keys);
        Tensor injected;                                                                                    // [n, D]
        boolean gathered = code != null && DigitAuxObjective.gathered(code);
        if (code == null) {
            injected = statesAt(m, numeric, layer).index_select(0, Tensors.longs(numOps, numOps.length));
        } else {
            int[] slots = gathered ? java.util.stream.IntStream.range(0, e.values().length).toArray() : null;
            injected = DigitAuxObjective.encode(code, java.util.Arrays.stream(e.values()).mapToObj(DigitAuxObjective::digits)
                    .toArray(long[][]::new), slots);
            if (gathered) {
                injected = injected.sum(new long[] {0}, true, new org.bytedeco.pytorch.ScalarTypeOptional());   // [1, D]
            }
        }
        long eqAt = keyOps[keyOps.length - 1];
        StringBuilder out = new StringBuilder();
        List<Long> seq = new ArrayList<>(keys);
        for (int s = 0; s < maxNew; s++) {
            Tensor ids = Tensors.longs(seq.stream().mapToLong(Long::longValue).toArray(), 1, seq.size());
            AttentionContext ctx = m.context(0, seq.size(), null);
            Tensor h = m.embed(ids);
            for (int i = 0; i < m.numLayers(); i++) {
                h = m.layer(i, h, ctx, null);
                if (i == layer) {
                    long d = h.size(-1);
                    long[] at = keyOps;
                    Tensor add = injected;
                    if (gathered) {                                     // at the '=' and every position after it
                        at = java.util.stream.LongStream.range(eqAt, seq.size()).toArray();
                        add = injected.repeat(new long[] {at.length, 1});
                    }
                    h = h.reshape(-1, d).index_add(0, Tensors.longs(at, at.length), add.to(h.scalar_type())).view(h.sizes());   // [T, D] in the model's dtype
                }
            }
            long next = Tensors.toLongs(m.logits(h).select(1, seq.size() - 1).argmax())[0];
            if (next == KvTask.EOS) {
                break;
            }
            out.append(KvTask.ch(next));
            seq.add(next);
        }
        return out.toString();
    }

    /** Block {@code layer}'s output {@code [T, D]} for one sequence. */
    private static Tensor statesAt(CausalLm m, List<Long> seq, int layer) {
        Tensor ids = Tensors.longs(seq.stream().mapToLong(Long::longValue).toArray(), 1, seq.size());
        AttentionContext ctx = m.context(0, seq.size(), null);
        Tensor h = m.embed(ids);
        for (int i = 0; i <= layer; i++) {
            h = m.layer(i, h, ctx, null);
        }
        return h.select(0, 0);
    }

    /** Positions of operators (+, -, =) that follow an operand, in order. */
    static long[] operatorPositions(List<Long> seq) {
        List<Long> p = new ArrayList<>();
        for (int i = 1; i < seq.size(); i++) {
            long prev = seq.get(i - 1);
            if (KvTask.isOperator(seq.get(i)) && (KvTask.isDigit(prev) || KvTask.isLetter(prev))) {
                p.add((long) i);
            }
        }
        return p.stream().mapToLong(Long::longValue).toArray();
    }

    private static List<Long> ids(String prompt) {
        List<Long> ids = new ArrayList<>();
        ids.add((long) KvTask.BOS);
        for (char c : prompt.toCharArray()) {
            ids.add(KvTask.id(c));
        }
        return ids;
    }
}
