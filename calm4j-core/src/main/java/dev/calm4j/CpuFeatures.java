package dev.calm4j;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * What the CPU can multiply natively, from the flags Linux lists in {@code /proc/cpuinfo}: where a computation has a
 * fast path for some instructions, it asks here instead of guessing from the model name.
 *
 * @param avx512f AVX-512 Foundation (OpenBLAS's SkylakeX kernels, libtorch's AVX-512 vector kernels)
 * @param avx512Bf16 AVX512_BF16: bf16 dot products in the vector units (AMD Zen 4/5, Intel Cooper Lake and later)
 * @param amxBf16 AMX-BF16: bf16 tile matrix multiply (Intel Sapphire Rapids and later), oneDNN's fastest bf16 GEMM
 */
public record CpuFeatures(boolean avx512f, boolean avx512Bf16, boolean amxBf16) {
    private static volatile CpuFeatures current;

    /** This machine's (read once); all false where {@code /proc/cpuinfo} is missing (not Linux) or lists no flags. */
    public static CpuFeatures current() {
        CpuFeatures c = current;
        if (c == null) {
            c = fromFlags(readFlags(Path.of("/proc/cpuinfo")));
            current = c;
        }
        return c;
    }

    /** From the set of flag names of one {@code flags} line of {@code /proc/cpuinfo}. */
    public static CpuFeatures fromFlags(Set<String> flags) {
        return new CpuFeatures(flags.contains("avx512f"), flags.contains("avx512_bf16"), flags.contains("amx_bf16"));
    }

    /** The first {@code flags} line's names (every core lists the same on the machines calm4j runs on). */
    static Set<String> readFlags(Path cpuinfo) {
        try {
            for (String line : Files.readAllLines(cpuinfo)) {
                if (line.startsWith("flags") && line.contains(":")) {
                    return Set.of(line.substring(line.indexOf(':') + 1).trim().split("\\s+"));
                }
            }
        } catch (IOException | RuntimeException e) {
            // not Linux, or unreadable: no flags
        }
        return Set.of();
    }

    /** Whether bf16 matmuls run natively (AMX or AVX512_BF16), rather than emulated at a fraction of fp32's speed. */
    public boolean nativeBf16() {
        return avx512Bf16 || amxBf16;
    }

    /** The flags that choose calm4j's paths, e.g. "avx512f avx512_bf16 no-amx_bf16". */
    public String describe() {
        List<String> s = new ArrayList<>();
        s.add(avx512f ? "avx512f" : "no-avx512f");
        s.add(avx512Bf16 ? "avx512_bf16" : "no-avx512_bf16");
        s.add(amxBf16 ? "amx_bf16" : "no-amx_bf16");
        return String.join(" ", s);
    }
}
