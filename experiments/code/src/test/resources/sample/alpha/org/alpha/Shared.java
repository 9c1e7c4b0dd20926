package org.alpha;

/** A file that another project ships unchanged. */
public final class Shared {
    /**
     * Clamps the value into the closed range from lo to hi.
     */
    public static int clamp(int value, int lo, int hi) {
        if (value < lo) {
            return lo;
        }
        return Math.min(value, hi);
    }
}
