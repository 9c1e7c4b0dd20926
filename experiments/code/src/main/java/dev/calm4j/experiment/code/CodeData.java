package dev.calm4j.experiment.code;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.io.AtomicFiles;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/**
 * The code experiment's data, split by project (docs/design.md §4.3, docs/formats.md "The code experiment's data"):
 * the training projects' files (minus a dev set of whole files) for the code model's pretraining, (method, summary)
 * pairs, D_C drawn from the training pairs and files, and the held-out projects' files, pairs and next-line examples
 * for testing. Every draw is a function of the recipe's seed and the item's name, so the split does not depend on
 * the order of reading, the JDK or the machine; two builds from the same jars give the same bytes.
 *
 * <p>What is removed so that the test set is really unseen: a file whose text equals an earlier file's (training
 * projects are read first, so a held-out copy of a training file is the one dropped); a method whose code (whitespace
 * collapsed) equals an earlier method's; a held-out or dev pair whose method name and summary (case-folded) equal a
 * training pair's (a method copied between projects with small edits, e.g. commons-text's from commons-lang3); within
 * a project, a pair whose name and summary repeat an earlier pair's (overloads documented alike: the first one,
 * in path and line order, is kept).
 */
public final class CodeData {
    static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    private static final ObjectMapper LINES = new ObjectMapper();

    /** A (method, summary) pair; {@code line} is the method's first line in its file. */
    public record Pair(String project, String path, int line, String name, String code, String summary) {}

    /**
     * A next-line example: the method's lines before the target ({@code prefix}, each ending in {@code \n}), and the
     * target line as written (its indentation relative to the method's first line); {@code line} is the target's
     * line in the file.
     */
    public record NextLineExample(String project, String path, int line, String prefix, String target) {}

    /** Reasons a method gives no pair, as counted per project. */
    public static final String NO_JAVADOC = "no Javadoc";
    public static final String STANDARD_METHOD = "standard or test method (toString, hashCode, equals, *test*)";
    public static final String SUMMARY_SHORT = "summary under summaryMinWords";
    public static final String SUMMARY_LONG = "summary over summaryMaxChars";
    public static final String SUMMARY_URL = "summary with a URL";
    public static final String CODE_SHORT = "code under codeMinLines";
    public static final String CODE_LONG = "code over codeMaxLines or codeMaxChars";
    public static final String DUPLICATE_CODE = "code equal to an earlier method's";
    public static final String OVERLOAD = "name and summary repeat an earlier pair of the project";
    public static final String SEEN_IN_TRAINING = "name and summary equal a training pair's";

    /** Counts for one project, in the order they are written. */
    public static final class ProjectStats {
        public int files;
        public long chars;
        public int duplicateFiles;
        public int devFiles;
        public int parseFailures;
        public int methods;
        public int methodsWithJavadoc;
        public final Map<String, Integer> dropped = new LinkedHashMap<>();
        public int pairs;
        public int nextLineExamples;
        public final List<String> unparsed = new ArrayList<>();
        public final List<String> latin1 = new ArrayList<>();

        void drop(String reason) {
            dropped.merge(reason, 1, Integer::sum);
        }
    }

    public final CodeDataRecipe recipe;
    public final List<SourceJar.SourceFile> trainFiles = new ArrayList<>();
    public final List<SourceJar.SourceFile> devFiles = new ArrayList<>();
    public final List<SourceJar.SourceFile> testFiles = new ArrayList<>();
    public final List<SourceJar.SourceFile> dcFiles;
    public final List<Pair> trainPairs = new ArrayList<>();
    public final List<Pair> devPairs = new ArrayList<>();
    public final List<Pair> testPairs = new ArrayList<>();
    public final List<Pair> dcPairs;
    public final List<NextLineExample> devNextLine = new ArrayList<>();
    public final List<NextLineExample> testNextLine = new ArrayList<>();
    public final Map<String, ProjectStats> stats = new LinkedHashMap<>();
    /**
     * The code of every method of the training files (Javadoc or not), whitespace collapsed ({@link #collapse}): what
     * a model trained on {@code files_train} has read, for checking that an evaluation item is unseen.
     */
    public final Set<String> trainMethodCode = new HashSet<>();

    /** Reads the recipe's jars from {@code downloads} (what {@code scripts/fetch-data.sh} fetched) and splits them. */
    public static CodeData load(Path downloads, CodeDataRecipe recipe) {
        Map<String, List<SourceJar.SourceFile>> sources = new LinkedHashMap<>();
        Map<String, List<String>> latin1 = new LinkedHashMap<>();
        for (CodeDataRecipe.Project p : recipe.projects()) {
            SourceJar.Sources s = SourceJar.read(SourceJar.locate(downloads, p), p, recipe.extraction().fileMaxChars());
            sources.put(p.name(), s.files());
            latin1.put(p.name(), s.latin1());
        }
        CodeData d = new CodeData(recipe, sources);
        latin1.forEach((p, files) -> d.stats.get(p).latin1.addAll(files));
        return d;
    }

    /** Splits the given sources, one list of files per project of the recipe. */
    public CodeData(CodeDataRecipe recipe, Map<String, List<SourceJar.SourceFile>> sources) {
        this.recipe = recipe;
        CodeDataRecipe.Split split = recipe.split();
        MethodExtractor extractor = new MethodExtractor();
        Set<String> fileTexts = new HashSet<>();
        Set<String> codeSeen = new HashSet<>();          // every kept method's code, whitespace collapsed
        Set<String> trainNameSummaries = new HashSet<>();
        List<Pending> devAndTest = new ArrayList<>();
        for (CodeDataRecipe.Project p : recipe.readingOrder()) {
            List<SourceJar.SourceFile> files = sources.get(p.name());
            if (files == null) {
                throw new Calm4jException("no sources given for project " + p.name());
            }
            boolean heldOut = recipe.heldOut(p.name());
            ProjectStats s = new ProjectStats();
            stats.put(p.name(), s);
            List<SourceJar.SourceFile> kept = new ArrayList<>();
            for (SourceJar.SourceFile f : sorted(files)) {
                s.files++;
                s.chars += f.text().length();
                if (!fileTexts.add(f.text())) {
                    s.duplicateFiles++;
                } else {
                    kept.add(f);
                }
            }
            Set<String> dev = heldOut ? Set.of() : Set.copyOf(firstByRank(kept, Math.round(split.devFileFraction() * kept.size()),
                    split.seed(), "dev", f -> f.project() + "/" + f.path()).stream().map(SourceJar.SourceFile::path).toList());
            Set<String> nameSummaries = new HashSet<>();
            for (SourceJar.SourceFile f : kept) {
                boolean isDev = dev.contains(f.path());
                (heldOut ? testFiles : isDev ? devFiles : trainFiles).add(f);
                if (isDev) {
                    s.devFiles++;
                }
                MethodExtractor.FileMethods fm = extractor.methods(f);
                if (fm.problem() != null) {
                    s.parseFailures++;
                    s.unparsed.add(fm.problem());
                    continue;
                }
                for (MethodExtractor.Method m : fm.methods()) {
                    s.methods++;
                    if (m.javadoc() != null) {
                        s.methodsWithJavadoc++;
                    }
                    if (heldOut || isDev) {
                        devAndTest.add(new Pending(m, heldOut, s));   // checked against all of training first
                        continue;
                    }
                    trainMethodCode.add(collapse(m.code()));
                    if (!codeSeen.add(collapse(m.code()))) {
                        s.drop(m.javadoc() == null ? NO_JAVADOC : DUPLICATE_CODE);
                        continue;
                    }
                    String summary = summary(m, s);
                    if (summary == null) {
                        continue;
                    }
                    String key = nameSummary(m.name(), summary);
                    if (!nameSummaries.add(key)) {
                        s.drop(OVERLOAD);
                        continue;
                    }
                    trainNameSummaries.add(key);
                    trainPairs.add(new Pair(m.project(), m.path(), m.line(), m.name(), m.code(), summary));
                    s.pairs++;
                }
            }
        }
        // Dev before test: a method in both is kept in dev (neither is trained on; the test set stays the cleaner).
        devAndTest.sort(Comparator.comparing((Pending q) -> q.heldOut));
        Map<String, Set<String>> projectNameSummaries = new LinkedHashMap<>();
        for (Pending q : devAndTest) {
            MethodExtractor.Method m = q.method;
            if (!codeSeen.add(collapse(m.code()))) {
                q.stats.drop(m.javadoc() == null ? NO_JAVADOC : DUPLICATE_CODE);
                continue;
            }
            NextLineExample example = nextLine(m);
            if (example != null) {
                (q.heldOut ? testNextLine : devNextLine).add(example);
                q.stats.nextLineExamples++;
            }
            String summary = summary(m, q.stats);
            if (summary == null) {
                continue;
            }
            String key = nameSummary(m.name(), summary);
            if (trainNameSummaries.contains(key)) {
                q.stats.drop(SEEN_IN_TRAINING);
                continue;
            }
            if (!projectNameSummaries.computeIfAbsent(m.project(), k -> new HashSet<>()).add(key)) {
                q.stats.drop(OVERLOAD);
                continue;
            }
            (q.heldOut ? testPairs : devPairs).add(new Pair(m.project(), m.path(), m.line(), m.name(), m.code(), summary));
            q.stats.pairs++;
        }
        dcPairs = firstByRank(trainPairs, Math.round(split.dcPairFraction() * trainPairs.size()), split.seed(), "dc-pair",
                q -> q.project() + "/" + q.path() + ":" + q.line());
        dcFiles = firstByRank(trainFiles, Math.round(split.dcFileFraction() * trainFiles.size()), split.seed(), "dc-file",
                f -> f.project() + "/" + f.path());
        if (trainPairs.isEmpty() || testPairs.isEmpty()) {
            throw new Calm4jException("the split has " + trainPairs.size() + " training and " + testPairs.size()
                    + " test pairs; expected some of both");
        }
    }

    private record Pending(MethodExtractor.Method method, boolean heldOut, ProjectStats stats) {}

    /** The method's summary under the recipe's limits, or null (the reason counted). */
    private String summary(MethodExtractor.Method m, ProjectStats s) {
        CodeDataRecipe.Extraction x = recipe.extraction();
        if (m.javadoc() == null) {
            s.drop(NO_JAVADOC);
            return null;
        }
        String lower = m.name().toLowerCase(Locale.ROOT);
        if (m.name().equals("toString") || m.name().equals("hashCode") || m.name().equals("equals") || lower.contains("test")) {
            s.drop(STANDARD_METHOD);
            return null;
        }
        JavadocSummary.Result r = JavadocSummary.of(m.javadoc());
        if (!r.present()) {
            s.drop(r.reason());
            return null;
        }
        String summary = r.summary();
        if (summary.split(" ").length < x.summaryMinWords()) {
            s.drop(SUMMARY_SHORT);
            return null;
        }
        if (summary.length() > x.summaryMaxChars()) {
            s.drop(SUMMARY_LONG);
            return null;
        }
        if (summary.contains("http://") || summary.contains("https://")) {
            s.drop(SUMMARY_URL);
            return null;
        }
        int lines = m.lines();
        if (lines < x.codeMinLines()) {
            s.drop(CODE_SHORT);
            return null;
        }
        if (lines > x.codeMaxLines() || m.code().length() > x.codeMaxChars()) {
            s.drop(CODE_LONG);
            return null;
        }
        return summary;
    }

    /** One next-line example of a method, its target drawn by seed among the eligible lines, or null if none is. */
    NextLineExample nextLine(MethodExtractor.Method m) {
        CodeDataRecipe.NextLine spec = recipe.nextLine();
        String[] lines = m.code().split("\n", -1);
        if (lines.length > spec.methodMaxLines()) {
            return null;
        }
        List<Integer> eligible = new ArrayList<>();
        for (int i = spec.minPrefixLines(); i < lines.length; i++) {
            String t = lines[i].strip();
            long visible = t.codePoints().filter(c -> !Character.isWhitespace(c)).count();
            if (visible >= spec.targetMinChars() && !t.startsWith("//") && !t.startsWith("/*") && !t.startsWith("*")) {
                eligible.add(i);
            }
        }
        if (eligible.isEmpty()) {
            return null;
        }
        String key = m.project() + "/" + m.path() + ":" + m.line();
        int target = firstByRank(eligible, 1, recipe.split().seed(), "next-line", i -> key + "#" + i).get(0);
        StringBuilder prefix = new StringBuilder();
        for (int i = 0; i < target; i++) {
            prefix.append(lines[i]).append('\n');
        }
        return new NextLineExample(m.project(), m.path(), m.line() + target, prefix.toString(), lines[target]);
    }

    /**
     * The {@code k} items that come first when ranked by SHA-256 of (seed, purpose, name): a seeded draw that does
     * not depend on the order of {@code items}. Returned in their original order.
     */
    static <T> List<T> firstByRank(List<T> items, long k, long seed, String purpose, Function<T, String> name) {
        List<Integer> idx = new ArrayList<>();
        Map<Integer, Long> rank = new LinkedHashMap<>();
        for (int i = 0; i < items.size(); i++) {
            idx.add(i);
            rank.put(i, rank(seed, purpose, name.apply(items.get(i))));
        }
        idx.sort(Comparator.comparing((Integer i) -> rank.get(i)).thenComparing(i -> i));
        List<Integer> chosen = new ArrayList<>(idx.subList(0, (int) Math.min(k, items.size())));
        chosen.sort(null);
        List<T> out = new ArrayList<>();
        for (int i : chosen) {
            out.add(items.get(i));
        }
        return out;
    }

    static long rank(long seed, String purpose, String name) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest((seed + "\0" + purpose + "\0" + name)
                    .getBytes(StandardCharsets.UTF_8));
            long v = 0;
            for (int i = 0; i < 8; i++) {
                v = (v << 8) | (d[i] & 0xff);
            }
            return v;
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static List<SourceJar.SourceFile> sorted(List<SourceJar.SourceFile> files) {
        List<SourceJar.SourceFile> out = new ArrayList<>(files);
        out.sort(Comparator.comparing(SourceJar.SourceFile::path));
        return out;
    }

    private static String nameSummary(String name, String summary) {
        return name + "\0" + summary.toLowerCase(Locale.ROOT);
    }

    /** Whitespace runs to one space, trimmed: the key under which two methods count as the same code. */
    static String collapse(String code) {
        return code.strip().replaceAll("\\s+", " ");
    }

    /** The names of the files {@link #write} writes, in order. */
    public static final List<String> FILES = List.of("files_train.jsonl", "files_dev.jsonl", "files_test.jsonl",
            "files_dc.jsonl", "pairs_train.jsonl", "pairs_dc.jsonl", "pairs_dev.jsonl", "pairs_test.jsonl",
            "next_line_dev.jsonl", "next_line_test.jsonl", "summary.json");

    /** Writes the split into {@code out} (docs/formats.md): one JSON line per item, then {@code summary.json}. */
    public void write(Path out) throws IOException {
        writeLines(out.resolve("files_train.jsonl"), trainFiles);
        writeLines(out.resolve("files_dev.jsonl"), devFiles);
        writeLines(out.resolve("files_test.jsonl"), testFiles);
        writeLines(out.resolve("files_dc.jsonl"), dcFiles);
        writeLines(out.resolve("pairs_train.jsonl"), trainPairs);
        writeLines(out.resolve("pairs_dc.jsonl"), dcPairs);
        writeLines(out.resolve("pairs_dev.jsonl"), devPairs);
        writeLines(out.resolve("pairs_test.jsonl"), testPairs);
        writeLines(out.resolve("next_line_dev.jsonl"), devNextLine);
        writeLines(out.resolve("next_line_test.jsonl"), testNextLine);
        AtomicFiles.writeString(out.resolve("summary.json"), JSON.writeValueAsString(summary()) + "\n");
    }

    /** The counts: per project, per split, and the recipe they come from. */
    public ObjectNode summary() {
        ObjectNode root = JSON.createObjectNode();
        root.set("recipe", JSON.valueToTree(recipe));
        ObjectNode splits = root.putObject("splits");
        putSplit(splits.putObject("train"), trainFiles, trainPairs, null);
        putSplit(splits.putObject("dev"), devFiles, devPairs, devNextLine);
        putSplit(splits.putObject("test"), testFiles, testPairs, testNextLine);
        putSplit(splits.putObject("dc"), dcFiles, dcPairs, null);
        ObjectNode projects = root.putObject("projects");
        for (Map.Entry<String, ProjectStats> e : stats.entrySet()) {
            ProjectStats s = e.getValue();
            ObjectNode p = projects.putObject(e.getKey());
            p.put("role", recipe.heldOut(e.getKey()) ? "test" : "train");
            p.put("files", s.files);
            p.put("chars", s.chars);
            p.put("duplicate_files", s.duplicateFiles);
            p.put("dev_files", s.devFiles);
            p.put("parse_failures", s.parseFailures);
            p.put("methods", s.methods);
            p.put("methods_with_javadoc", s.methodsWithJavadoc);
            p.put("pairs", s.pairs);
            p.put("next_line_examples", s.nextLineExamples);
            ObjectNode d = p.putObject("dropped");
            s.dropped.forEach(d::put);
            s.unparsed.forEach(p.putArray("unparsed")::add);
            s.latin1.forEach(p.putArray("read_as_latin1")::add);
        }
        return root;
    }

    private static void putSplit(ObjectNode o, List<SourceJar.SourceFile> files, List<Pair> pairs,
                                 List<NextLineExample> nextLine) {
        o.put("files", files.size());
        o.put("chars", files.stream().mapToLong(f -> f.text().length()).sum());
        o.put("pairs", pairs.size());
        if (nextLine != null) {
            o.put("next_line_examples", nextLine.size());
        }
    }

    private static void writeLines(Path file, List<?> items) throws IOException {
        StringBuilder sb = new StringBuilder();
        for (Object item : items) {
            sb.append(LINES.writeValueAsString(item)).append('\n');
        }
        AtomicFiles.writeString(file, sb.toString());
    }

    /**
     * {@code CodeData [--data DIR] [--recipe FILE] --out DIR}: reads the jars in {@code DIR/downloads} (default
     * {@code experiments/code/data}), splits them as the recipe says (default {@code experiments/code/code_data.json})
     * and writes the split into {@code --out}. Run through {@code experiments/code/scripts/prepare-data.sh}.
     */
    public static void main(String[] args) {
        Path data = Path.of("experiments/code/data");
        Path recipeFile = Path.of("experiments/code", CodeDataRecipe.FILE);
        Path out = null;
        try {
            for (int i = 0; i < args.length; i++) {
                String a = args[i];
                if (i + 1 >= args.length && (a.equals("--data") || a.equals("--recipe") || a.equals("--out"))) {
                    throw new Calm4jException(a + " needs a value");
                }
                switch (a) {
                    case "--data" -> data = Path.of(args[++i]);
                    case "--recipe" -> recipeFile = Path.of(args[++i]);
                    case "--out" -> out = Path.of(args[++i]);
                    default -> throw new Calm4jException("unknown argument " + a
                            + " (expected --data DIR, --recipe FILE, --out DIR)");
                }
            }
            if (out == null) {
                throw new Calm4jException("--out DIR is required");
            }
            long t0 = System.nanoTime();
            CodeData d = load(data.resolve("downloads"), CodeDataRecipe.load(recipeFile));
            d.write(out);
            System.out.printf(Locale.ROOT, "%s: %d/%d/%d files, %d/%d/%d pairs (train/dev/test), D_C %d pairs + %d files, "
                            + "%d/%d next-line examples (dev/test), %.1f s%n", out, d.trainFiles.size(), d.devFiles.size(),
                    d.testFiles.size(), d.trainPairs.size(), d.devPairs.size(), d.testPairs.size(), d.dcPairs.size(),
                    d.dcFiles.size(), d.devNextLine.size(), d.testNextLine.size(), (System.nanoTime() - t0) / 1e9);
        } catch (Calm4jException e) {
            System.err.println("error: " + e.getMessage());
            System.exit(2);
        } catch (IOException e) {
            System.err.println("error: cannot write " + out + " (" + e.getMessage() + ")");
            System.exit(1);
        }
    }
}
