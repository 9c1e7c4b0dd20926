package dev.calm4j.train;

import dev.calm4j.data.Batch;
import dev.calm4j.nn.Tensors;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.function.UnaryOperator;

import static org.bytedeco.pytorch.global.torch.cross_entropy_loss;

/** Token-level cross-entropy shared by every objective. */
public final class Losses {
    private static final long SUM = 2;   // at::Reduction::Sum

    private Losses() {}

    /** Right-padded input ids {@code [B, T]} of a batch (padding sits after every real token: causal masks suffice). */
    public static Tensor inputs(Batch b) {
        return Tensors.longs(b.inputs(), b.rows(), b.length());
    }

    /** Sum of cross-entropy over the batch's labelled positions; logits {@code [B, T, V]} in any float dtype. */
    public static Tensor sum(Tensor logits, Batch b) {
        return sum(logits, b.labels());
    }

    /**
     * The same loss from final hidden states {@code [B, T, D]}, with the output head ({@code head}: final norm and
     * projection, {@code [.., D] -> [.., V]}, position by position) applied only where there is a label. Why: a batch
     * whose prompts carry no loss (instructions, the code before its summary) would otherwise build, keep for the
     * backward pass and convert to fp32 a full-vocabulary row for every prompt position, the largest tensors of a
     * step when the vocabulary is large (docs/performance.md, "A loss only where there are labels"). Equal to
     * {@code sum(head(hidden), labels)} up to the matmuls' summation order ({@code LabelOnlyLossTest}).
     */
    public static Tensor sum(Tensor hidden, UnaryOperator<Tensor> head, Batch b) {
        return sum(hidden, head, b.labels());
    }

    /** As {@link #sum(Tensor, UnaryOperator, Batch)} over flat labels ({@code B * T}). */
    public static Tensor sum(Tensor hidden, UnaryOperator<Tensor> head, long[] flatLabels) {
        int n = 0;
        for (long l : flatLabels) {
            if (l != Batch.IGNORE_INDEX) {
                n++;
            }
        }
        if (n == flatLabels.length || n == 0) {
            return sum(head.apply(hidden), flatLabels);            // every position counts (or none): nothing to skip
        }
        long[] at = new long[n];
        long[] kept = new long[n];
        for (int i = 0, j = 0; i < flatLabels.length; i++) {
            if (flatLabels[i] != Batch.IGNORE_INDEX) {
                at[j] = i;
                kept[j++] = flatLabels[i];
            }
        }
        Tensor rows = hidden.reshape(-1, hidden.size(-1)).index_select(0, Tensors.longs(at, n));   // [N, D]
        return sum(head.apply(rows.unsqueeze(0)), kept);                                          // head: [1, N, V]
    }

    /** The same over flat labels ({@code B * T}, {@link Batch#IGNORE_INDEX} where unlabelled), for a subset of rows. */
    public static Tensor sum(Tensor logits, long[] flatLabels) {
        Tensor labels = Tensors.longs(flatLabels, flatLabels.length);
        Tensor flat = logits.reshape(-1, logits.size(-1));
        if (flat.scalar_type().intern() != ScalarType.Float && flat.scalar_type().intern() != ScalarType.Double) {
            flat = flat.to(ScalarType.Float);                      // the loss itself always in fp32
        }
        return cross_entropy_loss(flat, labels, new TensorOptional(), SUM, Batch.IGNORE_INDEX, 0.0);
    }
}
