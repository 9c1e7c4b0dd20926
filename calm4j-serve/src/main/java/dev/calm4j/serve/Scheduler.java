package dev.calm4j.serve;

import dev.calm4j.generate.Sampler;
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
 * Runs every sequence on one worker thread, in one decode loop: each turn admits waiting sequences (up to
 * {@code maxActive} at once; each joins with its prompt pass) and then advances every active sequence by one token,
 * so concurrent requests progress together and a sequence leaves the loop as soon as it finishes.
 *
 * <p>Each sequence keeps its own caches (a composition's included) and runs its own batch-1 forward: the loop
 * interleaves sequences, it does not stack them into one batched forward. That is what makes a request's output
 * independent of what else is running (bit for bit: the same forward calls on the same inputs), at the price of the
 * throughput a stacked forward would gain on wide hardware. Torch work stays on the worker thread; HTTP threads only
 * enqueue tasks and read their results through {@link Listener}.
 */
final class Scheduler implements AutoCloseable {
    private final ServedModel model;
    private final int maxActive;
    private final int maxWaiting;
    private final Deque<Task> waiting = new ArrayDeque<>();      // guarded by this
    private final List<Task> active = new ArrayList<>();         // worker thread only
    private volatile int activeCount;
    private volatile boolean closed;
    private final Thread worker;
    private Metrics metrics;

    /**
     * @param maxActive sequences decoded together (1: one at a time, first come first served)
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
        private ServedModel.Sequence seq;     // worker thread only
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

    private synchronized Task nextWaiting(boolean block) throws InterruptedException {
        while (block && waiting.isEmpty() && !closed) {
            wait();
        }
        return waiting.poll();
    }

    private void loop() {
        try (NoGradGuard ng = new NoGradGuard()) {
            while (!closed) {
                Task t;
                while (active.size() < maxActive && (t = nextWaiting(active.isEmpty())) != null) {
                    start(t);
                }
                activeCount = active.size();
                for (Iterator<Task> it = active.iterator(); it.hasNext(); ) {
                    Task task = it.next();
                    if (!step(task)) {
                        it.remove();
                    }
                }
                activeCount = active.size();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            for (Task t : active) {
                finish(t, "cancelled", null);
            }
            active.clear();
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

    /** Its prompt pass and first token; joins the active list unless already finished. */
    private void start(Task t) {
        if (t.cancelled) {
            metrics.cancelled();
            t.listener.finished("cancelled", null);
            return;
        }
        try {
            Spec s = t.spec;
            t.seq = model.open(s.prompt(), s.prompt().length + Math.max(1, s.maxTokens()));
            metrics.promptTokens(s.prompt().length);
            float[] next;
            try (PointerScope scope = new PointerScope()) {
                Tensor logits = t.seq.advance(s.prompt(), s.promptLogprobs());           // [T or 1, V]
                if (s.promptLogprobs()) {
                    promptLogprobs(t, logits);
                }
                next = Tensors.toFloats(logits.narrow(0, logits.size(0) - 1, 1));
            }
            if (s.maxTokens() == 0) {
                finish(t, "length", null);
                return;
            }
            metrics.firstToken((System.nanoTime() - t.submitted) / 1e9);
            if (choose(t, next)) {
                active.add(t);
            }
        } catch (RuntimeException e) {
            finish(t, null, e);
        }
    }

    /** One decode step; false when the sequence is finished. */
    private boolean step(Task t) {
        if (t.cancelled) {
            metrics.cancelled();
            finish(t, "cancelled", null);
            return false;
        }
        try {
            float[] next;
            try (PointerScope scope = new PointerScope()) {
                next = Tensors.toFloats(t.seq.advance(new long[] {t.last}, false));
            }
            return choose(t, next);
        } catch (RuntimeException e) {
            finish(t, null, e);
            return false;
        }
    }

    /** Picks the next token from {@code logits}, tells the listener; false when the sequence is finished. */
    private boolean choose(Task t, float[] logits) {
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
            return false;
        }
        if (t.generated >= s.maxTokens()) {
            finish(t, "length", null);
            return false;
        }
        return true;
    }

    private void finish(Task t, String reason, RuntimeException failure) {
        if (t.seq != null) {
            t.seq.close();
            t.seq = null;
        }
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
