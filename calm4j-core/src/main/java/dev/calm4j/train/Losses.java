package dev.calm4j.train;

import dev.calm4j.data.Batch;
import dev.calm4j.nn.Tensors;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.global.torch.ScalarType;

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
