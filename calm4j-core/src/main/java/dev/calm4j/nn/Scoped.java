package dev.calm4j.nn;

import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Tensor;

import java.util.function.Supplier;

/**
 * Frees a computation's intermediate tensors as soon as it returns, instead of when the caller's
 * {@link PointerScope} closes.
 *
 * <p>Why: JavaCPP frees a tensor made inside a scope only when that scope closes, so with one scope per training
 * step every intermediate of every layer (normed inputs, q/k/v, rotary temporaries, the SwiGLU hidden states...)
 * stayed alive until the step ended: about 1.4 GB on the b1 bench shapes, where PyTorch (reference counting) frees
 * each one as soon as its last use is gone. What autograd needs for the backward pass it keeps itself, so freeing
 * the Java handles early is safe.
 */
public final class Scoped {
    private Scoped() {}

    /**
     * Runs {@code body} in a scope of its own; every tensor it creates is freed when it returns, except its result,
     * which is handed to the caller's scope (or, outside any scope, to the caller).
     */
    public static Tensor keep(Supplier<Tensor> body) {
        PointerScope outer = PointerScope.getInnerScope();
        Tensor out;
        try (PointerScope inner = new PointerScope()) {
            out = body.get();
            out.retainReference();                 // survives the inner scope
        }
        if (outer != null) {
            outer.attach(out);
            out.releaseReference();                // now owned by the caller's scope alone
        }
        return out;
    }

    /** As {@link #keep}, for a computation with several results. */
    public static Tensor[] keepAll(Supplier<Tensor[]> body) {
        PointerScope outer = PointerScope.getInnerScope();
        Tensor[] out;
        try (PointerScope inner = new PointerScope()) {
            out = body.get();
            for (Tensor t : out) {
                t.retainReference();
            }
        }
        if (outer != null) {
            for (Tensor t : out) {
                outer.attach(t);
                t.releaseReference();
            }
        }
        return out;
    }
}
