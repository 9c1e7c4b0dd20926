package dev.calm4j.tokenize;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link BpeTrainer}: the written tokenizer.json loads in calm4j (DJL) and encodes as HF's Python {@code tokenizers}
 * does ({@code tools/make_bpe_fixture.py}), the merges are those of a plain recount-every-step BPE, and the output
 * is deterministic.
 */
class BpeTrainerTest {
    static final Path FIXTURE = Path.of("src/test/resources/tokenizers/bpe_trained");
    /** The options the committed fixture was trained with. */
    static final BpeTrainer.Options FIXTURE_OPTIONS = new BpeTrainer.Options(200, 2, 2);

    @TempDir
    Path tmp;

    static List<String> corpus() throws Exception {
        return Files.readAllLines(FIXTURE.resolve("corpus.txt"), StandardCharsets.UTF_8);
    }

    /** Regenerate the committed tokenizer.json with {@code -Dcalm4j.bpe.writeFixture=true}. */
    @Test
    void trainingTheCorpusGivesTheCommittedFileByteForByte() throws Exception {
        Path out = Boolean.getBoolean("calm4j.bpe.writeFixture")
                ? FIXTURE.resolve("tokenizer.json") : tmp.resolve("tokenizer.json");
        BpeTrainer.Summary s = BpeTrainer.train(corpus(), FIXTURE_OPTIONS, out);
        assertEquals(200, s.vocabSize());
        assertEquals(Files.readString(FIXTURE.resolve("tokenizer.json")), Files.readString(out));
    }

    @Test
    void idsAndEndsMatchThePythonTokenizers() throws Exception {
        JsonNode cases = new ObjectMapper().readTree(FIXTURE.resolve("expected.json").toFile());
        assertTrue(cases.size() >= 5);
        try (Tokenizer t = Tokenizer.load(FIXTURE)) {
            for (JsonNode c : cases) {
                String text = c.get("text").asText();
                Tokenizer.Tokens got = t.encodeWithEnds(text, true);
                assertArrayEquals(longs(c.get("ids")), got.ids(), "ids of '" + text + "'");
                long[] ends = longs(c.get("ends"));
                for (int i = 0; i < ends.length; i++) {
                    assertEquals(ends[i], got.ends()[i], "end " + i + " of '" + text + "'");
                }
                assertEquals(ends.length, got.ends().length);
                assertEquals(c.get("decoded").asText(), t.decode(got.ids()), "decode of '" + text + "'");
            }
        }
    }

    @Test
    void ordinaryTextRoundTripsAndEndsCountCodePointsOfTheOriginal() throws Exception {
        Path file = tmp.resolve("tokenizer.json");
        BpeTrainer.train(corpus(), new BpeTrainer.Options(300, 2, 1), file);
        Map<Long, String> vocab = vocab(file);
        try (Tokenizer t = Tokenizer.load(file)) {
            for (String text : List.of("El niño está en la estación.", "¿Dónde está la información?",
                    "The children play in the garden.", "Mañana, él compró azúcar.", "a")) {
                Tokenizer.Tokens got = t.encodeWithEnds(text, true);
                assertEquals(text, t.decode(got.ids()), "round trip");
                // Each token covers its own characters; the "▁" put before the first word covers none.
                int end = 0;
                for (int i = 0; i < got.ids().length; i++) {
                    String piece = vocab.get(got.ids()[i]);
                    end += piece.codePointCount(0, piece.length()) - (i == 0 && piece.startsWith("▁") ? 1 : 0);
                    if (i == 0 && piece.equals("▁")) {
                        // The library gives the inserted "▁" the span of the first character.
                        assertEquals(1, got.ends()[0]);
                        continue;
                    }
                    assertEquals(end, got.ends()[i], "end " + i + " of '" + text + "'");
                }
                assertEquals(text.codePointCount(0, text.length()), end);
            }
            // Accents are single characters with spans of one: "ñ" sits at code point 5 of "El niño".
            Tokenizer.Tokens spanish = t.encodeWithEnds("El niño", false);
            assertEquals(7, spanish.ends()[spanish.ends().length - 1]);
        }
    }

    @Test
    void frequentPiecesBecomeTokensAndTheVocabularyHasTheAskedSize() throws Exception {
        Path file = tmp.resolve("tokenizer.json");
        BpeTrainer.Summary s = BpeTrainer.train(corpus(), new BpeTrainer.Options(250, 2, 1), file);
        Map<Long, String> vocab = vocab(file);
        assertEquals(250, vocab.size());
        assertEquals(250, s.vocabSize());
        assertEquals(List.of("<pad>", "<s>", "</s>", "<unk>"),
                List.of(vocab.get(0L), vocab.get(1L), vocab.get(2L), vocab.get(3L)));
        Set<String> tokens = new HashSet<>(vocab.values());
        for (String piece : List.of("▁la", "▁the", "▁de", "ción", "▁The", "▁en")) {
            assertTrue(tokens.contains(piece), piece);
        }
        try (Tokenizer t = Tokenizer.load(file)) {
            assertEquals(1, t.encode("the", false).length, "'▁the' is one token");
            assertEquals(2, t.encode("la estación", false).length, "'▁la' '▁estación'");
        }
    }

    @Test
    void mergesAreThoseOfBpeRecountedEveryStep() throws Exception {
        List<String> tricky = new ArrayList<>();
        for (int i = 0; i < 7; i++) {
            tricky.add("aaaa abab aaa ba bab aab  ñaña ab" + "ab".repeat(i) + " x\ty");
        }
        for (List<String> texts : List.of(corpus(), tricky)) {
            for (int size : new int[] {60, 120, 400}) {
                Path file = tmp.resolve("t" + size + ".json");
                BpeTrainer.Options o = new BpeTrainer.Options(size, 2, 1);
                try {
                    BpeTrainer.train(texts, o, file);
                } catch (IllegalArgumentException e) {
                    continue;   // alphabet larger than the vocabulary
                }
                assertEquals(naiveMerges(texts, o), merges(file), "vocab " + size);
            }
        }
    }

    @Test
    void rareCharactersAreUnknownAndTheRestStillRoundTrips() throws Exception {
        Path file = tmp.resolve("tokenizer.json");
        BpeTrainer.train(corpus(), FIXTURE_OPTIONS, file);
        Map<Long, String> vocab = vocab(file);
        assertTrue(!vocab.containsValue("¡"), "'¡' occurs once, below minCharCount 2");
        try (Tokenizer t = Tokenizer.load(file)) {
            long[] ids = t.encode("¡hola", false);
            assertEquals(3, ids[1], "<unk> after the '▁'");
            assertEquals("hola", t.decode(ids), "<unk> is special: decode leaves it out");
        }
    }

    @Test
    void sameInputSameBytesWhateverTheOrderOfFirstSight() throws Exception {
        List<String> texts = corpus();
        Path a = tmp.resolve("a.json");
        Path b = tmp.resolve("b.json");
        BpeTrainer.train(texts, FIXTURE_OPTIONS, a);
        BpeTrainer.train(texts, FIXTURE_OPTIONS, b);
        assertArrayEquals(Files.readAllBytes(a), Files.readAllBytes(b));
        List<String> reversed = new ArrayList<>(texts);
        java.util.Collections.reverse(reversed);
        Path c = tmp.resolve("c.json");
        BpeTrainer.train(reversed, FIXTURE_OPTIONS, c);
        assertArrayEquals(Files.readAllBytes(a), Files.readAllBytes(c), "counts decide, not the order of the texts");
    }

    @Test
    void aHighMinPairCountEndsTrainingEarly() throws Exception {
        Path file = tmp.resolve("tokenizer.json");
        BpeTrainer.Summary s = BpeTrainer.train(corpus(), new BpeTrainer.Options(1000, 40, 1), file);
        assertTrue(s.vocabSize() < 1000);
        assertEquals(s.vocabSize(), 4 + s.alphabet() + s.merges());
        assertEquals(naiveMerges(corpus(), new BpeTrainer.Options(1000, 40, 1)), merges(file));
    }

    @Test
    void optionsAndTooSmallVocabulariesAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> new BpeTrainer.Options(4, 2, 1));
        assertThrows(IllegalArgumentException.class, () -> new BpeTrainer.Options(100, 0, 1));
        assertThrows(IllegalArgumentException.class, () -> new BpeTrainer.Options(100, 2, 0));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> BpeTrainer.train(corpus(), new BpeTrainer.Options(10, 2, 1), tmp.resolve("t.json")));
        assertTrue(e.getMessage().contains("raise vocabSize"), e.getMessage());
    }

    @Test
    void wordsAreCutAsTheMetaspacePreTokenizerCutsThem() {
        assertEquals(List.of("▁Hola", "▁", "▁mundo"), BpeTrainer.words("Hola  mundo"));
        assertEquals(List.of("▁a", "▁b"), BpeTrainer.words(" a b"));
        assertEquals(List.of("▁a\tb", "▁c", "▁"), BpeTrainer.words("a\tb c "));
        assertEquals(List.of(), BpeTrainer.words(""));
    }

    /** BPE as stated: recount every pair of every word, merge the most frequent, repeat. */
    static List<List<String>> naiveMerges(List<String> texts, BpeTrainer.Options o) {
        Map<String, Integer> counts = new LinkedHashMap<>();
        for (String t : texts) {
            for (String w : BpeTrainer.words(t)) {
                counts.merge(w, 1, Integer::sum);
            }
        }
        TreeMap<String, Integer> chars = new TreeMap<>();
        counts.forEach((w, c) -> w.codePoints().forEach(cp -> chars.merge(Character.toString(cp), c, Integer::sum)));
        Set<String> vocab = new HashSet<>(CharTokenizer.SPECIALS);
        chars.forEach((ch, c) -> {
            if (c >= o.minCharCount()) {
                vocab.add(ch);
            }
        });
        List<List<String>> words = new ArrayList<>();
        List<Integer> freq = new ArrayList<>();
        counts.forEach((w, c) -> {
            words.add(new ArrayList<>(w.codePoints().mapToObj(Character::toString).toList()));
            freq.add(c);
        });
        List<List<String>> merges = new ArrayList<>();
        while (vocab.size() < o.vocabSize()) {
            Map<List<String>, Integer> pairs = new LinkedHashMap<>();
            for (int k = 0; k < words.size(); k++) {
                List<String> w = words.get(k);
                for (int i = 0; i + 1 < w.size(); i++) {
                    if (vocab.contains(w.get(i)) && vocab.contains(w.get(i + 1))) {
                        pairs.merge(List.of(w.get(i), w.get(i + 1)), freq.get(k), Integer::sum);
                    }
                }
            }
            List<String> best = null;
            int bestCount = 0;
            for (Map.Entry<List<String>, Integer> e : pairs.entrySet()) {
                List<String> p = e.getKey();
                int c = e.getValue();
                if (c > bestCount || c == bestCount && (p.get(0).compareTo(best.get(0)) < 0
                        || p.get(0).equals(best.get(0)) && p.get(1).compareTo(best.get(1)) < 0)) {
                    best = p;
                    bestCount = c;
                }
            }
            if (best == null || bestCount < o.minPairCount()) {
                break;
            }
            merges.add(best);
            vocab.add(best.get(0) + best.get(1));
            for (List<String> w : words) {
                for (int i = 0; i + 1 < w.size(); i++) {
                    if (w.get(i).equals(best.get(0)) && w.get(i + 1).equals(best.get(1))) {
                        w.set(i, best.get(0) + best.get(1));
                        w.remove(i + 1);
                    }
                }
            }
        }
        return merges;
    }

    static List<List<String>> merges(Path file) throws Exception {
        List<List<String>> out = new ArrayList<>();
        for (JsonNode m : new ObjectMapper().readTree(file.toFile()).get("model").get("merges")) {
            out.add(List.of(m.get(0).asText(), m.get(1).asText()));
        }
        return out;
    }

    static Map<Long, String> vocab(Path file) throws Exception {
        Map<Long, String> out = new TreeMap<>();
        new ObjectMapper().readTree(file.toFile()).get("model").get("vocab").fields()
                .forEachRemaining(e -> out.put(e.getValue().asLong(), e.getKey()));
        return out;
    }

    static long[] longs(JsonNode a) {
        long[] out = new long[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.get(i).asLong();
        }
        return out;
    }
}
