package dev.calm4j.train;

import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.nn.Tensors;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.javacpp.SizeTPointer;
import org.bytedeco.javacpp.chrono.Milliseconds;
import org.bytedeco.pytorch.AllreduceOptions;
import org.bytedeco.pytorch.BroadcastOptions;
import org.bytedeco.pytorch.ByteVector;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.PrefixStore;
import org.bytedeco.pytorch.ProcessGroupGloo;
import org.bytedeco.pytorch.Store;
import org.bytedeco.pytorch.TCPStore;
import org.bytedeco.pytorch.TCPStoreOptions;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.Work;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;

/**
 * Data-parallel training over libtorch's own distributed backend (c10d): a {@link TCPStore} rendezvous and a
 * {@link ProcessGroupGloo} (CPU; NCCL is only in the GPU build). One instance per training process ("rank"); the
 * training loop uses it to give each rank its own part of every global batch, to sum the gradients across ranks after
 * backward, to agree on stopping, and to let rank 0 alone write the run's files. {@link #SINGLE} is the plain
 * one-process run: every method is then a no-op and the loop takes its usual path.
 *
 * <p>The conventions are torchrun's: {@code RANK}, {@code WORLD_SIZE}, {@code LOCAL_RANK}, {@code MASTER_ADDR},
 * {@code MASTER_PORT} ({@link Rendezvous#fromEnv}); rank 0 hosts the store. Gloo binds to the address this host uses
 * to reach {@code MASTER_ADDR} (or to {@code GLOO_SOCKET_IFNAME}'s, as in PyTorch), not to whatever the hostname
 * resolves to, so that a rank in a network namespace or on a multi-homed host is reachable where the master is.
 *
 * <p>Failures: every collective has the rendezvous's timeout. A rank that dies breaks its connections and the others'
 * next collective fails at once; a rank that hangs makes them time out. Either way the others stop with one line that
 * names the rank: one whose heartbeat in the store stopped (dead or frozen), else one that fell behind the others (from
the step each rank announces before its gradients travel; {@link #lost}).
 */
public final class DataParallel implements AutoCloseable {
    /** One process: nothing is shared. */
    public static final DataParallel SINGLE = new DataParallel(0, 1, null, null, Duration.ZERO);

    /** How often each rank counts a heartbeat in the store (a failure waits 2.5 of these to see who is silent). */
    static final long HEARTBEAT_MS = 1000;

    /** DDP's default bucket size: gradients are summed in flat buckets of about this many bytes. */
    public static final long BUCKET_BYTES = 25L << 20;

    /**
     * Every native object a process group uses (stores, options, devices, the group), pinned for the life of the
     * process. Why: the native group and prefix store point at these, but JavaCPP frees each with its Java object when
     * the garbage collector finds it unreachable, in no particular order and whatever the native reference counts say:
     * a heartbeat once crashed on a freed file store, and a finished test's group, collected later, corrupted the heap
     * under another test. A group is shut down only by the process's end anyway (see {@link #close()}).
     */
    private static final List<Object> PINNED = java.util.Collections.synchronizedList(new ArrayList<>());

    private final int rank;
    private final int size;
    private final Store store;            // the rendezvous store (kept for diagnosis)
    private final ProcessGroupGloo group;
    private final Duration timeout;
    private volatile Thread heartbeat;
    private long reducedBytes;            // gradient bytes summed so far (per rank), for the overhead figures
    private long waitNanos;               // ... time until every rank had arrived (the small head's all-reduce done)
    private long transferNanos;           // ... time from then (or from the last bucket packed) until all were summed

    private DataParallel(int rank, int size, Store store, ProcessGroupGloo group, Duration timeout) {
        this.rank = rank;
        this.size = size;
        this.store = store;
        this.group = group;
        this.timeout = timeout;
    }

    /**
     * Where and how the ranks of one run meet: torchrun's variables, validated.
     *
     * @param rank this process's rank, 0 to worldSize - 1 (rank 0 hosts the store and writes the run's files)
     * @param worldSize processes in the run
     * @param localRank this process's rank among those on its host
     * @param masterAddr the host of rank 0 (its store listens there)
     * @param masterPort the store's port
     * @param timeout how long a rank waits for the others, at the rendezvous and in every collective
     * @param iface the network interface gloo binds to ({@code GLOO_SOCKET_IFNAME}), or null: the one that reaches
     *     {@code masterAddr}
     */
    public record Rendezvous(int rank, int worldSize, int localRank, String masterAddr, int masterPort,
                             Duration timeout, String iface) {
        public Rendezvous {
            check(worldSize >= 1, "WORLD_SIZE must be >= 1, got " + worldSize);
            check(rank >= 0 && rank < worldSize, "RANK must be in [0, WORLD_SIZE " + worldSize + "), got " + rank);
            check(localRank >= 0, "LOCAL_RANK must be >= 0, got " + localRank);
            check(masterAddr != null && !masterAddr.isBlank(), "MASTER_ADDR is empty");
            check(masterPort > 0 && masterPort < 65536, "MASTER_PORT must be in 1..65535, got " + masterPort);
            check(timeout != null && !timeout.isNegative() && !timeout.isZero(), "the distributed timeout must be > 0");
        }

        /**
         * The rendezvous torchrun describes in {@code env}, or null when {@code WORLD_SIZE} is unset (a plain run).
         * A malformed or missing variable is one line naming it.
         */
        public static Rendezvous fromEnv(Map<String, String> env, Duration timeout) {
            String world = env.get("WORLD_SIZE");
            if (world == null || world.isBlank()) {
                return null;
            }
            int w = intVar(env, "WORLD_SIZE", null);
            int r = intVar(env, "RANK", null);
            String addr = env.get("MASTER_ADDR");
            check(addr != null && !addr.isBlank(), "MASTER_ADDR is not set (WORLD_SIZE is " + w + ")");
            String iface = env.get("GLOO_SOCKET_IFNAME");
            return new Rendezvous(r, w, intVar(env, "LOCAL_RANK", String.valueOf(r)), addr.strip(),
                    intVar(env, "MASTER_PORT", null), timeout, iface == null || iface.isBlank() ? null : iface.strip());
        }

        private static int intVar(Map<String, String> env, String name, String fallback) {
            String v = env.getOrDefault(name, fallback);
            check(v != null, name + " is not set (WORLD_SIZE is " + env.get("WORLD_SIZE") + ")");
            try {
                return Integer.parseInt(v.strip());
            } catch (NumberFormatException e) {
                throw new Calm4jException(name + ": expected an integer, got '" + v + "'");
            }
        }
    }

    /**
     * Joins the run {@code r} describes: rank 0 starts the store and waits (up to the timeout) for every rank, then
     * all connect their process group. Returns {@link #SINGLE} for a world of one.
     */
    public static DataParallel join(Rendezvous r) {
        if (r.worldSize() == 1) {
            return SINGLE;
        }
        Torch.init();
        TCPStore tcp;
        try {
            TCPStoreOptions o = new TCPStoreOptions();
            o.port((short) r.masterPort());
            o.isServer(r.rank() == 0);
            o.numWorkers(new SizeTPointer(1).put(r.worldSize()));
            o.waitWorkers(true);
            o.timeout(new Milliseconds(r.timeout().toMillis()));
            tcp = new TCPStore(r.masterAddr(), o);
        } catch (RuntimeException e) {
            throw new Calm4jException("rank " + r.rank() + ": no rendezvous with " + r.worldSize() + " ranks at "
                    + r.masterAddr() + ":" + r.masterPort() + " within " + r.timeout().toSeconds() + " s ("
                    + firstLine(e) + ")");
        }
        return over(tcp, r.rank(), r.worldSize(), r.timeout(), r.iface(), r.masterAddr());
    }

    /**
     * Joins a run of {@code size} ranks over any c10d store (tests use a {@link org.bytedeco.pytorch.FileStore} and
     * ranks on threads of one process), gloo bound to the loopback interface.
     */
    public static DataParallel over(Store store, int rank, int size, Duration timeout) {
        return over(store, rank, size, timeout, null, "127.0.0.1");
    }

    private static DataParallel over(Store store, int rank, int size, Duration timeout, String iface,
                                     String master) {
        Torch.init();
        PINNED.add(store);
        Store prefixed = new PrefixStore("calm4j", store);
        PINNED.add(prefixed);
        try {
            ProcessGroupGloo.Options o = ProcessGroupGloo.Options.create(new Milliseconds(timeout.toMillis()));
            PINNED.add(o);
            // The options start with no device: gloo needs one to bind to.
            var device = iface != null ? ProcessGroupGloo.createDeviceForInterface(iface)
                    : ProcessGroupGloo.createDeviceForHostname(localAddressTowards(master));
            PINNED.add(device);
            o.devices().push_back(device);
            o.threads(1);
            ProcessGroupGloo g = withoutNativeStdout(() -> new ProcessGroupGloo(prefixed, rank, size, o));
            PINNED.add(g);
            DataParallel dp = new DataParallel(rank, size, prefixed, g, timeout);
            dp.startHeartbeat();
            return dp;
        } catch (RuntimeException e) {
            throw new Calm4jException("rank " + rank + ": cannot connect to the other " + (size - 1) + " rank(s) ("
                    + firstLine(e) + ")");
        }
    }

    /**
     * Runs {@code body} with the process's file descriptor 1 pointed at /dev/null. Why: gloo prints "[Gloo] Rank r is
     * connected to n peer ranks..." to the native stdout when it connects, unconditionally; that line would land in
     * the middle of the command's output (or of a test runner's protocol on stdout). C stdio is flushed before and
     * after, so nothing of anyone else's is lost or reordered; where libc cannot be reached the line stays.
     */
    private static <T> T withoutNativeStdout(java.util.function.Supplier<T> body) {
        if (!Quiet.enter()) {
            return body.get();
        }
        try {
            return body.get();
        } finally {
            Quiet.leave();
        }
    }

    /** The native stdout silenced while any rank of this process connects (ranks on threads connect together). */
    private static final class Quiet {
        private static int inside;
        private static int saved = -1;
        private static com.sun.jna.NativeLibrary libc;

        /** False where libc cannot be reached: the line then stays. */
        static synchronized boolean enter() {
            try {
                if (libc == null) {
                    libc = com.sun.jna.NativeLibrary.getInstance("c");
                }
                if (inside++ == 0) {
                    System.out.flush();
                    call("fflush", (Object) null);
                    saved = call("dup", 1);
                    int devnull = call("open", "/dev/null", 1);            // O_WRONLY
                    if (saved >= 0 && devnull >= 0) {
                        call("dup2", devnull, 1);
                    }
                    if (devnull >= 0) {
                        call("close", devnull);
                    }
                }
                return true;
            } catch (RuntimeException | LinkageError e) {
                inside = 0;
                return false;
            }
        }

        static synchronized void leave() {
            if (--inside == 0 && saved >= 0) {
                call("fflush", (Object) null);
                call("dup2", saved, 1);
                call("close", saved);
                saved = -1;
            }
        }

        private static int call(String f, Object... args) {
            return libc.getFunction(f).invokeInt(args);
        }
    }

    /**
     * The address of this host's interface that routes to {@code master} (a connected UDP socket sends nothing; the
     * kernel just picks the route): loopback for a local run, the namespace's own address in a network namespace.
     */
    static String localAddressTowards(String master) {
        try {
            InetAddress m = InetAddress.getByName(master);
            if (m.isLoopbackAddress()) {
                return m.getHostAddress();
            }
            try (DatagramSocket s = new DatagramSocket()) {
                s.connect(new InetSocketAddress(m, 9));
                return s.getLocalAddress().getHostAddress();
            }
        } catch (java.io.IOException e) {
            throw new Calm4jException("MASTER_ADDR " + master + ": no route from this host (" + e.getMessage() + ")");
        }
    }

    public int rank() {
        return rank;
    }

    public int size() {
        return size;
    }

    /** Whether this is the only process of its run. */
    public boolean single() {
        return group == null;
    }

    /** Whether this rank writes the run's files (checkpoints, metrics, plots, results): rank 0. */
    public boolean writes() {
        return rank == 0;
    }

    /** The collectives' timeout (zero for {@link #SINGLE}). */
    public Duration timeout() {
        return timeout;
    }

    /** Bytes of gradients this rank has summed with the others so far, and the wall time it took. */
    public long reducedBytes() {
        return reducedBytes;
    }

    /**
     * Seconds this rank spent in gradient all-reduces after every rank had arrived and its buckets were packed: the
     * transfer and the sums.
     */
    public double transferSeconds() {
        return transferNanos / 1e9;
    }

    /** Seconds this rank waited in gradient all-reduces for the slowest rank to arrive (skew, not communication). */
    public double waitSeconds() {
        return waitNanos / 1e9;
    }

    /**
     * Announces that this rank has reached {@code step} (in the store), so that the others can tell which rank fell
     * behind when a collective fails.
     */
    void reached(int step) {
        if (group == null) {
            return;
        }
        try {
            store.set("reached/" + rank, String.valueOf(step));
        } catch (RuntimeException e) {
            throw lost("step " + step, e);
        }
    }

    /**
     * Sums the gradients of {@code params} across ranks, in place, in flat float32 buckets of about
     * {@link #BUCKET_BYTES} (all in flight at once), after a small float64 all-reduce of {@code extras} (returned
     * summed) and of which gradients each rank has. Called after backward: with bridge-sized gradients the transfer is
     * a few milliseconds of a step of seconds (docs/performance.md), so DDP's overlap of buckets with backward
     * ({@code Reducer}'s autograd hooks) would save little of it. A gradient that no rank has stays
     * undefined; one that some ranks lack counts as zeros from them.
     */
    double[] sumGradients(List<Tensor> params, double[] extras, int step) {
        if (group == null) {
            return extras;
        }
        long t0 = System.nanoTime();
        int n = params.size();
        double[] head = new double[extras.length + n];
        System.arraycopy(extras, 0, head, 0, extras.length);
        try (PointerScope scope = new PointerScope(); NoGradGuard ng = new NoGradGuard()) {
            List<Tensor> grads = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                Tensor g = params.get(i).grad();
                head[extras.length + i] = g.defined() ? 1 : 0;
                grads.add(g.defined() ? g : null);
            }
            Tensor headT = doubles(head);
            List<int[]> spans = new ArrayList<>();            // [first, last + 1] param index of each bucket
            List<Tensor> buckets = new ArrayList<>();
            int from = 0;
            while (from < n) {
                int to = from;
                long bytes = 0;
                List<Tensor> parts = new ArrayList<>();
                while (to < n && (to == from || bytes + 4 * params.get(to).numel() <= BUCKET_BYTES)) {
                    Tensor p = params.get(to);
                    Tensor g = grads.get(to);
                    parts.add(g != null ? g.to(ScalarType.Float).reshape(-1) : torch.zeros(p.numel()));
                    bytes += 4 * p.numel();
                    to++;
                }
                buckets.add(torch.cat(new TensorVector(parts.toArray(new Tensor[0]))));
                spans.add(new int[] {from, to});
                reducedBytes += bytes;
                from = to;
            }
            // The head goes first and is tiny: when it is summed, every rank has packed its buckets, so what follows
            // is transfer alone (one round trip later than sending all at once; no overlap is lost, as backward is over).
            await(group.allreduce(new TensorVector(headT), new AllreduceOptions()), "the gradients of step " + step);
            long arrived = System.nanoTime();
            List<Work> works = new ArrayList<>();
            for (Tensor bucket : buckets) {
                works.add(group.allreduce(new TensorVector(bucket), new AllreduceOptions()));
            }
            for (Work w : works) {              // in flight together: gloo pipelines them
                await(w, "the gradients of step " + step);
            }
            waitNanos += arrived - t0;
            transferNanos += System.nanoTime() - arrived;
            double[] summed = toDoubles(headT);
            for (int b = 0; b < buckets.size(); b++) {
                long off = 0;
                for (int i = spans.get(b)[0]; i < spans.get(b)[1]; i++) {
                    Tensor p = params.get(i);
                    long k = p.numel();
                    Tensor g = grads.get(i);
                    if (summed[extras.length + i] > 0) {
                        Tensor v = buckets.get(b).narrow(0, off, k).view(p.sizes());
                        if (g == null) {
                            throw new IllegalStateException("a trainable tensor has a gradient on some ranks only: "
                                    + "every rank must use every trainable tensor");
                        }
                        g.copy_(v);
                    }
                    off += k;
                }
            }
            double[] out = new double[extras.length];
            System.arraycopy(summed, 0, out, 0, extras.length);
            return out;
        }
    }

    /** Sums {@code values} across ranks (float64); every rank gets the sums. */
    public double[] sum(double[] values, String what) {
        if (group == null) {
            return values;
        }
        try (PointerScope scope = new PointerScope()) {
            Tensor t = doubles(values);
            await(group.allreduce(new TensorVector(t), new AllreduceOptions()), what);
            return toDoubles(t);
        }
    }

    /** Copies rank 0's values of {@code tensors} into every rank's (in place). */
    public void broadcast(Collection<Tensor> tensors, String what) {
        if (group == null) {
            return;
        }
        try (PointerScope scope = new PointerScope(); NoGradGuard ng = new NoGradGuard()) {
            List<Tensor> flat = new ArrayList<>();
            for (Tensor t : tensors) {
                flat.add(t.to(ScalarType.Float).reshape(-1));
            }
            Tensor all = torch.cat(new TensorVector(flat.toArray(new Tensor[0])));
            await(group.broadcast(new TensorVector(all), new BroadcastOptions()), what);
            long off = 0;
            for (Tensor t : tensors) {
                long k = t.numel();
                t.copy_(all.narrow(0, off, k).view(t.sizes()));
                off += k;
            }
        }
    }

    /** Rank 0's {@code bytes} on every rank (the argument is ignored elsewhere; may be null there). */
    public byte[] broadcast(byte[] bytes, String what) {
        if (group == null) {
            return bytes;
        }
        double[] len = {rank == 0 ? bytes.length : 0};
        long n = (long) sum(len, what)[0];
        if (n == 0) {
            return new byte[0];
        }
        try (PointerScope scope = new PointerScope()) {
            Tensor t = rank == 0 ? Tensors.bytes(bytes)
                    : torch.zeros(new long[] {n}, new org.bytedeco.pytorch.TensorOptions(ScalarType.Byte));
            await(group.broadcast(new TensorVector(t), new BroadcastOptions()), what);
            return Tensors.toBytes(t);
        }
    }

    /** Waits until every rank has arrived here (as a collective: it fails like one). */
    public void barrier(String what) {
        if (group == null) {
            return;
        }
        sum(new double[] {0}, what);
    }

    private void await(Work w, String what) {
        try {
            w._wait(new Milliseconds(timeout.toMillis()));
        } catch (RuntimeException e) {
            throw lost(what, e);
        }
    }

    /**
     * The one-line error for a collective that failed at {@code what}: names the rank that fell behind (the lowest step
     * announced with {@link #reached}), or rank 0 when its store is gone with it.
     */
    Calm4jException lost(String what, RuntimeException e) {
        String cause = firstLine(e);
        String who;
        try {
            store.setTimeout(new Milliseconds(2000));
            long[] before = beats();
            Thread.sleep(HEARTBEAT_MS * 5 / 2);
            long[] after = beats();
            List<String> silent = new ArrayList<>();
            List<String> behind = new ArrayList<>();
            long mine = stepOf(rank);
            long low = Long.MAX_VALUE;
            for (int r = 0; r < size; r++) {
                low = Math.min(low, stepOf(r));
            }
            for (int r = 0; r < size; r++) {
                long step = stepOf(r);
                String at = step < 0 ? "before the first step" : "last reached step " + step;
                if (r != rank && after[r] == before[r]) {
                    silent.add("rank " + r + " (no heartbeat; " + at + ")");     // dead, or the process frozen
                } else if (r != rank && step == low && low < mine) {
                    behind.add("rank " + r + " (" + at + ")");                   // alive, but stuck before here
                }
            }
            who = !silent.isEmpty() ? String.join(", ", silent) : !behind.isEmpty() ? String.join(", ", behind) : "a rank";
        } catch (InterruptedException ie) {
            Thread.currentThread().interrupt();
            who = "a rank";
        } catch (RuntimeException storeGone) {
            who = rank == 0 ? "a rank" : "rank 0 (its rendezvous store is gone too)";
        }
        return new Calm4jException("rank " + rank + ": " + who + " stopped answering during " + what + " (waited up to "
                + timeout.toSeconds() + " s; gloo: " + cause + "); stopping this rank too");
    }

    /** Every rank's heartbeat count. */
    private long[] beats() {
        long[] b = new long[size];
        for (int r = 0; r < size; r++) {
            b[r] = store.add("alive/" + r, 0);
        }
        return b;
    }

    /**
     * Counts this rank's heartbeats in the store, every {@link #HEARTBEAT_MS}, from a daemon thread: a rank whose count
     * stands still is dead or frozen (SIGSTOP stops every thread), which tells it from one that is merely slow. Ends
     * when the store is gone.
     */
    private void startHeartbeat() {
        heartbeat = new Thread(() -> {
            try {
                while (true) {
                    store.add("alive/" + rank, 1);
                    Thread.sleep(HEARTBEAT_MS);
                }
            } catch (InterruptedException | RuntimeException gone) {
                // the store or the process is going away
            }
        }, "calm4j-rank" + rank + "-heartbeat");
        heartbeat.setDaemon(true);
        heartbeat.start();
    }

    private long stepOf(int r) {
        String key = "reached/" + r;
        if (!store.check(new org.bytedeco.pytorch.StringVector(key))) {
            return -1;
        }
        ByteVector v = store.get(key);
        byte[] b = new byte[(int) v.size()];
        for (int i = 0; i < b.length; i++) {
            b[i] = v.get(i);
        }
        return Long.parseLong(new String(b, StandardCharsets.UTF_8).strip());
    }

    /** The first line of a libtorch exception, without the C++ source path in brackets that gloo puts before it. */
    static String firstLine(Throwable e) {
        String m = e.getMessage() == null ? e.toString() : e.getMessage();
        m = m.lines().findFirst().orElse(m).strip();
        if (m.startsWith("[") && m.indexOf("] ") > 0) {
            m = m.substring(m.indexOf("] ") + 2);
        }
        return m;
    }

    private static Tensor doubles(double[] v) {
        return Tensors.doubles(v, v.length);
    }

    private static double[] toDoubles(Tensor t) {
        return Tensors.toDoubles(t);
    }

    /**
     * Stops this rank's heartbeat (the others then see it as gone). The process group and the stores stay until the
     * process ends: a native shutdown that waited for peers that are gone would hang the exit.
     */
    @Override
    public void close() {
        Thread t = heartbeat;
        if (t != null) {
            t.interrupt();
            try {
                t.join(10_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private static void check(boolean ok, String message) {
        if (!ok) {
            throw new Calm4jException(message);
        }
    }
}
