package dev.calm4j.cli;

import dev.calm4j.io.Safetensors;
import dev.calm4j.nn.Tensors;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static dev.calm4j.cli.CliTest.calm;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code calm compose --nproc 2} in processes of its own: it trains to the bridges of one process with the global
 * batch; a rank killed (SIGKILL) or frozen (SIGSTOP) mid-run makes the other stop within the timeout with one line
 * naming it, and resuming both continues to the uninterrupted run's bridges.
 */
class DistributedCliTest {
    private static final int STEPS = 24;

    @TempDir
    static Path shared;

    @TempDir
    Path tmp;

    static Path anchor;
    static Path augment;
    static Path train;
    static TreeMap<String, float[]> twoRanks;

    @BeforeAll
    static void models() throws Exception {
        anchor = shared.resolve("anchor");
        augment = shared.resolve("augment");
        for (Path p : new Path[] {anchor, augment}) {
            boolean a = p == anchor;
            Path cfg = shared.resolve(p.getFileName() + ".json");
            Files.writeString(cfg, """
                    {"model_type": "llama", "vocab_size": 48, "hidden_size": %d, "intermediate_size": %d,
                     "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 32, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": true}
                    """.formatted(a ? 64 : 32, a ? 128 : 64));
            assertEquals(0, calm("init", "--config", cfg.toString(), "--out", p.toString(), "--seed", a ? "1" : "2",
                    "--std", "0.2", "--char-alphabet", CliComposeTest.ALPHABET).code());
        }
        StringBuilder sb = new StringBuilder();
        java.util.Random r = new java.util.Random(3);
        for (int i = 0; i < 48; i++) {
            StringBuilder k = new StringBuilder();
            for (int j = 0, n = 1 + r.nextInt(6); j < n; j++) {
                k.append((char) ('a' + r.nextInt(26)));
            }
            sb.append("{\"prompt\": \"").append(k).append("=\", \"completion\": \"").append(r.nextInt(100000)).append("\"}\n");
        }
        train = Files.writeString(shared.resolve("train.jsonl"), sb);
        Path ref = shared.resolve("two-ranks");
        Child c = Child.start(args(ref, "--batch", "4", "--nproc", "2"), shared.resolve("ref.err"));
        assertEquals(0, c.waitFor(), Files.readString(shared.resolve("ref.err")));
        twoRanks = bridges(ref);
    }

    private static List<String> args(Path out, String... extra) {
        List<String> a = new ArrayList<>(List.of("compose", "--anchor", anchor.toString(), "--augment",
                augment.toString(), "--data", train.toString(), "--out", out.toString(), "--steps", String.valueOf(STEPS),
                "--accumulation", "2", "--lr", "3e-3", "--seed", "5", "--save-every", "4", "--log-every", "1",
                "--no-progress"));
        a.addAll(List.of(extra));
        return a;
    }

    static TreeMap<String, float[]> bridges(Path dir) {
        TreeMap<String, float[]> m = new TreeMap<>();
        try (Safetensors st = Safetensors.open(dir.resolve("bridges.safetensors"))) {
            for (String n : st.names()) {
                m.put(n, Tensors.toFloats(st.load(n)));
            }
        }
        return m;
    }

    static double maxDiff(TreeMap<String, float[]> a, TreeMap<String, float[]> b) {
        assertEquals(a.keySet(), b.keySet());
        double d = 0;
        for (String n : a.keySet()) {
            for (int i = 0; i < a.get(n).length; i++) {
                d = Math.max(d, Math.abs(a.get(n)[i] - b.get(n)[i]));
            }
        }
        return d;
    }

    /** A {@code calm} process (the launcher with --nproc); its output lines arrive in {@code lines}. */
    record Child(Process process, BlockingQueue<String> lines, Path err) {
        static Child start(List<String> args, Path err) throws IOException {
            List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-Dai.djl.offline=true", "-DOPT_OUT_TRACKING=true", "-Djava.awt.headless=true", "-Xss4m",
                    "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", System.getProperty("java.class.path"),
                    Main.class.getName()));
            cmd.addAll(args);
            Process p = new ProcessBuilder(cmd).redirectError(err.toFile()).start();
            BlockingQueue<String> q = new LinkedBlockingQueue<>();
            Thread t = new Thread(() -> {
                try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                    for (String l; (l = r.readLine()) != null; ) {
                        q.add(l);
                    }
                } catch (IOException ignored) {
                    // ended
                }
                q.add("<eof>");
            });
            t.setDaemon(true);
            t.start();
            return new Child(p, q, err);
        }

        /** Waits for a line starting with {@code prefix} and returns it; null if the process ended first. */
        String await(String prefix) throws InterruptedException {
            for (String l; (l = lines.poll(180, TimeUnit.SECONDS)) != null; ) {
                if (l.startsWith(prefix)) {
                    return l;
                }
                if (l.equals("<eof>")) {
                    return null;
                }
            }
            return null;
        }

        int waitFor() throws InterruptedException {
            assertTrue(process.waitFor(300, TimeUnit.SECONDS), "the run ended");
            return process.exitValue();
        }

        /** The workers' pids, rank by rank, from the launcher's first line. */
        List<Long> ranks() throws InterruptedException {
            String l = await("started ");
            assertTrue(l != null, "the launcher started its workers");
            Matcher m = Pattern.compile("\\(pids ([0-9, ]+)\\)").matcher(l);
            assertTrue(m.find(), l);
            return java.util.Arrays.stream(m.group(1).split(", ")).map(Long::valueOf).toList();
        }
    }

    private static String stepLine(int step) {
        return String.format("step %" + String.valueOf(STEPS).length() + "d/%d", step, STEPS);
    }

    private static void signal(long pid, String sig) throws Exception {
        assertEquals(0, new ProcessBuilder("kill", "-" + sig, String.valueOf(pid)).start().waitFor());
    }

    @Test
    void twoRanksTrainTheBridgesOfOneProcessWithTheirGlobalBatch() throws Exception {
        Path one = tmp.resolve("one");
        Child c = Child.start(args(one, "--batch", "8"), tmp.resolve("err"));
        assertEquals(0, c.waitFor(), Files.readString(tmp.resolve("err")));
        double d = maxDiff(bridges(one), twoRanks);
        System.out.printf("compose --nproc 2 --batch 4 against one process --batch 8: max abs difference %.3g%n", d);
        assertTrue(d <= 1e-5, "max abs difference " + d);
        // only rank 0 wrote the folder; its checkpoint says how many ranks wrote it
        assertEquals(2, dev.calm4j.train.Checkpoint.readState(shared.resolve("two-ranks")).worldSize());
    }

    @Test
    void aKilledRankStopsTheOtherWithOneLineAndResumingContinuesToTheSameBridges() throws Exception {
        Path out = tmp.resolve("killed");
        Child c = Child.start(args(out, "--batch", "4", "--nproc", "2", "--dist-timeout", "60"), tmp.resolve("err"));
        List<Long> pids = c.ranks();
        assertTrue(c.await(stepLine(10)) != null, Files.readString(c.err()));
        long t0 = System.nanoTime();
        signal(pids.get(1), "KILL");
        int code = c.waitFor();
        double secs = (System.nanoTime() - t0) / 1e9;
        String err = Files.readString(c.err());
        assertEquals(137, code, err);
        assertTrue(err.contains("calm: error: rank 0: rank 1 (no heartbeat; last reached step "), err);
        assertTrue(err.contains(" stopped answering during the gradients of step "), err);
        assertTrue(err.strip().endsWith("calm: error: rank 1 exited with code 137 (SIGKILL); the other ranks were stopped"),
                err);
        assertTrue(secs < 60, "the survivor stopped in " + secs + " s");
        Child resumed = Child.start(args(out, "--batch", "4", "--nproc", "2", "--resume"), tmp.resolve("err2"));
        assertEquals(0, resumed.waitFor(), Files.readString(tmp.resolve("err2")));
        // as KillResumeTest: not bitwise, since the frozen-state cache fills again from batches of other shapes
        double d = maxDiff(twoRanks, bridges(out));
        assertTrue(d <= 1e-5, "resumed bridges differ by " + d);     // not bitwise: see KillResumeTest
    }

    @Test
    void aFrozenRankMakesTheOtherTimeOutNamingIt() throws Exception {
        Path out = tmp.resolve("frozen");
        Child c = Child.start(args(out, "--batch", "4", "--nproc", "2", "--dist-timeout", "5"), tmp.resolve("err"));
        List<Long> pids = c.ranks();
        assertTrue(c.await(stepLine(6)) != null, Files.readString(c.err()));
        long t0 = System.nanoTime();
        signal(pids.get(1), "STOP");
        try {
            assertTrue(ProcessHandle.of(pids.get(0)).get().onExit().get(120, TimeUnit.SECONDS) != null);
        } finally {
            signal(pids.get(1), "CONT");        // the launcher's SIGTERM then ends it
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        assertEquals(2, c.waitFor(), Files.readString(c.err()));
        String err = Files.readString(c.err());
        assertTrue(err.contains("calm: error: rank 0: rank 1 (no heartbeat; last reached step "), err);
        assertTrue(err.contains("(waited up to 5 s; gloo: "), err);
        assertTrue(secs < 60, "rank 0 stopped after " + secs + " s");
        System.out.printf("a frozen rank: rank 0 stopped after %.1f s (timeout 5 s)%n", secs);
    }
}
