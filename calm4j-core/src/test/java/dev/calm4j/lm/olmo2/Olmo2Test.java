package dev.calm4j.lm.olmo2;

import dev.calm4j.Torch;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.llama.LlamaConfig;
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
 * OLMo 2 against Hugging Face transformers' own {@code Olmo2ForCausalLM} on tiny random checkpoints
 * ({@code tools/make_family_golden_qwen3_olmo2_smollm3.py}): {@code olmo2_gqa} (5.x config, GQA, 3 layers, F32) and
 * {@code olmo2_tied_bias_bf16} (4.x config, attention biases, linear rope scaling, tied head, BF16 storage).
 */
class Olmo2Test {
    @TempDir
    Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    @ParameterizedTest
    @ValueSource(strings = {"olmo2_gqa", "olmo2_tied_bias_bf16"})
    void matchesTransformers(String name) {
        HfGolden g = HfGolden.of(name);
        try (CausalLm m = LmFamilies.load(g.dir)) {
            assertTrue(m instanceof Olmo2Model);
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
    void configsOfBothLayoutsAreRead() {
        Olmo2Config c = (Olmo2Config) HfGolden.of("olmo2_gqa").readConfig(x -> { });
        assertEquals(8, c.headDim());
        assertEquals(500000.0, c.ropeTheta());
        Olmo2Config old = (Olmo2Config) HfGolden.of("olmo2_tied_bias_bf16").readConfig(x -> { });
        assertEquals("linear", old.ropeScaling().type());
        assertEquals(2.0, old.ropeScaling().factor());
        assertTrue(old.tieWordEmbeddings() && old.attentionBias());
        // an explicit head_dim is honoured, as HF's attention reads it
        Olmo2Config wide = (Olmo2Config) HfGolden.of("olmo2_gqa").readConfig(x -> x.put("head_dim", 16));
        assertEquals(16, wide.headDim());
    }

    @Test
    void badConfigsAreRefused() {
        HfGolden g = HfGolden.of("olmo2_gqa");
        g.configRefused(c -> {
            c.put("hidden_size", 30);
            c.remove("head_dim");
        }, "config.json", "hidden_size", "num_attention_heads");
        g.configRefused(c -> c.put("num_key_value_heads", 3), "num_key_value_heads");
        g.configRefused(c -> c.put("hidden_act", "relu"), "hidden_act");
        g.configRefused(c -> c.put("intermediate_size", -4), "intermediate_size");
        g.configRefused(c -> c.with("rope_parameters").putObject("full_attention").put("rope_theta", 1e4),
                "rope_parameters", "nested");
        g.configRefused(c -> c.put("rope_parameters", 3), "rope_parameters", "object");
        g.configRefused(c -> c.putArray("eos_token_id").add("x"), "eos_token_id");
        g.configRefused(c -> c.put("vocab_size", 1 << 30), "vocab_size");
    }

    @Test
    void checkpointsThatDoNotMatchTheConfigAreRefused() {
        HfGolden g = HfGolden.of("olmo2_gqa");
        HfGolden.loadRefused(g.copyWith(tmp.resolve("ffn"), c -> c.put("intermediate_size", 64)),
                "model.layers.0.mlp.gate_proj.weight", "[48, 32]", "[64, 32]");
        HfGolden.loadRefused(g.copyWithout(tmp.resolve("nopf"), "model.layers.2.post_feedforward_layernorm.weight"),
                "missing tensor", "model.layers.2.post_feedforward_layernorm.weight");
        HfGolden.loadRefused(g.copyWith(tmp.resolve("kv"), c -> c.put("num_key_value_heads", 4)),
                "model.layers.0.self_attn.k_proj.weight", "[16, 32]", "[32, 32]");
        HfGolden tied = HfGolden.of("olmo2_tied_bias_bf16");
        HfGolden.loadRefused(tied.copyWith(tmp.resolve("untied"), c -> c.put("tie_word_embeddings", false)),
                "missing tensor", "lm_head.weight");
    }

    @Test
    void composesAsAnchorAndAsAugment() {
        int vocab = 64;
        Olmo2Config olmo = Olmo2Config.of(vocab, 32, 64, 3, 4, 2, 64);
        LlamaConfig llama = LlamaConfig.llama(vocab, 24, 48, 3, 3, 3, 64);
        HfGolden.compositionAtInitIsTheAnchor(olmo, llama);
        HfGolden.compositionAtInitIsTheAnchor(llama, olmo);
        HfGolden.compositionAtInitIsTheAnchor(olmo, Olmo2Config.of(vocab, 16, 32, 2, 2, 1, 64));
        try (CausalLm m = LmFamilies.random(olmo, 3, 0.02, ScalarType.Float)) {
            assertEquals(olmo.parameterCount(), m.namedWeights().values().stream().mapToLong(t -> t.numel()).sum());
            assertEquals(LmFamilies.weightNames(olmo), List.copyOf(m.namedWeights().keySet()));
        }
    }
}
