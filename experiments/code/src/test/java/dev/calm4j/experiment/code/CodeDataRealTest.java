package dev.calm4j.experiment.code;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The split of the real, pinned sources (experiments/code/README.md gives these counts): every file parses, the
 * held-out projects share no file text and no method code with training, D_C is 7 % of the training pairs, and the
 * counts are those of the pinned jars. Needs the fetched jars: CI fetches them first ({@code .ci/run}); elsewhere the
 * test is reported as skipped with the command that fetches them.
 */
class CodeDataRealTest {
    static final Path REPO = Path.of(System.getProperty("calm4j.repo", "../.."));

    @Test
    void thePinnedProjectsSplitAsRecorded() {
        Path downloads = REPO.resolve("experiments/code/data/downloads");
        CodeDataRecipe recipe = CodeDataRecipe.load(REPO.resolve("experiments/code").resolve(CodeDataRecipe.FILE));
        boolean have = recipe.projects().stream().allMatch(p -> Files.isRegularFile(downloads.resolve(p.jarName())));
        if (!have) {
            if (System.getenv("CI") != null) {
                fail(downloads + " is incomplete: .ci/run must run experiments/code/scripts/fetch-data.sh before the tests");
            }
            Assumptions.abort("no fetched sources in " + downloads + ": run experiments/code/scripts/fetch-data.sh");
        }
        CodeData d = CodeData.load(downloads, recipe);
        d.stats.forEach((name, s) -> assertEquals(0, s.parseFailures, name + ": " + s.unparsed));
        assertEquals(List.of(2659, 140, 273, 186), List.of(d.trainFiles.size(), d.devFiles.size(), d.testFiles.size(),
                d.dcFiles.size()));
        assertEquals(List.of(10693, 522, 1488, 749), List.of(d.trainPairs.size(), d.devPairs.size(), d.testPairs.size(),
                d.dcPairs.size()));
        assertEquals(List.of(1308, 2397), List.of(d.devNextLine.size(), d.testNextLine.size()));
        assertEquals(Math.round(0.07 * d.trainPairs.size()), d.dcPairs.size());

        Set<String> heldOut = Set.copyOf(recipe.split().heldOut());
        Set<String> trainText = new HashSet<>();
        d.trainFiles.forEach(f -> trainText.add(f.text()));
        Set<String> trainCode = d.trainMethodCode;
        assertTrue(trainCode.size() > 25_000, "training methods: " + trainCode.size());
        for (SourceJar.SourceFile f : d.testFiles) {
            assertTrue(heldOut.contains(f.project()), f.path());
            assertFalse(trainText.contains(f.text()), f.path());
        }
        for (CodeData.Pair p : d.testPairs) {
            assertTrue(heldOut.contains(p.project()), p.path());
            assertFalse(trainCode.contains(CodeData.collapse(p.code())), p.path() + ":" + p.line());
        }
        for (CodeData.NextLineExample e : d.testNextLine) {
            assertTrue(heldOut.contains(e.project()), e.path());
        }
        assertTrue(d.trainFiles.stream().noneMatch(f -> heldOut.contains(f.project())));
        assertTrue(d.devFiles.stream().noneMatch(f -> heldOut.contains(f.project())));
    }
}
