package dev.calm4j.serve;

import dev.calm4j.generate.Sampler;
import dev.calm4j.generate.Session;
import dev.calm4j.nn.Tensors;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.T_TensorTensor_T;
import org.bytedeco.pytorch.Tensor;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.Iterator;
import java.util.List;
import java.util.Set;

/**
 * Runs every sequence on one worker thread, in one decode loop. Each turn it admits the sequences that waited (up
 * to {@code maxActive} running at once) as a new <em>cohort</em>: their prompts, left-padded, go through one
 * batched prompt pass into a cache of their own, and from then on the cohort decodes one token per row per turn in
 * one batched forward (the library's {@code LmSession}/{@code CalmSession}, as {@code calm generate} decodes a batch
 * of prompts: padding is masked out of attention and of positions). Every turn advances every cohort, so sequences
 * that arrive while others run join the loop at the next turn, and a finished sequence stops counting against
 * {@code maxActive} at once (its row rides along, ignored, until its cohort ends).
 *
 * <p>A row's output does not depend on its cohort beyond float rounding: padded rows equal the row alone to about
 * 1e-6 (design invariant 6), so greedy ids are the same unless two tokens tie that closely. A sequence that asks for
 * its prompt's log-probabilities ({@code echo} with {@code logprobs}) runs alone with a cache of its own, from one
 * forward over its prompt that yields every position's logits. Torch work stays on the worker thread; HTTP threads
 * only enqueue tasks and read their results through {@link Listener}.
 */
final class Scheduler implements AutoCloseable {
    private final ServedModel model;
    private final int maxActive;
    private final int maxWaiting;
    private final Deque<Task> waiting = new ArrayDeque<>();      // guarded by this
    private final List<Group> groups = new ArrayList<>();        // worker thread only
    private volatile int activeCount;
    private volatile boolean closed;
    private final Thread worker;
    private Metrics metrics;

    /**
     * @param maxActive sequences decoded at once (1: one at a time, first come first served)
     * @param maxWaiting sequences that may wait to start; more are refused ({@link #submit} returns false)
     */
    Scheduler(ServedModel model, int maxActive, int maxWaiting) {
        this.model = model;
        this.maxActive = maxActive;
        this.maxWaiting = maxWaiting;
        this.worker = new Thread(this::loop, "calm-serve-decode");
        worker.setDaemon(true);
    }

    void start(Metrics m) {
        this.metrics = m;
        worker.start();
    }

    /** What one sequence asks for. */
    record Spec(long[] prompt, int maxTokens, Sampler sampler, Set<Integer> stopIds, int topLogprobs,
                boolean promptLogprobs) {
        Spec {
            if (prompt.length == 0) {
                throw new IllegalArgumentException("empty prompt");
            }
            stopIds = Set.copyOf(stopIds);
        }
    }

    /** Told, on the worker thread, what a sequence produced. */
    interface Listener {
        /** Per prompt position i >= 1: the log-probability of prompt token i and the top ids there. */
        void prompt(float[] tokenLogprobs, long[][] topIds, float[][] topLogprobs);

        /**
         * A new token ({@code logprob} and tops only when asked for).
         *
         * @return true when the text now reaches a stop string (the sequence ends with "stop")
         */
        boolean token(long id, float logprob, long[] topIds, float[] topLogprobs);

        /** The end: "stop", "length" or "cancelled"; or a failure. */
        void finished(String reason, RuntimeException failure);
    }

    /** A sequence in the loop. */
    static final class Task {
        final Spec spec;
        final Listener listener;
        final long submitted = System.nanoTime();
        private volatile boolean cancelled;
        private boolean done;                 // worker thread only
        private long last;
        private int generated;

        Task(Spec spec, Listener listener) {
            this.spec = spec;
            this.listener = listener;
        }

        /** Stops the sequence at the loop's next turn (its client went away). */
        void cancel() {
            cancelled = true;
        }
    }

    /** Queues all of {@code tasks} or none: false when they do not fit the waiting room (or it is closed). */
    synchronized boolean submit(List<Task> tasks) {
        if (closed || waiting.size() + tasks.size() > maxWaiting) {
            return false;
        }
        waiting.addAll(tasks);
        notifyAll();
        return true;
    }

    synchronized int waitingCount() {
        return waiting.size();
    }

    int activeCount() {
        return activeCount;
    }

    /** Waits for work when nothing runs; then takes the waiting tasks that fit one new cohort. */
    private synchronized List<Task> admit(int room) throws InterruptedException {
        while (groups.isEmpty() && waiting.isEmpty() && !closed) {
            wait();
        }
        List<Task> out = new ArrayList<>();
        int longest = 0;
        int newest = 0;
        while (out.size() < room && !waiting.isEmpty()) {
            Task t = waiting.peek();
            int p = Math.max(longest, t.spec.prompt().length);
            int m = Math.max(newest, Math.max(1, t.spec.maxTokens()));
            // a cohort's rows share positions: the longest prompt plus the most new tokens must fit the context
            if (!out.isEmpty() && p + m > model.contextLength()) {
                break;
            }
            out.add(waiting.poll());
            longest = p;
            newest = m;
        }
        return out;
    }

    private void loop() {
        try (NoGradGuard ng = new NoGradGuard()) {
            while (!closed) {
                List<Task> admitted = admit(maxActive - live());
                List<Task> batch = new ArrayList<>();
                for (Task t : admitted) {
                    if (t.cancelled) {
                        metrics.cancelled();
                        t.done = true;
                        t.listener.finished("cancelled", null);
                    } else if (t.spec.promptLogprobs()) {
                        start(() -> new Single(t), List.of(t));
                    } else {
                        batch.add(t);
                    }
                }
                if (!batch.isEmpty()) {
                    start(() -> new Cohort(batch), batch);
                }
                activeCount = live();
                for (Iterator<Group> it = groups.iterator(); it.hasNext(); ) {
                    Group g = it.next();
                    if (!g.advance()) {
                        g.close();
                        it.remove();
                    }
                }
                activeCount = live();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            for (Group g : groups) {
                for (Task t : g.rows) {
                    if (!t.done) {
                        t.done = true;
                        t.listener.finished("cancelled", null);
                    }
                }
                g.close();
            }
            groups.clear();
            List<Task> left;
            synchronized (this) {
                left = new ArrayList<>(waiting);
                waiting.clear();
            }
            for (Task t : left) {
                t.listener.finished("cancelled", null);
            }
        }
    }

    /** Sequences still being decoded. */
    private int live() {
        int n = 0;
        for (Group g : groups) {
            for (Task t : g.rows) {
                n += t.done ? 0 : 1;
            }
        }
        return n;
    }

    /** Opens a group and runs its prompt pass; it joins the loop unless every row already finished. */
    private void start(java.util.function.Supplier<Group> open, List<Task> rows) {
        Group g;
        try {
            g = open.get();
        } catch (RuntimeException e) {
            for (Task t : rows) {
                finish(t, null, e);
            }
            return;
        }
        if (g.advance()) {
            groups.add(g);
        } else {
            g.close();
        }
    }

    /** Rows decoded together: each {@link #advance} is one forward for all of them. */
    private abstract class Group {
        final List<Task> rows;
        private boolean started;

        Group(List<Task> rows) {
            this.rows = rows;
        }

        /** The prompt pass, then one token per turn; false when every row is done. */
        final boolean advance() {
            for (Task t : rows) {
                if (!t.done && t.cancelled) {
                    metrics.cancelled();
                    finish(t, "cancelled", null);
                }
            }
            if (rows.stream().allMatch(t -> t.done)) {
                return false;
            }
            float[][] logits;
            try {
                logits = started ? step() : prefill();
                metrics.forward(rows.size());
            } catch (RuntimeException e) {
                for (Task t : rows) {
                    if (!t.done) {
                        finish(t, null, e);
                    }
                }
                return false;
            }
            boolean first = !started;
            started = true;
            for (int r = 0; r < rows.size(); r++) {
                Task t = rows.get(r);
                if (t.done) {
                    continue;
                }
                if (first) {
                    metrics.promptTokens(t.spec.prompt().length);
                    if (t.spec.maxTokens() == 0) {
                        finish(t, "length", null);
                        continue;
                    }
                    metrics.firstToken((System.nanoTime() - t.submitted) / 1e9);
                }
                choose(t, logits[r]);
            }
            return rows.stream().anyMatch(t -> !t.done);
        }

        /** Every row's next-token logits after its prompt. */
        abstract float[][] prefill();

        /** Every row's next-token logits after its last token ({@code Task.last}). */
        abstract float[][] step();

        abstract void close();
    }

    /** A cohort: left-padded prompts, one cache for all rows, one batched forward per turn. */
    private final class Cohort extends Group {
        private final Session session;
        private final boolean[][] real;      // [row][column]: a real token (not padding)
        private final boolean padded;
        private final int longest;
        private int length;

        Cohort(List<Task> rows) {
            super(rows);
            int longest = 0;
            int newest = 1;
            for (Task t : rows) {
                longest = Math.max(longest, t.spec.prompt().length);
                newest = Math.max(newest, t.spec.maxTokens());
            }
            List<long[]> prompts = rows.stream().map(t -> t.spec.prompt()).toList();
            this.padded = prompts.stream().anyMatch(p -> p.length != prompts.get(0).length);
            this.longest = longest;
            this.real = new boolean[rows.size()][longest + newest];
            this.session = model.openBatch(prompts, longest + newest);
        }

        @Override
        float[][] prefill() {
            int b = rows.size();
            long[] ids = new long[b * longest];
            for (int r = 0; r < b; r++) {
                long[] p = rows.get(r).spec.prompt();
                int off = longest - p.length;             // row r's prompt ends in the last column
                System.arraycopy(p, 0, ids, r * longest + off, p.length);
                for (int c = off; c < longest; c++) {
                    real[r][c] = true;
                }
            }
            return forward(ids, longest);
        }

        @Override
        float[][] step() {
            long[] ids = new long[rows.size()];
            for (int r = 0; r < rows.size(); r++) {
                ids[r] = rows.get(r).last;          // a finished row repeats its last id: computed, ignored
                real[r][length] = true;
            }
            return forward(ids, 1);
        }

        private float[][] forward(long[] ids, int t) {
            int b = rows.size();
            float[] flat;
            try (PointerScope scope = new PointerScope()) {
                Tensor pad = null;
                if (padded) {
                    boolean[] m = new boolean[b * (length + t)];
                    for (int r = 0; r < b; r++) {
                        System.arraycopy(real[r], 0, m, r * (length + t), length + t);
                    }
                    pad = Tensors.bools(m, b, length + t);
                }
                flat = Tensors.toFloats(session.advance(Tensors.longs(ids, b, t), pad));     // [B * V]
            }
            length += t;
            int v = flat.length / b;
            float[][] out = new float[b][];
            for (int r = 0; r < b; r++) {
                out[r] = java.util.Arrays.copyOfRange(flat, r * v, (r + 1) * v);
            }
            return out;
        }

        @Override
        void close() {
            session.close();
        }
    }

    /** One sequence with a cache of its own, whose prompt pass also gives every prompt position's log-probabilities. */
    private final class Single extends Group {
        private final ServedModel.Sequence seq;

        Single(Task t) {
            super(List.of(t));
            this.seq = model.open(t.spec.prompt(), t.spec.prompt().length + Math.max(1, t.spec.maxTokens()));
        }

        @Override
        float[][] prefill() {
            Task t = rows.get(0);
            try (PointerScope scope = new PointerScope()) {
                Tensor logits = seq.advance(t.spec.prompt(), true);                   // [T, V]
                promptLogprobs(t, logits);
                return new float[][] {Tensors.toFloats(logits.narrow(0, logits.size(0) - 1, 1))};
            }
        }

        @Override
        float[][] step() {
            try (PointerScope scope = new PointerScope()) {
                return new float[][] {Tensors.toFloats(seq.advance(new long[] {rows.get(0).last}, false))};
            }
        }

        @Override
        void close() {
            seq.close();
        }
    }

    /** Picks the next token from {@code logits} and tells the listener; finishes the task when it is done. */
    private void choose(Task t, float[] logits) {
        Spec s = t.spec;
        int id = s.sampler().next(logits);
        float lp = 0;
        long[] topIds = null;
        float[] topLps = null;
        if (s.topLogprobs() >= 0) {
            float[] logp = logSoftmax(logits);
            lp = logp[id];
            topIds = new long[Math.min(s.topLogprobs(), logp.length)];
            topLps = new float[topIds.length];
            top(logp, topIds, topLps);
        }
        t.last = id;
        t.generated++;
        metrics.generated(1);
        boolean stopText = t.listener.token(id, lp, topIds, topLps);
        if (s.stopIds().contains(id) || stopText) {
            finish(t, "stop", null);
        } else if (t.generated >= s.maxTokens()) {
            finish(t, "length", null);
        }
    }

    private static void finish(Task t, String reason, RuntimeException failure) {
        t.done = true;
        t.listener.finished(reason, failure);
    }

    /** Log-probabilities of the prompt tokens from the prompt pass's logits {@code [T, V]}. */
    private static void promptLogprobs(Task t, Tensor logits) {
        long[] p = t.spec.prompt();
        int n = p.length - 1;
        int k = Math.min(t.spec.topLogprobs(), (int) logits.size(1));
        float[] lps = new float[n];
        long[][] topIds = new long[n][];
        float[][] topLps = new float[n][];
        if (n > 0) {
            Tensor logp = logits.narrow(0, 0, n).log_softmax(1);                        // row i predicts token i+1
            long[] targets = new long[n];
            System.arraycopy(p, 1, targets, 0, n);
            lps = Tensors.toFloats(logp.gather(1, Tensors.longs(targets, n, 1)));
            if (k > 0) {
                T_TensorTensor_T top = logp.topk(k, 1, true, true);
                float[] v = Tensors.toFloats(top.get0());
                long[] ix = Tensors.toLongs(top.get1());
                for (int i = 0; i < n; i++) {
                    topIds[i] = java.util.Arrays.copyOfRange(ix, i * k, (i + 1) * k);
                    topLps[i] = java.util.Arrays.copyOfRange(v, i * k, (i + 1) * k);
                }
            } else {
                for (int i = 0; i < n; i++) {
                    topIds[i] = new long[0];
                    topLps[i] = new float[0];
                }
            }
        }
        t.listener.prompt(lps, topIds, topLps);
    }

    /** log softmax in double precision, rounded to float. */
    static float[] logSoftmax(float[] x) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : x) {
            max = Math.max(max, v);
        }
        double sum = 0;
        for (float v : x) {
            sum += Math.exp(v - max);
        }
        double lse = max + Math.log(sum);
        float[] out = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            out[i] = (float) (x[i] - lse);
        }
        return out;
    }

    /** The {@code ids.length} largest values, largest first; the lower id first among equals (as greedy picks). */
    static void top(float[] x, long[] ids, float[] values) {
        int k = ids.length;
        int filled = 0;
        for (int i = 0; i < x.length; i++) {
            if (filled == k && !(x[i] > values[k - 1])) {
                continue;
            }
            int j = filled < k ? filled++ : k - 1;
            while (j > 0 && x[i] > values[j - 1]) {
                ids[j] = ids[j - 1];
                values[j] = values[j - 1];
                j--;
            }
            ids[j] = i;
            values[j] = x[i];
        }
    }

    /** Refuses new sequences, cancels what waits and ends the loop after its current turn. */
    @Override
    public void close() {
        synchronized (this) {
            closed = true;
            notifyAll();
        }
        try {
            worker.join(30_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
