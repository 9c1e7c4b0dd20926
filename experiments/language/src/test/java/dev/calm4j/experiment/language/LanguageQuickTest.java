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
 * Checks the claim's direction, not its size. Needs the fetched text: CI fetches it first
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
        double loraBits = rows.get("lora").get("reference_bits_per_char").asDouble();
        // Through the bridges the anchor finds the reference English far likelier than alone or with LoRA.
        assertTrue(calmBits < anchorBits && calmBits < loraBits, text);
        assertTrue(rows.get("calm").get("chrf").asDouble() > rows.get("m_B").get("chrf").asDouble(), text);
    }
}
