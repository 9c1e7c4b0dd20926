package dev.calm4j.cli;

import dev.calm4j.Calm4jException;
import dev.calm4j.data.Dataset;
import dev.calm4j.train.Objective;
import dev.calm4j.train.TrainConfig;
import dev.calm4j.train.TrainListener;
import dev.calm4j.train.TrainLoop;
import dev.calm4j.plot.LossCurve;
import me.tongfei.progressbar.ConsoleProgressBarConsumer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * Runs the training loop for a command: its messages and a line per logged step go to the command's output (or a
 * progress bar to stderr with {@code --progress}), and the loss curve to {@code loss.png} in the run's folder.
 */
final class Training {
    private Training() {}

    static TrainLoop.Result run(Objective obj, Dataset train, Dataset eval, TrainConfig cfg, Path out,
                                TrainOptions opts, PrintWriter w) {
        dev.calm4j.train.DataParallel dp = opts.dataParallel();
        if (!dp.writes()) {
            return other(obj, train, eval, cfg, out, opts, dp);
        }
        dev.calm4j.io.RunLock.acquire(out);      // held until the command ends (Main releases it)
        if (!opts.resume) {
            try {
                Files.deleteIfExists(out.resolve("metrics.jsonl"));   // a previous run's lines must not stay
            } catch (IOException e) {
                throw new Calm4jException(out.resolve("metrics.jsonl") + ": cannot delete (" + e.getMessage() + ")");
            }
        }
        TrainListener console = opts.progressBar() ? new BarListener("train", System.err) : new LineListener(w);
        Signals signals = Signals.install();
        TrainLoop.Result r;
        try {
            r = TrainLoop.run(obj, train, eval, cfg, out, opts.resume,
                    TrainListener.all(List.of(messages(w), console, PLOT, signals)), out, dp);
        } catch (TrainLoop.Stopped e) {
            throw new Interrupted(signals.received(), e.getMessage());
        } finally {
            signals.restore();
        }
        if (signals.received() != null) {
            // arrived during the last step or while the results were written: they are complete
            throw new Interrupted(signals.received(), "the run had finished; its results and checkpoint are saved in " + out);
        }
        return r;
    }

    /**
     * A rank other than 0: it trains without a word (rank 0 reports for the run) and writes nothing; a signal still
     * stops the run, which every rank then leaves at the same step.
     */
    private static TrainLoop.Result other(Objective obj, Dataset train, Dataset eval, TrainConfig cfg, Path out,
                                          TrainOptions opts, dev.calm4j.train.DataParallel dp) {
        Signals signals = Signals.install();
        try {
            return TrainLoop.run(obj, train, eval, cfg, out, opts.resume, signals, out, dp);
        } catch (TrainLoop.Stopped e) {
            throw new Interrupted(signals.received() == null ? "TERM" : signals.received(), "rank " + dp.rank() + ": "
                    + e.getMessage().replaceFirst("; checkpoint saved in .*", " (rank 0 saved the checkpoint)"));
        } finally {
            signals.restore();
        }
    }

    /** The run ended on SIGINT or SIGTERM after saving a checkpoint: exit 128 + the signal's number. */
    static final class Interrupted extends Calm4jException {
        private static final long serialVersionUID = 1L;
        private final int exitCode;

        Interrupted(String signal, String what) {
            super("interrupted by SIG" + signal + ": " + what);
            this.exitCode = signal.equals("INT") ? 130 : 143;
        }

        int exitCode() {
            return exitCode;
        }
    }

    /**
     * SIGINT and SIGTERM while the loop runs: the first asks the loop to stop after the step in progress and save a
     * checkpoint (a kill then loses nothing but that step); a second one ends the process at once, as before.
     */
    @SuppressWarnings("removal")
    static final class Signals implements TrainListener {
        private static final String[] NAMES = {"INT", "TERM"};
        private final java.util.concurrent.atomic.AtomicReference<String> received = new java.util.concurrent.atomic.AtomicReference<>();
        private final java.util.Map<String, sun.misc.SignalHandler> previous = new java.util.HashMap<>();

        static Signals install() {
            Signals s = new Signals();
            for (String n : NAMES) {
                try {
                    s.previous.put(n, sun.misc.Signal.handle(new sun.misc.Signal(n), sig -> s.on(n)));
                } catch (IllegalArgumentException e) {
                    // the JVM reserves this signal here (-Xrs): the default behaviour stays
                }
            }
            return s;
        }

        void on(String name) {
            if (!received.compareAndSet(null, name)) {
                Runtime.getRuntime().halt(name.equals("INT") ? 130 : 143);
            }
        }

        String received() {
            return received.get();
        }

        @Override
        public boolean stopRequested() {
            return received.get() != null;
        }

        void restore() {
            previous.forEach((n, h) -> sun.misc.Signal.handle(new sun.misc.Signal(n), h));
        }
    }

    /** Plots the run's loss curve into its folder when it ends. */
    static final TrainListener PLOT = new TrainListener() {
        @Override
        public void finished(TrainLoop.Result r, Path out) {
            LossCurve.write(out.resolve("loss.png"), r.describe(), r.curve());
        }
    };

    /** The loop's messages ("resumed from ...", "training ... on N examples"), a line each. */
    static TrainListener messages(PrintWriter w) {
        return new TrainListener() {
            @Override
            public void message(String line) {
                w.println(line);
                w.flush();
            }
        };
    }

    /** A line per logged step: step, loss, eval loss, rate, throughput. */
    static final class LineListener implements TrainListener {
        private final PrintWriter out;

        LineListener(PrintWriter out) {
            this.out = out;
        }

        @Override
        public void logged(Metrics m) {
            StringBuilder sb = new StringBuilder(String.format("step %" + String.valueOf(m.steps()).length() + "d/%d",
                    m.step(), m.steps()));
            if (!Double.isNaN(m.loss())) {
                sb.append(String.format("  loss %.4f", m.loss()));
            }
            if (!Double.isNaN(m.evalLoss())) {
                sb.append(String.format("  eval %.4f", m.evalLoss()));
            }
            if (!Double.isNaN(m.loss())) {
                sb.append(String.format("  lr %.2e  %,.0f tok/s", m.lr(), m.tokensPerSecond()));
            }
            out.println(sb);
            out.flush();
        }
    }

    /** An ASCII progress bar (me.tongfei:progressbar) with the last logged loss and throughput. */
    static final class BarListener implements TrainListener {
        private final String task;
        private final PrintStream to;
        private ProgressBar bar;

        BarListener(String task, PrintStream to) {
            this.task = task;
            this.to = to;
        }

        @Override
        public void started(int startStep, int steps) {
            bar = new ProgressBarBuilder().setTaskName(task).setInitialMax(steps).setStyle(ProgressBarStyle.ASCII)
                    .setConsumer(new ConsoleProgressBarConsumer(to)).setUpdateIntervalMillis(500)
                    .startsFrom(startStep, java.time.Duration.ZERO).build();
        }

        @Override
        public void logged(Metrics m) {
            if (bar != null && !Double.isNaN(m.loss())) {
                bar.setExtraMessage(String.format(" loss %.4f%s %.0f tok/s", m.loss(),
                        Double.isNaN(m.evalLoss()) ? "" : String.format(" eval %.4f", m.evalLoss()), m.tokensPerSecond()));
            }
        }

        @Override
        public void stepped(int done) {
            if (bar != null) {
                bar.stepTo(done);
            }
        }

        @Override
        public void finished(TrainLoop.Result result, Path out) {
            if (bar != null) {
                bar.close();
                bar = null;
            }
        }
    }

    /** A PrintStream that writes (UTF-8, a line at a time) into a PrintWriter. */
    static PrintStream printStream(PrintWriter w) {
        OutputStream os = new OutputStream() {
            private final ByteArrayOutputStream buf = new ByteArrayOutputStream();

            @Override
            public synchronized void write(int b) {
                buf.write(b);
                if (b == '\n') {
                    flush();
                }
            }

            @Override
            public synchronized void flush() {
                if (buf.size() > 0) {
                    w.print(buf.toString(StandardCharsets.UTF_8));
                    buf.reset();
                }
                w.flush();
            }
        };
        return new PrintStream(os, true, StandardCharsets.UTF_8);
    }

    static String loss(double x) {
        return Double.isNaN(x) ? "n/a" : String.format("%.4f", x);
    }

    static String ppl(double meanLoss) {
        return Double.isNaN(meanLoss) ? "n/a" : String.format("%.3f", Math.exp(meanLoss));
    }

    static void printFiles(PrintWriter out, Path dir, List<String> names) {
        StringBuilder sb = new StringBuilder();
        for (String n : names) {
            if (Files.exists(dir.resolve(n))) {
                sb.append(sb.length() == 0 ? "" : ", ").append(n);
            }
        }
        out.printf("wrote           %s: %s%n", dir, sb);
    }
}
