package dev.calm4j.serve;

import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.function.IntSupplier;

/**
 * The server's counters in Prometheus' text exposition format (version 0.0.4). Written by hand: a handful of
 * counters, gauges and histograms do not need a metrics library, and the format is a stable, documented text.
 */
final class Metrics {
    /** Latency buckets in seconds (upper bounds; +Inf is implied). */
    private static final double[] BUCKETS = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

    private final Map<String, AtomicLong> requests = new ConcurrentHashMap<>();     // "endpoint|status" -> count
    private final Map<String, Histogram> latency = new ConcurrentHashMap<>();      // endpoint -> seconds
    private final Histogram firstToken = new Histogram();
    private final AtomicLong promptTokens = new AtomicLong();
    private final AtomicLong generatedTokens = new AtomicLong();
    private final AtomicLong rejected = new AtomicLong();
    private final AtomicLong forwards = new AtomicLong();
    private final AtomicLong forwardRows = new AtomicLong();
    private final AtomicLong cancelled = new AtomicLong();
    private final long started = System.nanoTime();
    // Generated tokens per second over a sliding window of one-second slots.
    private static final int WINDOW = 10;
    private final AtomicLongArray slotTokens = new AtomicLongArray(WINDOW);
    private final AtomicLongArray slotSecond = new AtomicLongArray(WINDOW);
    private final IntSupplier queueDepth;
    private final IntSupplier active;

    Metrics(IntSupplier queueDepth, IntSupplier active) {
        this.queueDepth = queueDepth;
        this.active = active;
    }

    void request(String endpoint, int status, double seconds) {
        requests.computeIfAbsent(endpoint + "|" + status, k -> new AtomicLong()).incrementAndGet();
        latency.computeIfAbsent(endpoint, k -> new Histogram()).observe(seconds);
    }

    void firstToken(double seconds) {
        firstToken.observe(seconds);
    }

    void promptTokens(int n) {
        promptTokens.addAndGet(n);
    }

    void generated(int n) {
        generatedTokens.addAndGet(n);
        long sec = (System.nanoTime() - started) / 1_000_000_000L;
        int slot = (int) (sec % WINDOW);
        if (slotSecond.get(slot) != sec) {
            slotSecond.set(slot, sec);
            slotTokens.set(slot, 0);
        }
        slotTokens.addAndGet(slot, n);
    }

    /** One forward of the decode loop over {@code rows} sequences (a cohort's rows, finished ones riding along). */
    void forward(int rows) {
        forwards.incrementAndGet();
        forwardRows.addAndGet(rows);
    }

    void rejected() {
        rejected.incrementAndGet();
    }

    void cancelled() {
        cancelled.incrementAndGet();
    }

    /** Generated tokens per second over the last full {@value #WINDOW} seconds. */
    double tokensPerSecond() {
        long now = (System.nanoTime() - started) / 1_000_000_000L;
        long sum = 0;
        for (int i = 0; i < WINDOW; i++) {
            long s = slotSecond.get(i);
            if (s < now && s >= now - WINDOW) {
                sum += slotTokens.get(i);
            }
        }
        return sum / (double) WINDOW;
    }

    String render() {
        StringBuilder b = new StringBuilder();
        b.append("# HELP calm_requests_total HTTP requests answered, by endpoint and status.\n");
        b.append("# TYPE calm_requests_total counter\n");
        requests.entrySet().stream().sorted(Map.Entry.comparingByKey()).forEach(e -> {
            String[] k = e.getKey().split("\\|");
            b.append("calm_requests_total{endpoint=\"").append(k[0]).append("\",status=\"").append(k[1]).append("\"} ")
                    .append(e.getValue().get()).append('\n');
        });
        gauge(b, "calm_queue_depth", "Sequences waiting to start.", queueDepth.getAsInt());
        gauge(b, "calm_active_sequences", "Sequences being decoded.", active.getAsInt());
        counter(b, "calm_rejected_total", "Requests refused because the queue was full (503).", rejected.get());
        counter(b, "calm_cancelled_total", "Sequences cancelled because their client went away.", cancelled.get());
        counter(b, "calm_prompt_tokens_total", "Prompt tokens read.", promptTokens.get());
        counter(b, "calm_forwards_total", "Forwards run by the decode loop (prompt passes and decode steps).", forwards.get());
        counter(b, "calm_forward_rows_total", "Sequences those forwards computed (rows per forward: the batching).",
                forwardRows.get());
        counter(b, "calm_generated_tokens_total", "Tokens generated.", generatedTokens.get());
        b.append("# HELP calm_generated_tokens_per_second Tokens generated per second over the last ").append(WINDOW)
                .append(" seconds.\n# TYPE calm_generated_tokens_per_second gauge\n");
        b.append("calm_generated_tokens_per_second ").append(String.format(Locale.ROOT, "%.3f", tokensPerSecond())).append('\n');
        b.append("# HELP calm_request_duration_seconds Time from a request's arrival to its last byte, by endpoint.\n");
        b.append("# TYPE calm_request_duration_seconds histogram\n");
        latency.entrySet().stream().sorted(Map.Entry.comparingByKey())
                .forEach(e -> e.getValue().render(b, "calm_request_duration_seconds", "endpoint=\"" + e.getKey() + "\","));
        b.append("# HELP calm_time_to_first_token_seconds Time from a sequence's arrival to its first new token.\n");
        b.append("# TYPE calm_time_to_first_token_seconds histogram\n");
        firstToken.render(b, "calm_time_to_first_token_seconds", "");
        return b.toString();
    }

    private static void gauge(StringBuilder b, String name, String help, long v) {
        b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" gauge\n")
                .append(name).append(' ').append(v).append('\n');
    }

    private static void counter(StringBuilder b, String name, String help, long v) {
        b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" counter\n")
                .append(name).append(' ').append(v).append('\n');
    }

    private static final class Histogram {
        private final AtomicLongArray counts = new AtomicLongArray(BUCKETS.length + 1);
        private final AtomicLong count = new AtomicLong();
        private final AtomicLong sumMicros = new AtomicLong();

        void observe(double seconds) {
            int i = 0;
            while (i < BUCKETS.length && seconds > BUCKETS[i]) {
                i++;
            }
            counts.incrementAndGet(i);
            count.incrementAndGet();
            sumMicros.addAndGet(Math.round(seconds * 1e6));
        }

        void render(StringBuilder b, String name, String labels) {
            long cumulative = 0;
            for (int i = 0; i <= BUCKETS.length; i++) {
                cumulative += counts.get(i);
                String le = i < BUCKETS.length ? String.valueOf(BUCKETS[i]) : "+Inf";
                b.append(name).append("_bucket{").append(labels).append("le=\"").append(le).append("\"} ")
                        .append(cumulative).append('\n');
            }
            String l = labels.isEmpty() ? "" : "{" + labels.substring(0, labels.length() - 1) + "}";
            b.append(name).append("_sum").append(l).append(' ')
                    .append(String.format(Locale.ROOT, "%.6f", sumMicros.get() / 1e6)).append('\n');
            b.append(name).append("_count").append(l).append(' ').append(count.get()).append('\n');
        }
    }
}
