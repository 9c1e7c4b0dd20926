package dev.calm4j.plot;

import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/** Writes a chart as a PNG file, whole or not at all (a temporary file beside it, then an atomic rename). */
public final class Png {
    private Png() {}

    public static void write(Path png, JFreeChart chart, int width, int height) {
        try {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            ChartUtils.writeChartAsPNG(bytes, chart, width, height);
            Path dir = png.toAbsolutePath().getParent();
            Files.createDirectories(dir);
            // dot-named like every other temporary file, so a run resumed after a kill here recognises and removes it
            Path tmp = Files.createTempFile(dir, "." + png.getFileName() + ".", ".tmp");
            try {
                Files.write(tmp, bytes.toByteArray());
                Files.move(tmp, png, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            } finally {
                Files.deleteIfExists(tmp);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(png + ": cannot write (" + e.getMessage() + ")", e);
        }
    }
}
