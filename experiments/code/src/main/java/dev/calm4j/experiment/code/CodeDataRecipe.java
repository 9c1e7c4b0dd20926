package dev.calm4j.experiment.code;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException;
import com.fasterxml.jackson.databind.exc.ValueInstantiationException;
import dev.calm4j.Calm4jException;
import dev.calm4j.io.StrictJson;

import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * The code experiment's data, as committed in {@code experiments/code/code_data.json}: which projects' sources are
 * read (pinned, with their licences), which of them are held out, how D_C and the dev set are drawn, and the limits
 * of the extraction. {@code scripts/fetch-data.sh} fetches the same jars (a test checks that the two lists agree).
 *
 * @param projects   the projects, in the order the pipeline reads them (training projects before held-out ones
 *                   decide which of two identical files or methods is kept: the first)
 * @param split      held-out projects, seed, fractions
 * @param extraction which methods and summaries are kept
 * @param nextLine   the next-line task's examples
 */
public record CodeDataRecipe(List<Project> projects, Split split, Extraction extraction, NextLine nextLine) {
    public static final String FILE = "code_data.json";
    private static final Pattern SHA256 = Pattern.compile("[0-9a-f]{64}");
    private static final Pattern NAME = Pattern.compile("[a-z0-9][a-z0-9.-]*");

    /**
     * One project: a Maven artifact whose {@code -sources.jar} is read.
     *
     * @param name        short name used in the data files and the split ({@code commons-lang3})
     * @param sha256      of {@code <artifactId>-<version>-sources.jar}
     * @param licence     SPDX identifier of the project's licence
     * @param licenceFile the licence's path inside the jar (checked to be there when the jar is read)
     * @param note        anything the licence file adds (third-party parts), or empty
     */
    public record Project(String name, String groupId, String artifactId, String version, String sha256,
                          String licence, String licenceFile, String note) {
        public Project {
            if (name == null || !NAME.matcher(name).matches()) {
                throw new IllegalArgumentException("project name: lower-case letters, digits, '.' and '-' expected, got " + name);
            }
            if (blank(groupId) || blank(artifactId) || blank(version)) {
                throw new IllegalArgumentException("project " + name + ": groupId, artifactId and version expected");
            }
            if (sha256 == null || !SHA256.matcher(sha256).matches()) {
                throw new IllegalArgumentException("project " + name + ": sha256 of 64 lower-case hex digits expected, got " + sha256);
            }
            if (blank(licence) || blank(licenceFile)) {
                throw new IllegalArgumentException("project " + name + ": licence and licenceFile expected");
            }
            note = note == null ? "" : note;
        }

        /** Maven's file name of the sources jar. */
        public String jarName() {
            return artifactId + "-" + version + "-sources.jar";
        }

        public String coordinates() {
            return groupId + ":" + artifactId + ":" + version;
        }
    }

    /**
     * @param heldOut        projects no model trains on: their files, pairs and next-line examples are the test set
     * @param seed           every draw of the split (dev files, D_C, next-line positions)
     * @param dcPairFraction the share of the training pairs that form D_C's (method, summary) pairs
     * @param dcFileFraction the share of the training files whose text is D_C's code text
     * @param devFileFraction the share of the training projects' files set aside, whole, as the dev set
     */
    public record Split(List<String> heldOut, long seed, double dcPairFraction, double dcFileFraction,
                        double devFileFraction) {
        public Split {
            if (heldOut == null) {
                throw new IllegalArgumentException("split.heldOut: a list of project names expected");
            }
            heldOut = List.copyOf(heldOut);
            if (heldOut.isEmpty()) {
                throw new IllegalArgumentException("split.heldOut: at least one project expected");
            }
            for (double f : new double[] {dcPairFraction, dcFileFraction, devFileFraction}) {
                if (!(f > 0 && f < 1)) {
                    throw new IllegalArgumentException("split: fractions in (0, 1) expected, got " + this);
                }
            }
        }
    }

    /**
     * Limits of the (method, summary) pairs. Code is the method's source without its Javadoc; lines are counted in
     * it, characters in its text.
     *
     * @param summaryMinWords fewer words (whitespace-separated) is no summary (CodeSearchNet drops under 3 tokens)
     * @param summaryMaxChars a longer first sentence is a paragraph rather than a summary
     * @param codeMinLines    shorter methods (CodeSearchNet drops under 3 lines) say too little
     * @param codeMaxLines    longer ones do not fit the models' context
     * @param codeMaxChars    likewise, in characters
     * @param fileMaxChars    a source file longer than this is refused as damaged (the largest real one is ~0.3 M)
     */
    public record Extraction(int summaryMinWords, int summaryMaxChars, int codeMinLines, int codeMaxLines,
                             int codeMaxChars, int fileMaxChars) {
        public Extraction {
            if (summaryMinWords < 1 || summaryMaxChars < 10 || codeMinLines < 1 || codeMaxLines < codeMinLines
                    || codeMaxChars < 10 || fileMaxChars < 1000) {
                throw new IllegalArgumentException("extraction: positive limits expected (codeMaxLines >= codeMinLines, "
                        + "summaryMaxChars, codeMaxChars >= 10, fileMaxChars >= 1000), got " + this);
            }
        }
    }

    /**
     * The next-line task: one example per method of a held-out (or dev) file, its target a line drawn by seed.
     *
     * @param minPrefixLines   the target is at least this many lines into the method (line 1 is the signature)
     * @param targetMinChars   a target line has at least this many non-whitespace characters, so lines that are only
     *                         {@code }} or {@code );} are never targets
     * @param methodMaxLines   longer methods give no example (the prefix must fit the models' context)
     */
    public record NextLine(int minPrefixLines, int targetMinChars, int methodMaxLines) {
        public NextLine {
            if (minPrefixLines < 1 || targetMinChars < 1 || methodMaxLines <= minPrefixLines) {
                throw new IllegalArgumentException("nextLine: minPrefixLines >= 1, targetMinChars >= 1, methodMaxLines > "
                        + "minPrefixLines expected, got " + this);
            }
        }
    }

    public CodeDataRecipe {
        if (projects == null || projects.isEmpty()) {
            throw new IllegalArgumentException("projects: a list of projects expected");
        }
        projects = List.copyOf(projects);
        Set<String> names = new HashSet<>();
        for (Project p : projects) {
            if (!names.add(p.name())) {
                throw new IllegalArgumentException("projects: " + p.name() + " is listed twice");
            }
        }
        if (split == null || extraction == null || nextLine == null) {
            throw new IllegalArgumentException("projects, split, extraction and nextLine expected");
        }
        for (String h : split.heldOut()) {
            if (!names.contains(h)) {
                throw new IllegalArgumentException("split.heldOut: " + h + " is not one of the projects " + names);
            }
        }
        if (split.heldOut().size() >= projects.size()) {
            throw new IllegalArgumentException("split.heldOut: at least one training project must remain");
        }
    }

    public boolean heldOut(String project) {
        return split.heldOut().contains(project);
    }

    /** The projects in reading order: the training ones, then the held-out ones (each group in file order). */
    public List<Project> readingOrder() {
        List<Project> out = new java.util.ArrayList<>();
        projects.stream().filter(p -> !heldOut(p.name())).forEach(out::add);
        projects.stream().filter(p -> heldOut(p.name())).forEach(out::add);
        return out;
    }

    /** Reads and validates a recipe file; a mistake is reported with the file and what was expected. */
    public static CodeDataRecipe load(Path file) {
        try {
            return StrictJson.MAPPER.treeToValue(StrictJson.read(file), CodeDataRecipe.class);
        } catch (ValueInstantiationException e) {
            Throwable cause = e.getCause() != null ? e.getCause() : e;
            throw new Calm4jException(file + ": " + cause.getMessage());
        } catch (UnrecognizedPropertyException e) {
            throw new Calm4jException(file + ": unknown field '" + e.getPropertyName() + "' (expected one of "
                    + e.getKnownPropertyIds() + ")");
        } catch (JsonProcessingException e) {
            throw new Calm4jException(file + ": " + e.getOriginalMessage());
        }
    }

    private static boolean blank(String s) {
        return s == null || s.isBlank();
    }
}
