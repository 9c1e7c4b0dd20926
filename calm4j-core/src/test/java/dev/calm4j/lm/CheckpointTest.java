package dev.calm4j.lm;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.io.WeightFiles;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.nn.Tensors;
import dev.calm4j.testing.TestModels;
import dev.calm4j.tokenize.Tokenizer;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** HF-layout loading and saving, sharded checkpoints, bf16 compute, and every bad-input case of the issue. */
class CheckpointTest {
    @TempDir
    Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    private static float[] logits(CausalLm m, long[][] ids) {
        try (NoGradGuard ng = new NoGradGuard()) {
            return Tensors.toFloats(m.forward(TestModels.ids(ids)));
        }
    }

    private static final long[][] IDS = {{1, 5, 6, 7, 8, 9}, {1, 30, 31, 32, 33, 34}};

    @Test
    void saveLoadRoundTripAndShardedLoadGiveIdenticalLogits() {
        Path a = TestModels.write(tmp.resolve("a"), TestModels.tinyQwen(), 3);
        float[] want;
        try (CausalLm m = LmFamilies.load(a)) {
            want = logits(m, IDS);
            LmFamilies.save(m, tmp.resolve("b"));
            Map<String, Tensor> w = new LinkedHashMap<>(m.namedWeights());
            Path sharded = tmp.resolve("sharded");
            WeightFiles.writeSharded(sharded, w, 20_000);
            try {
                Files.copy(a.resolve("config.json"), sharded.resolve("config.json"));
            } catch (java.io.IOException e) {
                throw new RuntimeException(e);
            }
            assertTrue(Files.exists(sharded.resolve("model.safetensors.index.json")));
            try (CausalLm s = LmFamilies.load(sharded)) {
                assertArrayEquals(want, logits(s, IDS));
            }
        }
        try (CausalLm m = LmFamilies.load(tmp.resolve("b"))) {
            assertArrayEquals(want, logits(m, IDS));
            assertEquals(TestModels.tinyQwen(), m.config());
        }
    }

    @Test
    void bf16ComputeStaysCloseToFp32() {
        Path a = TestModels.write(tmp.resolve("a"), TestModels.tinyLlama(), 4);
        try (CausalLm f = LmFamilies.load(a); CausalLm b = LmFamilies.load(a, ScalarType.BFloat16)) {
            assertEquals(ScalarType.BFloat16, b.computeDtype());
            float[] x = logits(f, IDS);
            float[] y = logits(b, IDS);
            double scale = 0;
            for (float v : x) {
                scale = Math.max(scale, Math.abs(v));
            }
            double d = TestModels.maxAbsDiff(x, y);
            assertTrue(d < 0.05 * scale + 0.05, "bf16 vs fp32 differ by " + d + " (logit scale " + scale + ")");
            assertTrue(d > 0, "bf16 must actually compute in bf16");
        }
    }

    @Test
    void tokenizerRoundTrip() {
        Path a = TestModels.write(tmp.resolve("a"), TestModels.tinyLlama(), 5);
        try (Tokenizer t = Tokenizer.load(a)) {
            long[] ids = t.encode("abc 12+3=15\nz");
            assertEquals(13, ids.length);
            assertEquals(4, ids[0]);                              // 'a' is the first alphabet id
            assertEquals("abc 12+3=15\nz", t.decode(ids));
            String longText = "ab".repeat(600);                    // > 512: must not be truncated
            assertEquals(1200, t.encode(longText).length);
        }
    }

    // ---------------------------------------------------------------------------------------- bad input

    private Path modelWith(Consumer<ObjectNode> edit) throws Exception {
        Path d = TestModels.write(tmp.resolve("m" + System.nanoTime()), TestModels.tinyLlama(), 6);
        ObjectMapper om = new ObjectMapper();
        ObjectNode c = (ObjectNode) om.readTree(d.resolve("config.json").toFile());
        edit.accept(c);
        Files.writeString(d.resolve("config.json"), om.writeValueAsString(c));
        return d;
    }

    private static void refused(Path dir, String... fragments) {
        Calm4jException e = assertThrows(Calm4jException.class, () -> LmFamilies.load(dir).close());
        assertTrue(!e.getMessage().contains("\n"), "one line: " + e.getMessage());
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "message '" + e.getMessage() + "' should mention '" + f + "'");
        }
    }

    @Test
    void unknownModelTypeIsRefused() throws Exception {
        refused(modelWith(c -> c.put("model_type", "bert")), "config.json", "model_type", "bert");
        refused(modelWith(c -> c.remove("model_type")), "config.json", "model_type");
    }

    @Test
    void inconsistentConfigIsRefused() throws Exception {
        refused(modelWith(c -> {
            c.put("hidden_size", 30);
            c.remove("head_dim");
        }), "config.json", "hidden_size", "num_attention_heads");
        refused(modelWith(c -> c.put("num_key_value_heads", 3)), "config.json", "num_key_value_heads");
        refused(modelWith(c -> c.put("vocab_size", "many")), "config.json", "vocab_size");
        refused(modelWith(c -> c.put("hidden_act", "gelu")), "config.json", "hidden_act");
        refused(modelWith(c -> c.putObject("rope_scaling").put("rope_type", "yarn").put("factor", 2.0)), "rope", "yarn");
        refused(modelWith(c -> c.remove("num_hidden_layers")), "config.json", "num_hidden_layers");
    }

    @Test
    void configNotJsonIsRefused() throws Exception {
        Path d = TestModels.write(tmp.resolve("nj"), TestModels.tinyLlama(), 7);
        Files.writeString(d.resolve("config.json"), "{\"model_type\": \"llama\",");
        refused(d, "config.json", "JSON");
    }

    @Test
    void weightsThatDoNotMatchTheConfigAreRefused() throws Exception {
        // intermediate_size says 80, tensors are 64 wide
        refused(modelWith(c -> c.put("intermediate_size", 80)), "model.layers.0.mlp.gate_proj.weight", "[64, 32]", "[80, 32]");
        // an untied config over a file without lm_head
        Path d = TestModels.write(tmp.resolve("tied"), TestModels.tinyMistral(), 8);
        ObjectMapper om = new ObjectMapper();
        ObjectNode c = (ObjectNode) om.readTree(d.resolve("config.json").toFile());
        c.put("tie_word_embeddings", false);
        Files.writeString(d.resolve("config.json"), om.writeValueAsString(c));
        refused(d, "missing tensor", "lm_head.weight");
    }

    @Test
    void missingFilesAreRefused() throws Exception {
        Path d = TestModels.write(tmp.resolve("nofiles"), TestModels.tinyLlama(), 9);
        Files.delete(d.resolve("model.safetensors"));
        refused(d, "model.safetensors");
        Files.delete(d.resolve("config.json"));
        refused(d, "config.json");
        refused(tmp.resolve("does-not-exist"), "does-not-exist");
        Files.delete(d.resolve("tokenizer.json"));
        Calm4jException e = assertThrows(Calm4jException.class, () -> Tokenizer.load(d));
        assertTrue(e.getMessage().contains("tokenizer.json") && e.getMessage().contains("missing"), e.getMessage());
    }

    @Test
    void truncatedWeightsAreRefused() throws Exception {
        Path d = TestModels.write(tmp.resolve("trunc"), TestModels.tinyLlama(), 10);
        Path f = d.resolve("model.safetensors");
        byte[] all = Files.readAllBytes(f);
        Files.write(f, java.util.Arrays.copyOf(all, all.length / 2));
        refused(d, "model.safetensors");
    }

    @Test
    void fiveXConfigIsRead() throws Exception {
        Path d = modelWith(c -> {
            double theta = c.get("rope_theta").asDouble();
            c.remove("rope_theta");
            c.remove("rope_scaling");
            c.putObject("rope_parameters").put("rope_type", "default").put("rope_theta", theta);
            c.remove("torch_dtype");
            c.put("dtype", "float32");
        });
        LlamaConfig c = (LlamaConfig) LmFamilies.readConfig(d);
        assertEquals(TestModels.tinyLlama(), c);
    }
}
