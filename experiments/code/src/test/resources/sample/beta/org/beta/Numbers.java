package org.beta;

/** Number helpers. */
public final class Numbers {
    /**
     * Returns the greatest common divisor of {@code a} and {@code b} (Euclid's algorithm).
     */
    public static long gcd(long a, long b) {
        while (b != 0) {
            long t = a % b;
            a = b;
            b = t;
        }
        return Math.abs(a);
    }

    /**
     * Returns the least common multiple of the two values.
     */
    public static long lcm(long a, long b) {
        if (a == 0 || b == 0) {
            return 0;
        }
        return Math.abs(a / gcd(a, b) * b);
    }

    /**
     * Tests whether the value is a power of two.
     */
    public static boolean isPowerOfTwo(long x) {
        boolean positive = x > 0;
        return positive && (x & (x - 1)) == 0;
    }

    /**
     * Returns the sign of the value: -1, 0 or 1.
     */
    public static int sign(long x) {
        int s = Long.signum(x);
        return s;
    }
}
