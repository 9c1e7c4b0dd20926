package dev.calm4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.calm4j.Calm4jException;
import dev.calm4j.data.Dataset;
import dev.calm4j.train.Objective;
import dev.calm4j.train.TrainConfig;
import dev.calm4j.train.TrainLoop;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/** Runs the training loop for a command: its log goes to the command's output, with a line per logged step. */
final class Training {
    private Training() {}

    static TrainLoop.Result run(Objective obj, Dataset train, Dataset eval, TrainConfig cfg, Path out,
                                TrainOptions opts, PrintWriter w) {
        int start = 0;
        if (opts.resume) {
            start = Math.max(0, TrainOptions.checkpointStep(out));
        } else {
            try {
                Files.deleteIfExists(out.resolve("metrics.jsonl"));   // a previous run's lines must not be echoed
            } catch (IOException e) {
                throw new Calm4jException(out.resolve("metrics.jsonl") + ": cannot delete (" + e.getMessage() + ")");
            }
        }
        boolean bar = opts.progressBar();
        MetricsTail tail = bar ? null : new MetricsTail(out.resolve("metrics.jsonl"), start, cfg.steps(), w);
        if (tail != null) {
            tail.start();
        }
        try (PrintStream log = printStream(w)) {
            return TrainLoop.run(obj, train, eval, cfg, out, opts.resume, bar, log);
        } finally {
            if (tail != null) {
                tail.finish();
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

    /** Prints metrics.jsonl lines as the loop appends them (when there is no progress bar). */
    private static final class MetricsTail extends Thread {
        private final Path file;
        private final int steps;
        private final PrintWriter out;
        private final ObjectMapper json = new ObjectMapper();
        private int printed;
        private volatile boolean stop;

        MetricsTail(Path file, int start, int steps, PrintWriter out) {
            super("calm-metrics-tail");
            setDaemon(true);
            this.file = file;
            this.printed = start;
            this.steps = steps;
            this.out = out;
        }

        @Override
        public void run() {
            while (!stop) {
                poll();
                try {
                    Thread.sleep(250);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }

        void finish() {
            stop = true;
            interrupt();
            try {
                join(2000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            poll();
        }

        private synchronized void poll() {
            List<String> lines;
            try {
                if (!Files.isRegularFile(file)) {
                    return;
                }
                String all = Files.readString(file, StandardCharsets.UTF_8);
                int end = all.lastIndexOf('\n');
                if (end < 0) {
                    return;
                }
                lines = all.substring(0, end).lines().toList();     // complete lines only
            } catch (IOException e) {
                return;
            }
            for (String line : lines) {
                JsonNode m;
                try {
                    m = json.readTree(line);
                } catch (IOException e) {
                    continue;
                }
                int step = m.path("step").asInt();
                boolean hasLoss = m.has("loss");
                if (step <= printed) {
                    continue;
                }
                StringBuilder sb = new StringBuilder(String.format("step %" + String.valueOf(steps).length() + "d/%d",
                        step, steps));
                if (hasLoss) {
                    sb.append(String.format("  loss %.4f", m.get("loss").asDouble()));
                }
                if (m.has("eval_loss")) {
                    sb.append(String.format("  eval %.4f", m.get("eval_loss").asDouble()));
                }
                if (m.has("lr")) {
                    sb.append(String.format("  lr %.2e", m.get("lr").asDouble()));
                }
                if (m.has("tokens_per_s")) {
                    sb.append(String.format("  %,.0f tok/s", m.get("tokens_per_s").asDouble()));
                }
                out.println(sb);
                out.flush();
                printed = step;
            }
        }
    }
}
