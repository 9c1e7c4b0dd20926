package dev.calm4j.train;

import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * Runs independent trainings (or any jobs) {@code n} at a time, each on its own thread, and returns their results in
 * the order given. Why: calm4j's own models at experiment scale are bound by per-op overhead, not FLOPs (one libtorch
 * thread plus a BLAS pool leaves the second core partly idle), so two long runs side by side finish in about the time
 * of the longer one (the KV recipe's m_A and m_B: 32.8 min against ~50); short runs gain less (docs/performance.md).
 * While more than one runs, OpenBLAS is set to one thread, so that the runs do not fight over its pool; it is restored
 * as soon as a single job is left (running or yet to start), which then has the cores to itself: the KV retrain's m_B
 * first stage outlives m_A by ~7 minutes, and with 2 BLAS threads its steps take 0.34 s against 0.50 with one. The
 * count is one process-wide integer that each matmul reads when it starts (a running one keeps the count it began
 * with), and OpenBLAS's results do not depend on it here (models trained with 1 and 2 threads are bit-identical).
 * libtorch's per-thread state (grad mode, JavaCPP's pointer scopes) is thread-local, so runs that share only frozen,
 * read-only models (the base models of an experiment) do not interact.
 */
public final class Parallel {
    private Parallel() {}

    /**
     * What one job ended with: its result, or the error that ended it (a {@link Calm4jException} or the job's own
     * unchecked exception).
     */
    public record Outcome<T>(T result, RuntimeException error) {
        public boolean ok() {
            return error == null;
        }
    }

    /**
     * @param onDone called (one call at a time) with each result as its job finishes, in finishing order
     * @return every job's result, in the order of {@code jobs}
     * @throws Calm4jException, or the job's own unchecked exception, from the first job (in order) that failed; the
     *     jobs not yet started are cancelled and running ones are waited for
     */
    public static <T> List<T> run(List<? extends Callable<T>> jobs, int n, Consumer<? super T> onDone) {
        List<T> out = new ArrayList<>();
        for (Outcome<T> o : runAll(jobs, n, onDone, true)) {
            if (!o.ok()) {
                throw o.error();
            }
            out.add(o.result());
        }
        return out;
    }

    /**
     * As {@link #run}, but a job that fails does not stop the others: every job runs, and each one's result or error
     * comes back in the order of {@code jobs} (an experiment keeps the runs that finished when one fails). A
     * {@link Error} (out of memory) still ends everything.
     */
    public static <T> List<Outcome<T>> runEach(List<? extends Callable<T>> jobs, int n, Consumer<? super T> onDone) {
        return runAll(jobs, n, onDone, false);
    }

    private static <T> List<Outcome<T>> runAll(List<? extends Callable<T>> jobs, int n, Consumer<? super T> onDone,
                                               boolean stopAtFailure) {
        if (n < 1) {
            throw new IllegalArgumentException("jobs at once: expected >= 1, got " + n);
        }
        List<Outcome<T>> out = new ArrayList<>();
        if (n == 1 || jobs.size() <= 1) {
            for (Callable<T> j : jobs) {
                try {
                    T r = call(j);
                    onDone.accept(r);
                    out.add(new Outcome<>(r, null));
                } catch (RuntimeException e) {
                    out.add(new Outcome<>(null, e));
                    if (stopAtFailure) {
                        return out;
                    }
                }
            }
            return out;
        }
        int blas = Torch.blasThreads();
        Torch.setBlasThreads(1);
        ExecutorService pool = Executors.newFixedThreadPool(Math.min(n, jobs.size()), r -> {
            Thread t = new Thread(r, "calm4j-job");
            t.setDaemon(true);
            return t;
        });
        AtomicInteger unfinished = new AtomicInteger(jobs.size());
        try {
            List<Future<T>> futures = new ArrayList<>();
            for (Callable<T> j : jobs) {
                futures.add(pool.submit(() -> {
                    try {
                        T r = j.call();
                        synchronized (Parallel.class) {
                            onDone.accept(r);
                        }
                        return r;
                    } finally {
                        if (unfinished.decrementAndGet() == 1) {
                            Torch.setBlasThreads(blas);    // the last job runs alone from here: the pool is its own
                        }
                    }
                }));
            }
            boolean failed = false;
            for (Future<T> f : futures) {
                try {
                    out.add(new Outcome<>(f.get(), null));
                } catch (ExecutionException e) {
                    out.add(new Outcome<>(null, unwrap(e.getCause())));
                    if (stopAtFailure && !failed) {
                        failed = true;
                        futures.forEach(g -> g.cancel(false));     // not started: skip; running: let finish
                    }
                } catch (java.util.concurrent.CancellationException e) {
                    // a job skipped after an earlier failure
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new Calm4jException("interrupted while waiting for training runs");
                }
            }
            return out;
        } finally {
            pool.shutdown();
            try {
                pool.awaitTermination(1, java.util.concurrent.TimeUnit.DAYS);   // a running job finishes before BLAS is reset
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            Torch.setBlasThreads(blas);
        }
    }

    private static <T> T call(Callable<T> j) {
        try {
            return j.call();
        } catch (Exception e) {
            throw unwrap(e);
        }
    }

    private static RuntimeException unwrap(Throwable e) {
        if (e instanceof RuntimeException r) {
            return r;
        }
        if (e instanceof Error err) {
            throw err;
        }
        return new Calm4jException(e.getMessage() == null ? e.toString() : e.getMessage(), e);
    }
}
