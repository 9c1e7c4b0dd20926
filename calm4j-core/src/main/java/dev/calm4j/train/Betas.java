package dev.calm4j.train;

import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.pytorch.AdamWOptions;

/**
 * Sets AdamW's betas. JavaCPP exposes the C++ {@code std::tuple<double, double>} as a bare DoublePointer, and
 * libstdc++ lays a tuple's elements out in reverse order; rather than assume, read the defaults (0.9, 0.999) back
 * to find which slot is beta1.
 */
final class Betas {
    private Betas() {}

    static void set(AdamWOptions opts, double beta1, double beta2) {
        DoublePointer p = opts.betas();
        int first = p.get(0) == 0.9 ? 0 : 1;
        if (p.get(first) != 0.9 || p.get(1 - first) != 0.999) {
            throw new IllegalStateException("unexpected AdamW betas layout: " + p.get(0) + ", " + p.get(1));
        }
        p.put(first, beta1);
        p.put(1 - first, beta2);
    }
}
