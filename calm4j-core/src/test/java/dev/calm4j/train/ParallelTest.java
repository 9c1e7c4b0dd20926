package dev.calm4j.train;

import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ParallelTest {
    @Test
    void resultsComeBackInTheOrderGivenWhateverOrderTheyFinishIn() {
        Torch.init();
        int blasBefore = Torch.blasThreads();
        CountDownLatch secondReported = new CountDownLatch(1);
        List<Integer> finished = Collections.synchronizedList(new ArrayList<>());
        List<Callable<Integer>> jobs = List.of(
                () -> {
                    // the first job waits until the second has finished and been reported: with 2 at once they really
                    // run together, and finish out of order
                    assertTrue(secondReported.await(30, TimeUnit.SECONDS), "the second job never ran beside the first");
                    return 1;
                },
                () -> {
                    assertEquals(1, Torch.blasThreads(), "BLAS is single-threaded while jobs run together");
                    return 2;
                },
                () -> 3);
        java.util.function.Consumer<Integer> onDone = r -> {
            finished.add(r);
            if (r == 2) {
                secondReported.countDown();
            }
        };
        assertEquals(List.of(1, 2, 3), Parallel.run(jobs, 2, onDone));
        assertEquals(3, finished.size());
        assertEquals(2, finished.get(0), "onDone sees results as they finish");
        assertEquals(blasBefore, Torch.blasThreads(), "BLAS threads restored");
    }

    @Test
    void theLastJobLeftGetsTheWholeBlasPoolBackWhileItRuns() throws InterruptedException {
        Torch.init();
        int blasBefore = Torch.blasThreads();
        Torch.setBlasThreads(2);
        try {
            CountDownLatch read = new CountDownLatch(1);
            List<Callable<int[]>> jobs = List.of(
                    () -> {
                        int together = Torch.blasThreads();    // the second job is still running: it waits for this
                        read.countDown();
                        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                        while (Torch.blasThreads() != 2 && System.nanoTime() < deadline) {
                            Thread.sleep(5);
                        }
                        return new int[] {together, Torch.blasThreads()};
                    },
                    () -> {
                        assertTrue(read.await(30, TimeUnit.SECONDS), "the first job never ran beside the second");
                        return new int[0];
                    });
            int[] first = Parallel.run(jobs, 2, r -> {}).get(0);
            assertEquals(1, first[0], "one BLAS thread while both jobs run");
            assertEquals(2, first[1], "the pool is back at 2 threads for the job left running alone");
            assertEquals(2, Torch.blasThreads(), "and stays so afterwards");
        } finally {
            Torch.setBlasThreads(blasBefore);
        }
    }

    @Test
    void oneAtATimeRunsInTheCallersThreadInOrder() {
        List<String> threads = new ArrayList<>();
        List<Callable<String>> jobs = List.of(() -> Thread.currentThread().getName(), () -> Thread.currentThread().getName());
        assertEquals(List.of(Thread.currentThread().getName(), Thread.currentThread().getName()), Parallel.run(jobs, 1, threads::add));
        assertEquals(2, threads.size());
    }

    @Test
    void theFirstFailureIsRethrownAndBlasIsRestored() {
        Torch.init();
        int blasBefore = Torch.blasThreads();
        List<Callable<Integer>> jobs = List.of(() -> 1, () -> {
            throw new java.io.IOException("disk full: run-2/metrics.jsonl");
        }, () -> 3);
        Calm4jException e = assertThrows(Calm4jException.class, () -> Parallel.run(jobs, 2, r -> {}));
        assertTrue(e.getMessage().contains("disk full"), e.getMessage());
        assertEquals(blasBefore, Torch.blasThreads());
        assertThrows(IllegalArgumentException.class, () -> Parallel.run(jobs, 0, r -> {}));
    }

    @Test
    void runEachKeepsWhatFinishedWhenOneJobFails() {
        Torch.init();
        int blasBefore = Torch.blasThreads();
        for (int n : new int[] {1, 2}) {
            List<Integer> finished = new ArrayList<>();
            List<Callable<Integer>> jobs = List.of(() -> 1, () -> {
                throw new java.io.IOException("disk full: run-2/metrics.jsonl");
            }, () -> 3);
            List<Parallel.Outcome<Integer>> out = Parallel.runEach(jobs, n, finished::add);
            assertEquals(3, out.size(), n + " at a time");
            assertEquals(1, out.get(0).result());
            assertTrue(!out.get(1).ok() && out.get(1).error().getMessage().contains("disk full"), out.get(1).toString());
            assertEquals(3, out.get(2).result(), "the job after the failure still ran");
            assertEquals(List.of(1, 3), finished.stream().sorted().toList());
            assertEquals(blasBefore, Torch.blasThreads());
        }
    }
}
