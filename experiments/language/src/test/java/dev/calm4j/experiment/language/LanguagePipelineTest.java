package dev.calm4j.experiment.language;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The whole experiment at toy scale on a made-up corpus in the fetched layout: tokenizers, the three base models, every
 * row, the sweep, and what a run writes. Checks the plumbing, not the claim (that is the quick run's, on real text).
 */
class LanguagePipelineTest {
    static final String[] EN = {"the", "lord", "said", "unto", "him", "and", "light", "was", "good", "people", "king", "land"};
    static final String[] ES = {"el", "señor", "dijo", "á", "él", "y", "luz", "fué", "buena", "pueblo", "rey", "tierra"};

    /** Three books of 2 chapters x 8 verses in both languages, word for word; the third is held out. */
    static Path fakeData(Path root) throws Exception {
        Random r = new Random(3);
        List<String> en = new ArrayList<>(List.of("", ""));
        List<String> es = new ArrayList<>(List.of("", ""));
        for (String book : List.of("Gen", "Exod", "Jas")) {
            en.add("<div osisID=\"" + book + "\" type=\"book\"/>");
            es.add("<div osisID=\"" + book + "\" type=\"book\"/>");
            for (int c = 1; c <= 2; c++) {
                en.add("<chapter osisID=\"" + book + "." + c + "\"/>");
                es.add("<chapter osisID=\"" + book + "." + c + "\"/>");
                for (int v = 0; v < 8; v++) {
                    StringBuilder a = new StringBuilder();
                    StringBuilder b = new StringBuilder();
                    for (int w = 0; w < 3 + r.nextInt(4); w++) {
                        int k = r.nextInt(EN.length);
                        a.append(w > 0 ? " " : "").append(EN[k]);
                        b.append(w > 0 ? " " : "").append(ES[k]);
                    }
                    en.add("<w>" + a + "</w>.");
                    es.add(b + ".");
                }
            }
        }
        List<String> nt = List.of("", "");
        for (String[] m : new String[][] {{Corpus.KJV, "en"}, {Corpus.SPANISH, "es"}, {Corpus.WEB, "en"}}) {
            Path dir = Corpus.moduleDir(root, m[0]);
            SwordTest.write(dir, "ot", m[1].equals("en") ? en : es, 5);
            SwordTest.write(dir, "nt", nt, 5);
        }
        Path sotu = Files.createDirectories(root.resolve("sotu"));
        for (int i = 0; i < 4; i++) {
            StringBuilder s = new StringBuilder();
            for (int j = 0; j < 30; j++) {
                s.append(EN[r.nextInt(EN.length)]).append(j % 6 == 5 ? ". " : " ");
            }
            Files.writeString(sotu.resolve(String.format("%d_speech.txt", 1800 + i)), s.toString().trim());
        }
        return root;
    }

    static LanguageRecipe tinyRecipe() {
        return new LanguageRecipe(new LanguageRecipe.Split(List.of("Jas"), 2, 1, 80),
                new LanguageRecipe.Model(300, 16, 32, 2, 2, 96, 6, 8, 3e-3, 0.0),
                new LanguageRecipe.Model(300, 24, 48, 2, 2, 96, 6, 8, 3e-3, 0.0),
                new LanguageRecipe.Continue(3, 8, 1e-3), 5);
    }

    @Test
    void runsEveryRowAndWritesWhatTheReportPromises(@TempDir Path tmp) throws Exception {
        Path data = fakeData(tmp.resolve("data"));
        LanguageExperiment.Config c = new LanguageExperiment.Config(tinyRecipe(), data, tmp.resolve("models"),
                tmp.resolve("run"), true, List.of(1L, 2L), LanguageExperiment.Config.CONTROLS,
                new LanguageExperiment.Config.Bridges("0->0,1->1", 2, 0.1),
                new LanguageExperiment.Config.Training(4, 4, 2e-3, 0.3),
                new LanguageExperiment.Config.Composition(0.3, 0.25, 10, 5, 7), List.of(0.6), 1);
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        ObjectNode r = new LanguageExperiment(c, new PrintStream(log, true, "UTF-8"), LanguageExperiment.RunListeners.NONE).run();
        JsonNode rows = r.get("rows");
        for (String row : List.of("copy_source", "random_verse", "m_B", "m_A", "calm", "lora", "calm_random_augment",
                "calm_encoder", "skyline", "calm@60pct", "lora@60pct")) {
            assertTrue(rows.has(row), row + " missing: " + rows.fieldNames());
            double v = rows.get(row).get("chrf").asDouble();
            assertTrue(v >= 0 && v <= 100, row + " chrF " + v);
        }
        assertEquals(2, rows.get("calm").get("per_seed").size());
        assertEquals(20, rows.get("calm").get("n").asInt());          // 10 verses x 2 seeds, pooled
        assertTrue(rows.get("calm").has("heldout_english_bits_per_char"));
        for (String f : List.of("report.md", "results.json", "config.json", "predictions.jsonl", "chrf.png",
                "chrf_dc_size.png", "data/test_pairs.jsonl", "data/composition_pairs.jsonl")) {
            assertTrue(Files.isRegularFile(c.out().resolve(f)), f);
        }
        // Every row's predictions, each seed's, are there to be rescored.
        long lines = Files.readAllLines(c.out().resolve("predictions.jsonl")).stream().filter(l -> !l.isBlank()).count();
        assertEquals(10L * (2 + 2 + 2 * 5 + 2), lines);
        // No test-book verse in D_C or in either base model's data.
        String dc = Files.readString(c.out().resolve("data/composition_pairs.jsonl"));
        assertTrue(!dc.contains("\"Jas."), "a held-out verse in D_C");
        assertTrue(Files.readString(c.out().resolve("report.md")).contains("CALM m_A⊕m_B"));

        // Finished base models keep their training logs, not their resumable checkpoints.
        for (String m : List.of("m_A", "m_B", "m_B_skyline")) {
            assertTrue(Files.isRegularFile(tmp.resolve("models/" + m + ".train/metrics.jsonl")), m);
            assertTrue(!Files.exists(tmp.resolve("models/" + m + ".train/checkpoint")), m + " checkpoint left behind");
        }
        // The shipped-models path: the stamp must match the recipe, else a clear refusal.
        LanguageExperiment.Config again = new LanguageExperiment.Config(tinyRecipe(), data, tmp.resolve("models"),
                tmp.resolve("run2"), false, List.of(1L), List.of(), c.bridges(), c.training(), c.composition(), List.of(), 1);
        new LanguageExperiment(again, new PrintStream(new ByteArrayOutputStream()), LanguageExperiment.RunListeners.NONE).run();
        LanguageRecipe other = new LanguageRecipe(tinyRecipe().split(), tinyRecipe().augment(), tinyRecipe().anchor(),
                new LanguageRecipe.Continue(4, 8, 1e-3), 5);
        LanguageExperiment.Config wrong = new LanguageExperiment.Config(other, data, tmp.resolve("models"),
                tmp.resolve("run3"), false, List.of(1L), List.of(), c.bridges(), c.training(), c.composition(), List.of(), 1);
        Calm4jException e = assertThrows(Calm4jException.class, () -> new LanguageExperiment(wrong,
                new PrintStream(new ByteArrayOutputStream()), LanguageExperiment.RunListeners.NONE).run());
        assertTrue(e.getMessage().contains("another recipe"), e.getMessage());
    }

    @Test
    void missingDataNamesTheFetchScript(@TempDir Path tmp) {
        Calm4jException e = assertThrows(Calm4jException.class, () -> Corpus.check(tmp));
        assertTrue(e.getMessage().contains("fetch-data.sh"), e.getMessage());
    }
}
