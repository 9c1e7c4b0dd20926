package dev.calm4j.experiment.code;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

class MethodExtractorTest {
    static SourceJar.SourceFile file(String project, String path) {
        return Samples.sources().get(project).stream().filter(f -> f.path().equals(path)).findFirst().orElseThrow();
    }

    @Test
    void methodsWithBodiesTheirCodeWithoutJavadocAndTheirComment() {
        MethodExtractor.FileMethods fm = new MethodExtractor().methods(file("alpha", "org/alpha/Strings.java"));
        assertNull(fm.problem());
        List<String> names = fm.methods().stream().map(MethodExtractor.Method::name).toList();
        assertEquals(List.of("isEmpty", "join", "join", "countSpaces", "trim", "toString", "noJavadoc"), names);
        MethodExtractor.Method isEmpty = fm.methods().get(0);
        assertEquals(15, isEmpty.line());
        assertEquals("public static boolean isEmpty(final String s) {\n    // null counts as empty\n"
                + "    return s == null || s.isEmpty();\n}", isEmpty.code());
        assertTrue(isEmpty.javadoc().contains("@param s the string"));
        // Tab-indented: one tab of member indentation removed, the body's own kept.
        MethodExtractor.Method spaces = fm.methods().get(3);
        assertTrue(spaces.code().startsWith("public static int countSpaces(String s) {\n\tint n = 0;\n\tfor"), spaces.code());
        assertTrue(spaces.code().endsWith("\n\treturn n;\n}"), spaces.code());
        MethodExtractor.Method toString = fm.methods().get(5);
        assertTrue(toString.code().startsWith("@Override\npublic String toString() {"), toString.code());
        assertNull(fm.methods().get(6).javadoc());
    }

    @Test
    void abstractMethodsAreSkippedNestedAndDefaultOnesRead() {
        MethodExtractor.FileMethods fm = new MethodExtractor().methods(file("alpha", "org/alpha/Shape.java"));
        assertEquals(List.of("roundedPerimeter", "area", "perimeter"),
                fm.methods().stream().map(MethodExtractor.Method::name).toList());
        assertTrue(fm.methods().get(1).code().startsWith("@Override\npublic double area() {\n    double s = side;"),
                fm.methods().get(1).code());
    }

    @Test
    void aFileThatDoesNotParseIsReportedNotThrown() {
        MethodExtractor.FileMethods fm = new MethodExtractor().methods(file("beta", "org/beta/Broken.java"));
        assertTrue(fm.methods().isEmpty());
        assertNotNull(fm.problem());
        assertTrue(fm.problem().startsWith("org/beta/Broken.java: "), fm.problem());
    }

    @Test
    void tidyNormalisesLineEndsAndIndentation() {
        assertEquals("f() {\n  x;\n}", MethodExtractor.tidy("f() {  \r\n      x;\r\n    }", 4));
        assertEquals("f() {\nx;\n}", MethodExtractor.tidy("f() {\n  x;\n}", 4), "shifts only as far as there is whitespace");
    }
}
