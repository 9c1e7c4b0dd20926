package dev.calm4j.experiment.code;

import dev.calm4j.Calm4jException;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/**
 * Reads a project's {@code -sources.jar}: checks it against the recipe's SHA-256 and that its licence file is there,
 * then gives every {@code .java} file's text, sorted by path: UTF-8, or, for a file that is not valid UTF-8,
 * ISO-8859-1 (the source encoding the Apache Commons builds declared, and under which every byte is a character:
 * two files of the pinned jars are in it); a leading byte-order mark dropped, line ends as in the jar.
 */
public final class SourceJar {
    private SourceJar() {}

    /** One source file of a project. */
    public record SourceFile(String project, String path, String text) {}

    /** A jar's source files, and the paths of those read as ISO-8859-1. */
    public record Sources(List<SourceFile> files, List<String> latin1) {}

    /** The jar of {@code project} under {@code downloads}, with the command that fetches it if it is missing. */
    public static Path locate(Path downloads, CodeDataRecipe.Project project) {
        Path jar = downloads.resolve(project.jarName());
        if (!Files.isRegularFile(jar)) {
            throw new Calm4jException(jar + ": missing (" + project.coordinates() + " sources); fetch the code "
                    + "experiment's data with experiments/code/scripts/fetch-data.sh");
        }
        return jar;
    }

    /** The project's Java files; {@code maxChars} bounds one file (a larger one is refused as damaged). */
    public static Sources read(Path jar, CodeDataRecipe.Project project, int maxChars) {
        String got = sha256(jar);
        if (!got.equals(project.sha256())) {
            throw new Calm4jException(jar + ": SHA-256 " + got + ", expected " + project.sha256() + " (" + FILE_HINT + ")");
        }
        List<SourceFile> files = new ArrayList<>();
        List<String> latin1 = new ArrayList<>();
        try (ZipFile zip = new ZipFile(jar.toFile(), StandardCharsets.UTF_8)) {
            if (zip.getEntry(project.licenceFile()) == null) {
                throw new Calm4jException(jar + ": no " + project.licenceFile() + " (the licence the recipe names for "
                        + project.name() + ")");
            }
            for (ZipEntry e : zip.stream().sorted(Comparator.comparing(ZipEntry::getName)).toList()) {
                if (e.isDirectory() || !e.getName().endsWith(".java")) {
                    continue;
                }
                files.add(new SourceFile(project.name(), e.getName(), text(zip, e, jar, maxChars, latin1)));
            }
        } catch (IOException e) {
            throw new Calm4jException(jar + ": cannot read as a jar (" + e.getMessage() + ")");
        }
        if (files.isEmpty()) {
            throw new Calm4jException(jar + ": no .java files; expected a -sources.jar");
        }
        return new Sources(files, latin1);
    }

    private static final String FILE_HINT = "remove it and run experiments/code/scripts/fetch-data.sh again";

    private static String text(ZipFile zip, ZipEntry e, Path jar, int maxChars, List<String> latin1) throws IOException {
        // Bounded read: a hostile entry could claim any size; a real source file is far below the limit.
        long limit = 4L * maxChars;
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (InputStream in = zip.getInputStream(e)) {
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) > 0) {
                bytes.write(buf, 0, n);
                if (bytes.size() > limit) {
                    throw new Calm4jException(jar + "!" + e.getName() + ": over " + limit + " bytes, expected a source file of at most "
                            + maxChars + " characters (extraction.fileMaxChars)");
                }
            }
        }
        String s;
        try {
            s = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes.toByteArray())).toString();
        } catch (CharacterCodingException x) {
            s = new String(bytes.toByteArray(), StandardCharsets.ISO_8859_1);
            latin1.add(e.getName());
        }
        if (s.startsWith("\uFEFF")) {
            s = s.substring(1);
        }
        if (s.length() > maxChars) {
            throw new Calm4jException(jar + "!" + e.getName() + ": " + s.length() + " characters, expected at most "
                    + maxChars + " (extraction.fileMaxChars)");
        }
        return s;
    }

    static String sha256(Path file) {
        try (InputStream in = Files.newInputStream(file)) {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) > 0) {
                md.update(buf, 0, n);
            }
            return HexFormat.of().formatHex(md.digest());
        } catch (IOException e) {
            throw new Calm4jException(file + ": cannot read (" + e.getMessage() + ")");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
