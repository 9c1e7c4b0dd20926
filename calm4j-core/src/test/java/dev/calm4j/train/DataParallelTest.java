package dev.calm4j.train;

import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.DataRules;
import dev.calm4j.data.Dataset;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.testing.TestModels;
import dev.calm4j.tokenize.Tokenizer;
import org.bytedeco.pytorch.FileStore;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.IntFunction;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Data-parallel training ({@link DataParallel}) with its ranks on threads of this process, over a gloo process group
 * and a file store: 2 ranks x batch b train to the same tensors as 1 process x batch 2b on the same data order
 * (bridges, LoRA and pretraining, 20 steps, to 1e-5), every rank holds bitwise the same tensors, and a checkpoint
 * continues with the same number of ranks, with another one when the global batch is the same, and is refused
 * otherwise.
 */
class DataParallelTest {
    private static final int STEPS = 20;

    @TempDir
    Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    /** Key-value lines with keys and values of varied lengths, so that a batch's rows pad differently. */
    static Path data(Path file, long seed, int n) throws Exception {
        Random r = new Random(seed);
        List<Map<String, Object>> rows = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            StringBuilder k = new StringBuilder();
            for (int j = 0, len = 1 + r.nextInt(6); j < len; j++) {
                k.append((char) ('a' + r.nextInt(26)));
            }
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("prompt", k + "=");
            row.put("completion", String.valueOf(r.nextInt(r.nextBoolean() ? 100 : 100000)));
            rows.add(row);
        }
        Dataset.writeJsonl(file, rows);
        return file;
    }

    static Dataset read(Path file, Path modelDir, CausalLm m) {
        try (Tokenizer t = Tokenizer.load(modelDir)) {
            return Dataset.read(file, t, new DataRules(64, m.config().vocabSize(), null, null, false));
        }
    }

    static TrainConfig config(int batch, int accumulation) {
        return new TrainConfig(STEPS, new TrainConfig.Batching(batch, accumulation, 1),
                TrainConfig.Schedule.cosine(3e-3, 2, 0.1), TrainConfig.Optimizer.adamW(0.01),
                new TrainConfig.Intervals(5, 10, 0), 3);
    }

    /** What one rank ended with: its trained tensors and result. */
    record Ranked(Map<String, float[]> tensors, TrainLoop.Result result) {}

    /** One rank's training job: builds its own objective and trains it as rank {@code rank} of {@code dp}. */
    interface Job {
        Ranked run(int rank, DataParallel dp) throws Exception;
    }

    /** Runs {@code ranks} ranks of {@code job} on threads, over a fresh file store; returns their results by rank. */
    List<Ranked> ranks(int ranks, Job job) throws Exception {
        Path store = Files.createTempFile(tmp, "store", "");
        Files.delete(store);
        ExecutorService pool = Executors.newFixedThreadPool(ranks);
        try {
            List<Future<Ranked>> fs = new ArrayList<>();
            for (int r = 0; r < ranks; r++) {
                int rank = r;
                fs.add(pool.submit(() -> {
                    try (DataParallel dp = DataParallel.over(new FileStore(store.toString(), ranks), rank, ranks,
                            Duration.ofSeconds(60))) {
                        return job.run(rank, dp);
                    }
                }));
            }
            List<Ranked> out = new ArrayList<>();
            for (Future<Ranked> f : fs) {
                out.add(f.get(10, TimeUnit.MINUTES));
            }
            return out;
        } finally {
            pool.shutdownNow();
        }
    }

    static void assertClose(Map<String, float[]> want, Map<String, float[]> got, double tol, String what) {
        assertEquals(want.keySet(), got.keySet(), what);
        double worst = 0;
        for (String k : want.keySet()) {
            float[] a = want.get(k);
            float[] b = got.get(k);
            for (int i = 0; i < a.length; i++) {
                worst = Math.max(worst, Math.abs(a[i] - b[i]));
            }
        }
        System.out.printf("%s: max abs difference %.3g%n", what, worst);
        assertTrue(worst <= tol, what + ": max abs difference " + worst);
    }

    /** Every rank's tensors bitwise rank 0's; rank 0's within 1e-5 of the single process's; the same losses. */
    static void assertEquivalent(Ranked single, List<Ranked> ranked, String what) {
        for (int r = 1; r < ranked.size(); r++) {
            for (String k : ranked.get(0).tensors().keySet()) {
                assertArrayEquals(ranked.get(0).tensors().get(k), ranked.get(r).tensors().get(k),
                        what + ": rank " + r + " holds other values of " + k);
            }
        }
        assertClose(single.tensors(), ranked.get(0).tensors(), 1e-5, what);
        TrainLoop.Result a = single.result();
        TrainLoop.Result b = ranked.get(0).result();
        assertEquals(a.curve().size(), b.curve().size(), what);
        for (int i = 0; i < a.curve().size(); i++) {
            assertEquals(a.curve().get(i)[1], b.curve().get(i)[1], 1e-5, what + ": logged loss " + i);
        }
        if (!Double.isNaN(a.evalLoss())) {
            assertEquals(a.evalLoss(), b.evalLoss(), 1e-5, what + ": eval loss");
        }
    }

    @Test
    void bridgesOfTwoRanksEqualOneProcessWithTheirGlobalBatch() throws Exception {
        Path anchorDir = TestModels.write(tmp.resolve("anchor"), TestModels.tinyLlama(), 61);
        Path augDir = TestModels.write(tmp.resolve("augment"), TestModels.tinyAugment(), 62);
        Path file = data(tmp.resolve("d.jsonl"), 5, 40);
        try (CausalLm anchor = LmFamilies.load(anchorDir); CausalLm aug = LmFamilies.load(augDir)) {
            Dataset d = read(file, anchorDir, anchor);
            Dataset eval = read(data(tmp.resolve("e.jsonl"), 6, 12), anchorDir, anchor);
            // the frozen models are shared by the ranks (read-only); each rank has its own bridges and state cache
            IntFunction<CalmModel> calm = seed -> CalmModel.create(anchor, List.of(aug),
                    new CompositionPlan(CompositionPlan.parse("0->0,1->2")), Mode.SAME_SEQUENCE, 4, 0.1, 9);
            Job job = (rank, dp) -> {
                try (CalmModel c = calm.apply(rank)) {
                    BridgeObjective obj = new BridgeObjective(c, anchorDir, List.of(augDir));
                    TrainLoop.Result r = TrainLoop.run(obj, d, eval, config(dp.single() ? 8 : 4, 2),
                            tmp.resolve(dp.single() ? "single" : "ranks"), false, TrainListener.NONE,
                            tmp.resolve(dp.single() ? "single" : "ranks"), dp);
                    if (dp.rank() == 0 && !dp.single()) {
                        System.out.printf("bridges: %,d gradient bytes summed per rank, %.3f s of transfer, %.3f s "
                                + "waiting, over %d steps%n", dp.reducedBytes(), dp.transferSeconds(), dp.waitSeconds(), STEPS);
                    }
                    return new Ranked(TrainLoopTest.snapshot(c.bridgeTensors()), r);
                }
            };
            Ranked single = job.run(0, DataParallel.SINGLE);
            List<Ranked> two = ranks(2, job);
            assertEquivalent(single, two, "bridges");
            // rank 0 alone wrote the run's files, with the number of ranks
            assertTrue(Files.exists(tmp.resolve("ranks/bridges.safetensors")));
            assertEquals(2, Checkpoint.readState(tmp.resolve("ranks")).worldSize());
        }
    }

    @Test
    void loraOfTwoRanksEqualsOneProcessWithTheirGlobalBatch() throws Exception {
        Path dir = TestModels.write(tmp.resolve("m"), TestModels.tinyLlama(), 63);
        Path file = data(tmp.resolve("d.jsonl"), 7, 40);
        try (LlamaModel base = (LlamaModel) LmFamilies.load(dir)) {
            Dataset d = read(file, dir, base);
            Job job = (rank, dp) -> {
                Lora lora = Lora.init(base, List.of("q_proj", "v_proj"), 4, 8, 1);
                TrainLoop.Result r = TrainLoop.run(new LoraObjective(base, dir, lora), d, null, config(dp.single() ? 6 : 3, 1),
                        tmp.resolve(dp.single() ? "single" : "ranks"), false, TrainListener.NONE,
                        tmp.resolve(dp.single() ? "single" : "ranks"), dp);
                return new Ranked(TrainLoopTest.snapshot(lora.named()), r);
            };
            assertEquivalent(job.run(0, DataParallel.SINGLE), ranks(2, job), "LoRA");
        }
    }

    @Test
    void pretrainingOfTwoRanksEqualsOneProcessWithTheirGlobalBatch() throws Exception {
        Path dir = TestModels.write(tmp.resolve("m"), TestModels.tinyAugment(), 64);
        Path file = data(tmp.resolve("d.jsonl"), 8, 40);
        Job job = (rank, dp) -> {
            try (CausalLm m = LmFamilies.load(dir)) {       // every rank trains a model of its own
                Dataset d = read(file, dir, m);
                TrainLoop.Result r = TrainLoop.run(new LmObjective(m, null), d, null, config(dp.single() ? 8 : 4, 1),
                        tmp.resolve(dp.single() ? "single" : "ranks"), false, TrainListener.NONE,
                        tmp.resolve(dp.single() ? "single" : "ranks"), dp);
                return new Ranked(TrainLoopTest.snapshot(m.namedWeights()), r);
            }
        };
        assertEquivalent(job.run(0, DataParallel.SINGLE), ranks(2, job), "pretraining");
    }

    /**
     * A checkpoint of 2 ranks continues with 2 ranks, and with 1 process of the same global batch, to the
     * uninterrupted run's tensors; with another global batch it is refused with the flags that would fit.
     */
    @Test
    void resumeWithTheSameOrAnotherNumberOfRanks() throws Exception {
        Path dir = TestModels.write(tmp.resolve("m"), TestModels.tinyAugment(), 65);
        Path file = data(tmp.resolve("d.jsonl"), 9, 40);
        TrainConfig saving = new TrainConfig(STEPS, new TrainConfig.Batching(4, 1, 1),
                TrainConfig.Schedule.cosine(3e-3, 2, 0.1), TrainConfig.Optimizer.adamW(0.01),
                new TrainConfig.Intervals(5, 0, 5), 3);
        TrainConfig doubled = new TrainConfig(STEPS, new TrainConfig.Batching(8, 1, 1), saving.schedule(),
                saving.optimizer(), saving.intervals(), 3);
        // (out, resume, killAfter)
        record Leg(String out, boolean resume, int killAfter) {}
        java.util.function.Function<Leg, Job> job = leg -> (rank, dp) -> {
            try (CausalLm m = LmFamilies.load(dir)) {
                Dataset d = read(file, dir, m);
                TrainLoop.Result r = TrainLoop.run(new LmObjective(m, null), d, null, dp.single() ? doubled : saving,
                        tmp.resolve(leg.out()), leg.resume(), TrainListener.NONE, leg.killAfter(), tmp.resolve(leg.out()), dp);
                return new Ranked(TrainLoopTest.snapshot(m.namedWeights()), r);
            }
        };
        List<Ranked> whole = ranks(2, job.apply(new Leg("whole", false, Integer.MAX_VALUE)));
        // killed after step 12 (checkpoint of step 10), continued by 2 ranks
        ranks(2, job.apply(new Leg("same", false, 12)));
        assertEquals(10, Checkpoint.readState(tmp.resolve("same")).step());
        List<Ranked> same = ranks(2, job.apply(new Leg("same", true, Integer.MAX_VALUE)));
        assertClose(whole.get(0).tensors(), same.get(0).tensors(), 0, "resumed by 2 ranks");
        // continued by one process of the same global batch (8 = 2 x 4)
        ranks(2, job.apply(new Leg("other", false, 12)));
        Ranked one = job.apply(new Leg("other", true, Integer.MAX_VALUE)).run(0, DataParallel.SINGLE);
        assertClose(whole.get(0).tensors(), one.tensors(), 1e-5, "resumed by 1 process");
        // another global batch: refused
        ranks(2, job.apply(new Leg("refused", false, 12)));
        Calm4jException e = assertThrows(Calm4jException.class, () -> {
            try (CausalLm m = LmFamilies.load(dir)) {
                TrainLoop.run(new LmObjective(m, null), read(file, dir, m), null, saving, tmp.resolve("refused"), true,
                        TrainListener.NONE);
            }
        });
        assertTrue(e.getMessage().contains("written by 2 rank(s) of --batch 4 (8 rows per micro-batch), this run has 1 of "
                + "--batch 4 (4); resume with 1 rank(s) of --batch 8 or with 2 of --batch 4"), e.getMessage());
    }

    /** A rank that dies makes the other stop at its next collective, with one line naming the rank. */
    /**
     * Groups whose ranks have finished, found unreachable by the garbage collector, must not free native objects
     * that the native group still points at. Before the groups' native objects were pinned for the process's life,
     * this test aborted the JVM ("malloc(): unsorted double linked list corrupted") or hung, and the full suite
     * crashed under a later test.
     */
    @Test
    void finishedGroupsCollectedByTheGarbageCollectorLeaveTheHeapIntact() throws Exception {
        for (int round = 0; round < 10; round++) {
            System.gc();
            List<Ranked> r = ranks(2, (rank, dp) -> {
                double[] s = dp.sum(new double[] {rank + 1}, "a sum");
                return new Ranked(Map.of("sum", new float[] {(float) s[0]}), null);
            });
            assertEquals(3f, r.get(1).tensors().get("sum")[0]);
        }
        for (int i = 0; i < 5; i++) {
            System.gc();
            Thread.sleep(100);          // JavaCPP's deallocator thread frees what the collector found
        }
        try (org.bytedeco.javacpp.PointerScope scope = new org.bytedeco.javacpp.PointerScope()) {
            for (int i = 0; i < 2000; i++) {
                Tensor a = org.bytedeco.pytorch.global.torch.randn(64, 64);
                assertEquals(64, a.matmul(a).size(0));
            }
        }
    }

    @Test
    void aRankThatStopsAnsweringIsNamed() throws Exception {
        Path store = tmp.resolve("store");
        ExecutorService pool = Executors.newFixedThreadPool(2);
        List<DataParallel> ranks = new java.util.concurrent.CopyOnWriteArrayList<>();
        try {
            Future<Calm4jException> survivor = pool.submit(() -> {
                DataParallel dp = DataParallel.over(new FileStore(store.toString(), 2), 0, 2, Duration.ofSeconds(3));
                ranks.add(dp);
                dp.reached(0);
                dp.barrier("step 0");
                dp.reached(1);
                return assertThrows(Calm4jException.class, () -> dp.barrier("step 1"));
            });
            pool.submit(() -> {
                DataParallel dp = DataParallel.over(new FileStore(store.toString(), 2), 1, 2, Duration.ofSeconds(3));
                ranks.add(dp);
                dp.reached(0);
                dp.barrier("step 0");
                return null;       // and never answers again (alive: its heartbeat goes on): the survivor times out
            }).get(60, TimeUnit.SECONDS);
            long t0 = System.nanoTime();
            Calm4jException e = survivor.get(60, TimeUnit.SECONDS);
            double waited = (System.nanoTime() - t0) / 1e9;
            assertTrue(e.getMessage().startsWith("rank 0: rank 1 (last reached step 0) stopped answering during step 1"),
                    e.getMessage());
            assertEquals(1, e.getMessage().lines().count(), e.getMessage());
            assertTrue(waited < 30, "bounded by the timeout: " + waited + " s");
        } finally {
            ranks.forEach(DataParallel::close);
            pool.shutdownNow();
        }
    }
}
