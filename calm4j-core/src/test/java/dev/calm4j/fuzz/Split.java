package dev.calm4j.fuzz;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/** Helpers of the fuzz targets: one input split into the two files a target reads, a scratch folder. */
public final class Split {
    public static final byte[] SEPARATOR = "\n--calm4j-fuzz-file--\n".getBytes(StandardCharsets.US_ASCII);

    private Split() {}

    /**
     * A scratch folder for a target's files, in memory (/dev/shm) where the machine has one: the readers take paths,
     * and a fuzzing run writes millions of inputs.
     */
    public static java.nio.file.Path scratch(String prefix) throws java.io.IOException {
        java.nio.file.Path shm = java.nio.file.Path.of("/dev/shm");
        java.nio.file.Path dir = java.nio.file.Files.isDirectory(shm) && java.nio.file.Files.isWritable(shm)
                ? java.nio.file.Files.createTempDirectory(shm, prefix) : java.nio.file.Files.createTempDirectory(prefix);
        dir.toFile().deleteOnExit();
        return dir;
    }

    /** The bytes before the first separator and those after it (all and nothing without one). */
    public static byte[][] two(byte[] data) {
        outer:
        for (int i = 0; i + SEPARATOR.length <= data.length; i++) {
            for (int j = 0; j < SEPARATOR.length; j++) {
                if (data[i + j] != SEPARATOR[j]) {
                    continue outer;
                }
            }
            return new byte[][] {Arrays.copyOf(data, i), Arrays.copyOfRange(data, i + SEPARATOR.length, data.length)};
        }
        return new byte[][] {data, new byte[0]};
    }
}
