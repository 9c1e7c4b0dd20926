package dev.calm4j.api;

import java.nio.file.Path;

/**
 * What a training run did.
 *
 * @param steps           optimizer steps taken
 * @param firstLoss       mean training loss per target token over the first logged window (the first
 *                        {@code intervals.log} steps), in nats
 * @param finalLoss       the same over the last logged window
 * @param evalLoss        mean loss per target token on the eval data at the end, NaN without eval data
 * @param seconds         wall time of the steps
 * @param tokensPerSecond tokens trained on per second
 * @param out             the run's folder: the bridge checkpoint, {@code metrics.jsonl}, {@code train_config.json},
 *                        {@code checkpoint/}
 */
public record TrainSummary(int steps, double firstLoss, double finalLoss, double evalLoss, double seconds,
                           double tokensPerSecond, Path out) {

    @Override
    public String toString() {
        return String.format("%d steps in %.1f s: loss %.4f -> %.4f%s", steps, seconds, firstLoss, finalLoss,
                Double.isNaN(evalLoss) ? "" : String.format(", eval loss %.4f", evalLoss));
    }
}
