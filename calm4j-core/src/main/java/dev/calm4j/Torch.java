package dev.calm4j;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.pytorch.global.torch;

/**
 * The one place that loads libtorch and sets its threads. Every entry point (CLI, tests, benchmarks) calls
 * {@link #init()} before touching a tensor.
 *
 * <p>Why: libtorch's OpenMP pool spin-waits, and OpenBLAS keeps its own pthreads; on two cores the two pools fight
 * and work gets 3-17x slower (shared/reference/java-stack.md). calm4j gives libtorch one intra-op thread and leaves
 * OpenBLAS (which does the matmuls, the bulk of the work) its own pool of one thread per core. Measured on the
 * 110M-parameter Llama of bench/configs (README, "Speed"): 1 libtorch thread 464 prefill / 40.7 decode tokens/s;
 * 2 threads with OMP_WAIT_POLICY=PASSIVE 284 / 37.6; 2 threads spinning 142 / 8.8. {@code -Dcalm4j.threads=N}
 * overrides the choice.
 */
public final class Torch {
    private static volatile boolean initialised;
    private static int threads;

    private Torch() {}

    public static synchronized void init() {
        if (initialised) {
            return;
        }
        // Never let a dependency call home (DJL's tokenizer checks these before it loads anything).
        System.setProperty("ai.djl.offline", "true");
        System.setProperty("OPT_OUT_TRACKING", "true");
        Loader.load(torch.class);
        String override = System.getProperty("calm4j.threads");
        if (override != null) {
            try {
                threads = Integer.parseInt(override.trim());
            } catch (NumberFormatException e) {
                throw new Calm4jException("-Dcalm4j.threads: expected a positive integer, got '" + override + "'");
            }
            if (threads < 1) {
                throw new Calm4jException("-Dcalm4j.threads: expected a positive integer, got '" + override + "'");
            }
        } else {
            threads = 1;
        }
        torch.set_num_threads(threads);
        initialised = true;
    }

    /** libtorch intra-op threads chosen by {@link #init()}. */
    public static int threads() {
        init();
        return threads;
    }
}
