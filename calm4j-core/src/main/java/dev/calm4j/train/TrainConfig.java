package dev.calm4j.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;

/**
 * Settings of one training run (bridges, LoRA or pretraining: the same loop), in named parts so that a reader can
 * tell what each value is. Written as {@code train_config.json} beside every run and into every checkpoint; a
 * {@code --resume} must match it (only {@code steps} may grow).
 *
 * @param steps optimizer steps
 * @param batching what one step sees
 * @param schedule the learning rate over the steps
 * @param optimizer AdamW's settings and gradient clipping
 * @param intervals how often to log, evaluate and checkpoint
 * @param seed data order (and whatever else the objective seeds from the run)
 */
public record TrainConfig(int steps, Batching batching, Schedule schedule, Optimizer optimizer, Intervals intervals,
                          long seed) {

    public TrainConfig {
        check(steps > 0, "--steps must be > 0, got " + steps);
        check(batching != null && schedule != null && optimizer != null && intervals != null,
                "train config: batching, schedule, optimizer and intervals expected");
    }

    /**
     * @param size examples per micro-batch
     * @param accumulation micro-batches per optimizer step (effective batch = size * accumulation)
     * @param lengthGroup batches per length-sorted run of each epoch ({@link dev.calm4j.data.Batcher}; 1 = plain shuffle)
     */
    public record Batching(int size, int accumulation, int lengthGroup) {
        public Batching {
            check(size > 0, "--batch must be > 0, got " + size);
            check(accumulation > 0, "--accumulation must be > 0, got " + accumulation);
            check(lengthGroup >= 1, "--length-group must be >= 1 (1 = off), got " + lengthGroup);
        }
    }

    /**
     * Linear warmup to the peak rate, the peak held, then a cosine decay to {@code lr * minLrRatio} at the last step.
     *
     * @param lr peak learning rate
     * @param warmupSteps steps of linear warmup
     * @param minLrRatio the last step's rate as a share of the peak
     * @param decayFraction the share of the steps the cosine decay spans, at the end (1 = all steps after warmup; less
     *     holds the peak rate until then: "warmup-stable-decay")
     */
    public record Schedule(double lr, int warmupSteps, double minLrRatio, double decayFraction) {
        public Schedule {
            check(lr > 0 && Double.isFinite(lr), "--lr must be > 0, got " + lr);
            check(warmupSteps >= 0, "--warmup must be >= 0, got " + warmupSteps);
            check(minLrRatio >= 0 && minLrRatio <= 1, "--min-lr-ratio must be in [0, 1], got " + minLrRatio);
            check(decayFraction > 0 && decayFraction <= 1, "--decay-fraction must be in (0, 1], got " + decayFraction);
        }

        /** A cosine over all the steps after warmup ({@code decayFraction} 1). */
        public static Schedule cosine(double lr, int warmupSteps, double minLrRatio) {
            return new Schedule(lr, warmupSteps, minLrRatio, 1.0);
        }

        public Schedule withDecayFraction(double f) {
            return new Schedule(lr, warmupSteps, minLrRatio, f);
        }

        /** Learning rate at (0-based) step {@code step} of {@code steps}. */
        public double lrAt(int step, int steps) {
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
    }

    /**
     * @param weightDecay AdamW's decoupled weight decay
     * @param beta1 AdamW's first-moment decay
     * @param beta2 AdamW's second-moment decay
     * @param eps AdamW's epsilon
     * @param clipNorm global gradient-norm clip (0 = off)
     */
    public record Optimizer(double weightDecay, double beta1, double beta2, double eps, double clipNorm) {
        public Optimizer {
            check(weightDecay >= 0, "--weight-decay must be >= 0, got " + weightDecay);
            check(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "AdamW betas must be in [0, 1)");
            check(eps > 0, "AdamW eps must be > 0");
            check(clipNorm >= 0, "--clip must be >= 0 (0 = off), got " + clipNorm);
        }

        /** AdamW (0.9, 0.999, 1e-8) with this weight decay, clipped at global norm 1.0. */
        public static Optimizer adamW(double weightDecay) {
            return new Optimizer(weightDecay, 0.9, 0.999, 1e-8, 1.0);
        }

        public Optimizer withBeta2(double b) {
            return new Optimizer(weightDecay, beta1, b, eps, clipNorm);
        }
    }

    /**
     * @param log log (metrics.jsonl, the listener) every this many steps
     * @param eval evaluate every this many steps (0 = only at the end)
     * @param save write a resumable checkpoint every this many steps (0 = only at the end)
     */
    public record Intervals(int log, int eval, int save) {
        public Intervals {
            check(eval >= 0 && save >= 0 && log > 0, "--eval-every/--save-every must be >= 0, log-every > 0");
        }
    }

    private static void check(boolean ok, String message) {
        if (!ok) {
            throw new Calm4jException(message);
        }
    }

    /** Sensible defaults for bridges: AdamW at {@code lr}, 5 % warmup, cosine to 10 %, clip 1.0, no weight decay. */
    public static TrainConfig defaults(int steps, int batchSize, double lr, long seed) {
        return new TrainConfig(steps, new Batching(batchSize, 1, 1), Schedule.cosine(lr, Math.max(0, steps / 20), 0.1),
                Optimizer.adamW(0.0), new Intervals(Math.max(1, steps / 100), 0, 0), seed);
    }

    public TrainConfig withSteps(int s) {
        return new TrainConfig(s, batching, schedule, optimizer, intervals, seed);
    }

    public TrainConfig withSchedule(Schedule s) {
        return new TrainConfig(steps, batching, s, optimizer, intervals, seed);
    }

    public TrainConfig withDecayFraction(double f) {
        return withSchedule(schedule.withDecayFraction(f));
    }

    /** Learning rate at (0-based) step {@code step}: {@link Schedule#lrAt} over this run's steps. */
    public double lrAt(int step) {
        return schedule.lrAt(step, steps);
    }

    public ObjectNode toJson() {
        return new ObjectMapper().valueToTree(this);
    }
}
