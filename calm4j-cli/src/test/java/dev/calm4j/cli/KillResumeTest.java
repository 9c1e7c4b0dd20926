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
import java.util.stream.Stream;

import static dev.calm4j.cli.CliTest.calm;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code calm compose} in a process of its own, killed with SIGKILL at several moments (before its first checkpoint,
 * between checkpoints, mid-run at a random instant) or stopped with SIGTERM, then resumed: the bridges equal an
 * uninterrupted run's, and the folder holds no litter.
 */
class KillResumeTest {
    private static final int STEPS = 24;

    @TempDir
    static Path shared;

    @TempDir
    Path tmp;

    static Path anchor;
    static Path augment;
    static Path train;
    static TreeMap<String, float[]> reference;

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
        for (char k : "abcdefghijklmnopqrstuvwxyz".toCharArray()) {
            sb.append("{\"prompt\": \"").append(k).append("=\", \"completion\": \"").append(10 + k % 70).append("\"}\n");
        }
        train = Files.writeString(shared.resolve("train.jsonl"), sb);
        Path ref = shared.resolve("reference");
        CliTest.Run r = calm(args(ref));
        assertEquals(0, r.code(), r.err());
        reference = bridges(ref);
    }

    private static String[] args(Path out, String... extra) {
        List<String> a = new ArrayList<>(List.of("compose", "--anchor", anchor.toString(), "--augment",
                augment.toString(), "--data", train.toString(), "--out", out.toString(), "--steps", String.valueOf(STEPS),
                "--batch", "8", "--accumulation", "2", "--lr", "3e-3", "--seed", "5", "--save-every", "4",
                "--log-every", "1", "--no-progress"));
        a.addAll(List.of(extra));
        return a.toArray(new String[0]);
    }

    private static TreeMap<String, float[]> bridges(Path dir) {
        TreeMap<String, float[]> m = new TreeMap<>();
        try (Safetensors st = Safetensors.open(dir.resolve("bridges.safetensors"))) {
            for (String n : st.names()) {
                m.put(n, Tensors.toFloats(st.load(n)));
            }
        }
        return m;
    }

    /** A compose run in its own JVM; its output lines arrive in {@code lines}. */
    private record Child(Process process, BlockingQueue<String> lines, Path err) {
        static Child start(Path out, Path err) throws IOException {
            List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-Dai.djl.offline=true", "-DOPT_OUT_TRACKING=true", "-Djava.awt.headless=true", "-Xss4m",
                    "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", System.getProperty("java.class.path"),
                    Main.class.getName()));
            cmd.addAll(List.of(args(out)));
            Process p = new ProcessBuilder(cmd).redirectError(err.toFile()).start();
            BlockingQueue<String> q = new LinkedBlockingQueue<>();
            Thread t = new Thread(() -> {
                try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                    for (String l; (l = r.readLine()) != null; ) {
                        q.add(l);
                    }
                } catch (IOException ignored) {
                    // the process died: that is the point
                }
                q.add("<eof>");
            });
            t.setDaemon(true);
            t.start();
            return new Child(p, q, err);
        }

        /** Waits for a line starting with {@code prefix}; false if the process ended first. */
        boolean await(String prefix) throws InterruptedException {
            for (String l; (l = lines.poll(120, TimeUnit.SECONDS)) != null; ) {
                if (l.startsWith(prefix)) {
                    return true;
                }
                if (l.equals("<eof>")) {
                    return false;
                }
            }
            return false;
        }
    }

    private static String stepLine(int step) {
        return String.format("step %" + String.valueOf(STEPS).length() + "d/%d", step, STEPS);
    }

    /** Resumes until the run is complete, then checks the bridges and the folder. */
    private static void resumeAndCompare(Path out, String what) throws IOException {
        CliTest.Run r = calm(args(out, "--resume"));
        if (r.code() == 2 && r.err().contains("nothing to train")) {
            r = new CliTest.Run(0, r.out(), r.err());          // killed after the last checkpoint: complete already
        }
        assertEquals(0, r.code(), what + ": " + r.out() + r.err());
        TreeMap<String, float[]> got = bridges(out);
        assertEquals(reference.keySet(), got.keySet());
        for (String n : reference.keySet()) {
            float[] a = reference.get(n);
            float[] b = got.get(n);
            double d = 0;
            for (int i = 0; i < a.length; i++) {
                d = Math.max(d, Math.abs(a[i] - b[i]));
            }
            // Not bitwise: the resumed run computes the frozen states of its first batches again in batches of
            // other shapes, whose float32 sums (and the bridges' fused k|v matmul) round otherwise; one random kill
            // instant gave 1.04e-6, over the 1e-6 this test first asked. A resume that lost or repeated a step
            // moves them by about the learning rate (3e-3).
            assertTrue(d <= 1e-5, what + ": tensor " + n + " differs by " + d);
        }
        try (Stream<Path> s = Files.list(out)) {
            List<String> litter = s.map(p -> p.getFileName().toString())
                    .filter(n -> n.endsWith(".tmp") || n.equals("checkpoint.old") || n.equals("checkpoint.tmp")).toList();
            assertEquals(List.of(), litter, what);
        }
    }

    @Test
    void sigkillAtAnyMomentThenResumeGivesTheUninterruptedBridges() throws Exception {
        // before the first checkpoint, right after one, between two, and at a random instant
        String[] when = {stepLine(2), stepLine(4), stepLine(13), "random"};
        java.util.Random rnd = new java.util.Random();
        for (String w : when) {
            Path out = tmp.resolve("kill-" + w.replaceAll("[^0-9a-z]", ""));
            Child c = Child.start(out, tmp.resolve("err-" + out.getFileName()));
            if (w.equals("random")) {
                assertTrue(c.await("training"), "the run started");
                Thread.sleep(rnd.nextInt(1500));
            } else {
                assertTrue(c.await(w), "reached " + w + ": " + Files.readString(c.err()));
            }
            c.process().destroyForcibly();          // SIGKILL
            c.process().waitFor();
            resumeAndCompare(out, "killed at " + w);
        }
    }

    @Test
    void sigtermSavesACheckpointAndExits143() throws Exception {
        Path out = tmp.resolve("term");
        Child c = Child.start(out, tmp.resolve("err-term"));
        assertTrue(c.await(stepLine(6)), Files.readString(c.err()));
        c.process().destroy();                      // SIGTERM
        assertTrue(c.process().waitFor(60, TimeUnit.SECONDS));
        String err = Files.readString(c.err()).strip();
        assertEquals(143, c.process().exitValue(), err);
        assertEquals(1, err.lines().count(), err);
        assertTrue(err.startsWith("calm: interrupted by SIGTERM: stopped at step ")
                && err.contains("checkpoint saved in") && err.endsWith("(continue with --resume)"), err);
        assertNotNull(dev.calm4j.train.Checkpoint.readState(out));
        assertFalse(Files.exists(out.resolve("checkpoint.tmp")));
        resumeAndCompare(out, "SIGTERM");
    }
}
