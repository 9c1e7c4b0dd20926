package dev.calm4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The CLI end to end, in process: init a model, inspect it, generate from it, and refuse bad input cleanly. */
class CliTest {
    @TempDir
    Path tmp;

    record Run(int code, String out, String err) {}

    static Run calm(String... args) {
        StringWriter o = new StringWriter();
        StringWriter e = new StringWriter();
        int code = Main.run(args, new PrintWriter(o, true), new PrintWriter(e, true));
        return new Run(code, o.toString(), e.toString());
    }

    private Path tinyModel() throws Exception {
        Path cfg = tmp.resolve("config.json");
        Files.writeString(cfg, """
                {"model_type": "llama", "vocab_size": 40, "hidden_size": 32, "intermediate_size": 64,
                 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                 "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                 "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": true}
                """);
        Path dir = tmp.resolve("tiny");
        Run r = calm("init", "--config", cfg.toString(), "--out", dir.toString(), "--seed", "3", "--std", "0.3",
                "--char-alphabet", "abcdefghijklmnopqrstuvwxyz ");
        assertEquals(0, r.code(), r.err());
        assertTrue(Files.exists(dir.resolve("model.safetensors")) && Files.exists(dir.resolve("tokenizer.json")));
        return dir;
    }

    @Test
    void generateJsonWithTextAndIds() throws Exception {
        Path dir = tinyModel();
        Run r = calm("generate", "--model", dir.toString(), "--prompt", "hello", "--max-new-tokens", "8",
                "--greedy", "--ignore-eos", "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode j = new ObjectMapper().readTree(r.out());
        assertEquals(5, j.get("prompt_ids").size());
        assertEquals(8, j.get("generated_ids").size());
        assertTrue(j.get("text").isTextual());
        assertTrue(j.get("tokens_per_s").asDouble() > 0);

        Run ids = calm("generate", "--model", dir.toString(), "--prompt-ids",
                j.get("prompt_ids").toString().replaceAll("[\\[\\]]", ""), "--max-new-tokens", "8", "--ignore-eos", "--json");
        assertEquals(0, ids.code(), ids.err());
        assertEquals(j.get("generated_ids"), new ObjectMapper().readTree(ids.out()).get("generated_ids"),
                "text and id prompts give the same greedy continuation");

        Run batch = calm("generate", "--model", dir.toString(), "--prompt", "a", "--prompt", "hello there",
                "--max-new-tokens", "4", "--temperature", "0.9", "--top-p", "0.9", "--seed", "4", "--json");
        assertEquals(0, batch.code(), batch.err());
        assertEquals(2, new ObjectMapper().readTree(batch.out()).get("rows").size());
    }

    @Test
    void inspectPrintsConfigAndCounts() throws Exception {
        Path dir = tinyModel();
        Run r = calm("inspect", "--model", dir.toString(), "--json");
        assertEquals(0, r.code(), r.err());
        JsonNode j = new ObjectMapper().readTree(r.out());
        // tied: embed 40x32 + 2 x (norms 64 + q 32x32 + k,v 2x(16x32) + o 32x32 + mlp 3x32x64) + final norm 32
        long want = 40 * 32 + 2 * (64 + 1024 + 1024 + 1024 + 6144) + 32;
        assertEquals(want, j.get("parameters").asLong());
        assertEquals(8, j.get("config").get("headDim").asInt());
    }

    @Test
    void userMistakesGiveOneLineAndExitCode2() throws Exception {
        Run missing = calm("generate", "--model", tmp.resolve("nope").toString(), "--prompt-ids", "1");
        assertEquals(2, missing.code());
        assertTrue(missing.err().startsWith("calm: error: ") && missing.err().trim().lines().count() == 1, missing.err());
        assertFalse(missing.err().contains("Exception"), missing.err());

        Path dir = tinyModel();
        Run badId = calm("generate", "--model", dir.toString(), "--prompt-ids", "1,999");
        assertEquals(2, badId.code());
        assertTrue(badId.err().contains("999"), badId.err());

        Run both = calm("generate", "--model", dir.toString(), "--prompt", "a", "--prompt-ids", "1");
        assertEquals(2, both.code(), "picocli usage error");

        Files.delete(dir.resolve("tokenizer.json"));
        Run noTok = calm("generate", "--model", dir.toString(), "--prompt", "a");
        assertEquals(2, noTok.code());
        assertTrue(noTok.err().contains("tokenizer.json"), noTok.err());
    }

    @Test
    void helpEndsWithExamples() {
        for (String cmd : new String[] {"generate", "inspect", "init"}) {
            Run r = calm(cmd, "--help");
            assertEquals(0, r.code());
            assertTrue(r.out().contains("Examples:") && r.out().trim().endsWith(r.out().trim().lines()
                    .reduce((a, b) -> b).orElseThrow()), cmd);
            String last = r.out().trim().lines().reduce((a, b) -> b).orElseThrow();
            assertTrue(last.trim().startsWith("calm " + cmd), cmd + " help ends with an example: " + last);
        }
    }
}
