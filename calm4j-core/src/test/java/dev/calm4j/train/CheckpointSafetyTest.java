package dev.calm4j.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.Dataset;
import dev.calm4j.io.RunLock;
import dev.calm4j.io.Safetensors;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.nn.Tensors;
import dev.calm4j.testing.TestModels;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.function.Consumer;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * --resume against damaged checkpoints (one line naming the file and field), saves killed at every stage (the
 * recovery rule resumes from the newest complete state and leaves no litter), a stop request between steps, and the
 * output folder's lock.
 */
class CheckpointSafetyTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    private Path anchorDir;
    private Path augDir;
    private CausalLm anchor;
    private CausalLm aug;
    private Dataset data;

    /** 6 steps, a checkpoint every 2. */
    private static final TrainConfig SIX = new TrainConfig(6, new TrainConfig.Batching(4, 2, 1),
            TrainConfig.Schedule.cosine(5e-3, 2, 0.1), new TrainConfig.Optimizer(0.01, 0.9, 0.98, 1e-8, 1.0),
            new TrainConfig.Intervals(1, 0, 2), 7);

    @BeforeAll
    static void init() {
        Torch.init();
    }

    @BeforeEach
    void models() throws Exception {
        anchorDir = TestModels.write(tmp.resolve("anchor"), TestModels.tinyLlama(), 33);
        augDir = TestModels.write(tmp.resolve("augment"), TestModels.tinyAugment(), 34);
        anchor = LmFamilies.load(anchorDir);
        aug = LmFamilies.load(augDir);
        data = TrainLoopTest.read(TrainLoopTest.mappingData(tmp.resolve("d.jsonl"), 2), anchorDir, anchor);
    }

    @AfterEach
    void close() {
        Checkpoint.stageHook = s -> {};
        anchor.close();
        aug.close();
    }

    /** Trains (or resumes) in {@code out} with a fresh composition; returns every bridge value at the end. */
    private float[] train(Path out, boolean resume, TrainListener l, int killAfter) {
        try (CalmModel c = CalmModel.create(anchor, List.of(aug), new CompositionPlan(CompositionPlan.parse("1->1")),
                Mode.SAME_SEQUENCE, 4, 9)) {
            TrainLoop.run(new BridgeObjective(c, anchorDir, List.of(augDir)), data, null, SIX, out, resume, l, killAfter);
            List<Float> all = new ArrayList<>();
            for (Tensor t : c.bridgeTensors().values()) {
                for (float x : Tensors.toFloats(t)) {
                    all.add(x);
                }
            }
            float[] a = new float[all.size()];
            for (int i = 0; i < a.length; i++) {
                a[i] = all.get(i);
            }
            return a;
        }
    }

    private static final class Killed extends RuntimeException {
        private static final long serialVersionUID = 1L;
    }

    /** Throws at {@code stage} of the save after {@code step} steps: the folder is left as a kill there leaves it. */
    private static Consumer<String> killAt(String stage, int nth) {
        int[] seen = {0};
        return s -> {
            if (s.equals(stage) && ++seen[0] == nth) {
                throw new Killed();
            }
        };
    }

    private static void assertNoLitter(Path out) {
        assertFalse(Files.exists(out.resolve("checkpoint.tmp")), "checkpoint.tmp left in " + out);
        assertFalse(Files.exists(out.resolve("checkpoint.old")), "checkpoint.old left in " + out);
        assertTrue(Files.isRegularFile(out.resolve("checkpoint/state.json")));
    }

    @Test
    void aSaveKilledAtAnyStageResumesToTheUninterruptedResult() throws Exception {
        float[] want = train(tmp.resolve("straight"), false, TrainListener.NONE, Integer.MAX_VALUE);
        assertNoLitter(tmp.resolve("straight"));
        // {stage, which save (1 = step 2, 2 = step 4), the step --resume must continue from}
        Object[][] cases = {{"written", 1, 2}, {"written", 2, 4}, {"old", 2, 4}, {"renamed", 2, 4}, {"done", 2, 4}};
        for (Object[] k : cases) {
            Path out = tmp.resolve("kill-" + k[0] + "-" + k[1]);
            Checkpoint.stageHook = killAt((String) k[0], (Integer) k[1]);
            assertThrows(Killed.class, () -> train(out, false, TrainListener.NONE, Integer.MAX_VALUE));
            Checkpoint.stageHook = s -> {};
            List<String> messages = new ArrayList<>();
            int[] started = {-1};
            TrainListener l = new TrainListener() {
                @Override
                public void message(String line) {
                    messages.add(line);
                }

                @Override
                public void started(int startStep, int steps) {
                    started[0] = startStep;
                }
            };
            float[] got = train(out, true, l, Integer.MAX_VALUE);
            int expectStart = (Integer) k[2];
            assertEquals(expectStart, started[0], k[0] + "/" + k[1] + ": " + messages);
            assertEquals(0, TestModels.maxAbsDiff(want, got), 1e-6, "killed at " + k[0] + " of save " + k[1]);
            assertNoLitter(out);
        }
    }

    @Test
    void aStopRequestSavesAResumableCheckpoint() {
        float[] want = train(tmp.resolve("straight"), false, TrainListener.NONE, Integer.MAX_VALUE);
        Path out = tmp.resolve("stopped");
        TrainListener stopAt3 = new TrainListener() {
            int done;

            @Override
            public void stepped(int d) {
                done = d;
            }

            @Override
            public boolean stopRequested() {
                return done == 3;
            }
        };
        TrainLoop.Stopped s = assertThrows(TrainLoop.Stopped.class, () -> train(out, false, stopAt3, Integer.MAX_VALUE));
        assertEquals(3, s.step());
        assertTrue(s.getMessage().contains("checkpoint saved in") && s.getMessage().contains("--resume"), s.getMessage());
        assertEquals(0, TestModels.maxAbsDiff(want, train(out, true, TrainListener.NONE, Integer.MAX_VALUE)), 1e-6);
        assertNoLitter(out);
    }

    private static void copyTree(Path from, Path to) throws IOException {
        try (Stream<Path> s = Files.walk(from)) {
            for (Path p : s.toList()) {
                Path t = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(t);
                } else {
                    Files.copy(p, t);
                }
            }
        }
    }

    private static void deleteTree(Path p) throws IOException {
        try (Stream<Path> s = Files.walk(p)) {
            for (Path x : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(x);
            }
        }
    }

    private static void editState(Path ck, Consumer<ObjectNode> edit) throws IOException {
        ObjectNode s = (ObjectNode) JSON.readTree(ck.resolve("state.json").toFile());
        edit.accept(s);
        Files.writeString(ck.resolve("state.json"), s.toString());
    }

    @Test
    void damagedCheckpointsAreRefusedByFileAndField() throws Exception {
        Path pristine = tmp.resolve("pristine");
        train(pristine, false, TrainListener.NONE, 3);          // checkpoint at step 2, "killed" in step 3
        Path good = tmp.resolve("good-checkpoint");
        copyTree(pristine.resolve("checkpoint"), good);
        Map<String, Damage> cases = new LinkedHashMap<>();
        cases.put("optimizer.pt: content differs from the SHA-256", ck -> truncate(ck.resolve("optimizer.pt"), 100));
        cases.put("optimizer.pt: empty", ck -> {
            truncate(ck.resolve("optimizer.pt"), 0);
            editState(ck, s -> s.remove("sha256"));
        });
        cases.put("optimizer.pt: not a readable optimizer state", ck -> {
            truncate(ck.resolve("optimizer.pt"), 100);
            editState(ck, s -> s.remove("sha256"));
        });
        cases.put("optimizer.pt: missing", ck -> Files.delete(ck.resolve("optimizer.pt")));
        cases.put("trainable.safetensors: missing", ck -> Files.delete(ck.resolve("trainable.safetensors")));
        cases.put("state.json: field 'step' is -5, expected an integer >= 1", ck -> editState(ck, s -> s.put("step", -5)));
        cases.put("state.json: field 'step' is 9, beyond --steps 6", ck -> editState(ck, s -> s.put("step", 9)));
        cases.put("state.json: field 'data_position' is -1", ck -> editState(ck, s -> s.put("data_position", -1)));
        cases.put("state.json: field 'data_position' is 1.0E15", ck -> editState(ck, s -> s.put("data_position", 1e15)));
        cases.put("state.json: field 'data_position' is 24, expected 16 (step 2 x batch 4 x accumulation 2)",
                ck -> editState(ck, s -> s.put("data_position", 24)));
        cases.put("state.json: field 'train_config' is missing", ck -> editState(ck, s -> s.remove("train_config")));
        cases.put("state.json: field 'step' is null", ck -> editState(ck, s -> s.remove("step")));
        cases.put("state.json: not valid JSON", ck -> Files.writeString(ck.resolve("state.json"),
                Files.readString(ck.resolve("state.json")) + "{}"));
        cases.put("state.json: the checkpoint was written with other training settings",
                ck -> editState(ck, s -> ((ObjectNode) s.get("train_config")).put("seed", 8)));
        cases.put("trainable.safetensors: tensor 'bridges.0.q.weight' holds NaN", ck -> {
            Map<String, Tensor> w = new LinkedHashMap<>();
            try (Safetensors st = Safetensors.open(ck.resolve("trainable.safetensors"))) {
                for (String n : st.names()) {
                    w.put(n, st.load(n));
                }
            }
            w.get("bridges.0.q.weight").fill_(new org.bytedeco.pytorch.Scalar(Double.NaN));
            Safetensors.write(ck.resolve("trainable.safetensors"), w, Map.of("format", "pt"));
            editState(ck, s -> s.remove("sha256"));
        });
        for (Map.Entry<String, Damage> e : cases.entrySet()) {
            Path ck = pristine.resolve("checkpoint");
            deleteTree(ck);
            copyTree(good, ck);
            e.getValue().apply(ck);
            String m = assertThrows(Calm4jException.class, () -> train(pristine, true, TrainListener.NONE,
                    Integer.MAX_VALUE)).getMessage();
            assertTrue(m.contains(e.getKey()) && !m.contains("\n"), "expected '" + e.getKey() + "', got: " + m);
        }
    }

    private interface Damage {
        void apply(Path checkpoint) throws IOException;
    }

    private static void truncate(Path f, long size) throws IOException {
        try (var ch = java.nio.channels.FileChannel.open(f, java.nio.file.StandardOpenOption.WRITE)) {
            ch.truncate(size);
        }
    }

    @Test
    void aSecondRunOnTheSameFolderIsRefusedAtOnce() throws Exception {
        Path out = tmp.resolve("locked");
        try (RunLock held = RunLock.acquire(out)) {
            assertNotNull(held);
            String m = CompletableFuture.supplyAsync(() -> assertThrows(Calm4jException.class,
                    () -> train(out, false, TrainListener.NONE, Integer.MAX_VALUE)).getMessage()).get();
            assertTrue(m.contains("another calm run is using this folder"), m);
            try (RunLock again = RunLock.acquire(out)) {    // the holder's own thread may re-enter
                assertNotNull(again);
            }
        }
        CompletableFuture.runAsync(() -> train(out, false, TrainListener.NONE, Integer.MAX_VALUE)).get();
    }

    @Test
    void theLockHoldsAcrossProcessesAndDiesWithItsHolder() throws Exception {
        Path out = tmp.resolve("cross");
        Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
                System.getProperty("java.class.path"), LockHolder.class.getName(), out.toString())
                .redirectErrorStream(true).start();
        try {
            String line = new java.io.BufferedReader(new java.io.InputStreamReader(p.getInputStream())).readLine();
            assertEquals("locked", line);
            String m = assertThrows(Calm4jException.class, () -> RunLock.acquire(out)).getMessage();
            assertTrue(m.contains("another calm run is using this folder"), m);
        } finally {
            p.destroyForcibly().waitFor();    // SIGKILL: the OS drops the lock
        }
        RunLock.acquire(out).close();
    }

    /** Holds the lock on a folder until killed (for the cross-process test). */
    public static final class LockHolder {
        public static void main(String[] args) throws Exception {
            RunLock.acquire(Path.of(args[0]));
            System.out.println("locked");
            System.out.flush();
            Thread.sleep(60_000);
        }
    }
}
