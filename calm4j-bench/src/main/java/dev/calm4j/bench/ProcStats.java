package dev.calm4j.bench;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * What Linux says about this process and the machine: resident memory from {@code /proc/self/status}, and how much
 * CPU <em>other</em> processes used during a measurement (benchmark hygiene on a shared machine, ported from the
 * peer's {@code ContentionMeter}).
 */
public final class ProcStats {
    private ProcStats() {}

    /** Peak resident set size of this process so far ({@code VmHWM}), MiB; NaN where /proc is missing. */
    public static double peakRssMb() {
        return statusKb("VmHWM:") / 1024.0;
    }

    /** Current resident set size ({@code VmRSS}), MiB; NaN where /proc is missing. */
    public static double rssMb() {
        return statusKb("VmRSS:") / 1024.0;
    }

    private static double statusKb(String key) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith(key)) {
                    return Double.parseDouble(line.substring(key.length()).trim().split("\\s+")[0]);
                }
            }
        } catch (IOException | RuntimeException e) {
            return Double.NaN;
        }
        return Double.NaN;
    }

    /**
     * CPU used by other processes while it ran, as a fraction of the machine (wall x cores): a few percent is
     * background noise; tens of percent mean the timings of that run are not trustworthy.
     */
    public static final class ContentionMeter {
        private final double[] start = read();

        /** {other_cpu_frac, steal_frac} since construction. */
        public double[] stop() {
            double[] end = read();
            double wall = end[0] - start[0];
            double busy = end[1] - start[1];
            double steal = end[2] - start[2];
            double own = end[3] - start[3];
            double cap = Math.max(1e-9, wall * Runtime.getRuntime().availableProcessors());
            return new double[] {Math.max(0, busy - own) / cap, steal / cap};
        }

        private static double[] read() {
            double wall = System.nanoTime() / 1e9;
            double own = 0;
            if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
                own = os.getProcessCpuTime() / 1e9;
            }
            try {
                List<String> lines = Files.readAllLines(Path.of("/proc/stat"));
                String[] f = lines.get(0).trim().split("\\s+");
                double hz = 100.0;                                   // USER_HZ, 100 on every Linux build in use
                double busy = (Long.parseLong(f[1]) + Long.parseLong(f[2]) + Long.parseLong(f[3])
                        + Long.parseLong(f[6]) + Long.parseLong(f[7])) / hz;      // user nice system irq softirq
                double steal = Long.parseLong(f[8]) / hz;
                return new double[] {wall, busy, steal, own};
            } catch (IOException | RuntimeException e) {
                return new double[] {wall, own, 0, own};
            }
        }
    }
}
