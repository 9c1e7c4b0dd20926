package dev.calm4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static dev.calm4j.cli.CliTest.calm;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * `calm compose` over an anchor and an augment with different tokenizers (the fixture of CalmAlignedTest: two BPEs
 * that cut the same text differently): the augment reads the text through its own tokenizer, the checkpoint says
 * so, and `calm eval` scores it.
 */
class CliAlignedTest {
    @TempDir
    Path tmp;

    @Test
    void composeAndEvalAcrossTokenizers() throws Exception {
        Path fixture = Path.of(System.getProperty("calm4j.repo"), "calm4j-core/src/test/resources/golden-calm/aligned");
        StringBuilder sb = new StringBuilder();
        String[] keys = {"xtyqh", "abc", "def", "sum", "key", "the"};
        for (int i = 0; i < 12; i++) {
            sb.append("{\"prompt\": \"").append(keys[i % keys.length]).append(" is\", \"completion\": \" ")
                    .append(10 + 7 * i).append("\"}\n");
        }
        Path data = Files.writeString(tmp.resolve("d.jsonl"), sb);
        Path out = tmp.resolve("bridges");
        CliTest.Run r = calm("compose", "--anchor", fixture.resolve("anchor").toString(), "--augment",
                fixture.resolve("augment").toString(), "--connections", "2->2", "--heads", "2", "--data", data.toString(),
                "--eval", data.toString(), "--out", out.toString(), "--steps", "4", "--batch", "4", "--no-progress");
        assertEquals(0, r.code(), r.out() + r.err());
        assertTrue(r.out().contains("reads the text through its own tokenizer"), r.out());
        assertTrue(new ObjectMapper().readTree(out.resolve("calm_config.json").toFile()).get("augments").get(0)
                .get("own_tokens").asBoolean(), "the checkpoint marks the augment");
        CliTest.Run ppl = calm("eval", "--bridges", out.toString(), "--data", data.toString(), "--metric", "perplexity");
        assertEquals(0, ppl.code(), ppl.out() + ppl.err());
        assertTrue(ppl.out().contains("perplexity"), ppl.out());
        CliTest.Run exact = calm("eval", "--bridges", out.toString(), "--data", data.toString(), "--metric", "exact");
        assertEquals(0, exact.code(), exact.out() + exact.err());
        assertTrue(exact.out().contains("exact match"), exact.out());
        // generation: the augment re-reads the grown text through its own tokenizer every step
        CliTest.Run gen = calm("generate", "--bridges", out.toString(), "--prompt", "xtyqh is", "--max-new-tokens", "4",
                "--greedy", "--ignore-eos");
        assertEquals(0, gen.code(), gen.out() + gen.err());
        assertTrue(gen.out().startsWith("xtyqh is") || gen.out().contains("xtyqh is"), gen.out());
        CliTest.Run ids = calm("generate", "--bridges", out.toString(), "--prompt-ids", "1,5,6");
        assertEquals(2, ids.code(), ids.out() + ids.err());
        assertTrue(ids.err().contains("--prompt TEXT"), ids.err());
        // separate_prompt: the augment reads its prompt through its own tokenizer
        Path sep = tmp.resolve("bridges-sep");
        CliTest.Run rs = calm("compose", "--anchor", fixture.resolve("anchor").toString(), "--augment",
                fixture.resolve("augment").toString(), "--mode", "separate_prompt", "--connections", "2->2", "--heads", "2",
                "--data", data.toString(), "--out", sep.toString(), "--steps", "3", "--batch", "4", "--no-progress");
        assertEquals(0, rs.code(), rs.out() + rs.err());
        assertTrue(rs.out().contains("reads its prompt through its own tokenizer"), rs.out());
        CliTest.Run es = calm("eval", "--bridges", sep.toString(), "--data", data.toString(), "--metric", "exact");
        assertEquals(0, es.code(), es.out() + es.err());
        CliTest.Run gs = calm("generate", "--bridges", sep.toString(), "--prompt", "xtyqh is", "--augment-prompt", "é😀 abc",
                "--max-new-tokens", "3", "--greedy");
        assertEquals(0, gs.code(), gs.out() + gs.err());
        // token-id data cannot be read by a model with another tokenizer: one line, before training
        Path idData = Files.writeString(tmp.resolve("ids.jsonl"), "{\"prompt_ids\": [5, 6], \"completion_ids\": [7]}\n");
        CliTest.Run bad = calm("compose", "--anchor", fixture.resolve("anchor").toString(), "--augment",
                fixture.resolve("augment").toString(), "--data", idData.toString(), "--out", tmp.resolve("b2").toString(),
                "--steps", "2", "--no-progress");
        assertEquals(2, bad.code(), bad.out() + bad.err());
        assertTrue(bad.err().contains("must be text") && bad.err().lines().count() == 1, bad.err());
    }
}
