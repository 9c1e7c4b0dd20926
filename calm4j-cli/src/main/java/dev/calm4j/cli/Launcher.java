package dev.calm4j.cli;

import dev.calm4j.Calm4jException;

import java.io.IOException;
import java.io.PrintWriter;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * {@code --nproc N}: starts N local training processes the way {@code torchrun --nproc-per-node N} does (the same
 * command line without {@code --nproc}, with {@code RANK}, {@code LOCAL_RANK}, {@code WORLD_SIZE},
 * {@code MASTER_ADDR=127.0.0.1} and a free {@code MASTER_PORT} in their environment), then waits for them. Rank 0
 * keeps this terminal (its output and progress bar); the others' output is dropped but for their errors. The cores
 * are shared: each worker's OpenBLAS gets {@code cores / N} threads (at least one) unless
 * {@code OPENBLAS_NUM_THREADS} says otherwise; libtorch's own pool has one thread per process already
 * ({@link dev.calm4j.Torch}).
 *
 * <p>When a worker fails, the others are stopped (SIGTERM, then SIGKILL after a grace period) and the launcher exits
 * with the first failure's code and one line naming its rank. SIGINT/SIGTERM to the launcher are passed on: the
 * workers stop together at the same step and rank 0 saves a checkpoint.
 */
final class Launcher {
    /** How long workers may take to leave after SIGTERM before they are killed. */
    private static final long GRACE_SECONDS = 30;

    private Launcher() {}

    /** Starts {@code n} workers of {@code args} (which hold the --nproc flag) and returns the run's exit code. */
    static int run(List<String> args, int n, PrintWriter out, PrintWriter err) {
        if (n < 1) {
            throw new Calm4jException("--nproc must be >= 1, got " + n);
        }
        if (System.getenv("WORLD_SIZE") != null || args.stream().anyMatch(a -> a.equals("--world-size")
                || a.startsWith("--world-size=") || a.equals("--world-rank") || a.startsWith("--world-rank="))) {
            throw new Calm4jException("--nproc starts the workers of a run on this host: leave out --world-size/--world-rank "
                    + "and WORLD_SIZE (they describe one worker of a run started otherwise)");
        }
        List<String> worker = new ArrayList<>();
        worker.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        worker.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        worker.add("-cp");
        worker.add(System.getProperty("java.class.path"));
        worker.add(Main.class.getName());
        worker.addAll(withoutNproc(args));
        String fixed = System.getenv("MASTER_PORT");
        int port;
        try {
            port = fixed != null && !fixed.isBlank() ? Integer.parseInt(fixed.strip()) : freePort();
        } catch (NumberFormatException e) {
            throw new Calm4jException("MASTER_PORT: expected an integer, got '" + fixed + "'");
        }
        int cores = Runtime.getRuntime().availableProcessors();
        List<Process> procs = new ArrayList<>();
        List<Long> pids = new ArrayList<>();
        Thread forward = new Thread(() -> procs.forEach(Process::destroy), "calm4j-launcher-signals");
        try {
            for (int r = 0; r < n; r++) {
                ProcessBuilder pb = new ProcessBuilder(worker);
                Map<String, String> env = pb.environment();
                env.put("RANK", String.valueOf(r));
                env.put("LOCAL_RANK", String.valueOf(r));
                env.put("WORLD_SIZE", String.valueOf(n));
                env.put("LOCAL_WORLD_SIZE", String.valueOf(n));
                env.put("MASTER_ADDR", "127.0.0.1");
                env.put("MASTER_PORT", String.valueOf(port));
                env.putIfAbsent("OPENBLAS_NUM_THREADS", String.valueOf(Math.max(1, cores / n)));
                env.putIfAbsent("OMP_NUM_THREADS", "1");
                // libtorch's own warnings (a store connection closed by a rank that died) are multi-line C++ traces;
                // the rank that notices says what happened in one line
                env.putIfAbsent("TORCH_CPP_LOG_LEVEL", "ERROR");
                pb.redirectError(ProcessBuilder.Redirect.INHERIT);
                pb.redirectOutput(r == 0 ? ProcessBuilder.Redirect.INHERIT : ProcessBuilder.Redirect.DISCARD);
                pb.redirectInput(r == 0 ? ProcessBuilder.Redirect.INHERIT : ProcessBuilder.Redirect.PIPE);
                Process p = pb.start();
                procs.add(p);
                pids.add(p.pid());
            }
        } catch (IOException e) {
            procs.forEach(Process::destroyForcibly);
            throw new Calm4jException("cannot start the workers (" + e.getMessage() + ")");
        }
        out.printf("started %d ranks on this host (pids %s), rendezvous at 127.0.0.1:%d%n", n,
                String.join(", ", pids.stream().map(String::valueOf).toList()), port);
        out.flush();
        Runtime.getRuntime().addShutdownHook(forward);       // the launcher ended otherwise (SIGHUP): the workers too
        Map<String, sun.misc.SignalHandler> previous = new java.util.HashMap<>();
        // SIGTERM is passed on; SIGINT from a terminal reaches the workers themselves (they share its process group),
        // and a second one would make them halt without a checkpoint, so the launcher just keeps waiting.
        previous.put("TERM", handle("TERM", () -> procs.forEach(Process::destroy)));
        previous.put("INT", handle("INT", () -> {}));
        try {
            return await(procs, err);
        } finally {
            previous.forEach((name, h) -> {
                if (h != null) {
                    sun.misc.Signal.handle(new sun.misc.Signal(name), h);
                }
            });
            try {
                Runtime.getRuntime().removeShutdownHook(forward);
            } catch (IllegalStateException shuttingDown) {
                // the hook runs
            }
        }
    }

    /** Waits for every worker; on the first failure stops the rest. Returns the run's exit code. */
    private static int await(List<Process> procs, PrintWriter err) {
        int code = 0;
        String first = null;
        long deadline = Long.MAX_VALUE;
        List<Process> running = new ArrayList<>(procs);
        try {
            while (!running.isEmpty()) {
                Process failed = null;
                for (Process p : new ArrayList<>(running)) {
                    if (p.isAlive()) {
                        continue;
                    }
                    running.remove(p);
                    int c = p.exitValue();
                    // Of the ranks found dead together, one killed by a signal is the cause; the others' errors
                    // (a lost peer) are its consequence.
                    if (c != 0 && (failed == null || (c > 128 && failed.exitValue() <= 128))) {
                        failed = p;
                    }
                }
                if (failed != null && first == null) {
                    code = failed.exitValue();
                    first = "rank " + procs.indexOf(failed) + " exited with code " + code + describe(code);
                    running.forEach(Process::destroy);          // SIGTERM: they stop at their next step
                    deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(GRACE_SECONDS);
                }
                if (System.nanoTime() > deadline) {
                    running.forEach(Process::destroyForcibly);
                }
                Thread.sleep(100);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            procs.forEach(Process::destroyForcibly);
            return 130;
        }
        if (first != null) {
            err.println("calm: error: " + first + "; the other ranks were stopped");
            err.flush();
        }
        return code;
    }

    @SuppressWarnings("removal")
    private static sun.misc.SignalHandler handle(String name, Runnable r) {
        try {
            return sun.misc.Signal.handle(new sun.misc.Signal(name), sig -> r.run());
        } catch (IllegalArgumentException e) {
            return null;          // reserved by the JVM here (-Xrs): the default stays
        }
    }

    private static String describe(int code) {
        return switch (code) {
            case 130 -> " (SIGINT)";
            case 137 -> " (SIGKILL)";
            case 143 -> " (SIGTERM)";
            default -> code > 128 && code < 160 ? " (signal " + (code - 128) + ")" : "";
        };
    }

    /** {@code args} without {@code --nproc N} / {@code --nproc=N}. */
    static List<String> withoutNproc(List<String> args) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            if (a.equals("--nproc")) {
                i++;
            } else if (!a.startsWith("--nproc=")) {
                out.add(a);
            }
        }
        return out;
    }

    private static int freePort() {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        } catch (IOException e) {
            throw new Calm4jException("no free local port for the rendezvous (" + e.getMessage() + ")");
        }
    }
}
