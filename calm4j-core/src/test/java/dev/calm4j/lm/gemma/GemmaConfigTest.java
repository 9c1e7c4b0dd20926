package dev.calm4j.lm.gemma;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.io.WeightFiles;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.llama.RopeScaling;
import dev.calm4j.nn.Tensors;
import dev.calm4j.testing.TestModels;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Gemma configs in both transformers layouts, HF's defaults, round trips, and every bad config or checkpoint refused. */
class GemmaConfigTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String S = GemmaConfig.SLIDING;
    private static final String F = GemmaConfig.FULL;
    private static final long[][] IDS = {{2, 5, 6, 7, 8, 9, 10, 11, 12, 13}};

    @TempDir
    Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    /** A copy of a golden fixture with its config.json edited. */
    private Path fixtureWith(String name, Consumer<ObjectNode> edit) throws Exception {
        Path src = GemmaGoldenTest.dir(name);
        Path d = Files.createDirectories(tmp.resolve(name + System.nanoTime()));
        for (String f : List.of("config.json", "model.safetensors")) {
            Files.copy(src.resolve(f), d.resolve(f));
        }
        ObjectNode c = (ObjectNode) JSON.readTree(d.resolve("config.json").toFile());
        edit.accept(c);
        Files.writeString(d.resolve("config.json"), JSON.writeValueAsString(c));
        return d;
    }

    private static void refused(Path dir, String... fragments) {
        Calm4jException e = assertThrows(Calm4jException.class, () -> LmFamilies.load(dir).close());
        assertTrue(!e.getMessage().contains("\n"), "one line: " + e.getMessage());
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "message '" + e.getMessage() + "' should mention '" + f + "'");
        }
    }

    private static float[] logits(CausalLm m) {
        try (NoGradGuard ng = new NoGradGuard()) {
            return Tensors.toFloats(m.forward(TestModels.ids(IDS)));
        }
    }

    @Test
    void fixtureConfigsReadAsHfWroteThem() throws Exception {
        Gemma2Config g2 = (Gemma2Config) LmFamilies.readConfig(GemmaGoldenTest.dir("gemma2_tied"));
        assertEquals(12, g2.headDim());
        assertEquals(20.0, g2.queryPreAttnScalar());
        assertEquals(2.0, g2.attentionSoftcap());
        assertEquals(3.0, g2.finalLogitSoftcapping());
        assertEquals(4, g2.slidingWindow());
        assertEquals(List.of(S, F, S), g2.layerTypes());
        assertTrue(g2.tieWordEmbeddings() && !g2.qkNorm() && g2.slidingDiffers());
        assertEquals("float32", g2.dtype());

        Gemma3TextConfig g3 = (Gemma3TextConfig) LmFamilies.readConfig(GemmaGoldenTest.dir("gemma3_bf16"));
        assertEquals(List.of(S, S, F), g3.layerTypes());
        assertEquals(1000.0, g3.ropeTheta());
        assertEquals(new RopeScaling("linear", 4.0, 0, 0, 0), g3.ropeScaling());
        assertEquals(10.0, g3.slidingRopeTheta());
        assertEquals(RopeScaling.NONE, g3.slidingRopeScaling());
        assertEquals(0.0, g3.attentionSoftcap());
        assertEquals(0.0, g3.finalLogitSoftcapping());
        assertTrue(g3.qkNorm() && !g3.tieWordEmbeddings());
        assertEquals(1, g3.numKeyValueHeads());
        assertEquals("bfloat16", g3.dtype());
    }

    @Test
    void fourXLayoutsReadTheSame() throws Exception {
        Path g2 = fixtureWith("gemma2_tied", c -> {
            c.remove("rope_parameters");
            c.remove("layer_types");
            c.remove("dtype");
            c.put("rope_theta", 10000.0);
            c.put("hidden_act", "gelu_pytorch_tanh");
            c.put("torch_dtype", "float32");
        });
        assertEquals(LmFamilies.readConfig(GemmaGoldenTest.dir("gemma2_tied")), LmFamilies.readConfig(g2));
        Path g3 = fixtureWith("gemma3_bf16", c -> {
            c.remove("rope_parameters");
            c.remove("layer_types");
            c.remove("_sliding_window_pattern");
            c.remove("dtype");
            c.put("rope_theta", 1000.0);
            c.putObject("rope_scaling").put("rope_type", "linear").put("factor", 4.0);
            c.put("rope_local_base_freq", 10.0);
            c.put("sliding_window_pattern", 3);
            c.put("torch_dtype", "bfloat16");
        });
        assertEquals(LmFamilies.readConfig(GemmaGoldenTest.dir("gemma3_bf16")), LmFamilies.readConfig(g3));
    }

    @Test
    void absentFieldsTakeHfDefaultsAndNullMeansNone() throws Exception {
        Gemma2Config absent = (Gemma2Config) LmFamilies.readConfig(fixtureWith("gemma2_tied", c -> {
            for (String f : List.of("attn_logit_softcapping", "final_logit_softcapping", "sliding_window",
                    "query_pre_attn_scalar", "tie_word_embeddings", "layer_types", "rope_parameters")) {
                c.remove(f);
            }
        }));
        assertEquals(50.0, absent.attnLogitSoftcapping());
        assertEquals(30.0, absent.finalLogitSoftcapping());
        assertEquals(4096, absent.slidingWindow());
        assertEquals(256.0, absent.queryPreAttnScalar());
        assertTrue(absent.tieWordEmbeddings());
        assertEquals(List.of(S, F, S), absent.layerTypes());
        assertEquals(10000.0, absent.ropeTheta());
        Gemma2Config none = (Gemma2Config) LmFamilies.readConfig(fixtureWith("gemma2_tied", c -> {
            c.putNull("attn_logit_softcapping");
            c.putNull("final_logit_softcapping");
            c.putNull("sliding_window");
        }));
        assertEquals(0.0, none.attnLogitSoftcapping());
        assertEquals(0.0, none.finalLogitSoftcapping());
        assertEquals(0, none.slidingWindow());
        Gemma3TextConfig g3 = (Gemma3TextConfig) LmFamilies.readConfig(fixtureWith("gemma3_bf16", c -> {
            for (String f : List.of("layer_types", "sliding_window_pattern", "_sliding_window_pattern", "rope_parameters")) {
                c.remove(f);
            }
        }));
        assertEquals(List.of(S, S, S), g3.layerTypes());                     // pattern 6: the 6th layer is the full one
        assertEquals(1e6, g3.ropeTheta());
        assertEquals(1e4, g3.slidingRopeTheta());
    }

    /** HF's Gemma3Attention never applies attn_logit_softcapping; neither does calm4j (the logits do not move). */
    @Test
    void gemma3IgnoresTheAttentionSoftcapAsHfDoes() throws Exception {
        Path d = fixtureWith("gemma3_bf16", c -> c.put("attn_logit_softcapping", 0.5));
        try (CausalLm a = LmFamilies.load(GemmaGoldenTest.dir("gemma3_bf16")); CausalLm b = LmFamilies.load(d)) {
            assertEquals(0.5, ((Gemma3TextConfig) b.config()).attnLogitSoftcapping());
            assertArrayEquals(logits(a), logits(b));
        }
    }

    @Test
    void toJsonRoundTrips() throws Exception {
        for (String name : List.of("gemma2_tied", "gemma3_bf16")) {
            ModelConfig c = LmFamilies.readConfig(GemmaGoldenTest.dir(name));
            assertEquals(c, LmFamilies.configFromJson(c.toJson(), name));
        }
        Gemma3TextConfig g3 = (Gemma3TextConfig) LmFamilies.readConfig(GemmaGoldenTest.dir("gemma3_bf16"));
        Gemma3TextConfig scaledLocal = new Gemma3TextConfig(g3.vocabSize(), g3.hiddenSize(), g3.intermediateSize(),
                4, g3.numAttentionHeads(), g3.numKeyValueHeads(), g3.headDim(), g3.rmsNormEps(), g3.ropeTheta(),
                g3.ropeScaling(), 20.0, new RopeScaling("linear", 2.0, 0, 0, 0), g3.maxPositionEmbeddings(), true,
                true, 12.0, 0, List.of(F, S, F, S), 0, 7.5, 2, List.of(1, 106), "float32");
        ObjectNode json = scaledLocal.toJson();
        assertTrue(json.has("rope_parameters"), json.toString());
        assertEquals(scaledLocal, LmFamilies.configFromJson(json, "scaled"));
    }

    @Test
    void saveAndLoadGiveIdenticalLogits() {
        for (String name : List.of("gemma2_tied", "gemma3_bf16")) {
            Path out = tmp.resolve("saved-" + name);
            float[] want;
            try (CausalLm m = LmFamilies.load(uncheckedDir(name))) {
                want = logits(m);
                LmFamilies.save(m, out);
            }
            try (CausalLm m = LmFamilies.load(out)) {
                assertArrayEquals(want, logits(m), name);
            }
        }
    }

    private static Path uncheckedDir(String name) {
        try {
            return GemmaGoldenTest.dir(name);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void badConfigsAreRefusedNamingTheField() throws Exception {
        refused(fixtureWith("gemma2_tied", c -> c.put("hidden_activation", "gelu")), "config.json", "hidden_activation", "gelu");
        refused(fixtureWith("gemma2_tied", c -> c.put("num_key_value_heads", 3)), "config.json", "num_key_value_heads");
        refused(fixtureWith("gemma2_tied", c -> c.remove("head_dim")), "config.json", "head_dim", "missing");
        refused(fixtureWith("gemma2_tied", c -> c.put("vocab_size", 1_000_000_000)), "config.json", "vocab_size", "expected 1..");
        refused(fixtureWith("gemma2_tied", c -> c.put("max_position_embeddings", 1 << 30)), "max_position_embeddings");
        refused(fixtureWith("gemma2_tied", c -> c.put("head_dim", 11)), "head_dim", "even");
        refused(fixtureWith("gemma2_tied", c -> c.put("query_pre_attn_scalar", 0)), "query_pre_attn_scalar", "> 0");
        refused(fixtureWith("gemma2_tied", c -> c.put("attn_logit_softcapping", -1.0)), "attn_logit_softcapping");
        refused(fixtureWith("gemma2_tied", c -> c.put("final_logit_softcapping", "big")), "final_logit_softcapping");
        refused(fixtureWith("gemma2_tied", c -> c.put("sliding_window", 0)), "sliding_window", "expected 1..");
        refused(fixtureWith("gemma2_tied", c -> c.putArray("layer_types").add(S).add(F)), "layer_types", "3");
        refused(fixtureWith("gemma2_tied", c -> c.putArray("layer_types").add(S).add(F).add("chunked_attention")),
                "layer_types", "chunked_attention");
        refused(fixtureWith("gemma2_tied", c -> c.put("use_bidirectional_attention", true)), "use_bidirectional_attention");
        refused(fixtureWith("gemma2_tied", c -> c.putObject("rope_parameters").put("rope_type", "yarn").put("factor", 2.0)),
                "rope_parameters", "yarn");
        refused(fixtureWith("gemma3_bf16", c -> ((ObjectNode) c.get("rope_parameters").get("full_attention"))
                .put("rope_type", "dynamic")), "rope_parameters.full_attention", "dynamic");
        refused(fixtureWith("gemma3_bf16", c -> ((ObjectNode) c.get("rope_parameters")).remove("sliding_attention")),
                "rope_parameters", "sliding_attention");
        refused(fixtureWith("gemma3_bf16", c -> {
            c.remove("rope_parameters");
            c.put("rope_local_base_freq", -5);
        }), "rope_local_base_freq");
        refused(fixtureWith("gemma3_bf16", c -> {
            c.remove("layer_types");
            c.put("sliding_window_pattern", 0);
        }), "sliding_window_pattern");
        refused(fixtureWith("gemma3_bf16", c -> c.put("num_hidden_layers", "three")), "num_hidden_layers");
    }

    @Test
    void checkpointsThatDoNotMatchTheConfigAreRefused() throws Exception {
        refused(fixtureWith("gemma2_tied", c -> c.put("intermediate_size", 64)),
                "model.layers.0.mlp.gate_proj.weight", "[48, 32]", "[64, 32]");
        refused(fixtureWith("gemma2_tied", c -> c.put("head_dim", 16)), "model.layers.0.self_attn.q_proj.weight", "[48, 32]");
        refused(fixtureWith("gemma2_tied", c -> c.put("tie_word_embeddings", false)), "missing tensor", "lm_head.weight");
        // A Gemma 2 file read as Gemma 3 lacks the q/k norms.
        refused(fixtureWith("gemma2_tied", c -> {
            c.put("model_type", "gemma3_text");
            c.remove("rope_parameters");
        }), "missing tensor",
                "model.layers.0.self_attn.q_norm.weight");
        refused(fixtureWith("gemma3_bf16", c -> c.put("attention_bias", true)), "missing tensor", "q_proj.bias");
        Path noWeights = fixtureWith("gemma2_tied", c -> { });
        Files.delete(noWeights.resolve("model.safetensors"));
        refused(noWeights, "model.safetensors");
    }

    @Test
    void weightNamesAreTheCheckpointsAndRandomModelsStartAtIdentityNorms() throws Exception {
        for (String name : List.of("gemma2_tied", "gemma3_bf16")) {
            Path dir = GemmaGoldenTest.dir(name);
            ModelConfig c = LmFamilies.readConfig(dir);
            try (WeightFiles files = WeightFiles.open(dir)) {
                assertEquals(files.names(), new HashSet<>(LmFamilies.weightNames(c)), name);
            }
            assertEquals(c.parameterCount(), ((GemmaConfig) c).parameterCount());
            try (CausalLm m = LmFamilies.random(c, 7, 0.02, ScalarType.Float)) {
                long count = 0;
                for (Map.Entry<String, Tensor> e : m.namedWeights().entrySet()) {
                    count += e.getValue().numel();
                    if (e.getKey().endsWith("norm.weight")) {
                        assertEquals(0.0, e.getValue().abs().max().item_double(), e.getKey());
                    }
                }
                assertEquals(c.parameterCount(), count, name + ": parameter count");
                float[] l = logits(m);
                for (float v : l) {
                    assertTrue(Float.isFinite(v));
                }
            }
        }
    }
}
