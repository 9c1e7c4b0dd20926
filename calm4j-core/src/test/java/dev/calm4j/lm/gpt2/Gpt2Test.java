package dev.calm4j.lm.gpt2;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Mode;
import dev.calm4j.io.WeightFiles;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.KvCache;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.phi3.Phi3Config;
import dev.calm4j.nn.Tensors;
import dev.calm4j.testing.HfFixture;
import dev.calm4j.testing.TestModels;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * GPT-2 against Hugging Face transformers' own {@code GPT2LMHeadModel} ({@code tools/make_family_golden_phi3_gpt2.py}):
 * logits, block outputs and greedy continuations for both tensor namings (save_pretrained's and the hub's), cached
 * decoding against recomputation, left padding, the n_positions bound, and refusals.
 */
class Gpt2Test {
    private static final String TIED = "gpt2";                          // tied, F32, transformer.-prefixed names
    private static final String HUB = "gpt2_untied_bf16_hub";           // untied, BF16, bare names, n_positions 20

    @TempDir
    Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    @ParameterizedTest
    @ValueSource(strings = {TIED, HUB})
    void logitsBlockOutputAndGreedyMatchTransformers(String name) {
        HfFixture g = HfFixture.read(name);
        long[][] ids = g.ids("input_ids");
        try (CausalLm m = g.load()) {
            assertTrue(m instanceof Gpt2Model, name + ": loaded by the gpt2 family");
            double logits = TestModels.maxAbsDiff(g.floats("logits"), HfFixture.logits(m, ids));
            assertTrue(logits <= 1e-4, name + ": logits differ by " + logits);
            double hidden = TestModels.maxAbsDiff(g.floats("hidden_1"), HfFixture.blockOutput(m, ids, 1));
            assertTrue(hidden <= 1e-4, name + ": layer(1) differs from block 1's output by " + hidden);
            System.out.println(name + ": max |logit diff| " + logits + ", block 1 " + hidden);
            long[] from = g.row("greedy_from");
            long[] want = g.row("greedy_ids");
            assertArrayEquals(want, HfFixture.greedy(m, from, want.length, true), name + ": greedy (KV-cached)");
            assertArrayEquals(want, HfFixture.greedy(m, from, want.length, false), name + ": greedy (recomputed)");
        }
    }

    @Test
    void bothNamingsLoadAndCalm4jSavesSavePretrainedsOne() {
        HfFixture hub = HfFixture.read(HUB);
        try (WeightFiles files = WeightFiles.open(hub.dir())) {
            assertTrue(files.contains("h.0.attn.c_attn.weight") && !files.contains("transformer.h.0.attn.c_attn.weight"));
        }
        long[][] ids = hub.ids("input_ids");
        try (CausalLm m = LmFamilies.load(hub.dir(), ScalarType.BFloat16)) {       // saved as computed: BF16, as stored
            assertTrue(m.namedWeights().containsKey("transformer.h.0.attn.c_attn.weight"));
            assertEquals(List.of(32L, 96L), Arrays.stream(Tensors.shape(m.namedWeights().get("transformer.h.0.attn.c_attn.weight"))).boxed().toList(),
                    "Conv1D weights held as stored, [in, out]");
            LmFamilies.save(m, tmp.resolve("saved"));
            try (WeightFiles files = WeightFiles.open(tmp.resolve("saved"))) {
                assertTrue(files.contains("transformer.h.0.attn.c_attn.weight") && files.contains("lm_head.weight"));
            }
            try (CausalLm back = LmFamilies.load(tmp.resolve("saved"), ScalarType.BFloat16)) {
                assertEquals(m.config(), back.config());
                assertArrayEquals(HfFixture.logits(m, ids), HfFixture.logits(back, ids));
            }
            assertEquals(LmFamilies.weightNames(m.config()), List.copyOf(m.namedWeights().keySet()));
            assertEquals(m.config().parameterCount(), m.namedWeights().values().stream().mapToLong(Tensor::numel).sum());
        }
        try (CausalLm m = HfFixture.read(TIED).load()) {                   // tied: no lm_head.weight written
            LmFamilies.save(m, tmp.resolve("tied"));
            try (WeightFiles files = WeightFiles.open(tmp.resolve("tied"))) {
                assertFalse(files.contains("lm_head.weight"));
            }
            assertEquals(m.config(), Gpt2Config.fromJson(m.config().toJson(), "written"));
        }
    }

    @Test
    void sequencesBeyondNPositionsAreRefused() {
        long[] twenty = new long[20];
        Arrays.fill(twenty, 7);
        try (CausalLm m = HfFixture.read(HUB).load(); NoGradGuard ng = new NoGradGuard()) {   // n_positions 20
            assertEquals(20 * 96, Tensors.toFloats(m.forward(TestModels.ids(new long[][] {twenty}))).length);
            long[] longer = Arrays.copyOf(twenty, 21);
            Calm4jException e = assertThrows(Calm4jException.class, () -> m.forward(TestModels.ids(new long[][] {longer})));
            assertTrue(e.getMessage().contains("n_positions") && e.getMessage().contains("20") && !e.getMessage().contains("\n"),
                    e.getMessage());
            try (KvCache cache = m.newCache(1, 32)) {                       // decoding one step too far
                m.forward(TestModels.ids(new long[][] {twenty}), null, cache);
                e = assertThrows(Calm4jException.class, () -> m.forward(TestModels.ids(new long[][] {{7}}), null, cache));
                assertTrue(e.getMessage().contains("n_positions"), e.getMessage());
            }
        }
    }

    /** Largest logit difference between decoding {@code seq} through the cache in chunks and full forwards. */
    static double cachedAgainstRecomputed(CausalLm m, long[] seq, int prefill, int chunk) {
        double worst = 0;
        try (KvCache cache = m.newCache(1, seq.length); NoGradGuard ng = new NoGradGuard()) {
            int at = 0;
            int n = prefill;
            while (at < seq.length) {
                long[] part = Arrays.copyOfRange(seq, at, at + n);
                float[] got = Tensors.toFloats(m.forward(TestModels.ids(new long[][] {part}), null, cache));
                float[] all = Tensors.toFloats(m.forward(TestModels.ids(new long[][] {Arrays.copyOf(seq, at + n)})));
                worst = Math.max(worst, TestModels.maxAbsDiff(Arrays.copyOfRange(all, all.length - got.length, all.length), got));
                at += n;
                n = Math.min(chunk, seq.length - at);
            }
        }
        return worst;
    }

    @Test
    void cachedDecodingEqualsRecomputation() {
        long[] seq = {5, 17, 33, 2, 90, 41, 8, 64, 12, 77, 3, 50, 21, 9, 60, 1, 44, 30};
        for (String name : List.of(TIED, HUB)) {
            try (CausalLm m = HfFixture.read(name).load()) {
                for (int[] pc : new int[][] {{1, 1}, {4, 1}, {5, 4}}) {
                    double d = cachedAgainstRecomputed(m, seq, pc[0], pc[1]);
                    assertTrue(d < 2e-5, name + ": prefill " + pc[0] + ", chunks of " + pc[1] + ": " + d);
                }
            }
        }
    }

    @Test
    void leftPaddedRowsMatchUnpadded() {
        long[] real = {12, 40, 7, 66};
        long[][] ids = {{3, 9, 27, 81, 50, 11, 4}, {0, 0, 0, real[0], real[1], real[2], real[3]}};
        boolean[] keys = {true, true, true, true, true, true, true, false, false, false, true, true, true, true};
        try (CausalLm m = HfFixture.read(TIED).load(); NoGradGuard ng = new NoGradGuard()) {
            float[] padded = Tensors.toFloats(m.forward(TestModels.ids(ids), Tensors.bools(keys, 2, 7), null));
            float[] alone = HfFixture.logits(m, new long[][] {real});
            int v = m.config().vocabSize();
            assertTrue(TestModels.maxAbsDiff(alone, Arrays.copyOfRange(padded, (7 + 3) * v, 14 * v)) < 1e-5,
                    "a left-padded row's positions count its real tokens only");
            float[] first = Arrays.copyOfRange(padded, 0, 7 * v);
            assertTrue(TestModels.maxAbsDiff(HfFixture.logits(m, new long[][] {ids[0]}), first) < 1e-5, "the unpadded row");
        }
    }

    @Test
    void badConfigsAreRefusedNamingTheField() {
        HfFixture g = HfFixture.read(TIED);
        int[] k = {0};
        java.util.function.Function<Consumer<ObjectNode>, Path> edit = e -> g.copyWith(tmp.resolve("bad" + k[0]++), e);
        HfFixture.refused(edit.apply(c -> c.put("activation_function", "swish")), "config.json", "activation_function", "gelu_new");
        HfFixture.refused(edit.apply(c -> c.put("add_cross_attention", true)), "config.json", "add_cross_attention");
        HfFixture.refused(edit.apply(c -> c.put("n_head", 5)), "config.json", "n_head", "n_embd");
        HfFixture.refused(edit.apply(c -> c.put("vocab_size", "many")), "config.json", "vocab_size");
        HfFixture.refused(edit.apply(c -> c.remove("n_layer")), "config.json", "n_layer", "missing");
        HfFixture.refused(edit.apply(c -> c.put("n_positions", 1 << 30)), "config.json", "n_positions");
        HfFixture.refused(edit.apply(c -> c.put("layer_norm_epsilon", -1)), "config.json", "layer_norm_epsilon");
        HfFixture.refused(edit.apply(c -> c.put("model_type", "gpt-2")), "config.json", "model_type", "gpt-2");
    }

    @Test
    void weightsThatDoNotMatchTheConfigAreRefused() {
        HfFixture tied = HfFixture.read(TIED);
        HfFixture.refused(tied.copyWith(tmp.resolve("inner"), c -> c.put("n_inner", 64)),
                "transformer.h.0.mlp.c_fc.weight", "[32, 128]", "[32, 64]");
        HfFixture.refused(tied.copyWith(tmp.resolve("pos"), c -> c.put("n_positions", 16)),
                "transformer.wpe.weight", "[32, 32]", "[16, 32]");
        HfFixture.refused(tied.copyWith(tmp.resolve("untied"), c -> c.put("tie_word_embeddings", false)),
                "missing tensor", "lm_head.weight");
        HfFixture.refused(HfFixture.read(HUB).copyWith(tmp.resolve("hub"), c -> c.put("n_inner", 64)),
                "tensor 'h.0.mlp.c_fc.weight'", "[32, 48]", "[32, 64]");
    }

    static Gpt2Config tiny(int layers, String activation) {
        return new Gpt2Config(96, 32, layers, 4, 64, 64, activation, 1e-5, true, false, false, true, 1, List.of(2), "float32");
    }

    @Test
    void everyWeightLearns() {
        try (CausalLm m = LmFamilies.random(tiny(2, "gelu_new"), 7, 0.2, ScalarType.Float)) {
            for (Tensor p : m.namedWeights().values()) {
                p.set_requires_grad(true);
            }
            Tensor logits = m.forward(TestModels.ids(new long[][] {{1, 5, 9, 30, 44, 2}}));
            logits.mul(logits).mean().backward();
            for (Map.Entry<String, Tensor> e : m.namedWeights().entrySet()) {
                assertTrue(e.getValue().grad().defined() && e.getValue().grad().abs().max().item_double() > 0,
                        e.getKey() + " gets no gradient");
            }
        }
    }

    /** At init (every bridge's W_O = 0) a composition with a GPT-2 anchor is exactly the anchor. */
    @Test
    void compositionWithAGpt2AnchorStartsAsTheAnchor() {
        long[][] ids = {{1, 5, 6, 7, 8, 9, 10, 11}, {1, 30, 31, 32, 33, 34, 35, 36}};
        Phi3Config phi3 = new Phi3Config(96, 24, 48, 2, 3, 1, 8, 1e-5, 10000.0, 0.5, null, 64, 64, true, 4, 1, List.of(2), "float32");
        try (CausalLm anchor = LmFamilies.random(tiny(3, "gelu"), 21, 0.2, ScalarType.Float);
             CausalLm viaPhi3 = LmFamilies.random(phi3, 22, 0.2, ScalarType.Float);
             CausalLm viaLlama = LmFamilies.random(LlamaConfig.llama(96, 24, 48, 2, 3, 3, 64), 23, 0.2, ScalarType.Float)) {
            float[] alone = HfFixture.logits(anchor, ids);
            for (CausalLm augment : List.of(viaPhi3, viaLlama)) {
                CompositionPlan plan = new CompositionPlan(CompositionPlan.parse("0->0,1->2"));
                try (CalmModel calm = CalmModel.create(anchor, List.of(augment), plan, Mode.SAME_SEQUENCE, 4, 5);
                     NoGradGuard ng = new NoGradGuard()) {
                    float[] composed = Tensors.toFloats(calm.forward(TestModels.ids(ids), null, null, null));
                    double d = TestModels.maxAbsDiff(alone, composed);
                    assertTrue(d < 1e-5, augment.config().modelType() + " augment: composition at init differs by " + d);
                    for (Tensor t : calm.bridgeTensors().values()) {               // as if trained: now it must differ
                        t.add_(org.bytedeco.pytorch.global.torch.randn(Tensors.shape(t)).mul(new org.bytedeco.pytorch.Scalar(0.3)));
                    }
                    float[] trained = Tensors.toFloats(calm.forward(TestModels.ids(ids), null, null, null));
                    assertTrue(TestModels.maxAbsDiff(alone, trained) > 1e-3, "bridges from the " + augment.config().modelType() + " augment do nothing");
                }
            }
        }
    }
}
