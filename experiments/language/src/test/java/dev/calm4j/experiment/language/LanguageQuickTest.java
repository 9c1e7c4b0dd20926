package dev.calm4j.experiment.language;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * {@code calm experiment language --quick} on the real text with the shipped models: one seed of CALM and LoRA.
 * Checks what the experiment's report finds to hold at this scale (REPORT.md): through the bridges the anchor finds
 * the reference English much likelier than alone, and keeps its own English. The paper's claim in chrF is not
 * asserted: at this scale every row through the anchor scores near the no-model floors, where chrF differences of a
 * point or two come and go with the BLAS kernel. Needs the fetched text: CI fetches it first
 * ({@code .ci/run}); elsewhere the test is reported as skipped with the command that fetches it.
 */
class LanguageQuickTest {
    static final Path REPO = Path.of(System.getProperty("calm4j.repo", "../.."));

    @Test
    void calmReadsTheSpanishThroughItsAugment(@TempDir Path tmp) throws Exception {
        Path data = REPO.resolve("experiments/language/data");
        boolean have = Files.isRegularFile(Corpus.moduleDir(data, Corpus.SPANISH).resolve("nt.bzz"));
        if (!have) {
            if (System.getenv("CI") != null) {
                fail(data + " is missing: .ci/run must run experiments/language/scripts/fetch-data.sh before the tests");
            }
            Assumptions.abort("no fetched text in " + data + ": run experiments/language/scripts/fetch-data.sh");
        }
        LanguageExperiment.Config c = LanguageExperiment.Config.defaults(data, REPO.resolve("experiments/language/models"),
                tmp.resolve("run")).quick();
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        JsonNode rows = new LanguageExperiment(c, new PrintStream(log, true, "UTF-8"), LanguageExperiment.RunListeners.NONE)
                .run().get("rows");
        String text = log.toString("UTF-8");
        double calmBits = rows.get("calm").get("reference_bits_per_char").asDouble();
        double anchorBits = rows.get("m_B").get("reference_bits_per_char").asDouble();
        // 1.67 against 1.83 bits per character on this machine: a margin of 9 %, asserted at 5 %.
        assertTrue(calmBits < 0.95 * anchorBits, "reference bits/char: CALM " + calmBits + ", m_B " + anchorBits + "\n" + text);
        double calmEnglish = rows.get("calm").get("heldout_english_bits_per_char").asDouble();
        double anchorEnglish = rows.get("m_B").get("heldout_english_bits_per_char").asDouble();
        assertTrue(Math.abs(calmEnglish / anchorEnglish - 1) <= 0.02, "held-out English: CALM " + calmEnglish
                + ", m_B " + anchorEnglish + "\n" + text);
        assertTrue(rows.get("lora").has("chrf") && rows.get("calm").get("n").asInt() == 60, text);
    }
}
