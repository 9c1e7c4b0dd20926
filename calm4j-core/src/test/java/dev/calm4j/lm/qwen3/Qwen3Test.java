package dev.calm4j.lm.qwen3;

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
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Qwen3 against Hugging Face transformers' own {@code Qwen3ForCausalLM} on tiny random checkpoints
 * ({@code tools/make_family_golden_qwen3_olmo2_smollm3.py}): {@code qwen3_gqa_window} (5.x config, GQA, head_dim 16
 * != hidden / heads, layer 0 full and layer 1 with a window of 4, F32) and {@code qwen3_tied_bias_bf16} (4.x
 * config, attention biases, tied head, BF16 storage).
 */
class Qwen3Test {
    @TempDir
    Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen3_gqa_window", "qwen3_tied_bias_bf16"})
    void matchesTransformers(String name) {
        HfGolden g = HfGolden.of(name);
        try (CausalLm m = LmFamilies.load(g.dir)) {
            assertTrue(m instanceof Qwen3Model);
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
        HfGolden g = HfGolden.of("qwen3_gqa_window");
        Qwen3Config c = (Qwen3Config) g.readConfig(x -> { });
        assertEquals(16, c.headDim());
        assertEquals(List.of(0, 4), List.of(c.window(0), c.window(1)));
        // 4.x layout: no layer_types; layers from max_window_layers on slide
        Qwen3Config four = (Qwen3Config) g.readConfig(x -> {
            x.remove("layer_types");
            x.put("max_window_layers", 0);
        });
        assertEquals(List.of(4, 4), List.of(four.window(0), four.window(1)));
        // use_sliding_window false: sliding_window is ignored, as HF sets it to None
        Qwen3Config off = (Qwen3Config) g.readConfig(x -> {
            x.remove("layer_types");
            x.put("use_sliding_window", false);
        });
        assertEquals(List.of(0, 0), List.of(off.window(0), off.window(1)));
        // head_dim absent: HF's default 128, not hidden / heads
        Qwen3Config noHeadDim = (Qwen3Config) g.readConfig(x -> x.remove("head_dim"));
        assertEquals(128, noHeadDim.headDim());
        // 5.x rope_parameters and 4.x rope_theta are read alike
        HfGolden bf = HfGolden.of("qwen3_tied_bias_bf16");
        Qwen3Config old = (Qwen3Config) bf.readConfig(x -> { });
        assertEquals(10000.0, old.ropeTheta());
        assertEquals("bfloat16", old.dtype());
        assertTrue(old.tieWordEmbeddings() && old.attentionBias());
    }

    @Test
    void badConfigsAreRefused() {
        HfGolden g = HfGolden.of("qwen3_gqa_window");
        g.configRefused(c -> c.put("model_type", "qwen4"), "config.json", "model_type", "qwen4");
        g.configRefused(c -> c.put("head_dim", 7), "config.json", "head_dim");
        g.configRefused(c -> c.put("num_key_value_heads", 3), "num_key_value_heads");
        g.configRefused(c -> c.put("vocab_size", "many"), "vocab_size", "integer");
        g.configRefused(c -> c.put("hidden_act", "gelu"), "hidden_act", "silu");
        g.configRefused(c -> c.remove("num_hidden_layers"), "num_hidden_layers", "missing");
        g.configRefused(c -> c.put("num_hidden_layers", 1_000_000), "num_hidden_layers", "1024");
        g.configRefused(c -> c.put("max_position_embeddings", 1 << 22).put("head_dim", 128), "max_position_embeddings",
                "rotary table");
        g.configRefused(c -> c.putArray("layer_types").add("full_attention"), "layer_types", "2 entries");
        g.configRefused(c -> c.withArray("layer_types").set(0, "chunked_attention"), "layer_types", "chunked_attention");
        g.configRefused(c -> c.put("use_sliding_window", false), "layer_types", "sliding_attention", "no window");
        g.configRefused(c -> c.put("sliding_window", 0), "sliding_window");
        g.configRefused(c -> c.putObject("rope_parameters").put("rope_type", "yarn").put("factor", 4.0), "rope", "yarn");
        g.configRefused(c -> c.put("rms_norm_eps", -1.0), "rms_norm_eps");
        g.configRefused(c -> c.put("tie_word_embeddings", "yes"), "tie_word_embeddings", "true or false");
        g.configRefused(c -> c.put("dtype", "int8"), "dtype", "int8");
    }

    @Test
    void checkpointsThatDoNotMatchTheConfigAreRefused() {
        HfGolden g = HfGolden.of("qwen3_gqa_window");
        HfGolden.loadRefused(g.copyWith(tmp.resolve("ffn"), c -> c.put("intermediate_size", 80)),
                "model.layers.0.mlp.gate_proj.weight", "[64, 32]", "[80, 32]");
        HfGolden.loadRefused(g.copyWith(tmp.resolve("hd"), c -> c.put("head_dim", 8)),
                "model.layers.0.self_attn.q_proj.weight", "[64, 32]", "[32, 32]");
        HfGolden.loadRefused(g.copyWithout(tmp.resolve("noqn"), "model.layers.1.self_attn.k_norm.weight"),
                "missing tensor", "model.layers.1.self_attn.k_norm.weight", "[16]");
        HfGolden tied = HfGolden.of("qwen3_tied_bias_bf16");
        HfGolden.loadRefused(tied.copyWith(tmp.resolve("untied"), c -> c.put("tie_word_embeddings", false)),
                "missing tensor", "lm_head.weight");
        HfGolden.loadRefused(g.copyWith(tmp.resolve("bias"), c -> c.put("attention_bias", true)),
                "missing tensor", "model.layers.0.self_attn.q_proj.bias");
    }

    @Test
    void composesAsAnchorAndAsAugment() {
        int vocab = 64;
        Qwen3Config qwen = new Qwen3Config(vocab, 32, 64, 3, 4, 2, 16, 1e-6, 1e6, RopeScaling.NONE, 64, false, false,
                true, 3, 1, Qwen3Config.defaultLayerTypes(3, 3, 1), 1, List.of(2), "float32");
        LlamaConfig llama = LlamaConfig.llama(vocab, 24, 48, 3, 3, 3, 64);
        HfGolden.compositionAtInitIsTheAnchor(qwen, llama);
        HfGolden.compositionAtInitIsTheAnchor(llama, qwen);
        try (CausalLm m = LmFamilies.random(qwen, 3, 0.02, ScalarType.Float)) {
            assertEquals(qwen.parameterCount(), m.namedWeights().values().stream().mapToLong(t -> t.numel()).sum());
            assertEquals(LmFamilies.weightNames(qwen), List.copyOf(m.namedWeights().keySet()));
        }
    }
}
