package dev.calm4j.experiment.code;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The hand-written sample projects under {@code src/test/resources/sample}: alpha and beta for training, gamma held
 * out. gamma ships a copy of alpha's {@code Shared.java}, a copy of beta's {@code gcd} under another comment, and an
 * {@code isEmpty} whose summary equals alpha's; beta has a file that does not parse.
 */
final class Samples {
    static final Path DIR = Path.of("src/test/resources/sample");

    private Samples() {}

    static CodeDataRecipe recipe(long seed, double dcPairs, double dcFiles, double devFiles) {
        List<CodeDataRecipe.Project> projects = new ArrayList<>();
        for (String name : List.of("alpha", "beta", "gamma")) {
            projects.add(new CodeDataRecipe.Project(name, "org." + name, name, "1.0", "0".repeat(64), "Apache-2.0",
                    "META-INF/LICENSE.txt", ""));
        }
        return new CodeDataRecipe(projects, new CodeDataRecipe.Split(List.of("gamma"), seed, dcPairs, dcFiles, devFiles),
                new CodeDataRecipe.Extraction(3, 300, 3, 60, 2500, 100_000), new CodeDataRecipe.NextLine(1, 4, 60));
    }

    static CodeDataRecipe recipe() {
        return recipe(7, 0.5, 0.5, 0.01);
    }

    static Map<String, List<SourceJar.SourceFile>> sources() {
        Map<String, List<SourceJar.SourceFile>> out = new LinkedHashMap<>();
        for (String name : List.of("alpha", "beta", "gamma")) {
            Path root = DIR.resolve(name);
            List<SourceJar.SourceFile> files = new ArrayList<>();
            try (Stream<Path> s = Files.walk(root)) {
                for (Path p : s.filter(Files::isRegularFile).sorted().toList()) {
                    files.add(new SourceJar.SourceFile(name, root.relativize(p).toString().replace('\\', '/'),
                            Files.readString(p, StandardCharsets.UTF_8)));
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            out.put(name, files);
        }
        return out;
    }
}
