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
 * which DESIGN.md §4.1 found to leave nothing readable); for m_B the operand is a number it reads.
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

    DigitAuxObjective(CausalLm model, int auxLayer, double weight, Function<String, Integer> operandValue,
                      long seed, Path tokenizer) {
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
    }

    @Override
    public Map<String, Tensor> parameters() {
        Map<String, Tensor> p = new LinkedHashMap<>(model.namedWeights());
        for (int i = 0; i < 3; i++) {
            p.put("aux.digit" + i + ".weight", headW[i]);
            p.put("aux.digit" + i + ".bias", headB[i]);
        }
        return p;
    }

    /** Positions (row * T + t) of operators right after an operand, and that operand's three digits. */
    record AuxLabels(long[] positions, long[][] digits) {}

    static AuxLabels labels(Batch b, Function<String, Integer> operandValue) {
        List<Long> pos = new ArrayList<>();
        List<long[]> dig = new ArrayList<>();
        int t = b.length();
        for (int r = 0; r < b.rows(); r++) {
            for (int c = 1; c < t; c++) {
                long id = b.inputs()[r * t + c];
                if (!b.real()[r * t + c] || !KvTask.isOperator(id)) {
                    continue;
                }
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
                dig.add(new long[] {v / 100, (v / 10) % 10, v % 10});
            }
        }
        return new AuxLabels(pos.stream().mapToLong(Long::longValue).toArray(), dig.toArray(new long[0][]));
    }

    @Override
    public Tensor lossSum(Batch b) {
        Tensor ids = Losses.inputs(b);
        AttentionContext ctx = model.context(0, ids.size(1), null);
        Tensor h = model.embed(ids);
        Tensor aux = null;
        for (int i = 0; i < model.numLayers(); i++) {
            h = model.layer(i, h, ctx, null);
            if (i == auxLayer) {
                aux = h;
            }
        }
        Tensor loss = Losses.sum(model.logits(h), b);
        AuxLabels l = labels(b, operandValue);
        if (l.positions().length > 0) {
            Tensor sel = aux.reshape(-1, aux.size(-1)).index_select(0, Tensors.longs(l.positions(), l.positions().length));
            long[] flat = new long[l.positions().length * 3];
            for (int i = 0; i < l.digits().length; i++) {
                System.arraycopy(l.digits()[i], 0, flat, i * 3, 3);
            }
            Tensor targets = Tensors.longs(flat, l.positions().length, 3);
            for (int d = 0; d < 3; d++) {
                Tensor logits = Ops.linear(sel, headW[d], headB[d]);                                 // [n, 10]
                Tensor ce = cross_entropy_loss(logits, targets.select(1, d).contiguous(), new TensorOptional(), 2, -100, 0.0);
                loss = loss.add(ce.mul(new Scalar(weight)));
            }
        }
        return loss;
    }

    @Override
    public void save(Path dir, ObjectNode provenance) {
        LmFamilies.save(model, dir);
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
        return String.format("%s LM + operand-digit aux loss at layer %d (weight %.2f)", model.config().modelType(),
                auxLayer, weight);
    }
}
