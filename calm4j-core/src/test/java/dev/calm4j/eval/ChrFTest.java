package dev.calm4j.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link ChrF} against sacrebleu's own scores ({@code tools/make_chrf_golden.py}). */
class ChrFTest {
    static JsonNode golden;
    static List<String> hyps = new ArrayList<>();
    static List<String> refs = new ArrayList<>();

    @BeforeAll
    static void read() throws Exception {
        golden = new ObjectMapper().readTree(Path.of("src/test/resources/golden/chrf/chrf.json").toFile());
        for (JsonNode s : golden.get("sentences")) {
            hyps.add(s.get("hyp").asText());
            refs.add(s.get("ref").asText());
        }
        assertTrue(hyps.size() >= 30);
    }

    @Test
    void sentenceScoresAndStatisticsMatchSacrebleu() {
        for (JsonNode s : golden.get("sentences")) {
            String h = s.get("hyp").asText();
            String r = s.get("ref").asText();
            long[] want = new long[s.get("stats").size()];
            for (int i = 0; i < want.length; i++) {
                want[i] = s.get("stats").get(i).asLong();
            }
            String what = "'" + h + "' | '" + r + "'";
            assertArrayEquals(want, ChrF.statistics(h, r), what);
            assertEquals(s.get("score").asDouble(), ChrF.sentence(h, r), 1e-9, what);
            assertEquals(s.get("score_eps").asDouble(), ChrF.fromStatistics(ChrF.statistics(h, r), true), 1e-9, what);
        }
    }

    @Test
    void corpusScoresMatchSacrebleu() {
        assertEquals(golden.get("corpus").get("score").asDouble(), ChrF.corpus(hyps, refs), 1e-9);
        long[] total = new long[18];
        for (int i = 0; i < hyps.size(); i++) {
            long[] s = ChrF.statistics(hyps.get(i), refs.get(i));
            for (int j = 0; j < 18; j++) {
                total[j] += s[j];
            }
        }
        assertEquals(golden.get("corpus").get("score_eps").asDouble(), ChrF.fromStatistics(total, true), 1e-9);
        for (JsonNode s : golden.get("slices")) {
            int a = s.get("from").asInt();
            int b = s.get("to").asInt();
            assertEquals(s.get("score").asDouble(), ChrF.corpus(hyps.subList(a, b), refs.subList(a, b)), 1e-9,
                    "slice " + a + ".." + b);
        }
        assertTrue(Math.abs(ChrF.corpus(hyps, refs) - mean(hyps, refs)) > 1, "a corpus score is not a mean");
    }

    @Test
    void whitespaceIsWhatPythonSplitsOn() {
        Set<Integer> python = new HashSet<>();
        golden.get("python_whitespace").forEach(c -> python.add(c.asInt()));
        for (int cp = 0; cp <= Character.MAX_CODE_POINT; cp++) {
            assertEquals(python.contains(cp), ChrF.isPythonWhitespace(cp), "U+" + Integer.toHexString(cp));
        }
    }

    @Test
    void bootstrapIntervalIsSeededAndAsWideAsSacrebleus() {
        Score a = ChrF.corpus(hyps, refs, 1000, 7);
        Score b = ChrF.corpus(hyps, refs, 1000, 7);
        assertEquals(ChrF.corpus(hyps, refs), a.value(), 0);
        assertArrayEquals(a.ci95(), b.ci95(), "same seed, same interval");
        assertEquals(hyps.size(), a.n());
        assertTrue(a.ci95()[0] < a.value() && a.value() < a.ci95()[1], a.toString());
        // Other random draws than numpy's, so only the width is comparable.
        double half = (a.ci95()[1] - a.ci95()[0]) / 2;
        double sacrebleuHalf = golden.get("bootstrap").get("half_width").asDouble();
        assertTrue(Math.abs(half / sacrebleuHalf - 1) < 0.25, half + " vs sacrebleu's " + sacrebleuHalf);
        assertTrue(!java.util.Arrays.equals(a.ci95(), ChrF.corpus(hyps, refs, 1000, 8).ci95()));
    }

    @Test
    void pairedDifferenceOfASystemWithItselfIsZeroAndAPerfectOneWinsClearly() {
        Score same = ChrF.pairedDifference(hyps, hyps, refs, 1000, 1);
        assertEquals(0, same.value(), 0);
        assertArrayEquals(new double[] {0, 0}, same.ci95(), 0);
        Score better = ChrF.pairedDifference(refs, hyps, refs, 1000, 1);
        // An empty reference scores 0 even against itself, so "perfect" is a little below 100.
        assertEquals(ChrF.corpus(refs, refs) - ChrF.corpus(hyps, refs), better.value(), 1e-12);
        assertTrue(better.ci95()[0] > 0, better.toString());
    }

    @Test
    void badArgumentsAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> ChrF.corpus(List.of("a"), List.of("a", "b")));
        assertThrows(IllegalArgumentException.class, () -> ChrF.corpus(List.of(), List.of()));
        assertThrows(IllegalArgumentException.class, () -> ChrF.corpus(hyps, refs, 10, 1));
        assertThrows(IllegalArgumentException.class, () -> ChrF.fromStatistics(new long[17]));
    }

    private static double mean(List<String> h, List<String> r) {
        double sum = 0;
        for (int i = 0; i < h.size(); i++) {
            sum += ChrF.sentence(h.get(i), r.get(i));
        }
        return sum / h.size();
    }
}
