package dev.calm4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.io.RunLock;
import dev.calm4j.io.Safetensors;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.stream.Stream;

import static dev.calm4j.cli.CliTest.calm;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Hostile and careless input from the command line: each case ends with one line, {@code calm: error: ...}, exit
 * code 2, and no stack trace; and inspect refuses exactly what generate refuses.
 */
class HostileCliTest {
    static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    static Path shared;

    @TempDir
    Path tmp;

    static Path anchor;
    static Path augment;
    static Path train;
    static Path bridges;

    @BeforeAll
    static void models() throws Exception {
        anchor = init("anchor", 32, 4, 4, 1);
        augment = init("augment", 16, 4, 2, 2);
        StringBuilder sb = new StringBuilder();
        for (char k : "abcdefghijklmnop".toCharArray()) {
            sb.append("{\"prompt\": \"").append(k).append("=\", \"completion\": \"").append(10 + k % 50).append("\"}\n");
        }
        train = Files.writeString(shared.resolve("train.jsonl"), sb);
        bridges = shared.resolve("bridges");
        // two bridges from one augment: same shapes, so only the recorded plan tells them apart
        ok("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data", train.toString(),
                "--out", bridges.toString(), "--steps", "2", "--batch", "4", "--connections", "1->1,3->3", "--no-progress");
    }

    private static Path init(String name, int hidden, int layers, int heads, long seed) throws Exception {
        Path cfg = shared.resolve(name + ".json");
        Files.writeString(cfg, """
                {"model_type": "llama", "vocab_size": 48, "hidden_size": %d, "intermediate_size": %d,
                 "num_hidden_layers": %d, "num_attention_heads": %d, "num_key_value_heads": %d,
                 "max_position_embeddings": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                 "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": true}
                """.formatted(hidden, 2 * hidden, layers, heads, heads / 2));
        Path dir = shared.resolve(name);
        ok("init", "--config", cfg.toString(), "--out", dir.toString(), "--seed", String.valueOf(seed), "--std", "0.2",
                "--char-alphabet", CliComposeTest.ALPHABET);
        return dir;
    }

    private static CliTest.Run ok(String... args) {
        CliTest.Run r = calm(args);
        assertEquals(0, r.code(), String.join(" ", args) + "\n" + r.out() + r.err());
        return r;
    }

    private static void userError(CliTest.Run r, String... mentions) {
        assertEquals(2, r.code(), r.out() + r.err());
        assertTrue(r.err().startsWith("calm: error: ") && r.err().trim().lines().count() == 1, r.err());
        assertFalse(r.err().contains("Exception") || r.err().contains("\tat "), r.err());
        for (String m : mentions) {
            assertTrue(r.err().contains(m), "'" + m + "' in: " + r.err());
        }
    }

    private static Path copy(Path from, Path to) throws IOException {
        try (Stream<Path> s = Files.walk(from)) {
            for (Path p : s.toList()) {
                Path t = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(t);
                } else {
                    Files.copy(p, t);
                }
            }
        }
        return to;
    }

    /** Both readers of a model folder refuse it, with the same message. */
    private static void bothRefuse(Path model, String... mentions) {
        CliTest.Run inspect = calm("inspect", "--model", model.toString());
        CliTest.Run generate = calm("generate", "--model", model.toString(), "--prompt", "a=", "--max-new-tokens", "2");
        userError(inspect, mentions);
        userError(generate, mentions);
        assertEquals(inspect.err(), generate.err());
    }

    @Test
    void aFifoAsModelFileIsRefusedByNameWithoutHanging() throws Exception {
        Path m = copy(anchor, tmp.resolve("fifo"));
        Files.delete(m.resolve("model.safetensors"));
        assertEquals(0, new ProcessBuilder("mkfifo", m.resolve("model.safetensors").toString()).start().waitFor());
        assertTimeoutPreemptively(Duration.ofSeconds(30), () -> bothRefuse(m, "model.safetensors: is not a regular file"));
        Path t = copy(anchor, tmp.resolve("fifo-tok"));
        Files.delete(t.resolve("tokenizer.json"));
        assertEquals(0, new ProcessBuilder("mkfifo", t.resolve("tokenizer.json").toString()).start().waitFor());
        assertTimeoutPreemptively(Duration.ofSeconds(30), () -> bothRefuse(t, "tokenizer.json: is not a regular file"));
    }

    @Test
    void theCodeExperimentRefusesBadFlagsAndMissingSourcesInOneLine() throws Exception {
        userError(calm("experiment", "code", "--controls", "lora,bogus", "--out", tmp.resolve("a").toString()),
                "--controls: expected some of lora, calm_random_augment, calm_encoder, skyline, two_augments; got 'bogus'");
        userError(calm("experiment", "code", "--steps", "0", "--out", tmp.resolve("b").toString()),
                "--steps, --batch, --lr, --test-methods and --jobs must be > 0");
        Path empty = Files.createDirectories(tmp.resolve("no-sources"));
        userError(calm("experiment", "code", "--data", empty.toString(), "--out", tmp.resolve("c").toString()),
                "no-sources/downloads: no sources; fetch them with experiments/code/scripts/fetch-data.sh");
    }

    @Test
    void inspectRefusesWhatGenerateRefuses() throws Exception {
        Path layers = copy(anchor, tmp.resolve("layers"));
        ObjectNode c = (ObjectNode) JSON.readTree(layers.resolve("config.json").toFile());
        c.put("num_hidden_layers", 3);                 // the file holds 4
        Files.writeString(layers.resolve("config.json"), c.toString());
        bothRefuse(layers, "model.layers.3.", "more layers than its num_hidden_layers");

        Path headDim = copy(anchor, tmp.resolve("head-dim"));
        c = (ObjectNode) JSON.readTree(headDim.resolve("config.json").toFile());
        c.put("head_dim", 4);                          // 8 in the weights
        Files.writeString(headDim.resolve("config.json"), c.toString());
        bothRefuse(headDim, "has shape");

        Path tok = copy(anchor, tmp.resolve("tok"));
        Files.writeString(tok.resolve("tokenizer.json"), "{\"model\": 7}");
        bothRefuse(tok, "tokenizer.json: not a valid tokenizer.json");

        Path nan = copy(anchor, tmp.resolve("nan"));
        Map<String, Tensor> w = new LinkedHashMap<>();
        try (Safetensors st = Safetensors.open(nan.resolve("model.safetensors"))) {
            for (String n : st.names()) {
                w.put(n, st.load(n));
            }
        }
        w.get("model.layers.2.mlp.up_proj.weight").narrow(0, 3, 1).fill_(new Scalar(Double.POSITIVE_INFINITY));
        Safetensors.write(nan.resolve("model.safetensors"), w, Map.of("format", "pt"));
        bothRefuse(nan, "tensor 'model.layers.2.mlp.up_proj.weight' holds NaN or infinite values");
    }

    private Path editedBridges(String name, java.util.function.Consumer<ObjectNode> edit) throws IOException {
        Path b = copy(bridges, tmp.resolve(name));
        ObjectNode c = (ObjectNode) JSON.readTree(b.resolve("calm_config.json").toFile());
        // the copy lives elsewhere: point it at the same base models
        ((ObjectNode) c.get("anchor")).put("path", anchor.toString());
        ((ObjectNode) c.get("augments").get(0)).put("path", augment.toString());
        edit.accept(c);
        Files.writeString(b.resolve("calm_config.json"), c.toString());
        return b;
    }

    private static void bridgesRefused(Path b, String... mentions) {
        userError(calm("generate", "--bridges", b.toString(), "--prompt", "a=", "--max-new-tokens", "2"), mentions);
        userError(calm("inspect", "--bridges", b.toString()), mentions);
        userError(calm("eval", "--bridges", b.toString(), "--data", train.toString()), mentions);
    }

    @Test
    void aTamperedPlanIsRefused() throws Exception {
        ok("generate", "--bridges", editedBridges("same", c -> {}).toString(), "--prompt", "a=", "--max-new-tokens", "2");
        bridgesRefused(editedBridges("heads", c -> c.put("heads", 2)), "the plan (mode, heads, connections, recency bias) differs");
        bridgesRefused(editedBridges("layer", c -> ((ObjectNode) c.get("connections").get(1)).put("augment_layer", 2)),
                "the plan (mode, heads, connections, recency bias) differs");
    }

    @Test
    void aNulInARecordedPathIsRefused() throws Exception {
        bridgesRefused(editedBridges("nul", c -> ((ObjectNode) c.get("anchor")).put("path", "../anc\u0000hor")),
                "field 'anchor.path' is not a usable path");
    }

    @Test
    void nonFiniteBridgesAreRefused() throws Exception {
        Path b = editedBridges("nan-bridges", c -> {});
        Map<String, Tensor> w = new LinkedHashMap<>();
        Map<String, String> meta;
        try (Safetensors st = Safetensors.open(b.resolve("bridges.safetensors"))) {
            meta = st.metadata();
            for (String n : st.names()) {
                w.put(n, st.load(n));
            }
        }
        w.get("bridges.1.v.weight").narrow(0, 0, 1).fill_(new Scalar(Double.NaN));
        Safetensors.write(b.resolve("bridges.safetensors"), w, meta);
        bridgesRefused(b, "bridges.safetensors: tensor 'bridges.1.v.weight' holds NaN or infinite values");
    }

    @Test
    void aSecondRunOnALockedFolderIsRefusedAtOnce() throws Exception {
        Path out = tmp.resolve("locked");
        CountDownLatch held = new CountDownLatch(1);
        CountDownLatch done = new CountDownLatch(1);
        CompletableFuture<Void> holder = CompletableFuture.runAsync(() -> {
            try (RunLock l = RunLock.acquire(out)) {
                held.countDown();
                done.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        held.await();
        try {
            for (String resume : new String[] {"--no-progress", "--resume"}) {
                long t0 = System.nanoTime();
                userError(calm("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data",
                        train.toString(), "--out", out.toString(), "--steps", "2", resume),
                        out + ": another calm run is using this folder");
                assertTrue(System.nanoTime() - t0 < 2_000_000_000L, "refused at once, before loading anything");
            }
        } finally {
            done.countDown();
            holder.get();
        }
        // the refused runs wrote nothing; the holder made the folder and leaves none behind
        assertFalse(Files.exists(out), "left behind in " + out);
    }

    @Test
    void aLongDataLineIsRefusedWithItsLine() throws Exception {
        Path data = tmp.resolve("long.jsonl");
        Files.writeString(data, Files.readString(train) + "{\"prompt\": \"" + "a".repeat(5000) + "=\", \"completion\": \"1\"}\n");
        userError(calm("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data",
                data.toString(), "--out", tmp.resolve("o").toString(), "--steps", "2", "--max-line-bytes", "4096"),
                data + ":17: line is longer than 4096 bytes");
        assertFalse(Files.exists(tmp.resolve("o")), "nothing written");
    }

    @Test
    void sigintAndSigtermAskTheLoopToStopAndExit130Or143() {
        // SIGTERM runs end to end in KillResumeTest; SIGINT takes the same path (a shell that starts a job in the
        // background makes it ignore SIGINT, so a test cannot rely on delivering one)
        Training.Signals s = new Training.Signals();
        assertFalse(s.stopRequested());
        s.on("INT");
        assertTrue(s.stopRequested());
        assertEquals("INT", s.received());
        Training.Interrupted i = new Training.Interrupted("INT", "stopped at step 3 of 9; checkpoint saved in x");
        assertEquals(130, i.exitCode());
        assertEquals("interrupted by SIGINT: stopped at step 3 of 9; checkpoint saved in x", i.getMessage());
        assertEquals(143, new Training.Interrupted("TERM", "x").exitCode());
    }

    @Test
    void aTokenizerThatLoadsButCannotEncodeIsRefused() throws Exception {
        // found by ReadersFuzzTest#tokenizer: a WordLevel model without its unknown token
        Path m = copy(anchor, tmp.resolve("no-unk"));
        ObjectNode tok = (ObjectNode) JSON.readTree(m.resolve("tokenizer.json").toFile());
        ((ObjectNode) tok.get("model")).put("unk_token", "[UNK]");     // a token the vocabulary lacks
        Files.writeString(m.resolve("tokenizer.json"), tok.toString());
        userError(calm("generate", "--model", m.toString(), "--prompt", "a=Z", "--max-new-tokens", "2"),
                m.resolve("tokenizer.json") + ": the tokenizer cannot encode this text (WordLevel error: Missing [UNK]");
    }

    @Test
    void aDamagedCheckpointIsRefusedOnResumeAndReplacedOnOverwrite() throws Exception {
        Path out = tmp.resolve("damaged");
        String[] run = {"compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data",
                train.toString(), "--out", out.toString(), "--steps", "2", "--batch", "4", "--no-progress"};
        ok(run);
        Path state = out.resolve("checkpoint/state.json");
        ObjectNode s = (ObjectNode) JSON.readTree(state.toFile());
        s.put("step", -5);
        Files.writeString(state, s.toString());
        String[] resume = java.util.Arrays.copyOf(run, run.length + 1);
        resume[run.length] = "--resume";
        resume[java.util.Arrays.asList(run).indexOf("--steps") + 1] = "4";
        userError(calm(resume), state + ": field 'step' is -5, expected an integer >= 1");
        userError(calm(run), out + ": already holds a training run (checkpoint/); pass --resume");
        String[] overwrite = java.util.Arrays.copyOf(run, run.length + 1);
        overwrite[run.length] = "--overwrite";
        ok(overwrite);
        assertEquals(2, JSON.readTree(state.toFile()).get("step").asInt());
    }
}
