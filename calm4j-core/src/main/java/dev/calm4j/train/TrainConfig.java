package dev.calm4j.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;

/**
 * Settings of one training run (bridges, LoRA or pretraining: the same loop).
 *
 * @param steps optimizer steps
 * @param batchSize examples per micro-batch
 * @param accumulation micro-batches per optimizer step (effective batch = batchSize * accumulation)
 * @param lr peak learning rate (after linear warmup; cosine decay to {@code lr * minLrRatio} at the last step)
 * @param decayFraction the share of the steps the cosine decay spans, at the end (1 = all steps after warmup; less holds
 *     the peak rate until then: "warmup-stable-decay")
 * @param weightDecay AdamW's decoupled weight decay
 * @param clipNorm global gradient-norm clip (0 = off)
 * @param evalEvery evaluate every this many steps (0 = only at the end)
 * @param saveEvery write a resumable checkpoint every this many steps (0 = only at the end)
 * @param lengthGroup batches per length-sorted run of each epoch ({@link dev.calm4j.data.Batcher}; 1 = plain shuffle)
 */
public record TrainConfig(int steps, int batchSize, int accumulation, double lr, int warmupSteps, double minLrRatio,
                          double weightDecay, double beta1, double beta2, double eps, double clipNorm, int evalEvery,
                          int saveEvery, int logEvery, long seed, int lengthGroup, double decayFraction) {

    public TrainConfig {
        check(steps > 0, "--steps must be > 0, got " + steps);
        check(batchSize > 0, "--batch must be > 0, got " + batchSize);
        check(accumulation > 0, "--accumulation must be > 0, got " + accumulation);
        check(lr > 0 && Double.isFinite(lr), "--lr must be > 0, got " + lr);
        check(warmupSteps >= 0, "--warmup must be >= 0, got " + warmupSteps);
        check(minLrRatio >= 0 && minLrRatio <= 1, "--min-lr-ratio must be in [0, 1], got " + minLrRatio);
        check(weightDecay >= 0, "--weight-decay must be >= 0, got " + weightDecay);
        check(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "AdamW betas must be in [0, 1)");
        check(eps > 0, "AdamW eps must be > 0");
        check(clipNorm >= 0, "--clip must be >= 0 (0 = off), got " + clipNorm);
        check(evalEvery >= 0 && saveEvery >= 0 && logEvery > 0, "--eval-every/--save-every must be >= 0, log-every > 0");
        check(lengthGroup >= 1, "--length-group must be >= 1 (1 = off), got " + lengthGroup);
        check(decayFraction > 0 && decayFraction <= 1, "--decay-fraction must be in (0, 1], got " + decayFraction);
    }

    private static void check(boolean ok, String message) {
        if (!ok) {
            throw new Calm4jException(message);
        }
    }

    /** Sensible defaults for bridges: AdamW 1e-3, 5 % warmup, cosine to 10 %, clip 1.0, no weight decay. */
    public static TrainConfig defaults(int steps, int batchSize, double lr, long seed) {
        return new TrainConfig(steps, batchSize, 1, lr, Math.max(0, steps / 20), 0.1, 0.0, 0.9, 0.999, 1e-8, 1.0,
                0, 0, Math.max(1, steps / 100), seed, 1, 1.0);
    }

    public TrainConfig withSteps(int s) {
        return new TrainConfig(s, batchSize, accumulation, lr, warmupSteps, minLrRatio, weightDecay, beta1, beta2, eps,
                clipNorm, evalEvery, saveEvery, logEvery, seed, lengthGroup, decayFraction);
    }

    /**
     * Learning rate at (0-based) step {@code step}: linear warmup, the peak rate until the last {@code decayFraction}
     * of the steps, then cosine decay to lr * minLrRatio at the last step.
     */
    public double lrAt(int step) {
        if (step < warmupSteps) {
            return lr * (step + 1) / (warmupSteps + 1);
        }
        int decayStart = Math.max(warmupSteps, steps - (int) Math.round(decayFraction * steps));
        if (step < decayStart) {
            return lr;
        }
        int decay = Math.max(1, steps - decayStart - 1);
        double progress = Math.min(1.0, (double) (step - decayStart) / decay);
        double cosine = 0.5 * (1 + Math.cos(Math.PI * progress));
        return lr * (minLrRatio + (1 - minLrRatio) * cosine);
    }

    public TrainConfig withDecayFraction(double f) {
        return new TrainConfig(steps, batchSize, accumulation, lr, warmupSteps, minLrRatio, weightDecay, beta1, beta2, eps,
                clipNorm, evalEvery, saveEvery, logEvery, seed, lengthGroup, f);
    }

    public ObjectNode toJson() {
        return new ObjectMapper().valueToTree(this);
    }
}
