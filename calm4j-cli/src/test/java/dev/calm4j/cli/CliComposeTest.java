package dev.calm4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.calm4j.compose.Bridge;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static dev.calm4j.cli.CliTest.calm;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Composition from the command line, in process: pretrain, compose (train bridges), resume, eval, generate, LoRA with
 * a matched rank, inspect a plan, and refuse bad input with one line and exit code 2. Tiny models, few steps.
 */
class CliComposeTest {
    static final String ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789=";
    static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    static Path shared;

    @TempDir
    Path tmp;

    static Path anchor;
    static Path otherAnchor;     // same shapes as the anchor, other weights
    static Path augment;
    static Path train;
    static Path eval;

    @BeforeAll
    static void models() throws Exception {
        anchor = init("anchor", 32, 4, 4, 1);
        otherAnchor = init("other-anchor", 32, 4, 4, 9);
        augment = init("augment", 16, 4, 2, 2);
        // 16 "k=" -> two-digit pairs: the anchor cannot know them, a trained model can.
        Random r = new Random(5);
        StringBuilder sb = new StringBuilder();
        for (char k : "abcdefghijklmnop".toCharArray()) {
            sb.append("{\"prompt\": \"").append(k).append("=\", \"completion\": \"").append(10 + r.nextInt(90)).append("\"}\n");
        }
        train = Files.writeString(shared.resolve("train.jsonl"), sb);
        eval = Files.write(shared.resolve("eval.jsonl"), sb.toString().lines().limit(6).toList());
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
        CliTest.Run r = calm("init", "--config", cfg.toString(), "--out", dir.toString(), "--seed", String.valueOf(seed),
                "--std", "0.2", "--char-alphabet", ALPHABET);
        assertEquals(0, r.code(), r.err());
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
        assertFalse(r.err().contains("Exception"), r.err());
        for (String m : mentions) {
            assertTrue(r.err().contains(m), "'" + m + "' in: " + r.err());
        }
    }

    private Path compose(String out, String... extra) {
        List<String> args = new java.util.ArrayList<>(List.of("compose", "--anchor", anchor.toString(), "--augment",
                augment.toString(), "--data", train.toString(), "--out", tmp.resolve(out).toString(), "--batch", "4",
                "--no-progress"));
        args.addAll(List.of(extra));
        ok(args.toArray(new String[0]));
        return tmp.resolve(out);
    }

    @Test
    void pretrainWritesAModelFolderThatGenerates() throws Exception {
        Path out = tmp.resolve("pre");
        Path cfg = shared.resolve("anchor.json");
        CliTest.Run r = ok("pretrain", "--config", cfg.toString(), "--tokenizer", anchor.resolve("tokenizer.json").toString(),
                "--data", train.toString(), "--eval", eval.toString(), "--out", out.toString(), "--steps", "4",
                "--batch", "8", "--lr", "3e-3", "--seed", "3", "--no-progress");
        assertTrue(r.out().contains("eval loss"), r.out());
        for (String f : new String[] {"config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl", "loss.png"}) {
            assertTrue(Files.isRegularFile(out.resolve(f)), f);
        }
        assertEquals(4, Files.readAllLines(out.resolve("metrics.jsonl")).size(), "one line per step (steps < 100)");
        JsonNode g = JSON.readTree(ok("generate", "--model", out.toString(), "--prompt", "a=", "--add-bos",
                "--max-new-tokens", "3", "--ignore-eos", "--json").out());
        assertEquals(3, g.get("prompt_ids").size(), "BOS + 2 characters");
        assertEquals(1, g.get("prompt_ids").get(0).asInt());
        assertEquals(3, g.get("generated_ids").size());

        // The same --out again: refused, not silently overwritten.
        userError(calm("pretrain", "--config", cfg.toString(), "--data", train.toString(), "--out", out.toString(),
                "--steps", "2", "--no-progress"), "--resume", "--overwrite");
    }

    @Test
    void composeThenEvalGenerateAndResume() throws Exception {
        Path b = tmp.resolve("bridges");
        CliTest.Run r = ok("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data",
                train.toString(), "--eval", eval.toString(), "--out", b.toString(), "--steps", "3", "--batch", "4",
                "--no-progress");
        long perBridge = Bridge.parameterCount(16, 32);
        assertTrue(r.out().contains("3 -> 3") && r.out().contains(String.format("%,d", perBridge)), r.out());
        assertTrue(r.out().contains("anchor alone") && r.out().contains("tokens/s"), r.out());
        assertTrue(r.out().indexOf("composition") < r.out().indexOf("training"), "plan printed before training");
        for (String f : new String[] {"bridges.safetensors", "calm_config.json", "metrics.jsonl", "loss.png"}) {
            assertTrue(Files.isRegularFile(b.resolve(f)), f);
        }
        // the loss curve, drawn by the CLI from the training loop's events (moved here from TrainLoopTest)
        assertTrue(Files.size(b.resolve("loss.png")) > 1000);
        JsonNode cc = JSON.readTree(b.resolve("calm_config.json").toFile());
        assertEquals("same_sequence", cc.get("mode").asText());
        assertEquals(3, cc.get("connections").get(0).get("anchor_layer").asInt());

        // eval: the recorded base models by default, or given explicitly.
        JsonNode em = JSON.readTree(ok("eval", "--bridges", b.toString(), "--data", eval.toString(), "--metric", "exact",
                "--json").out());
        assertEquals("exact", em.get("metric").asText());
        assertEquals(Files.readAllLines(eval).size(), em.get("n").asInt());
        assertEquals(2, em.get("ci95").size());
        assertTrue(em.get("ci95").get(0).asDouble() <= em.get("accuracy").asDouble() + 1e-9, em.toString());
        assertTrue(em.get("model").asText().contains("bridges"), em.toString());
        JsonNode pp = JSON.readTree(ok("eval", "--anchor", anchor.toString(), "--augment", augment.toString(), "--bridges",
                b.toString(), "--data", eval.toString(), "--metric", "perplexity", "--json").out());
        double finalEval = JSON.readTree(Files.readAllLines(b.resolve("metrics.jsonl")).get(2)).get("eval_loss").asDouble();
        assertEquals(finalEval, pp.get("mean_loss").asDouble(), 1e-4, "eval command agrees with the training loop");
        assertTrue(pp.get("perplexity").asDouble() > 1 && pp.get("tokens").asLong() > 0);
        CliTest.Run shown = ok("eval", "--bridges", b.toString(), "--data", eval.toString(), "--show", "2");
        assertTrue(shown.out().contains("exact match") && shown.out().contains("expected  \"")
                && shown.out().contains("predicted"), shown.out());

        JsonNode g = JSON.readTree(ok("generate", "--bridges", b.toString(), "--prompt", "a=", "--prompt", "bc=",
                "--max-new-tokens", "3", "--ignore-eos", "--json").out());
        assertEquals(2, g.get("rows").size());
        assertEquals(3, g.get("rows").get(1).get("generated_ids").size());

        // Resume: the finished 3-step run continues to 5 steps.
        CliTest.Run again = calm("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data",
                train.toString(), "--out", b.toString(), "--steps", "5", "--batch", "4", "--no-progress");
        userError(again, "--resume");
        CliTest.Run resumed = ok("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data",
                train.toString(), "--eval", eval.toString(), "--out", b.toString(), "--steps", "5", "--batch", "4",
                "--no-progress", "--resume");
        assertTrue(resumed.out().contains("resumed from") && resumed.out().contains("step 3"), resumed.out());
        assertFalse(resumed.out().contains("step 1/5"), "steps before the checkpoint are not run again: " + resumed.out());
        List<String> metrics = Files.readAllLines(b.resolve("metrics.jsonl"));
        assertEquals(5, metrics.size());
        assertEquals(5, JSON.readTree(metrics.get(4)).get("step").asInt());
        userError(calm("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data",
                train.toString(), "--out", b.toString(), "--steps", "5", "--resume", "--no-progress"), "already at step 5");
        // Queries drawn at init: trains like the default; a scale outside [0, 1] is a user error before anything runs.
        Path q = tmp.resolve("bridges-q");
        ok("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data", train.toString(),
                "--out", q.toString(), "--steps", "2", "--batch", "4", "--query-init", "0.1", "--no-progress");
        assertTrue(Files.isRegularFile(q.resolve("bridges.safetensors")));
        Path badQ = tmp.resolve("bridges-bad-q");
        userError(calm("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data",
                train.toString(), "--out", badQ.toString(), "--steps", "2", "--query-init", "2", "--no-progress"), "--query-init");
        assertFalse(Files.exists(badQ), "nothing written for a refused --query-init");

        // Bridges onto another anchor: refused unless --allow-mismatch.
        userError(calm("eval", "--anchor", otherAnchor.toString(), "--bridges", b.toString(), "--data", eval.toString()),
                "--allow-mismatch");
        userError(calm("generate", "--model", otherAnchor.toString(), "--bridges", b.toString(), "--prompt", "a="),
                "--allow-mismatch");
        ok("eval", "--anchor", otherAnchor.toString(), "--bridges", b.toString(), "--data", eval.toString(),
                "--allow-mismatch", "--metric", "perplexity");
        // The same anchor weights with another tokenizer.json: the bridges read another tokenization; refused too.
        Path retokenized = tmp.resolve("anchor-other-tokenizer");
        Files.createDirectories(retokenized);
        for (String f : new String[] {"config.json", "model.safetensors"}) {
            Files.copy(anchor.resolve(f), retokenized.resolve(f));
        }
        dev.calm4j.tokenize.CharTokenizer.write(retokenized.resolve("tokenizer.json"), new StringBuilder(ALPHABET).reverse().toString());
        assertTrue(JSON.readTree(b.resolve("calm_config.json").toFile()).get("anchor").get("tokenizer_fingerprint").asText()
                .startsWith("sha256:"), "the anchor's tokenizer is recorded with the bridges");
        userError(calm("eval", "--anchor", retokenized.toString(), "--bridges", b.toString(), "--data", eval.toString()),
                "another anchor tokenizer", "--allow-mismatch");

        // inspect reads the checkpoint's plan.
        CliTest.Run ins = ok("inspect", "--bridges", b.toString());
        assertTrue(ins.out().contains("3 -> 3") && ins.out().contains("5 steps"), ins.out());
    }

    @Test
    void separatePromptComposition() throws Exception {
        Path b = compose("sp", "--mode", "separate_prompt", "--steps", "2");
        assertEquals("separate_prompt", JSON.readTree(b.resolve("calm_config.json").toFile()).get("mode").asText());
        JsonNode g = JSON.readTree(ok("generate", "--bridges", b.toString(), "--prompt", "a=", "--augment-prompt",
                "a=42", "--add-bos", "--max-new-tokens", "2", "--ignore-eos", "--json").out());
        assertEquals(2, g.get("generated_ids").size());
        userError(calm("generate", "--bridges", b.toString(), "--prompt", "a=", "--augment-prompt", "x",
                "--augment-prompt", "y"), "one per augment");
        ok("eval", "--bridges", b.toString(), "--data", eval.toString(), "--metric", "exact");
    }

    /**
     * bf16-mixed trains bridges and adapters over bf16-held frozen models and evaluates and generates with them;
     * pretraining, which trains every weight, refuses it.
     */
    @Test
    void bf16MixedComposesAndTrainsLoraAndPretrainRefusesIt() throws Exception {
        Path b = compose("mixed", "--dtype", "bf16-mixed", "--steps", "3");
        JsonNode m = JSON.readTree(Files.readAllLines(b.resolve("metrics.jsonl")).get(2));
        assertTrue(Double.isFinite(m.get("loss").asDouble()), m.toString());
        ok("eval", "--bridges", b.toString(), "--data", eval.toString(), "--metric", "perplexity");
        ok("eval", "--bridges", b.toString(), "--data", eval.toString(), "--metric", "perplexity", "--dtype", "bf16-mixed");
        JsonNode g = JSON.readTree(ok("generate", "--bridges", b.toString(), "--prompt", "a=", "--max-new-tokens", "2",
                "--ignore-eos", "--dtype", "bf16-mixed", "--json").out());
        assertEquals(2, g.get("generated_ids").size());
        userError(calm("generate", "--bridges", b.toString(), "--prompt", "a=", "--dtype", "fp16"), "bf16-mixed");
        Path out = tmp.resolve("lora-mixed");
        ok("lora", "--model", anchor.toString(), "--rank", "2", "--data", train.toString(), "--out", out.toString(),
                "--steps", "2", "--batch", "4", "--dtype", "bf16-mixed", "--no-progress");
        assertTrue(Files.isRegularFile(out.resolve("adapter_model.safetensors")));
        userError(calm("pretrain", "--config", shared.resolve("anchor.json").toString(), "--data", train.toString(),
                "--out", tmp.resolve("pre-mixed").toString(), "--steps", "1", "--dtype", "bf16-mixed", "--no-progress"),
                "bf16-mixed", "fp32 or bf16");
        userError(calm("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data",
                train.toString(), "--out", tmp.resolve("x16").toString(), "--steps", "1", "--dtype", "fp16"), "--dtype");
    }

    @Test
    void loraMatchesTheBridgeParameterCount() throws Exception {
        Path out = tmp.resolve("lora");
        CliTest.Run r = ok("lora", "--model", anchor.toString(), "--match-bridges", "--augment", augment.toString(),
                "--data", train.toString(), "--out", out.toString(), "--steps", "2", "--batch", "4", "--no-progress");
        Matcher lora = Pattern.compile("rank (\\d+), alpha \\S+, on q_proj,v_proj: ([\\d,]+) parameters").matcher(r.out());
        Matcher bridges = Pattern.compile("bridges\\s+([\\d,]+) parameters").matcher(r.out());
        assertTrue(lora.find() && bridges.find(), r.out());
        int rank = Integer.parseInt(lora.group(1));
        long loraParams = Long.parseLong(lora.group(2).replace(",", ""));
        long bridgeParams = Long.parseLong(bridges.group(1).replace(",", ""));
        assertEquals(Bridge.parameterCount(16, 32), bridgeParams);
        long perRank = 4 * ((32 + 32) + (32 + 16));      // 4 layers x (q_proj 32->32, v_proj 32->16)
        assertEquals(rank * perRank, loraParams);
        assertTrue(Math.abs(loraParams - bridgeParams) <= perRank / 2, "the closest rank: " + r.out());
        assertTrue(Files.isRegularFile(out.resolve("adapter_model.safetensors"))
                && Files.isRegularFile(out.resolve("adapter_config.json")));
        assertEquals(rank, JSON.readTree(out.resolve("adapter_config.json").toFile()).get("r").asInt());

        JsonNode e = JSON.readTree(ok("eval", "--model", anchor.toString(), "--lora", out.toString(), "--data",
                eval.toString(), "--metric", "perplexity", "--json").out());
        assertTrue(e.get("model").asText().contains("LoRA"), e.toString());
        ok("generate", "--model", anchor.toString(), "--lora", out.toString(), "--prompt", "a=", "--max-new-tokens", "2");

        userError(calm("lora", "--model", anchor.toString(), "--rank", "2", "--match-bridges", "--augment",
                augment.toString(), "--data", train.toString(), "--out", tmp.resolve("x").toString(), "--steps", "1"), "--rank");
        userError(calm("lora", "--model", anchor.toString(), "--rank", "2", "--targets", "q_proj,w_proj", "--data",
                train.toString(), "--out", tmp.resolve("x").toString(), "--steps", "1"), "w_proj");
    }

    @Test
    void inspectPrintsACompositionPlan() throws Exception {
        CliTest.Run r = ok("inspect", "--anchor", anchor.toString(), "--augment", augment.toString(), "--augment",
                augment.toString(), "--connections", "0:1->1,0:3->3,1:3->2");
        assertTrue(r.out().contains("3 bridge(s)"), r.out());
        assertTrue(r.out().contains("1 -> 1") && r.out().contains("3 -> 2") && r.out().contains("3 -> 3"), r.out());
        long total = 3 * Bridge.parameterCount(16, 32);
        assertTrue(r.out().contains(String.format("%,d parameters", total)) && r.out().contains("% of the anchor"), r.out());

        JsonNode j = JSON.readTree(ok("inspect", "--anchor", anchor.toString(), "--augment", augment.toString(),
                "--json").out());
        assertEquals("3->3", j.get("connections").asText(), "the paper's default for 4 layers into 4");
        assertEquals(Bridge.parameterCount(16, 32), j.get("bridge_parameters").asLong());
        assertEquals(4, j.get("heads").asInt());
        assertTrue(j.get("anchor").get("parameters").asLong() > 0 && j.get("augments").get(0).get("parameters").asLong() > 0);

        userError(calm("inspect", "--model", anchor.toString(), "--anchor", anchor.toString()), "--model");
        userError(calm("inspect", "--anchor", anchor.toString(), "--augment", augment.toString(), "--heads", "3"), "--heads");
    }

    @Test
    void badInputIsRefusedBeforeTraining() throws Exception {
        List<String> lines = Files.readAllLines(train);
        Path bad = tmp.resolve("bad.jsonl");
        Files.write(bad, List.of(lines.get(0), lines.get(1), "{\"prompt\": \"q=\", \"completion\": ", lines.get(2)));
        Path out = tmp.resolve("never");
        CliTest.Run r = calm("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data",
                bad.toString(), "--out", out.toString(), "--steps", "2", "--no-progress");
        userError(r, bad + ":3:");
        assertFalse(r.out().contains("training"), r.out());
        assertFalse(Files.exists(out), "nothing written");

        for (String spec : new String[] {"3-5", "3->9", "1:3->3", "x->1"}) {
            userError(calm("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data",
                    train.toString(), "--out", out.toString(), "--steps", "2", "--connections", spec), "--connections");
        }
        userError(calm("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data",
                train.toString(), "--out", out.toString(), "--steps", "0"), "--steps");
        userError(calm("compose", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data",
                train.toString(), "--out", out.toString(), "--steps", "2", "--mode", "both"), "mode");
        userError(calm("eval", "--anchor", anchor.toString(), "--augment", augment.toString(), "--data", eval.toString()),
                "--bridges");
        userError(calm("eval", "--anchor", anchor.toString(), "--data", eval.toString(), "--metric", "bleu"), "--metric");
        userError(calm("eval", "--data", eval.toString()), "--anchor");
        assertFalse(Files.exists(out), "nothing written");
    }

    @Test
    void helpEndsWithExamples() {
        for (String cmd : new String[] {"pretrain", "compose", "lora", "eval", "generate", "inspect"}) {
            CliTest.Run r = calm(cmd, "--help");
            assertEquals(0, r.code());
            String last = r.out().trim().lines().reduce((a, b) -> b).orElseThrow();
            assertTrue(r.out().contains("Examples:") && last.trim().startsWith("calm " + cmd), cmd + ": " + last);
        }
    }
}
