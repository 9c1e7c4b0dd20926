package dev.calm4j.generate;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.compose.Bridge;
import dev.calm4j.compose.BridgeCheckpoint;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Mode;
import dev.calm4j.compose.TextAlignment;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.KvCache;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.nn.Tensors;
import dev.calm4j.testing.TestModels;
import dev.calm4j.tokenize.CharTokenizer;
import dev.calm4j.tokenize.Tokenizer;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.bytedeco.pytorch.global.torch.randn;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Cached generation for an anchor and an augment that read the same text through different tokenizers
 * ({@link AlignedCalmSession}): at every step, the logits equal the composed forward over that step's whole text,
 * recomputed from scratch (the anchor's ids so far, the augment's fresh tokenization of the text, the cross mask of
 * {@link TextAlignment}), including steps where the new text changes the augment's last tokens.
 */
class AlignedGenerationTest {
    static final Path ALIGNED = Path.of("src/test/resources/golden-calm/aligned");
    static final double TOLERANCE = 1e-4;

    @TempDir
    static Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    /**
     * The reference: the composition over the whole text of one row after {@code generated}, without a cache. The
     * text is the prompt and the generated tokens decoded (byte-level decoders need no context), and a generated
     * token ends where the text ends after it.
     */
    static float[] recomputed(CalmModel m, Tokenizer anchor, Tokenizer augment, String prompt, long[] generated) {
        // One own-token augment (read through `augment`); any other reads the anchor's ids.
        Tokenizer.Tokens p = anchor.encodeWithEnds(prompt, true);
        long[] ids = Arrays.copyOf(p.ids(), p.ids().length + generated.length);
        int[] ends = Arrays.copyOf(p.ends(), ids.length);
        for (int i = 0; i < generated.length; i++) {
            ids[p.ids().length + i] = generated[i];
            String text = prompt + anchor.decode(Arrays.copyOf(generated, i + 1));
            ends[p.ids().length + i] = text.codePointCount(0, text.length());
        }
        String text = prompt + anchor.decode(generated);
        Tokenizer.Tokens g = augment.encodeWithEnds(text, true);
        int t = ids.length;
        int s = g.ids().length;
        try (PointerScope scope = new PointerScope(); NoGradGuard ng = new NoGradGuard()) {
            CalmModel.AugmentPrompt own = new CalmModel.AugmentPrompt(Tensors.longs(g.ids(), 1, s), null,
                    TextAlignment.crossMask(new int[][] {ends}, t, new int[][] {g.ends()}, s));
            List<CalmModel.AugmentPrompt> prompts = new ArrayList<>();
            for (int a = 0; a < m.augments().size(); a++) {
                prompts.add(m.ownTokens(a) ? own : null);           // null: it reads the anchor's ids
            }
            Tensor logits = m.forward(Tensors.longs(ids, 1, t), null, prompts, null);                 // [1, T, V]
            return Tensors.toFloats(logits.narrow(1, t - 1, 1));
        }
    }

    /** Records what each step of an aligned session kept from its caches. */
    static Generator.SessionFactory recording(AlignedCalmSession.Start start, List<AlignedCalmSession.Reuse> log) {
        return (b, max) -> {
            AlignedCalmSession s = (AlignedCalmSession) start.sessions().open(b, max);
            return new Session() {
                @Override
                public Tensor advance(Tensor ids, Tensor keyPadding) {
                    Tensor out = s.advance(ids, keyPadding);
                    log.add(s.lastReuse());
                    return out;
                }

                @Override
                public int length() {
                    return s.length();
                }

                @Override
                public void close() {
                    s.close();
                }
            };
        };
    }

    /** (1) Greedy decoding of a batch of two prompts of different lengths: every step equals recomputation. */
    @Test
    void cachedGreedyDecodingEqualsRecomputationAtEveryStep() {
        // "he" is continued by text that makes the augment cut its tail otherwise at one step (greedy, this fixture).
        List<String> prompts = List.of("the sum of xtyqh and é😀 is", "he");
        int steps = 10;
        try (Tokenizer ta = Tokenizer.load(ALIGNED.resolve("anchor")); Tokenizer tg = Tokenizer.load(ALIGNED.resolve("augment"));
             BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(ALIGNED.resolve("bridges"), null, null, false, ScalarType.Float)) {
            CalmModel m = l.model();
            assertTrue(m.ownTokens(0), "the fixture's augment reads its own tokens");
            AlignedCalmSession.Start start = AlignedCalmSession.start(m, ta, List.of(tg), prompts);
            assertTrue(start.prompts().get(0).length != start.prompts().get(1).length, "prompts of different lengths");
            List<AlignedCalmSession.Reuse> log = new ArrayList<>();
            Generator.Result r = Generator.generate(recording(start, log), start.prompts(), m.anchor().config().vocabSize(),
                    m.anchor().config().maxPositionEmbeddings(), new Generator.Options(steps, Sampler.greedy(), Set.of(), true), null);
            double worst = 0;
            int retokenized = 0;                  // steps at which a row's augment tokens changed, not only grew
            for (int row = 0; row < prompts.size(); row++) {
                long[] gen = r.generated().get(row);
                assertEquals(steps, gen.length);
                for (int s = 0; s < r.stepLogits().size(); s++) {
                    if (s > 0) {
                        long[] before = tg.encode(prompts.get(row) + ta.decode(Arrays.copyOf(gen, s - 1)), true);
                        long[] now = tg.encode(prompts.get(row) + ta.decode(Arrays.copyOf(gen, s)), true);
                        retokenized += now.length >= before.length
                                && Arrays.equals(before, Arrays.copyOf(now, before.length)) ? 0 : 1;
                    }
                    float[] want = recomputed(m, ta, tg, prompts.get(row), Arrays.copyOf(gen, s));
                    double d = TestModels.maxAbsDiff(want, r.stepLogits().get(s)[row]);
                    assertTrue(d < TOLERANCE, "row " + row + " step " + s + ": cached vs recomputed differ by " + d);
                    worst = Math.max(worst, d);
                }
            }
            long rewound = log.stream().filter(x -> x.anchorKept() < x.anchorHeld()).count();
            System.out.printf("aligned greedy decoding: max |cached - recomputed| = %.3g over %d steps x 2 rows; "
                    + "%d row-step(s) changed the augment's tokens, %d step(s) computed anchor positions again; "
                    + "texts %s%n", worst, r.stepLogits().size(), retokenized, rewound,
                    List.of(prompts.get(0) + ta.decode(r.generated().get(0)), prompts.get(1) + ta.decode(r.generated().get(1))));
            assertTrue(retokenized > 0, "some step changed the augment's tokens, not only appended to them");
            int longest = Math.max(start.prompts().get(0).length, start.prompts().get(1).length);
            assertTrue(log.stream().mapToInt(x -> x.augmentHeld()[0]).max().getAsInt() > longest + steps,
                    "the augment's cache grew past the anchor's length");
            for (int s = 1; s < log.size(); s++) {
                assertTrue(log.get(s).augmentKept()[0] > 0, "step " + s + " reused the augment's cache: " + log.get(s));
            }
        }
    }

    /**
     * (1b) The same with the bridges' recency bias: it counts the visible augment tokens after each key, which a step
     * that re-tokenizes the augment's tail changes for held anchor positions too; every step still equals
     * recomputation.
     */
    @Test
    void withTheRecencyBiasCachedDecodingStillEqualsRecomputation() {
        List<String> prompts = List.of("the sum of xtyqh and é😀 is", "he");
        int steps = 10;
        try (Tokenizer ta = Tokenizer.load(ALIGNED.resolve("anchor")); Tokenizer tg = Tokenizer.load(ALIGNED.resolve("augment"));
             BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(ALIGNED.resolve("bridges"), null, null, false, ScalarType.Float)) {
            CalmModel plain = l.model();
            // The fixture's bridges with the bias (the tensors are the checkpoint's: closed with it).
            CalmModel m = new CalmModel(plain.anchor(), plain.augments(), plain.plan(), plain.bridges().stream()
                    .map(b -> Bridge.of(b.named(), b.heads(), true)).toList(), plain.mode(), plain.heads(),
                    new boolean[] {plain.ownTokens(0)});
            AlignedCalmSession.Start start = AlignedCalmSession.start(m, ta, List.of(tg), prompts);
            Generator.Result r = Generator.generate(start.sessions(), start.prompts(), m.anchor().config().vocabSize(),
                    m.anchor().config().maxPositionEmbeddings(), new Generator.Options(steps, Sampler.greedy(), Set.of(), true), null);
            double differs = 0;
            for (int row = 0; row < prompts.size(); row++) {
                long[] gen = r.generated().get(row);
                for (int s = 0; s < r.stepLogits().size(); s++) {
                    float[] want = recomputed(m, ta, tg, prompts.get(row), Arrays.copyOf(gen, s));
                    double d = TestModels.maxAbsDiff(want, r.stepLogits().get(s)[row]);
                    assertTrue(d < TOLERANCE, "row " + row + " step " + s + ": cached vs recomputed differ by " + d);
                    differs = Math.max(differs, TestModels.maxAbsDiff(want,
                            recomputed(plain, ta, tg, prompts.get(row), Arrays.copyOf(gen, s))));
                }
            }
            assertTrue(differs > 1e-3, "the bias changes the fixture's logits (by " + differs + ")");
        }
    }

    /**
     * (2) Forced anchor tokens whose text changes the augment's last tokens: "m" after "su" (the augment merges u + m),
     * and the two bytes of "é" one at a time (the first alone decodes to U+FFFD, which the second replaces). The
     * augment's cache must drop the changed tokens, and the anchor positions that saw them must be computed again.
     */
    @Test
    void textThatChangesTheAugmentsLastTokensStillEqualsRecomputation() {
        try (Tokenizer ta = Tokenizer.load(ALIGNED.resolve("anchor")); Tokenizer tg = Tokenizer.load(ALIGNED.resolve("augment"));
             BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(ALIGNED.resolve("bridges"), null, null, false, ScalarType.Float)) {
            List<String> changed = forcedDecoding(l.model(), ta, tg, "forced tokens");
            assertTrue(changed.contains("the sum"), "u + m merge: " + changed);
            assertTrue(changed.stream().anyMatch(x -> x.endsWith("é")), "U+FFFD became é: " + changed);
        }
    }

    /**
     * (2b) The same beside a second augment that reads the anchor's ids (the fixture's anchor model itself, through a
     * bridge of its own): its cache and its bridge's follow the anchor's when anchor positions are computed again.
     */
    @Test
    void anAugmentReadingTheAnchorsIdsFollowsTheAnchorBack() {
        try (Tokenizer ta = Tokenizer.load(ALIGNED.resolve("anchor")); Tokenizer tg = Tokenizer.load(ALIGNED.resolve("augment"));
             BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(ALIGNED.resolve("bridges"), null, null, false, ScalarType.Float)) {
            CalmModel fixture = l.model();
            CausalLm anchor = fixture.anchor();
            // The fixture's connections, (1 -> 0) and (2 -> 2), plus (1 -> 1) from the second augment: plan order.
            CompositionPlan plan = new CompositionPlan(CompositionPlan.parse("0:1->0,0:2->2,1:1->1"));
            Bridge extra = Bridge.init(anchor.hiddenSize(), anchor.hiddenSize(), fixture.heads(), 0.1,
                    org.bytedeco.pytorch.global.torch.createCPUGenerator(5), ScalarType.Float);
            List<Bridge> bridges = List.of(fixture.bridges().get(0), extra, fixture.bridges().get(1));
            CalmModel mixed = new CalmModel(anchor, List.of(fixture.augments().get(0), anchor), plan, bridges,
                    Mode.SAME_SEQUENCE, fixture.heads(), new boolean[] {true, false});
            try {
                perturb(Map.of("o", extra.named().get("o.weight")));
                List<String> changed = forcedDecoding(mixed, ta, tg, "beside a shared-token augment");
                assertTrue(changed.contains("the sum"), "u + m merge: " + changed);
            } finally {
                extra.close();                           // the fixture's bridges are closed with the checkpoint
            }
        }
    }

    /**
     * Feeds two prompts of different lengths, then the same forced tokens to both (the anchor left-padded as
     * {@link Generator} lays a batch out, the augment right-padded), checking every step against recomputation.
     *
     * @return row 0's text after each step at which the augment dropped a token of every row
     */
    private static List<String> forcedDecoding(CalmModel m, Tokenizer ta, Tokenizer tg, String what) {
        JsonNode vocab;
        try {
            vocab = new ObjectMapper().readTree(ALIGNED.resolve("anchor/tokenizer.json").toFile()).get("model").get("vocab");
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        List<String> prompts = List.of("the su", "abc+def=12 su");
        long[] forced = concat(ta.encode("m of", false), ta.encode(" ", false),
                new long[] {vocab.get("Ã").asLong(), vocab.get("©").asLong()}, ta.encode(" is 5", false));
        AlignedCalmSession.Start start = AlignedCalmSession.start(m, ta,
                m.augments().size() == 1 ? List.of(tg) : Arrays.asList(tg, null), prompts);
        long[] a = start.prompts().get(0);
        long[] b = start.prompts().get(1);
        int longest = b.length;
        assertTrue(a.length < longest);
        long[] ids = new long[2 * longest];                              // row 0 left-padded
        boolean[] real = new boolean[2 * (longest + forced.length)];
        System.arraycopy(a, 0, ids, longest - a.length, a.length);
        System.arraycopy(b, 0, ids, longest, longest);
        for (int c = 0; c < longest + forced.length; c++) {
            real[c] = c >= longest - a.length;
            real[longest + forced.length + c] = true;
        }
        List<String> changed = new ArrayList<>();
        double worst = 0;
        try (AlignedCalmSession s = (AlignedCalmSession) start.sessions().open(2, longest + forced.length);
             NoGradGuard ng = new NoGradGuard()) {
            for (int step = 0; step <= forced.length; step++) {
                int n = longest + step;
                boolean[] keys = new boolean[2 * n];
                for (int r = 0; r < 2; r++) {
                    System.arraycopy(real, r * (longest + forced.length), keys, r * n, n);
                }
                // The fewest tokens a row held: a kept prefix shorter than that dropped a token of every row.
                int before = Math.min(tg.encodeWithEnds(s.text(0), true).ids().length,
                        tg.encodeWithEnds(s.text(1), true).ids().length);
                float[] got;
                try (PointerScope scope = new PointerScope()) {
                    Tensor in = step == 0 ? Tensors.longs(ids, 2, longest)
                            : Tensors.longs(new long[] {forced[step - 1], forced[step - 1]}, 2, 1);
                    got = Tensors.toFloats(s.advance(in, Tensors.bools(keys, 2, n)));
                }
                int v = got.length / 2;
                for (int r = 0; r < 2; r++) {
                    float[] want = recomputed(m, ta, tg, prompts.get(r), Arrays.copyOf(forced, step));
                    double d = TestModels.maxAbsDiff(want, Arrays.copyOfRange(got, r * v, (r + 1) * v));
                    assertTrue(d < TOLERANCE, what + ", row " + r + " step " + step + " (text '" + s.text(r)
                            + "'): cached vs recomputed differ by " + d);
                    worst = Math.max(worst, d);
                }
                AlignedCalmSession.Reuse u = s.lastReuse();
                if (step > 0 && u.augmentKept()[0] < before) {
                    changed.add(s.text(0));
                    assertTrue(u.anchorKept() < u.anchorHeld(), "the anchor positions that saw the dropped tokens are "
                            + "computed again: " + u);
                }
            }
            for (int r = 0; r < 2; r++) {
                assertEquals(prompts.get(r) + ta.decode(forced), s.text(r));
            }
        }
        System.out.printf("%s, 2 rows: max |cached - recomputed| = %.3g; the augment dropped changed tokens after %s%n",
                what, worst, changed);
        return changed;
    }

    /**
     * (3) Anchor and augment sharing one tokenizer that gives every id back from its text: the aligned session
     * generates what the plain same-sequence session does, with the same logits.
     */
    @Test
    void withOneSharedTokenizerItIsThePlainSession() throws Exception {
        Path anchorDir = TestModels.write(tmp.resolve("anchor"), TestModels.tinyLlama(), 31);
        Path augmentDir = TestModels.write(tmp.resolve("augment"), TestModels.tinyAugment(), 32);
        // The char tokenizer with its four added tokens not special: decoding keeps them, so text -> ids round-trips
        // for any id the model may emit, and the augment's re-tokenization is exactly the anchor's ids.
        Path tokFile = tmp.resolve("tokenizer.json");
        CharTokenizer.write(tokFile, TestModels.ALPHABET);
        ObjectMapper json = new ObjectMapper();
        JsonNode root = json.readTree(tokFile.toFile());
        root.get("added_tokens").forEach(t -> ((ObjectNode) t).put("special", false));
        Files.writeString(tokFile, json.writeValueAsString(root));
        try (CausalLm anchor = LmFamilies.load(anchorDir); CausalLm augment = LmFamilies.load(augmentDir);
             Tokenizer tok = Tokenizer.load(tokFile)) {
            CompositionPlan plan = new CompositionPlan(CompositionPlan.parse("0->0,1->2"));
            try (CalmModel aligned = CalmModel.create(anchor, List.of(augment), plan, Mode.SAME_SEQUENCE, 4, 0.1, 7,
                    new boolean[] {true})) {
                perturb(aligned);
                CalmModel plain = new CalmModel(anchor, List.of(augment), plan, aligned.bridges(), Mode.SAME_SEQUENCE, 4);
                List<String> prompts = List.of("<s>k=12+3", "ab c");
                Generator.Options opt = new Generator.Options(14, Sampler.greedy(), Set.of(), true);
                Generator.Result a = AlignedCalmSession.generate(aligned, tok, List.of(tok), prompts, opt, null);
                List<long[]> ids = prompts.stream().map(tok::encode).toList();
                Generator.Result p = Generator.generate((b, max) -> CalmSession.cached(plain, b, max, null), ids,
                        anchor.config().vocabSize(), anchor.config().maxPositionEmbeddings(), opt, null);
                double worst = 0;
                for (int row = 0; row < prompts.size(); row++) {
                    assertArrayEquals(p.generated().get(row), a.generated().get(row), "row " + row);
                    for (int s = 0; s < p.stepLogits().size(); s++) {
                        worst = Math.max(worst, TestModels.maxAbsDiff(p.stepLogits().get(s)[row], a.stepLogits().get(s)[row]));
                    }
                }
                System.out.printf("one shared tokenizer: aligned vs plain session, max logit diff %.3g%n", worst);
                assertTrue(worst < TOLERANCE, "aligned vs plain: " + worst);
                // The composition does something: the bridges change the anchor's logits.
                Generator.Result alone = Generator.generate((b, max) -> LmSession.cached(anchor, b, max), ids,
                        anchor.config().vocabSize(), anchor.config().maxPositionEmbeddings(), opt, null);
                assertTrue(TestModels.maxAbsDiff(alone.stepLogits().get(0)[0], p.stepLogits().get(0)[0]) > 1e-2);
            }
        }
    }

    @Test
    void startRefusesWhatItCannotAlign() {
        try (Tokenizer ta = Tokenizer.load(ALIGNED.resolve("anchor"));
             BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(ALIGNED.resolve("bridges"), null, null, false, ScalarType.Float)) {
            CalmModel m = l.model();
            assertThrows(Calm4jException.class, () -> AlignedCalmSession.start(m, ta, Arrays.asList((Tokenizer) null), List.of("x")),
                    "an own-token augment without its tokenizer");
            assertThrows(Calm4jException.class, () -> AlignedCalmSession.start(m, ta, List.of(), List.of("x")));
            assertThrows(Calm4jException.class, () -> AlignedCalmSession.start(m, ta, List.of(ta), List.of()));
            AlignedCalmSession.Start s = AlignedCalmSession.start(m, ta, List.of(ta), List.of("abc"));
            try (AlignedCalmSession session = (AlignedCalmSession) s.sessions().open(1, 8); NoGradGuard ng = new NoGradGuard();
                 PointerScope scope = new PointerScope()) {
                Calm4jException e = assertThrows(Calm4jException.class,
                        () -> session.advance(Tensors.longs(new long[] {1, 5}, 1, 2), null), "ids of another prompt");
                assertTrue(e.getMessage().contains("AlignedCalmSession.start"), e.getMessage());
            }
        }
    }

    /**
     * (5) An augment whose positions run out before the anchor's: the row whose text it can no longer read stops there
     * (its tokens so far are those of an unbounded run), the other row goes on exactly as if generated alone, and
     * nothing is thrown.
     */
    @Test
    void aRowStopsWhereAnAugmentsPositionsRunOut() throws Exception {
        Path dir = tmp.resolve("short-augment");
        for (String part : List.of("anchor", "augment", "bridges")) {
            Files.createDirectories(dir.resolve(part));
            try (var files = Files.list(ALIGNED.resolve(part))) {
                for (Path f : files.toList()) {
                    Files.copy(f, dir.resolve(part).resolve(f.getFileName()));
                }
            }
        }
        List<String> prompts = List.of("the sum of xtyqh and the sum of abc and", "he");
        int steps = 12;
        Generator.Options opt = new Generator.Options(steps, Sampler.greedy(), Set.of(), false);
        try (Tokenizer ta = Tokenizer.load(ALIGNED.resolve("anchor")); Tokenizer tg = Tokenizer.load(ALIGNED.resolve("augment"))) {
            List<long[]> unbounded;
            try (BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(ALIGNED.resolve("bridges"), null, null, false, ScalarType.Float)) {
                unbounded = AlignedCalmSession.generate(l.model(), ta, List.of(tg), prompts, opt, null).generated();
            }
            int limit = Math.max(tg.encode(prompts.get(0), true).length + 2,
                    tg.encode(prompts.get(1) + ta.decode(unbounded.get(1)), true).length);
            assertTrue(tg.encode(prompts.get(0) + ta.decode(unbounded.get(0)), true).length > limit,
                    "the unbounded row 0 outgrows the short augment");
            assertTrue(tg.encode(prompts.get(1) + ta.decode(unbounded.get(1)), true).length <= limit, "row 1 does not");
            Path config = dir.resolve("augment/config.json");
            ObjectNode c = (ObjectNode) new ObjectMapper().readTree(config.toFile());
            c.put("max_position_embeddings", limit);
            Files.writeString(config, c.toString());
            try (BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(dir.resolve("bridges"), null, null, false, ScalarType.Float)) {
                List<long[]> got = AlignedCalmSession.generate(l.model(), ta, List.of(tg), prompts, opt, null).generated();
                long[] row0 = got.get(0);
                assertTrue(row0.length > 0 && row0.length < steps, "row 0 stopped early: " + row0.length);
                assertArrayEquals(Arrays.copyOf(unbounded.get(0), row0.length), row0, "row 0 as far as it went");
                assertTrue(tg.encode(prompts.get(0) + ta.decode(Arrays.copyOf(row0, row0.length - 1)), true).length <= limit,
                        "every token fed fits");
                assertTrue(tg.encode(prompts.get(0) + ta.decode(row0), true).length > limit, "the last one, not fed, did not");
                assertArrayEquals(unbounded.get(1), got.get(1), "row 1 as if alone");
            }
        }
    }

    /** Truncation is bounded; growing keeps what is held. */
    @Test
    void kvCacheTruncatesAndGrows() {
        try (KvCache c = new KvCache(2, 1, 1, 2, 3, ScalarType.Float); NoGradGuard ng = new NoGradGuard();
             PointerScope scope = new PointerScope()) {
            Tensor k = Tensors.floats(new float[] {1, 2, 3, 4, 5, 6}, 1, 1, 2, 3);
            for (int i = 0; i < 2; i++) {
                c.layer(i).append(k, k);
            }
            assertThrows(IllegalArgumentException.class, () -> c.truncate(3));
            assertThrows(IllegalArgumentException.class, () -> c.truncate(-1));
            assertThrows(Calm4jException.class, () -> c.layer(0).append(k, k), "full");
            c.layer(0).reserve(3);
            assertEquals(4, c.layer(0).capacity(), "grows to twice its capacity at least");
            assertEquals(2, c.maxLength(), "the smallest layer's");
            Tensor[] all = c.layer(0).append(k.narrow(2, 1, 1), k.narrow(2, 1, 1));
            assertArrayEquals(new float[] {1, 2, 3, 4, 5, 6, 4, 5, 6}, Tensors.toFloats(all[0]));
            c.truncate(1);
            assertEquals(1, c.length());
            assertArrayEquals(new float[] {1, 2, 3, 1, 2, 3}, Tensors.toFloats(c.layer(0).append(k.narrow(2, 0, 1), k.narrow(2, 0, 1))[1]));
        }
    }

    private static long[] concat(long[]... parts) {
        long[] out = new long[0];
        for (long[] p : parts) {
            int n = out.length;
            out = Arrays.copyOf(out, n + p.length);
            System.arraycopy(p, 0, out, n, p.length);
        }
        return out;
    }

    /** Makes the bridges non-trivial (as if trained): W_O and the rest get seeded random values. */
    private static void perturb(CalmModel m) {
        perturb(m.bridgeTensors());
    }

    private static void perturb(Map<String, Tensor> tensors) {
        org.bytedeco.pytorch.Generator g = org.bytedeco.pytorch.global.torch.createCPUGenerator(99);
        try (NoGradGuard ng = new NoGradGuard()) {
            for (Tensor t : tensors.values()) {
                t.add_(randn(Tensors.shape(t), new org.bytedeco.pytorch.GeneratorOptional(g),
                        new org.bytedeco.pytorch.TensorOptions(ScalarType.Float)).mul(new org.bytedeco.pytorch.Scalar(0.3)));
            }
        }
    }
}
