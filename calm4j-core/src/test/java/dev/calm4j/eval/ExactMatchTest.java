package dev.calm4j.eval;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ExactMatchTest {
    @Test
    void whitespaceAroundAndRunsInsideDoNotCountSpacingBetweenTokensDoes() {
        assertTrue(ExactMatch.matches("        return x;\n", "return x;"));
        assertTrue(ExactMatch.matches("if (a  &&\tb) {", "if (a && b) {"));
        assertTrue(ExactMatch.matches("\u00a0x = 1;\u2003", "x = 1;"));
        assertFalse(ExactMatch.matches("f(a,b);", "f(a, b);"));
        assertFalse(ExactMatch.matches("Return x;", "return x;"));
        assertTrue(ExactMatch.matches("", "   "));
        assertEquals("a b", ExactMatch.normalize("\ta \n b\r\n"));
    }

    @Test
    void corpusIsThePercentageWithASeededInterval() {
        List<String> refs = List.of("return x;", "i++;", "}", "foo(bar);");
        List<String> hyps = List.of("  return x;", "i--;", "}", "foo( bar );");
        assertEquals(50.0, ExactMatch.corpus(hyps, refs), 0.0);
        Score s = ExactMatch.corpus(hyps, refs, 1000, 1);
        assertEquals(50.0, s.value(), 0.0);
        assertTrue(s.ci95()[0] <= 50 && s.ci95()[1] >= 50 && s.ci95()[0] < s.ci95()[1], s.toString());
        Score d = ExactMatch.pairedDifference(refs, hyps, refs, 1000, 1);
        assertEquals(50.0, d.value(), 0.0);
        assertTrue(d.ci95()[0] >= 0, d.toString());
        assertThrows(IllegalArgumentException.class, () -> ExactMatch.corpus(hyps, refs.subList(0, 3)));
        assertThrows(IllegalArgumentException.class, () -> ExactMatch.corpus(List.of(), List.of(), 100, 1));
    }
}
