package org.gamma;

/** Text helpers of the held-out project. */
public final class Text {
    /**
     * Reverses the characters of the string, keeping surrogate pairs together.
     */
    public static String reverse(String s) {
        StringBuilder sb = new StringBuilder(s);
        sb.reverse();
        return sb.toString();
    }

    /**
     * Returns {@code true} if the string is {@code null} or empty.
     */
    public static boolean isEmpty(final String s) {
        boolean none = s == null;
        return none || s.length() == 0;
    }

    /**
     * Counts the vowels of the string, ignoring case.
     */
    public static int vowels(String s) {
        int n = 0;
        for (char c : s.toLowerCase().toCharArray()) {
            if ("aeiou".indexOf(c) >= 0) {
                n++;
            }
        }
        return n;
    }

    /**
     * Returns the greatest common divisor, copied into this project with another comment.
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
     * Repeats the string the given number of times.
     */
    public static String repeat(String s, int times) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < times; i++) {
            sb.append(s);
        }
        return sb.toString();
    }
}
