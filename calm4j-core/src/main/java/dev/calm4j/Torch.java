package dev.calm4j;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.pytorch.global.torch;

import java.util.function.Supplier;

/**
 * The one place that loads libtorch and sets its threads. Every entry point (CLI, tests, benchmarks) calls
 * {@link #init()} before touching a tensor.
 *
 * <p>Why: libtorch's OpenMP pool spin-waits, and OpenBLAS keeps its own pthreads; on two cores the two pools fight
 * and work gets 3-17x slower. calm4j gives libtorch one intra-op thread and leaves
 * OpenBLAS (which does the matmuls, the bulk of the work) its own pool of one thread per core. Measured on the
 * 110M-parameter Llama of calm4j-bench/configs (docs/performance.md): 1 libtorch thread 464 prefill / 40.7 decode tokens/s;
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
        NATIVE_ENV.forEach(Torch::setenvDefault);         // read by libgomp and OpenBLAS when they load, just below
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
        blasNormal = Blas.call("openblas_get_num_threads", null);
    }

    /**
     * Environment the native thread pools read once, when libtorch loads them; {@link #init} sets each one the process
     * has not set (the launcher, surefire and CI set the same values, so a JVM started any way behaves alike).
     * <ul>
     *   <li>{@code OMP_WAIT_POLICY=PASSIVE}: libtorch's OpenMP threads sleep when a parallel region ends instead
     *       of spinning on the core that OpenBLAS's thread needs next.
     *   <li>{@code GOMP_SPINCOUNT=20000}: ... but first spin that many rounds (some microseconds), so that the
     *       back-to-back elementwise ops of a layer do not each pay a futex wake-up (calm-train b1, medians of 3:
     *       900 against 850 tokens/s; 200000 was worse, 690).
     *   <li>{@code OPENBLAS_THREAD_TIMEOUT=20}: OpenBLAS's worker spins 2^20 cycles (about 0.4 ms) after a matmul,
     *       then sleeps. The default, 2^28 (about 0.1 s), kept it spinning through all the work between matmuls
     *       (40 % of its time in a profile of a b1 training step), on the core OpenMP's second thread needed.
     * </ul>
     */
    static final java.util.Map<String, String> NATIVE_ENV = java.util.Map.of(
            "OMP_WAIT_POLICY", "PASSIVE",
            "GOMP_SPINCOUNT", "20000",
            "OPENBLAS_THREAD_TIMEOUT", "20");

    /**
     * Hands the native heap's free pages back to the system (glibc's {@code malloc_trim(0)}); a no-op where the C
     * library has no such call. Why: libtorch allocates through malloc, and glibc keeps what a freed tensor leaves in
     * the middle of its heap; loading a checkpoint frees many large tensors (a stored dtype converted, q, k, v copied
     * into one fused matrix), which left a 110M-parameter Llama's process holding ~200 MB more than its weights
     * (docs/performance.md, "Memory when loading"). Called after loading, never in a training or decoding loop:
     * there the freed pages are reused by the next step, and giving them back would only cost page faults.
     */
    public static void trimNativeHeap() {
        try {
            com.sun.jna.NativeLibrary.getInstance("c").getFunction("malloc_trim").invokeInt(new Object[] {0});
        } catch (Exception | LinkageError e) {
            // not glibc: its allocator keeps what it keeps
        }
    }

    /** A variable of the process's native environment (what libgomp and OpenBLAS read), or null. */
    public static String nativeEnv(String name) {
        try {
            return com.sun.jna.NativeLibrary.getInstance("c").getFunction("getenv").invokeString(new Object[] {name}, false);
        } catch (Exception | LinkageError e) {
            return System.getenv(name);
        }
    }

    private static void setenvDefault(String name, String value) {
        try {
            com.sun.jna.NativeLibrary.getInstance("c").getFunction("setenv").invokeInt(new Object[] {name, value, 0});
        } catch (Exception | LinkageError e) {
            // no libc through JNA: the launcher's environment still applies
        }
    }

    /** libtorch intra-op threads chosen by {@link #init()}. */
    public static int threads() {
        init();
        return threads;
    }

    /**
     * Threads of OpenBLAS's own pool (the fp32 matmuls libtorch hands to it), or -1 where that cannot be read (no
     * OpenBLAS mapped, JNA missing). {@code torch.set_num_threads} does not reach this pool; only this and
     * {@code OPENBLAS_NUM_THREADS} at start-up do.
     */
    public static int blasThreads() {
        init();
        return Blas.call("openblas_get_num_threads", null);
    }

    /** Sets OpenBLAS's pool to {@code n} threads for the whole process (a no-op where it cannot be reached). */
    public static void setBlasThreads(int n) {
        init();
        Blas.call("openblas_set_num_threads", n);
        blasNormal = n;
    }

    /** The OpenBLAS thread count outside single-threaded sections (what {@link #setBlasThreads} last set). */
    private static volatile int blasNormal = -1;

    /**
     * Makes the backward pass of {@code out} (the result of a kernel that calls sgemm per small block from its own
     * worker threads, like the CPU flash attention) run with OpenBLAS single-threaded, as {@link
     * #withSingleThreadedBlas} does for the forward: a hook on {@code out}'s gradient sets one thread just before the
     * kernel's backward runs, and hooks on the gradients of its {@code inputs} (those that need one) restore the pool
     * as soon as it has run. Without it the two kernel threads each called a two-thread OpenBLAS: four busy threads on
     * two cores. A no-op where the pool cannot be reached or nothing needs a gradient.
     */
    public static void singleThreadedBlasInBackward(org.bytedeco.pytorch.Tensor out, org.bytedeco.pytorch.Tensor... inputs) {
        if (!out.requires_grad() || Blas.SET == null || blasThreads() <= 1) {
            return;
        }
        out.register_hook(Hooks.ONE);
        for (org.bytedeco.pytorch.Tensor in : inputs) {
            if (in.requires_grad()) {
                in.register_hook(Hooks.RESTORE);
            }
        }
    }

    /**
     * The two hooks, made once (JavaCPP has ten callback slots per type) and shared by every registration; kept out
     * of whatever {@code PointerScope} is open when this class loads, which would free them.
     */
    private static final class Hooks {
        static final org.bytedeco.pytorch.VoidTensorHook ONE = permanent(new org.bytedeco.pytorch.VoidTensorHook() {
            @Override
            public void call(org.bytedeco.pytorch.TensorBase grad) {
                Blas.call("openblas_set_num_threads", 1);
            }
        });
        static final org.bytedeco.pytorch.VoidTensorHook RESTORE = permanent(new org.bytedeco.pytorch.VoidTensorHook() {
            @Override
            public void call(org.bytedeco.pytorch.TensorBase grad) {
                int n = blasNormal;
                if (n > 1) {
                    Blas.call("openblas_set_num_threads", n);
                }
            }
        });

        private static <P extends org.bytedeco.javacpp.Pointer> P permanent(P p) {
            p.retainReference();
            org.bytedeco.javacpp.PointerScope scope = org.bytedeco.javacpp.PointerScope.getInnerScope();
            if (scope != null) {
                scope.detach(p);
            }
            return p;
        }
    }

    /**
     * Runs {@code body} with OpenBLAS single-threaded, then restores its pool. For kernels that make many small
     * matmuls (libtorch's CPU attention splits into blocks and calls sgemm per block): waking a second BLAS thread
     * for each costs far more than the block, and on a loaded machine it made attention 5-20x slower
     * (docs/performance.md). Setting the count takes microseconds. The pool is process-wide: concurrent callers share it.
     */
    public static <T> T withSingleThreadedBlas(Supplier<T> body) {
        int before = blasThreads();
        if (before <= 1) {
            return body.get();
        }
        Blas.call("openblas_set_num_threads", 1);
        try {
            return body.get();
        } finally {
            Blas.call("openblas_set_num_threads", before);
        }
    }

    /**
     * OpenBLAS's thread functions in the copy of OpenBLAS that libtorch calls. Two copies are mapped, both loaded by
     * path by JavaCPP and both with the soname {@code libopenblas.so.0}: the {@code openblas} preset's
     * {@code libopenblas_nolapack.so.0}, loaded first, and {@code libopenblas.so.0}. libtorch's {@code sgemm_} binds
     * to the first ({@code LD_DEBUG=bindings}), and so does JavaCPP's own symbol lookup ({@link Loader#addressof},
     * which bytedeco's {@code blas_set_num_threads} uses): the functions are taken from there and called through
     * JNA. (An earlier version looked the functions up in {@code libopenblas.so.0}: that set a pool no matmul used.)
     */
    private static final class Blas {
        private static final com.sun.jna.Function GET = function("openblas_get_num_threads");
        static final com.sun.jna.Function SET = function("openblas_set_num_threads");

        private static com.sun.jna.Function function(String name) {
            try {
                org.bytedeco.javacpp.Pointer p = Loader.addressof(name);
                return p == null || p.isNull() ? null : com.sun.jna.Function.getFunction(new com.sun.jna.Pointer(p.address()));
            } catch (Exception | LinkageError e) {
                return null;
            }
        }

        static int call(String name, Integer arg) {
            if (GET == null || SET == null) {
                return -1;
            }
            if (arg == null) {
                return GET.invokeInt(new Object[0]);
            }
            SET.invokeVoid(new Object[] {arg});
            return arg;
        }
    }

    /** OpenBLAS's own description of itself (version, kernel chosen for this CPU), or "unknown". */
    public static String blasConfig() {
        try {
            org.bytedeco.javacpp.Pointer p = org.bytedeco.javacpp.Loader.addressof("openblas_get_config");
            return p == null || p.isNull() ? "unknown"
                    : com.sun.jna.Function.getFunction(new com.sun.jna.Pointer(p.address())).invokeString(new Object[0], false);
        } catch (RuntimeException | LinkageError e) {
            return "unknown";
        }
    }

    /** "model name x cores (family F, model M; which of avx2 / avx512f / avx512_bf16 / amx_tile the flags list)". */
    public static String cpuModel() {
        String name = null;
        String family = "?";
        String model = "?";
        java.util.Set<String> flags = java.util.Set.of();
        try {
            for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/cpuinfo"))) {
                String value = line.contains(":") ? line.substring(line.indexOf(':') + 1).trim() : "";
                if (line.startsWith("model name") && name == null) {
                    name = value;
                } else if (line.startsWith("cpu family")) {
                    family = value;
                } else if (line.startsWith("model\t") || line.matches("model\\s+:.*")) {
                    model = value;
                } else if (line.startsWith("flags") && flags.isEmpty()) {
                    flags = java.util.Set.of(value.split("\\s+"));
                }
            }
        } catch (java.io.IOException | RuntimeException e) {
            // fall through
        }
        int cores = Runtime.getRuntime().availableProcessors();
        if (name == null) {
            return System.getProperty("os.arch") + " x " + cores;
        }
        java.util.List<String> isa = new java.util.ArrayList<>();
        for (String f : new String[] {"avx2", "avx512f", "avx512_bf16", "amx_tile"}) {
            isa.add(flags.contains(f) ? f : "no " + f);
        }
        return name + " x " + cores + " (family " + family + ", model " + model + "; " + String.join(", ", isa) + ")";
    }

    /**
     * What decides the last bits of a float computation on this machine, for a training's provenance: OpenBLAS's
     * kernel (chosen at load time for the CPU it finds, unless pinned) and threads, libtorch's threads and vector
     * kernels ({@code torch_cpu_capability}), the CPU and its ISA, and the variables that pin the kernels
     * ({@code OPENBLAS_CORETYPE}, {@code ATEN_CPU_CAPABILITY}). Why: the same code and seed on a VM that exposes
     * AVX-512 and on one that does not get different libtorch kernels, the sums round differently from the first
     * step, and a fragile training then follows another trajectory (the KV experiment's one-stage m_B: NUM-MATH 71 %
     * with AVX2 kernels, 11 % with AVX-512 ones; the AVX2 run is reproduced bit for bit here with
     * {@code ATEN_CPU_CAPABILITY=avx2}, two BLAS threads, and OpenBLAS pinned to Haswell by this machine's environment).
     */
    public static java.util.Map<String, String> numerics() {
        init();
        java.util.Map<String, String> m = new java.util.LinkedHashMap<>();
        m.put("blas", blasConfig());
        m.put("blas_threads", Integer.toString(blasThreads()));
        m.put("torch_threads", Integer.toString(torch.get_num_threads()));
        m.put("torch_cpu_capability", torch.get_cpu_capability().getString());
        m.put("cpu", cpuModel());
        for (String v : new String[] {"OPENBLAS_CORETYPE", "ATEN_CPU_CAPABILITY"}) {
            String val = nativeEnv(v);
            m.put(v.toLowerCase(java.util.Locale.ROOT), val == null ? "unset" : val);
        }
        return m;
    }
}
