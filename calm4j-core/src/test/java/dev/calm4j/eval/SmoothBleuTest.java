package dev.calm4j.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link SmoothBleu} against CodeXGLUE's evaluator as {@code tools/make_bleu_golden.py} transcribes and runs it. */
class SmoothBleuTest {
    static JsonNode golden;
    static List<String> hyps = new ArrayList<>();
    static List<String> refs = new ArrayList<>();

    @BeforeAll
    static void read() throws Exception {
        golden = new ObjectMapper().readTree(Path.of("src/test/resources/golden/bleu/bleu.json").toFile());
        for (JsonNode s : golden.get("sentences")) {
            hyps.add(s.get("hyp").asText());
            refs.add(s.get("ref").asText());
        }
        assertTrue(hyps.size() >= 40);
        assertTrue(golden.get("checked_against_sacrebleu").asInt() >= 8, "the fixture was checked against sacrebleu");
    }

    @Test
    void tokensStatisticsAndSentenceScoresMatchCodeXglue() {
        for (JsonNode s : golden.get("sentences")) {
            String h = s.get("hyp").asText();
            String r = s.get("ref").asText();
            String what = "'" + h + "' | '" + r + "'";
            assertEquals(strings(s.get("hyp_tokens")), SmoothBleu.tokens(h), what);
            assertEquals(strings(s.get("ref_tokens")), SmoothBleu.tokens(r), what);
            long[] want = new long[10];
            want[0] = s.get("testlen").asLong();
            want[1] = s.get("reflen").asLong();
            for (int k = 0; k < 4; k++) {
                want[2 + k] = s.get("guess").get(k).asLong();
                want[6 + k] = s.get("correct").get(k).asLong();
            }
            assertArrayEquals(want, SmoothBleu.statistics(h, r), what);
            assertEquals(s.get("bleu").asDouble(), SmoothBleu.fromStatistics(want), 1e-12, what);
            assertEquals(100 * s.get("bleu").asDouble(), SmoothBleu.sentence(h, r), 1e-10, what);
        }
    }

    @Test
    void corpusScoreIsTheMeanOfSentenceScoresAsCodeXglue() {
        assertEquals(golden.get("corpus").asDouble(), SmoothBleu.corpus(hyps, refs), 1e-10);
        for (JsonNode sl : golden.get("slices")) {
            int a = sl.get("from").asInt();
            int b = sl.get("to").asInt();
            assertEquals(sl.get("score").asDouble(), SmoothBleu.corpus(hyps.subList(a, b), refs.subList(a, b)), 1e-10);
        }
    }

    @Test
    void edgeCasesBehaveAsTheReference() {
        assertEquals(100.0, SmoothBleu.sentence("Returns the value.", "  returns THE value. "), 1e-12);
        // An empty hypothesis is not 0: every log term is log(tiny/tiny) or log(1/1), leaving the brevity penalty.
        assertEquals(100 * Math.exp(-3), SmoothBleu.sentence("", "a b c"), 1e-10);
        // No unigram match: log(tiny) / 4 = -177 keeps the score above 0, far below anything that shows.
        double none = SmoothBleu.sentence("x", "y");
        assertTrue(none > 0 && none < 1e-70, "" + none);
        assertEquals(List.of("get", "_", "value", "(", ")"), SmoothBleu.tokens("get_value()"));
        assertEquals(List.of("1", ",", "000", ".", "5"), SmoothBleu.tokens("1,000.5"));
        assertEquals(List.of("x", "&", "lt", ";", "y"), SmoothBleu.tokens("x &lt; y"), "splitPuncts runs first, so entities stay apart");
    }

    @Test
    void bootstrapIntervalHoldsTheScoreAndIsSeeded() {
        Score s = SmoothBleu.corpus(hyps, refs, 1000, 7);
        assertEquals(SmoothBleu.corpus(hyps, refs), s.value(), 1e-12);
        assertEquals(hyps.size(), s.n());
        assertTrue(s.ci95()[0] < s.value() && s.value() < s.ci95()[1], s.toString());
        assertArrayEquals(s.ci95(), SmoothBleu.corpus(hyps, refs, 1000, 7).ci95());
        assertFalse(java.util.Arrays.equals(s.ci95(), SmoothBleu.corpus(hyps, refs, 1000, 8).ci95()));
        assertThrows(IllegalArgumentException.class, () -> SmoothBleu.corpus(hyps, refs, 39, 7));
        assertThrows(IllegalArgumentException.class, () -> SmoothBleu.corpus(hyps, refs.subList(1, refs.size())));
        assertThrows(IllegalArgumentException.class, () -> SmoothBleu.corpus(List.of(), List.of()));
    }

    @Test
    void pairedDifferenceSeesABetterSystem() {
        Score same = SmoothBleu.pairedDifference(hyps, hyps, refs, 500, 3);
        assertEquals(0.0, same.value(), 0.0);
        assertArrayEquals(new double[] {0, 0}, same.ci95());
        Score better = SmoothBleu.pairedDifference(refs, hyps, refs, 500, 3);
        assertEquals(SmoothBleu.corpus(refs, refs) - SmoothBleu.corpus(hyps, refs), better.value(), 1e-12);
        assertTrue(better.ci95()[0] > 0, better.toString());
        List<String> shuffled = new ArrayList<>(hyps);
        Collections.reverse(shuffled);
        assertTrue(SmoothBleu.pairedDifference(hyps, shuffled, refs, 500, 3).ci95()[0] > 0);
    }

    private static List<String> strings(JsonNode array) {
        List<String> out = new ArrayList<>();
        array.forEach(n -> out.add(n.asText()));
        return out;
    }
}
