package dev.calm4j.lm.smollm3;

import dev.calm4j.Torch;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.llama.RopeScaling;
import dev.calm4j.testing.HfGolden;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * SmolLM3 against Hugging Face transformers' own {@code SmolLM3ForCausalLM} on tiny random checkpoints
 * ({@code tools/make_family_golden_qwen3_olmo2_smollm3.py}): {@code smollm3_nope} (5.x config, GQA, layer 1 without
 * rotary, tied head, F32) and {@code smollm3_window_bias_bf16} (4.x config with no_rope_layers derived from
 * no_rope_layer_interval 3, MQA, a window of 4 on the layer without rotary, attention and MLP biases, BF16).
 */
class SmolLM3Test {
    @TempDir
    Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    @ParameterizedTest
    @ValueSource(strings = {"smollm3_nope", "smollm3_window_bias_bf16"})
    void matchesTransformers(String name) {
        HfGolden g = HfGolden.of(name);
        try (CausalLm m = LmFamilies.load(g.dir)) {
            assertTrue(m instanceof SmolLM3Model);
            double logits = g.logits(m);
            double hidden = g.hidden1(m);
            double padded = g.padded(m);
            g.greedy(m);
            double cached = g.cachedEqualsRecomputation(m);
            System.out.printf("%s: max |logits - HF| %.2e, block 1 %.2e, left-padded %.2e, cached vs full %.2e%n",
                    name, logits, hidden, padded, cached);
            g.saveLoadRoundTrip(m, tmp.resolve("saved"));
        }
        g.bf16Close();
    }

    @Test
    void layerKindsFollowHf() {
        SmolLM3Config c = (SmolLM3Config) HfGolden.of("smollm3_nope").readConfig(x -> { });
        assertEquals(List.of(true, false, true), List.of(c.usesRope(0), c.usesRope(1), c.usesRope(2)));
        assertEquals(2e6, c.ropeTheta());
        // 4.x: derived from no_rope_layer_interval; the layer without rotary slides
        SmolLM3Config w = (SmolLM3Config) HfGolden.of("smollm3_window_bias_bf16").readConfig(x -> { });
        assertEquals(List.of(true, true, false), List.of(w.usesRope(0), w.usesRope(1), w.usesRope(2)));
        assertEquals(List.of(0, 0, 4), List.of(w.window(0), w.window(1), w.window(2)));
        assertTrue(w.attentionBias() && w.mlpBias() && !w.tieWordEmbeddings());
        // defaults: every 4th layer without rotary, theta 2e6, tied
        SmolLM3Config d = (SmolLM3Config) HfGolden.of("smollm3_nope").readConfig(x -> {
            x.remove("no_rope_layers");
            x.remove("no_rope_layer_interval");
            x.remove("layer_types");
            x.remove("tie_word_embeddings");
            x.remove("rope_parameters");
            x.put("num_hidden_layers", 8);
        });
        assertEquals(List.of(1, 1, 1, 0, 1, 1, 1, 0), d.noRopeLayers());
        assertEquals(2e6, d.ropeTheta());
        assertTrue(d.tieWordEmbeddings());
        assertFalse(d.layerTypes().contains("sliding_attention"));
    }

    @Test
    void badConfigsAreRefused() {
        HfGolden g = HfGolden.of("smollm3_nope");
        g.configRefused(c -> c.putArray("no_rope_layers").add(1).add(0), "config.json", "no_rope_layers", "3 entries");
        g.configRefused(c -> c.withArray("no_rope_layers").set(1, 2), "no_rope_layers", "2");
        g.configRefused(c -> {
            c.remove("no_rope_layers");
            c.put("no_rope_layer_interval", 0);
        }, "no_rope_layer_interval");
        g.configRefused(c -> c.withArray("layer_types").set(1, "sliding_attention"), "layer_types", "no window");
        g.configRefused(c -> c.put("num_attention_heads", 5), "num_attention_heads");
        g.configRefused(c -> c.put("mlp_bias", 1), "mlp_bias", "true or false");
        g.configRefused(c -> c.put("use_sliding_window", true).put("sliding_window", -2), "sliding_window");
    }

    @Test
    void checkpointsThatDoNotMatchTheConfigAreRefused() {
        HfGolden g = HfGolden.of("smollm3_nope");
        HfGolden.loadRefused(g.copyWith(tmp.resolve("untied"), c -> c.put("tie_word_embeddings", false)),
                "missing tensor", "lm_head.weight");
        HfGolden.loadRefused(g.copyWith(tmp.resolve("mlpbias"), c -> c.put("mlp_bias", true)),
                "missing tensor", "model.layers.0.mlp.gate_proj.bias");
        HfGolden.loadRefused(g.copyWithout(tmp.resolve("nonorm"), "model.layers.1.input_layernorm.weight"),
                "missing tensor", "model.layers.1.input_layernorm.weight");
        HfGolden w = HfGolden.of("smollm3_window_bias_bf16");
        HfGolden.loadRefused(w.copyWith(tmp.resolve("kv"), c -> c.put("num_key_value_heads", 2)),
                "model.layers.0.self_attn.k_proj.weight", "[8, 32]", "[16, 32]");
    }

    @Test
    void composesAsAnchorAndAsAugment() {
        int vocab = 64;
        List<Integer> rope = List.of(1, 0, 1);
        SmolLM3Config smol = new SmolLM3Config(vocab, 32, 64, 3, 4, 2, 8, 1e-6, 2e6, RopeScaling.NONE, 64, true, false,
                false, true, 3, 2, rope, SmolLM3Config.defaultLayerTypes(rope, true, 3), 1, List.of(2), "float32");
        LlamaConfig llama = LlamaConfig.llama(vocab, 24, 48, 3, 3, 3, 64);
        HfGolden.compositionAtInitIsTheAnchor(smol, llama);
        HfGolden.compositionAtInitIsTheAnchor(llama, smol);
        try (CausalLm m = LmFamilies.random(smol, 3, 0.02, ScalarType.Float)) {
            assertEquals(smol.parameterCount(), m.namedWeights().values().stream().mapToLong(t -> t.numel()).sum());
            assertEquals(LmFamilies.weightNames(smol), List.copyOf(m.namedWeights().keySet()));
        }
    }
}
