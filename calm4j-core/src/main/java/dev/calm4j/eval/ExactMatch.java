package dev.calm4j.eval;

import java.util.List;

/**
 * Exact match after whitespace normalisation, the metric of next-line code completion: a hypothesis matches its
 * reference when both are equal once leading and trailing whitespace is removed and every run of whitespace inside
 * is written as one space (Python's whitespace set, as {@link ChrF}). So indentation, a trailing newline or a tab for
 * spaces do not count, but {@code f(a,b)} and {@code f(a, b)} differ: inside a line, spacing is part of the code
 * written. Case counts. Scores are the share of matches on a 0–100 scale.
 */
public final class ExactMatch {
    private ExactMatch() {}

    /** The text as compared: trimmed, inner whitespace runs to one space. */
    public static String normalize(String s) {
        return String.join(" ", SmoothBleu.splitPython(s));
    }

    public static boolean matches(String hypothesis, String reference) {
        return normalize(hypothesis).equals(normalize(reference));
    }

    /** The percentage of hypotheses that match their reference. */
    public static double corpus(List<String> hypotheses, List<String> references) {
        return Bootstrap.mean100(hits(hypotheses, references), null);
    }

    /** The percentage with a percentile bootstrap interval over examples (as {@link ChrF#corpus(List, List, int, long)}). */
    public static Score corpus(List<String> hypotheses, List<String> references, int resamples, long seed) {
        double[] h = hits(hypotheses, references);
        return new Score(Bootstrap.mean100(h, null), Bootstrap.meanInterval(h, resamples, seed), h.length);
    }

    /** Paired bootstrap of system A against system B on the same references (as {@link ChrF#pairedDifference}). */
    public static Score pairedDifference(List<String> hypothesesA, List<String> hypothesesB, List<String> references,
                                         int resamples, long seed) {
        double[] a = hits(hypothesesA, references);
        double[] b = hits(hypothesesB, references);
        return new Score(Bootstrap.mean100(a, null) - Bootstrap.mean100(b, null),
                Bootstrap.pairedMeanInterval(a, b, resamples, seed), a.length);
    }

    private static double[] hits(List<String> hypotheses, List<String> references) {
        if (hypotheses.size() != references.size()) {
            throw new IllegalArgumentException(hypotheses.size() + " hypotheses, " + references.size() + " references");
        }
        if (hypotheses.isEmpty()) {
            throw new IllegalArgumentException("no examples to score");
        }
        double[] out = new double[hypotheses.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = matches(hypotheses.get(i), references.get(i)) ? 1 : 0;
        }
        return out;
    }
}
