package dev.calm4j;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The CPU's bf16 paths, as /proc/cpuinfo's flags name them on the two kinds of machine calm4j is tuned for. */
class CpuFeaturesTest {
    @Test
    void zen5AndSapphireRapidsFlags(@TempDir Path tmp) throws IOException {
        Path zen5 = tmp.resolve("zen5");
        Files.writeString(zen5, "processor\t: 0\nmodel name\t: AMD EPYC 9R45\nflags\t\t: fpu sse2 avx2 avx512f avx512bw "
                + "avx512_bf16 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n");
        CpuFeatures z = CpuFeatures.fromFlags(CpuFeatures.readFlags(zen5));
        assertEquals(new CpuFeatures(true, true, false), z, "the first flags line is read");
        assertTrue(z.nativeBf16());
        assertEquals("avx512f avx512_bf16 no-amx_bf16", z.describe());

        CpuFeatures spr = CpuFeatures.fromFlags(Set.of("avx512f", "avx512_bf16", "amx_bf16", "amx_tile"));
        assertTrue(spr.amxBf16() && spr.nativeBf16());

        CpuFeatures avx2 = CpuFeatures.fromFlags(Set.of("avx2", "fma"));
        assertFalse(avx2.nativeBf16(), "no bf16 instructions: bf16 is emulated");
        assertEquals(new CpuFeatures(false, false, false), CpuFeatures.fromFlags(CpuFeatures.readFlags(tmp.resolve("absent"))),
                "no /proc/cpuinfo: nothing assumed");
    }
}
