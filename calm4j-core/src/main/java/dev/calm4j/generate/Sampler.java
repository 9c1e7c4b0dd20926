package dev.calm4j.generate;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Picks the next token from one row of logits. Runs in Java on a copied row: it is O(V log V) at worst, small
 * next to a forward pass, and it makes ties and seeds exact (greedy picks the lowest id among equal maxima, as
 * llama2.c does; a seed reproduces the same sample on every machine).
 */
public final class Sampler {
    private final double temperature;
    private final int topK;
    private final double topP;
    private final SplittableRandom random;

    private Sampler(double temperature, int topK, double topP, long seed) {
        if (temperature < 0 || Double.isNaN(temperature)) {
            throw new IllegalArgumentException("temperature must be >= 0, got " + temperature);
        }
        if (topK < 0) {
            throw new IllegalArgumentException("top-k must be >= 0 (0 = off), got " + topK);
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new IllegalArgumentException("top-p must be in (0, 1], got " + topP);
        }
        this.temperature = temperature;
        this.topK = topK;
        this.topP = topP;
        this.random = new SplittableRandom(seed);
    }

    public static Sampler greedy() {
        return new Sampler(0, 0, 1, 0);
    }

    /** Temperature sampling restricted to the top-k ids (0 = all) and the top-p probability mass. */
    public static Sampler sample(double temperature, int topK, double topP, long seed) {
        return new Sampler(temperature, topK, topP, seed);
    }

    public boolean isGreedy() {
        return temperature == 0;
    }

    public int next(float[] logits) {
        if (temperature == 0) {
            return argmax(logits);
        }
        int v = logits.length;
        Integer[] order = new Integer[v];
        for (int i = 0; i < v; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (a, b) -> logits[a] != logits[b] ? Float.compare(logits[b], logits[a]) : Integer.compare(a, b));
        int keep = topK > 0 ? Math.min(topK, v) : v;
        double max = logits[order[0]];
        double[] p = new double[keep];
        double total = 0;
        for (int i = 0; i < keep; i++) {
            p[i] = Math.exp((logits[order[i]] - max) / temperature);
            total += p[i];
        }
        // Nucleus: the smallest prefix whose mass reaches top-p (always at least one id).
        double mass = 0;
        int n = 0;
        while (n < keep) {
            mass += p[n] / total;
            n++;
            if (mass >= topP) {
                break;
            }
        }
        double sum = 0;
        for (int i = 0; i < n; i++) {
            sum += p[i];
        }
        double r = random.nextDouble() * sum;
        for (int i = 0; i < n; i++) {
            r -= p[i];
            if (r < 0) {
                return order[i];
            }
        }
        return order[n - 1];
    }

    /** Index of the largest value; the lowest index wins a tie. */
    public static int argmax(float[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) {
            if (x[i] > x[best]) {
                best = i;
            }
        }
        return best;
    }
}
