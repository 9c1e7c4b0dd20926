package dev.calm4j.experiment.code;

import dev.calm4j.Calm4jException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The split on the sample projects: what is kept, what is dropped and why, disjointness, seeds, proportions. */
class CodeDataTest {
    static List<String> names(List<CodeData.Pair> pairs) {
        return pairs.stream().map(p -> p.project() + ":" + p.name()).toList();
    }

    @Test
    void pairsSummariesAndDropReasons() {
        CodeData d = new CodeData(Samples.recipe(), Samples.sources());
        assertEquals(List.of("alpha:roundedPerimeter", "alpha:area", "alpha:perimeter", "alpha:clamp", "alpha:isEmpty",
                "alpha:join", "alpha:countSpaces", "beta:gcd", "beta:lcm", "beta:isPowerOfTwo", "beta:sign"),
                names(d.trainPairs));
        Map<String, String> summaries = d.trainPairs.stream()
                .collect(Collectors.toMap(p -> p.project() + ":" + p.name(), CodeData.Pair::summary));
        assertEquals("Returns true if the string is null or empty.", summaries.get("alpha:isEmpty"));
        assertEquals("Joins the parts with the separator, e.g. join(\",\", a, b) gives \"a,b\".", summaries.get("alpha:join"));
        assertEquals("Counts how often whitespace or isEmpty appear — a rough count <= the length.", summaries.get("alpha:countSpaces"));
        assertEquals("Computes the perimeter as four times the side.", summaries.get("alpha:perimeter"));
        assertEquals("Returns the greatest common divisor of a and b (Euclid's algorithm).", summaries.get("beta:gcd"));

        CodeData.ProjectStats alpha = d.stats.get("alpha");
        assertEquals(3, alpha.files);
        assertEquals(11, alpha.methods);
        assertEquals(1, alpha.dropped.get(CodeData.OVERLOAD));          // join(String, List): same name and summary
        assertEquals(1, alpha.dropped.get(CodeData.SUMMARY_SHORT));     // "Short."
        assertEquals(1, alpha.dropped.get(CodeData.STANDARD_METHOD));   // toString
        assertEquals(1, alpha.dropped.get(CodeData.NO_JAVADOC));
        assertEquals(1, d.stats.get("beta").parseFailures);
        assertTrue(d.stats.get("beta").unparsed.get(0).startsWith("org/beta/Broken.java"));

        // gamma: its copy of Shared.java, its copy of gcd and its isEmpty documented as alpha's are not test items.
        CodeData.ProjectStats gamma = d.stats.get("gamma");
        assertEquals(1, gamma.duplicateFiles);
        assertEquals(1, gamma.dropped.get(CodeData.DUPLICATE_CODE));
        assertEquals(1, gamma.dropped.get(CodeData.SEEN_IN_TRAINING));
        assertEquals(List.of("gamma:reverse", "gamma:vowels", "gamma:repeat"), names(d.testPairs));
        assertEquals(List.of("org/gamma/Text.java"), d.testFiles.stream().map(SourceJar.SourceFile::path).toList());
        // next-line: one per unique held-out method, isEmpty's included (its code is its own)
        assertEquals(4, d.testNextLine.size());
        assertEquals(4, gamma.nextLineExamples);
    }

    @Test
    void heldOutProjectsAreDisjointFromTraining() {
        CodeData d = new CodeData(Samples.recipe(1, 0.3, 0.3, 0.4), Samples.sources());
        Set<String> trainCode = new java.util.HashSet<>();
        d.trainPairs.forEach(p -> trainCode.add(CodeData.collapse(p.code())));
        assertTrue(d.trainMethodCode.containsAll(trainCode));
        MethodExtractor x = new MethodExtractor();
        Set<String> reparsed = new java.util.HashSet<>();
        d.trainFiles.forEach(f -> x.methods(f).methods().forEach(m -> reparsed.add(CodeData.collapse(m.code()))));
        assertEquals(reparsed, d.trainMethodCode);
        Set<String> trainText = d.trainFiles.stream().map(SourceJar.SourceFile::text).collect(Collectors.toSet());
        for (CodeData.Pair p : d.testPairs) {
            assertEquals("gamma", p.project());
            assertFalse(trainCode.contains(CodeData.collapse(p.code())), p.toString());
        }
        for (SourceJar.SourceFile f : d.testFiles) {
            assertEquals("gamma", f.project());
            assertFalse(trainText.contains(f.text()), f.path());
        }
        assertTrue(d.trainFiles.stream().noneMatch(f -> f.project().equals("gamma")));
        assertTrue(d.devFiles.stream().noneMatch(f -> f.project().equals("gamma")));
        Set<String> devPaths = d.devFiles.stream().map(f -> f.project() + "/" + f.path()).collect(Collectors.toSet());
        assertFalse(devPaths.isEmpty());
        assertTrue(d.trainFiles.stream().noneMatch(f -> devPaths.contains(f.project() + "/" + f.path())));
        assertTrue(d.trainPairs.stream().noneMatch(p -> devPaths.contains(p.project() + "/" + p.path())));
        assertTrue(d.devPairs.stream().allMatch(p -> devPaths.contains(p.project() + "/" + p.path())));
        assertTrue(d.trainPairs.containsAll(d.dcPairs));
        assertTrue(d.trainFiles.containsAll(d.dcFiles));
        for (CodeData.NextLineExample e : d.testNextLine) {
            assertEquals("gamma", e.project());
            assertTrue(e.prefix().endsWith("\n") && !e.target().contains("\n"));
            assertTrue(e.target().strip().length() >= 4);
        }
    }

    @Test
    void drawsFollowTheSeedAndTheFractionsNotTheReadingOrder(@TempDir Path tmp) throws Exception {
        CodeData a = new CodeData(Samples.recipe(), Samples.sources());
        assertEquals(Math.round(0.5 * a.trainPairs.size()), a.dcPairs.size());
        assertEquals(Math.round(0.5 * a.trainFiles.size()), a.dcFiles.size());

        Map<String, List<SourceJar.SourceFile>> reversed = new LinkedHashMap<>();
        Samples.sources().forEach((k, v) -> {
            List<SourceJar.SourceFile> r = new ArrayList<>(v);
            Collections.reverse(r);
            reversed.put(k, r);
        });
        CodeData b = new CodeData(Samples.recipe(), reversed);
        a.write(tmp.resolve("a"));
        b.write(tmp.resolve("b"));
        for (String f : CodeData.FILES) {
            assertEquals(Files.readString(tmp.resolve("a").resolve(f)), Files.readString(tmp.resolve("b").resolve(f)), f);
        }

        Set<List<String>> draws = new java.util.HashSet<>();
        for (long seed = 0; seed < 8; seed++) {
            draws.add(names(new CodeData(Samples.recipe(seed, 0.5, 0.5, 0.01), Samples.sources()).dcPairs));
        }
        assertTrue(draws.size() > 1, "D_C changes with the seed");
        CodeData c = new CodeData(Samples.recipe(3, 0.5, 0.5, 0.01), Samples.sources());
        assertNotEquals(-1, c.testNextLine.get(0).line());
    }

    @Test
    void theFilesWrittenCarryTheCounts(@TempDir Path tmp) throws Exception {
        CodeData d = new CodeData(Samples.recipe(), Samples.sources());
        d.write(tmp);
        for (String f : CodeData.FILES) {
            assertTrue(Files.isRegularFile(tmp.resolve(f)), f);
        }
        assertEquals(d.testPairs.size(), Files.readAllLines(tmp.resolve("pairs_test.jsonl")).size());
        var summary = CodeData.JSON.readTree(tmp.resolve("summary.json").toFile());
        assertEquals(d.trainPairs.size(), summary.get("splits").get("train").get("pairs").asInt());
        assertEquals("test", summary.get("projects").get("gamma").get("role").asText());
        assertEquals(1, summary.get("projects").get("gamma").get("duplicate_files").asInt());
        var line = CodeData.JSON.readTree(Files.readAllLines(tmp.resolve("pairs_test.jsonl")).get(0));
        List<String> fields = new ArrayList<>();
        line.fieldNames().forEachRemaining(fields::add);
        assertEquals(List.of("project", "path", "line", "name", "code", "summary"), fields);
    }

    @Test
    void missingSourcesAreNamed() {
        Map<String, List<SourceJar.SourceFile>> s = Samples.sources();
        s.remove("beta");
        Calm4jException e = assertThrows(Calm4jException.class, () -> new CodeData(Samples.recipe(), s));
        assertTrue(e.getMessage().contains("beta"), e.getMessage());
    }
}
