package example;

import dev.calm4j.Calm4jException;
import dev.calm4j.api.Composition;
import dev.calm4j.api.Evaluation;
import dev.calm4j.api.GenerateOptions;
import dev.calm4j.api.LanguageModel;
import dev.calm4j.api.TrainSummary;
import dev.calm4j.compose.CompositionException;
import dev.calm4j.compose.Mode;
import dev.calm4j.testing.TestModels;
import dev.calm4j.train.TrainConfig;
import dev.calm4j.train.TrainListener;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The library as a user outside dev.calm4j sees it: only the public API (dev.calm4j.api, TrainConfig, TrainListener),
 * no tensors. TestModels only writes the two input model folders.
 */
class ApiExampleTest {
    @TempDir
    static Path tmp;
    static Path anchorDir;
    static Path augmentDir;
    static Path trainFile;

    @BeforeAll
    static void inputs() throws IOException {
        anchorDir = TestModels.write(tmp.resolve("anchor"), TestModels.tinyLlama(), 1);
        augmentDir = TestModels.write(tmp.resolve("augment"), TestModels.tinyAugment(), 2);
        // 16 keys, each mapped to two digits: "c=" -> "47"
        Random r = new Random(3);
        StringBuilder jsonl = new StringBuilder();
        for (char k = 'a'; k <= 'p'; k++) {
            jsonl.append("{\"prompt\": \"").append(k).append("=\", \"completion\": \"").append(10 + r.nextInt(90))
                    .append("\"}\n");
        }
        trainFile = Files.writeString(tmp.resolve("train.jsonl"), jsonl);
    }

    @Test
    void loadComposeTrainGenerateEvaluateSaveLoad() {
        try (LanguageModel anchor = LanguageModel.load(anchorDir);
             LanguageModel augment = LanguageModel.load(augmentDir)) {
            assertEquals(3, anchor.info().layers());
            assertEquals(32, anchor.info().hiddenSize());
            assertEquals(augment.info().vocabSize(), anchor.info().vocabSize());
            assertEquals("k=42", anchor.decode(anchor.encode("k=42")));

            GenerateOptions greedy = GenerateOptions.greedy(6);
            long[] prompt = anchor.encode("c=");
            long[] anchorAlone = anchor.generateIds(prompt, greedy);

            try (Composition calm = Composition.of(anchor, List.of(augment), Composition.Spec.defaults())) {
                assertEquals("1->2", calm.connections());          // the paper's plan: 2-layer augment, 3-layer anchor
                assertEquals(4, calm.heads());
                assertTrue(calm.bridgeParameters() > 0);
                // fresh bridges add zero: the composition predicts as its anchor
                assertArrayEquals(anchorAlone, calm.generateIds(prompt, greedy));

                Evaluation before = calm.evaluate(trainFile);
                List<Double> logged = new ArrayList<>();
                TrainListener listener = new TrainListener() {
                    @Override
                    public void logged(Metrics m) {
                        logged.add(m.loss());
                    }
                };
                TrainSummary s = calm.train(trainFile, TrainConfig.defaults(40, 8, 1e-2, 0), tmp.resolve("run"),
                        listener);
                assertEquals(40, s.steps());
                assertEquals(40, logged.size());
                assertEquals(logged.get(0), s.firstLoss());
                assertTrue(s.finalLoss() < 0.8 * s.firstLoss(), "loss must go down: " + s);
                assertTrue(Files.isRegularFile(tmp.resolve("run").resolve("bridges.safetensors")));

                Evaluation after = calm.evaluate(trainFile);
                assertEquals(16, after.examples());
                assertTrue(after.meanLoss() < before.meanLoss(), before + " -> " + after);
                assertEquals(Math.exp(after.meanLoss()), after.perplexity(), 1e-9);
                assertTrue(after.accuracy() >= 0 && after.accuracy() <= 1);

                String text = calm.generate("c=", greedy);
                long[] ids = calm.generateIds(prompt, greedy);
                assertEquals(calm.decode(ids), text);

                Path saved = tmp.resolve("bridges");
                calm.save(saved);
                try (Composition back = Composition.load(saved)) {
                    assertEquals(calm.connections(), back.connections());
                    assertEquals(anchorDir.toAbsolutePath().normalize(), back.anchor().directory().toAbsolutePath());
                    assertArrayEquals(ids, back.generateIds(prompt, greedy));
                    assertEquals(text, back.generate("c=", greedy));
                    assertEquals(after.meanLoss(), back.evaluate(trainFile).meanLoss(), 1e-6);
                }
                // the run's own checkpoint loads too, with the same bridges
                try (Composition run = Composition.load(tmp.resolve("run"))) {
                    assertArrayEquals(ids, run.generateIds(prompt, greedy));
                }
            }
        }
    }

    @Test
    void stopStringsSamplingAndBatches() {
        try (LanguageModel lm = LanguageModel.load(anchorDir)) {
            GenerateOptions plain = GenerateOptions.greedy(12).withStopAtEos(false);
            String full = lm.generate("ab", plain);
            assertEquals(12, lm.generateIds(lm.encode("ab"), plain).length);
            String stop = full.substring(3, 5);
            String cut = lm.generate("ab", plain.withStop(stop));
            assertEquals(full.substring(0, full.indexOf(stop)), cut);

            GenerateOptions sample = GenerateOptions.sampling(8, 0.9, 0.95, 7).withStopAtEos(false);
            assertEquals(lm.generate("ab", sample), lm.generate("ab", sample));    // seeded
            assertEquals(List.of(full, lm.generate("xyz", plain)), lm.generate(List.of("ab", "xyz"), plain));
        }
    }

    @Test
    void separatePromptComposition() {
        Path data = tmp.resolve("sp.jsonl");
        try (LanguageModel anchor = LanguageModel.load(anchorDir);
             LanguageModel augment = LanguageModel.load(augmentDir);
             Composition calm = Composition.of(anchor, List.of(augment),
                     Composition.Spec.defaults().withMode(Mode.SEPARATE_PROMPT).withConnections("0->1,1->2")
                             .withQueryInit(0.1).withSeed(5))) {
            Files.writeString(data, "{\"prompt\": \"k=\", \"completion\": \"12\", \"augment_prompt\": \"k=12\"}\n"
                    + "{\"prompt\": \"j=\", \"completion\": \"34\", \"augment_prompt\": \"j=34\"}\n");
            TrainSummary s = calm.train(calm.readData(data), calm.readData(data), TrainConfig.defaults(3, 2, 1e-2, 0),
                    tmp.resolve("sp-run"), null);
            assertFalse(Double.isNaN(s.evalLoss()));
            String a = calm.generate("k=", List.of("k=12"), GenerateOptions.greedy(3));
            assertEquals(a, calm.generate("k=", List.of("k=12"), GenerateOptions.greedy(3)));
            Calm4jException e = assertThrows(Calm4jException.class,
                    () -> calm.generate("k=", List.of("a", "b"), GenerateOptions.greedy(3)));
            assertTrue(e.getMessage().contains("2 augment prompt(s) given"), e.getMessage());
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void userErrorsSayWhatIsWrong() {
        Calm4jException missing = assertThrows(Calm4jException.class, () -> LanguageModel.load(tmp.resolve("nope")));
        assertTrue(missing.getMessage().contains("nope"), missing.getMessage());
        Calm4jException opt = assertThrows(Calm4jException.class, () -> GenerateOptions.greedy(-1));
        assertTrue(opt.getMessage().contains("maxNewTokens"), opt.getMessage());
        assertThrows(Calm4jException.class, () -> Composition.Spec.defaults().withQueryInit(2));

        try (LanguageModel anchor = LanguageModel.load(anchorDir);
             LanguageModel augment = LanguageModel.load(augmentDir)) {
            CompositionException layer = assertThrows(CompositionException.class, () -> Composition.of(anchor,
                    List.of(augment), Composition.Spec.defaults().withConnections("5->1")));
            assertEquals(CompositionException.Part.CONNECTIONS, layer.part());
            CompositionException heads = assertThrows(CompositionException.class, () -> Composition.of(anchor,
                    List.of(augment), Composition.Spec.defaults().withHeads(5)));
            assertEquals(CompositionException.Part.HEADS, heads.part());
            assertThrows(CompositionException.class, () -> Composition.of(anchor, List.of(), null));

            Calm4jException data = assertThrows(Calm4jException.class, () -> anchor.readData(tmp.resolve("none.jsonl")));
            assertTrue(data.getMessage().contains("none.jsonl"), data.getMessage());
            Calm4jException tooLong = assertThrows(Calm4jException.class,
                    () -> anchor.generate("ab", GenerateOptions.greedy(1000)));
            assertTrue(tooLong.getMessage().contains("max_position_embeddings"), tooLong.getMessage());

            Composition calm = Composition.of(anchor, List.of(augment), null);
            calm.close();
            Calm4jException closed = assertThrows(Calm4jException.class, () -> calm.generate("a", GenerateOptions.greedy(1)));
            assertTrue(closed.getMessage().contains("closed"), closed.getMessage());
            assertEquals(List.of(anchor.generate("a", GenerateOptions.greedy(2))),
                    anchor.generate(List.of("a"), GenerateOptions.greedy(2)));        // the models stay open
        }
    }
}
