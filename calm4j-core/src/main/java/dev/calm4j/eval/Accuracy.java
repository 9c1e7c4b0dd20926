package dev.calm4j.eval;

/** A proportion with its 95 % Wilson score interval (sound at 0 % and 100 %, unlike the normal approximation). */
public record Accuracy(long correct, long n) {
    public double value() {
        return n == 0 ? Double.NaN : (double) correct / n;
    }

    /** {low, high} of the 95 % Wilson interval. */
    public double[] ci95() {
        if (n == 0) {
            return new double[] {Double.NaN, Double.NaN};
        }
        double z = 1.959963984540054;
        double p = value();
        double denom = 1 + z * z / n;
        double centre = (p + z * z / (2 * n)) / denom;
        double half = z * Math.sqrt(p * (1 - p) / n + z * z / (4.0 * n * n)) / denom;
        return new double[] {Math.max(0, centre - half), Math.min(1, centre + half)};
    }

    @Override
    public String toString() {
        double[] ci = ci95();
        return String.format("%.1f%% (%d/%d, 95%% CI %.1f-%.1f)", 100 * value(), correct, n, 100 * ci[0], 100 * ci[1]);
    }
}
