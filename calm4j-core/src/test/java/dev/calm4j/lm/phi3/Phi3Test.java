package dev.calm4j.lm.phi3;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Torch;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Mode;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.KvCache;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.gpt2.Gpt2Config;
import dev.calm4j.lm.llama.LlamaConfig;
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

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Phi-3 against Hugging Face transformers' own {@code Phi3ForCausalLM} ({@code tools/make_family_golden_phi3_gpt2.py}):
 * logits, block outputs, greedy continuations, cached decoding against recomputation (across LongRoPE's switch to
 * its long factors too), configs of both transformers layouts, and refusals.
 */
class Phi3Test {
    private static final String TIED_BF16 = "phi3_gqa_tied_bf16";      // GQA, tied head, BF16, sliding window 4
    private static final String LONGROPE = "phi3_longrope_partial";    // 4.x config, longrope, partial rotary 0.75

    @TempDir
    Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    @ParameterizedTest
    @ValueSource(strings = {TIED_BF16, LONGROPE})
    void logitsBlockOutputAndGreedyMatchTransformers(String name) {
        HfFixture g = HfFixture.read(name);
        long[][] ids = g.ids("input_ids");
        try (CausalLm m = g.load()) {
            assertTrue(m instanceof Phi3Model, name + ": loaded by the phi3 family");
            double logits = TestModels.maxAbsDiff(g.floats("logits"), HfFixture.logits(m, ids));
            assertTrue(logits <= 1e-4, name + ": logits differ by " + logits);
            double hidden = TestModels.maxAbsDiff(g.floats("hidden_1"), HfFixture.blockOutput(m, ids, 1));
            assertTrue(hidden <= 1e-4, name + ": layer(1) differs from block 1's output by " + hidden);
            String extra = "";
            if (g.has("long_logits")) {              // longer than original_max_position_embeddings: long factors
                double d = TestModels.maxAbsDiff(g.floats("long_logits"), HfFixture.logits(m, g.ids("long_input_ids")));
                assertTrue(d <= 1e-4, name + ": long-factor logits differ by " + d);
                extra = ", long-factor logits " + d;
            }
            System.out.println(name + ": max |logit diff| " + logits + ", block 1 " + hidden + extra);

            long[] from = g.row("greedy_from");
            long[] want = g.row("greedy_ids");
            assertArrayEquals(want, HfFixture.greedy(m, from, want.length, false), name + ": greedy (recomputed)");
            if (g.has("greedy_ids_cached")) {
                // LongRoPE: once the session crosses original_max_position_embeddings, a cache of short-factor keys
                // and values gives other logits than recomputation, exactly as HF's forward with a cache does.
                long[] cached = g.row("greedy_ids_cached");
                assertArrayEquals(cached, HfFixture.greedy(m, from, cached.length, true), name + ": greedy (KV-cached)");
                double d = TestModels.maxAbsDiff(g.floats("cached_logits"), cachedSteps(m, from, cached));
                assertTrue(d <= 1e-4, name + ": logits of the cached decoding steps differ by " + d);
                System.out.println(name + ": max |logit diff| of the cached decoding steps " + d);
            } else {
                assertArrayEquals(want, HfFixture.greedy(m, from, want.length, true), name + ": greedy (KV-cached)");
            }
        }
    }

    /** Logits {@code [n, V]} of decoding {@code prompt} then {@code next[0..n-2]} one token at a time through a cache. */
    static float[] cachedSteps(CausalLm m, long[] prompt, long[] next) {
        int v = m.config().vocabSize();
        float[] out = new float[next.length * v];
        try (KvCache cache = m.newCache(1, prompt.length + next.length); NoGradGuard ng = new NoGradGuard()) {
            long[] feed = prompt;
            for (int s = 0; s < next.length; s++) {
                float[] step = Tensors.toFloats(m.forward(TestModels.ids(new long[][] {feed}), null, cache));
                System.arraycopy(step, step.length - v, out, s * v, v);
                feed = new long[] {next[s]};
            }
        }
        return out;
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
                float[] want = Arrays.copyOfRange(all, all.length - got.length, all.length);
                worst = Math.max(worst, TestModels.maxAbsDiff(want, got));
                at += n;
                n = Math.min(chunk, seq.length - at);
            }
            assertEquals(seq.length, cache.length());
        }
        return worst;
    }

    @Test
    void cachedDecodingEqualsRecomputation() {
        long[] seq = {5, 17, 33, 2, 60, 41, 8, 54, 12, 47, 3, 50, 21, 9};     // ids < 64, both vocabularies
        try (CausalLm m = HfFixture.read(TIED_BF16).load()) {             // the window (4) slides over the cache
            for (int[] pc : new int[][] {{1, 1}, {3, 1}, {5, 4}}) {
                double d = cachedAgainstRecomputed(m, seq, pc[0], pc[1]);
                assertTrue(d < 2e-5, "window: prefill " + pc[0] + ", chunks of " + pc[1] + ": " + d);
            }
        }
        // LongRoPE with original_max_position_embeddings 8: exact while a session stays on one side of 8 (short
        // factors throughout, or a prefill already past it); a session that crosses it keeps its short-factor cache,
        // as HF's cached forward does, and parts from recomputation (by > 1e-3 here; the fixture pins its logits).
        long[] shortSeq = Arrays.copyOf(seq, 8);
        try (CausalLm m = HfFixture.read(LONGROPE).load()) {
            for (int[] pc : new int[][] {{1, 1}, {3, 2}}) {
                double d = cachedAgainstRecomputed(m, shortSeq, pc[0], pc[1]);
                assertTrue(d < 2e-5, "longrope, short: prefill " + pc[0] + ", chunks of " + pc[1] + ": " + d);
            }
            for (int[] pc : new int[][] {{9, 1}, {10, 2}}) {
                double d = cachedAgainstRecomputed(m, seq, pc[0], pc[1]);
                assertTrue(d < 2e-5, "longrope, long: prefill " + pc[0] + ", chunks of " + pc[1] + ": " + d);
            }
            double crossing = cachedAgainstRecomputed(m, seq, 3, 1);
            assertTrue(crossing > 1e-3, "longrope, crossing: " + crossing);
        }
    }

    @Test
    void leftPaddedRowsMatchUnpadded() {
        long[] real = {12, 40, 7, 66};
        long[][] ids = {{3, 9, 27, 81, 50, 11, 4}, {0, 0, 0, real[0], real[1], real[2], real[3]}};
        boolean[] keys = {true, true, true, true, true, true, true, false, false, false, true, true, true, true};
        try (CausalLm m = HfFixture.read(TIED_BF16).load(); NoGradGuard ng = new NoGradGuard()) {
            float[] padded = Tensors.toFloats(m.forward(TestModels.ids(ids), Tensors.bools(keys, 2, 7), null));
            float[] alone = HfFixture.logits(m, new long[][] {real});
            int v = m.config().vocabSize();
            float[] row = Arrays.copyOfRange(padded, (7 + 3) * v, 14 * v);
            assertTrue(TestModels.maxAbsDiff(alone, row) < 1e-5, "left-padded row");
        }
    }

    @Test
    void bothTransformersLayoutsReadTheSame() throws Exception {
        HfFixture g = HfFixture.read(LONGROPE);                          // written in the 4.x layout
        Phi3Config four = (Phi3Config) LmFamilies.readConfig(g.dir());
        assertEquals(0.75, four.partialRotaryFactor());
        assertEquals(12, four.rotaryDim());
        assertEquals(8, four.originalMaxPositionEmbeddings());
        assertEquals(4.0, four.longRope().factor());
        assertEquals(Math.sqrt(1 + Math.log(4) / Math.log(8)), four.longRope().attentionFactor(), 1e-15);
        assertEquals(0, four.slidingWindow());
        Path five = g.copyWith(tmp.resolve("five"), c -> {                // the same config as transformers 5.x writes it
            ObjectNode rs = (ObjectNode) c.remove("rope_scaling");
            ObjectNode rp = c.putObject("rope_parameters");
            rp.put("rope_type", "longrope");
            rp.put("rope_theta", c.remove("rope_theta").asDouble());
            rp.put("partial_rotary_factor", c.remove("partial_rotary_factor").asDouble());
            rp.put("original_max_position_embeddings", 8);
            rp.set("short_factor", rs.get("short_factor"));
            rp.set("long_factor", rs.get("long_factor"));
            c.put("dtype", c.remove("torch_dtype").asText());
        });
        assertEquals(four, LmFamilies.readConfig(five));
        // The legacy name "su" is longrope (HF maps it), and what calm4j writes reads back the same.
        Path su = g.copyWith(tmp.resolve("su"), c -> ((ObjectNode) c.get("rope_scaling")).put("type", "su"));
        assertEquals(four, LmFamilies.readConfig(su));
        assertEquals(four, Phi3Config.fromJson(four.toJson(), "written"));
        Phi3Config five5 = (Phi3Config) LmFamilies.readConfig(HfFixture.read(TIED_BF16).dir());
        assertNull(five5.longRope());
        assertEquals(4, five5.slidingWindow());
        assertEquals("bfloat16", five5.dtype());
        assertTrue(five5.tieWordEmbeddings());
        assertEquals(five5, Phi3Config.fromJson(five5.toJson(), "written"));
    }

    @Test
    void saveAndLoadGiveTheSameModel() {
        HfFixture g = HfFixture.read(LONGROPE);
        long[][] ids = g.ids("long_input_ids");
        try (CausalLm m = g.load()) {
            LmFamilies.save(m, tmp.resolve("saved"));
            try (CausalLm back = LmFamilies.load(tmp.resolve("saved"))) {
                assertEquals(m.config(), back.config());
                assertArrayEquals(HfFixture.logits(m, ids), HfFixture.logits(back, ids));
            }
            assertEquals(LmFamilies.weightNames(m.config()), List.copyOf(m.namedWeights().keySet()));
            assertEquals(m.config().parameterCount(), m.namedWeights().values().stream().mapToLong(Tensor::numel).sum());
        }
    }

    @Test
    void badConfigsAreRefusedNamingTheField() {
        HfFixture five = HfFixture.read(TIED_BF16);
        HfFixture four = HfFixture.read(LONGROPE);
        int[] k = {0};
        java.util.function.BiFunction<HfFixture, java.util.function.Consumer<ObjectNode>, Path> edit =
                (g, e) -> g.copyWith(tmp.resolve("bad" + k[0]++), e);
        HfFixture.refused(edit.apply(five, c -> c.put("hidden_act", "gelu")), "config.json", "hidden_act", "silu");
        HfFixture.refused(edit.apply(five, c -> ((ObjectNode) c.get("rope_parameters")).put("rope_type", "linear")),
                "config.json", "rope type 'linear'", "default, longrope");
        HfFixture.refused(edit.apply(four, c -> ((ArrayNode) c.get("rope_scaling").get("short_factor")).remove(0)),
                "config.json", "short_factor", "expected 6");
        HfFixture.refused(edit.apply(four, c -> ((ObjectNode) c.get("rope_scaling")).remove("long_factor")),
                "config.json", "long_factor", "missing");
        HfFixture.refused(edit.apply(four, c -> c.put("partial_rotary_factor", 1.5)), "config.json", "partial_rotary_factor");
        HfFixture.refused(edit.apply(five, c -> c.put("num_key_value_heads", 3)), "config.json", "num_key_value_heads");
        HfFixture.refused(edit.apply(five, c -> c.put("max_position_embeddings", 1 << 30)), "config.json", "max_position_embeddings");
        HfFixture.refused(edit.apply(five, c -> c.put("sliding_window", 0)), "config.json", "sliding_window");
        HfFixture.refused(edit.apply(five, c -> c.put("vocab_size", "many")), "config.json", "vocab_size");
        HfFixture.refused(edit.apply(five, c -> c.remove("num_hidden_layers")), "config.json", "num_hidden_layers");
    }

    @Test
    void weightsThatDoNotMatchTheConfigAreRefused() {
        HfFixture g = HfFixture.read(TIED_BF16);
        HfFixture.refused(g.copyWith(tmp.resolve("ff"), c -> c.put("intermediate_size", 80)),
                "model.layers.0.mlp.gate_up_proj.weight", "[128, 32]", "[160, 32]");
        HfFixture.refused(g.copyWith(tmp.resolve("kv"), c -> c.put("num_key_value_heads", 4)),
                "model.layers.0.self_attn.qkv_proj.weight", "[64, 32]", "[96, 32]");
        HfFixture.refused(g.copyWith(tmp.resolve("untied"), c -> c.put("tie_word_embeddings", false)),
                "missing tensor", "lm_head.weight");
    }

    static Phi3Config tiny(int layers, double partial, int window) {
        return new Phi3Config(96, 32, 64, layers, 4, 2, 8, 1e-5, 10000.0, partial, null, 64, 64, false, window, 1,
                List.of(2), "float32");
    }

    @Test
    void everyWeightLearns() {
        try (CausalLm m = LmFamilies.random(tiny(2, 0.5, 3), 7, 0.2, ScalarType.Float)) {
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

    /** At init (every bridge's W_O = 0) a composition with a Phi-3 anchor is exactly the anchor. */
    @Test
    void compositionWithAPhi3AnchorStartsAsTheAnchor() {
        long[][] ids = {{1, 5, 6, 7, 8, 9, 10, 11}, {1, 30, 31, 32, 33, 34, 35, 36}};
        Gpt2Config gpt2 = new Gpt2Config(96, 24, 2, 3, 48, 64, "gelu_new", 1e-5, true, false, false, true, 1, List.of(2), "float32");
        try (CausalLm anchor = LmFamilies.random(tiny(3, 0.75, 5), 11, 0.2, ScalarType.Float);
             CausalLm viaGpt2 = LmFamilies.random(gpt2, 12, 0.2, ScalarType.Float);
             CausalLm viaLlama = LmFamilies.random(LlamaConfig.llama(96, 24, 48, 2, 3, 3, 64), 13, 0.2, ScalarType.Float)) {
            float[] alone = HfFixture.logits(anchor, ids);
            for (CausalLm augment : List.of(viaGpt2, viaLlama)) {
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

    @Test
    void configRecordRefusesSizesBeyondItsBounds() {
        ObjectNode c = tiny(2, 1.0, 0).toJson();
        c.put("intermediate_size", Integer.MAX_VALUE);
        dev.calm4j.Calm4jException e = org.junit.jupiter.api.Assertions.assertThrows(dev.calm4j.Calm4jException.class,
                () -> Phi3Config.fromJson(c, "config.json"));
        assertTrue(e.getMessage().contains("intermediate_size") && e.getMessage().startsWith("config.json: field"), e.getMessage());
    }
}
