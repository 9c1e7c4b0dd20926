package dev.calm4j.train;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;

/**
 * What a {@link TrainLoop} run reports as it goes. The library draws nothing: a command line renders these events as
 * a progress bar, log lines and a loss plot; a program may ignore them ({@link #NONE}) or collect them. Called on the
 * training thread; a listener that blocks holds training up.
 */
public interface TrainListener {
    /** Reports nothing. */
    TrainListener NONE = new TrainListener() {};

    /** Prints the loop's messages to {@code out}, a line each (and nothing else). */
    static TrainListener messagesTo(PrintStream out) {
        return new TrainListener() {
            @Override
            public void message(String line) {
                out.println(line);
            }
        };
    }

    /** Every event to each of {@code listeners}, in order. */
    static TrainListener all(List<TrainListener> listeners) {
        List<TrainListener> ls = List.copyOf(listeners);
        return new TrainListener() {
            @Override
            public void message(String line) {
                ls.forEach(l -> l.message(line));
            }

            @Override
            public void started(int startStep, int steps) {
                ls.forEach(l -> l.started(startStep, steps));
            }

            @Override
            public void stepped(int done) {
                ls.forEach(l -> l.stepped(done));
            }

            @Override
            public void logged(Metrics m) {
                ls.forEach(l -> l.logged(m));
            }

            @Override
            public void finished(TrainLoop.Result result, Path out) {
                ls.forEach(l -> l.finished(result, out));
            }

            @Override
            public boolean stopRequested() {
                return ls.stream().anyMatch(TrainListener::stopRequested);
            }
        };
    }

    /** A line worth showing a person ("resumed from ... at step 40", "training ... on N examples"). */
    default void message(String line) {}

    /** Before the first step this run takes ({@code startStep} > 0 after {@code --resume}) of {@code steps} in all. */
    default void started(int startStep, int steps) {}

    /** After every optimizer step ({@code done} steps finished). */
    default void stepped(int done) {}

    /**
     * Every {@code intervals.log} steps and at the last one, and at every evaluation between them (with a NaN loss):
     * the logged figures (also a line of metrics.jsonl).
     */
    default void logged(Metrics m) {}

    /** After the run's result and final checkpoint are written into {@code out}. */
    default void finished(TrainLoop.Result result, Path out) {}

    /**
     * Asked after every step: true makes the loop write a resumable checkpoint and end with {@link TrainLoop.Stopped}
     * (the CLI answers true once SIGINT or SIGTERM arrived).
     */
    default boolean stopRequested() {
        return false;
    }

    /**
     * One logged point.
     *
     * @param loss mean training loss per target token over the steps since the last log; NaN at an evaluation
     *     between logs
     * @param evalLoss mean eval loss per target token, NaN when not evaluated at this step
     */
    record Metrics(int step, int steps, double loss, double lr, double gradNorm, double tokensPerSecond,
                   double elapsedSeconds, double evalLoss) {}
}
