package dev.calm4j.experiment.code;

import dev.calm4j.Calm4jException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CodeDataRecipeTest {
    static final Path MODULE = Path.of(".");

    @Test
    void theCommittedRecipeLoadsAndMatchesTheFetchScript() throws Exception {
        CodeDataRecipe r = CodeDataRecipe.load(MODULE.resolve(CodeDataRecipe.FILE));
        assertEquals(9, r.projects().size());
        assertEquals(List.of("commons-io", "commons-csv"), r.split().heldOut());
        assertTrue(r.projects().stream().allMatch(p -> p.licence().equals("Apache-2.0")));
        List<String> fromScript = new ArrayList<>();
        Matcher m = Pattern.compile("^\\s*\"([^\"\\s]+) ([0-9a-f]{64})\"\\s*$", Pattern.MULTILINE)
                .matcher(Files.readString(MODULE.resolve("scripts/fetch-data.sh")));
        while (m.find()) {
            fromScript.add(m.group(1) + " " + m.group(2));
        }
        assertEquals(r.projects().stream().map(p -> p.coordinates() + " " + p.sha256()).toList(), fromScript);
        assertEquals(List.of("guava", "commons-lang3", "commons-collections4", "commons-math3", "commons-text",
                "commons-codec", "commons-compress", "commons-io", "commons-csv"),
                r.readingOrder().stream().map(CodeDataRecipe.Project::name).toList());
    }

    @Test
    void mistakesAreReportedWithTheFileAndWhatWasExpected(@TempDir Path tmp) throws Exception {
        String good = Files.readString(MODULE.resolve(CodeDataRecipe.FILE));
        assertRefused(tmp, good.replace("\"commons-csv\"\n", "\"commons-nope\"\n"), "is not one of the projects");
        assertRefused(tmp, good.replace("\"dcPairFraction\": 0.07", "\"dcPairFraction\": 1.5"), "fractions in (0, 1)");
        assertRefused(tmp, good.replace("\"seed\"", "\"sead\""), "unknown field 'sead'");
        assertRefused(tmp, good.replaceFirst("\"sha256\": \"[0-9a-f]+\"", "\"sha256\": \"abc\""), "sha256 of 64");
        assertRefused(tmp, good.replaceFirst("\"name\": \"commons-lang3\"", "\"name\": \"guava\""), "listed twice");
        assertRefused(tmp, "{\"projects\": [", "not valid JSON");
    }

    private static void assertRefused(Path tmp, String json, String expected) throws Exception {
        Path f = tmp.resolve("r.json");
        Files.writeString(f, json);
        Calm4jException e = assertThrows(Calm4jException.class, () -> CodeDataRecipe.load(f));
        assertTrue(e.getMessage().startsWith(f.toString()) && e.getMessage().contains(expected), e.getMessage());
    }

    @Test
    void sourceJarsAreCheckedAndRead(@TempDir Path tmp) throws Exception {
        Path jar = tmp.resolve("alpha-1.0-sources.jar");
        try (ZipOutputStream z = new ZipOutputStream(Files.newOutputStream(jar))) {
            put(z, "META-INF/LICENSE.txt", "Apache License\nVersion 2.0".getBytes(StandardCharsets.UTF_8));
            put(z, "org/b/B.java", "\uFEFFclass B {}".getBytes(StandardCharsets.UTF_8));
            put(z, "org/a/A.java", "class A { String s = \"caf\u00e9\"; }".getBytes(StandardCharsets.ISO_8859_1));
            put(z, "org/a/notes.txt", "not Java".getBytes(StandardCharsets.UTF_8));
        }
        CodeDataRecipe.Project p = new CodeDataRecipe.Project("alpha", "org.alpha", "alpha", "1.0", SourceJar.sha256(jar),
                "Apache-2.0", "META-INF/LICENSE.txt", "");
        SourceJar.Sources s = SourceJar.read(SourceJar.locate(tmp, p), p, 10_000);
        assertEquals(List.of("org/a/A.java", "org/b/B.java"), s.files().stream().map(SourceJar.SourceFile::path).toList());
        assertEquals("class B {}", s.files().get(1).text());
        assertEquals("class A { String s = \"caf\u00e9\"; }", s.files().get(0).text());
        assertEquals(List.of("org/a/A.java"), s.latin1());

        CodeDataRecipe.Project wrongSha = new CodeDataRecipe.Project("alpha", "org.alpha", "alpha", "1.0", "0".repeat(64),
                "Apache-2.0", "META-INF/LICENSE.txt", "");
        assertTrue(assertThrows(Calm4jException.class, () -> SourceJar.read(jar, wrongSha, 10_000)).getMessage()
                .contains("SHA-256"));
        CodeDataRecipe.Project noLicence = new CodeDataRecipe.Project("alpha", "org.alpha", "alpha", "1.0",
                SourceJar.sha256(jar), "Apache-2.0", "META-INF/LICENSE", "");
        assertTrue(assertThrows(Calm4jException.class, () -> SourceJar.read(jar, noLicence, 10_000)).getMessage()
                .contains("no META-INF/LICENSE "));
        assertTrue(assertThrows(Calm4jException.class, () -> SourceJar.read(jar, p, 5)).getMessage()
                .contains("fileMaxChars"));
        CodeDataRecipe.Project missing = new CodeDataRecipe.Project("beta", "org.beta", "beta", "1.0", "0".repeat(64),
                "Apache-2.0", "META-INF/LICENSE.txt", "");
        assertTrue(assertThrows(Calm4jException.class, () -> SourceJar.locate(tmp, missing)).getMessage()
                .contains("fetch-data.sh"));
    }

    private static void put(ZipOutputStream z, String name, byte[] bytes) throws Exception {
        z.putNextEntry(new ZipEntry(name));
        OutputStream o = z;
        o.write(bytes);
        z.closeEntry();
    }
}
