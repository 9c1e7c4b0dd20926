package dev.calm4j.nn;

import dev.calm4j.Calm4jException;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * Non-finite values (NaN, ±Inf) in weights, bridges or logits: one {@code isfinite().all()} reduction per tensor,
 * so a damaged file is refused where it is loaded instead of turning every output into garbage without a word.
 */
public final class Finite {
    private Finite() {}

    /** Whether every element of {@code t} is finite (integer tensors always are). */
    public static boolean all(Tensor t) {
        ScalarType st = t.scalar_type().intern();
        if (st != ScalarType.Float && st != ScalarType.BFloat16 && st != ScalarType.Half && st != ScalarType.Double) {
            return true;
        }
        try (PointerScope scope = new PointerScope()) {
            return t.isfinite().all().item_bool();
        }
    }

    /** Refuses {@code t} when it holds a NaN or an infinity; {@code what} names it ("file: tensor 'x'"). */
    public static void require(Tensor t, String what) {
        if (!all(t)) {
            throw new Calm4jException(what + " holds NaN or infinite values (damaged or diverged weights)");
        }
    }
}
