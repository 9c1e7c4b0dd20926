package dev.calm4j.experiment.kv;

import dev.calm4j.data.Batch;
import dev.calm4j.data.Batcher;
import dev.calm4j.data.Dataset;
import dev.calm4j.data.Example;
import dev.calm4j.lm.AttentionContext;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.nn.Ops;
import dev.calm4j.nn.Tensors;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.AdamW;
import org.bytedeco.pytorch.AdamWOptions;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.bytedeco.pytorch.global.torch.cat;
import static org.bytedeco.pytorch.global.torch.cross_entropy_loss;
import static org.bytedeco.pytorch.global.torch.zeros;

/**
 * The probe diagnostic: can a linear read-out, fitted on states at operators that follow <em>composition-set</em> keys,
 * read the value of <em>held-out</em> keys from m_A's layer states there? If not, the bridges (also trained on the
 * composition keys only) have nothing key-independent to read, whatever else is right.
 */
final class Probe {
    private Probe() {}

    /** Per layer: fraction of held-out operands whose three digits the probe reads all correctly, and per digit. */
    record Result(int layer, double valueAccuracy, double[] digitAccuracy, int trainN, int testN) {}

    /** States {@code [n, D]} of every layer at operator positions following a key, and the keys' 3 digits. */
    private record Features(List<Tensor> perLayer, long[] digits) {}

    private static Features features(CausalLm m, List<Example> rows, Map<String, Integer> values) {
        List<List<Tensor>> parts = new ArrayList<>();
        for (int i = 0; i < m.numLayers(); i++) {
            parts.add(new ArrayList<>());
        }
        List<long[]> digits = new ArrayList<>();
        try (NoGradGuard ng = new NoGradGuard()) {
            for (Batch b : Batcher.sequential(Dataset.of(rows, "probe"), 128)) {
                DigitAuxObjective.AuxLabels l = DigitAuxObjective.labels(b, values::get);
                if (l.positions().length == 0) {
                    continue;
                }
                Tensor ids = Tensors.longs(b.inputs(), b.rows(), b.length());
                AttentionContext ctx = m.context(0, b.length(), null);
                Tensor h = m.embed(ids);
                Tensor idx = Tensors.longs(l.positions(), l.positions().length);
                for (int i = 0; i < m.numLayers(); i++) {
                    h = m.layer(i, h, ctx, null);
                    parts.get(i).add(h.reshape(-1, h.size(-1)).index_select(0, idx).to(ScalarType.Float).clone());
                }
                digits.addAll(List.of(l.digits()));
            }
        }
        List<Tensor> per = new ArrayList<>();
        for (List<Tensor> p : parts) {
            per.add(cat(new TensorVector(p.toArray(new Tensor[0])), 0));
        }
        long[] flat = new long[digits.size() * 3];
        for (int i = 0; i < digits.size(); i++) {
            System.arraycopy(digits.get(i), 0, flat, i * 3, 3);
        }
        return new Features(per, flat);
    }

    static List<Result> run(CausalLm m, List<Example> train, List<Example> test, Map<String, Integer> values, int steps) {
        List<Result> out = new ArrayList<>();
        try (PointerScope scope = new PointerScope()) {
            Features tr = features(m, train, values);
            Features te = features(m, test, values);
            int ntr = tr.digits().length / 3;
            int nte = te.digits().length / 3;
            Tensor ytr = Tensors.longs(tr.digits(), ntr, 3);
            Tensor yte = Tensors.longs(te.digits(), nte, 3);
            for (int layer = 0; layer < m.numLayers(); layer++) {
                Tensor xtr = tr.perLayer().get(layer);
                Tensor xte = te.perLayer().get(layer);
                // Standardise with training statistics, then a softmax read-out per digit (full batch AdamW).
                Tensor mu = xtr.mean(new long[] {0}, true, new org.bytedeco.pytorch.ScalarTypeOptional());
                Tensor sd = xtr.sub(mu).pow(new Scalar(2)).mean(new long[] {0}, true, new org.bytedeco.pytorch.ScalarTypeOptional())
                        .add(new Scalar(1e-5)).rsqrt();
                Tensor a = xtr.sub(mu).mul(sd);
                Tensor bte = xte.sub(mu).mul(sd);
                long d = a.size(1);
                Tensor[] w = new Tensor[3];
                Tensor[] bias = new Tensor[3];
                for (int k = 0; k < 3; k++) {
                    w[k] = zeros(new long[] {10, d}, new TensorOptions(ScalarType.Float)).set_requires_grad(true);
                    bias[k] = zeros(new long[] {10}, new TensorOptions(ScalarType.Float)).set_requires_grad(true);
                }
                AdamWOptions o = new AdamWOptions(1e-2);
                o.weight_decay().put(1e-3);
                AdamW opt = new AdamW(new TensorVector(w[0], bias[0], w[1], bias[1], w[2], bias[2]), o);
                for (int s = 0; s < steps; s++) {
                    try (PointerScope inner = new PointerScope()) {
                        opt.zero_grad();
                        Tensor loss = null;
                        for (int k = 0; k < 3; k++) {
                            Tensor ce = cross_entropy_loss(Ops.linear(a, w[k], bias[k]), ytr.select(1, k).contiguous(),
                                    new TensorOptional(), 1, -100, 0.0);
                            loss = loss == null ? ce : loss.add(ce);
                        }
                        loss.backward();
                        opt.step();
                    }
                }
                double[] digitAcc = new double[3];
                boolean[] allRight = new boolean[nte];
                java.util.Arrays.fill(allRight, true);
                try (NoGradGuard ng = new NoGradGuard()) {
                    for (int k = 0; k < 3; k++) {
                        long[] pred = Tensors.toLongs(Ops.linear(bte, w[k], bias[k]).argmax(new org.bytedeco.pytorch.LongOptional(1), false));
                        long[] truth = Tensors.toLongs(yte.select(1, k).contiguous());
                        int ok = 0;
                        for (int i = 0; i < nte; i++) {
                            boolean hit = pred[i] == truth[i];
                            ok += hit ? 1 : 0;
                            allRight[i] &= hit;
                        }
                        digitAcc[k] = (double) ok / Math.max(1, nte);
                    }
                }
                int all = 0;
                for (boolean x : allRight) {
                    all += x ? 1 : 0;
                }
                out.add(new Result(layer, (double) all / Math.max(1, nte), digitAcc, ntr, nte));
            }
        }
        return out;
    }
}
