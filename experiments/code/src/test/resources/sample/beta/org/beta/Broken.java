package org.beta;

/** Does not parse: the method's body is never closed. */
public final class Broken {
    /**
     * Returns one, if only it parsed.
     */
    public static int one() {
        return 1;
