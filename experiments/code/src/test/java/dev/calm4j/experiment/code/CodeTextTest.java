package dev.calm4j.experiment.code;

import dev.calm4j.tokenize.BpeTrainer;
import dev.calm4j.tokenize.Tokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** How the experiment writes Java for its models, and how a next line is judged. */
class CodeTextTest {
    @Test
    void flatteningDropsIndentationAndBlankLines() {
        assertEquals("public int get(final int pos) {\nreturn bytes[pos];\n}",
                CodeText.flatten("public int get(final int pos) {\n\n    return bytes[pos];   \r\n\t}\n"));
        assertEquals("", CodeText.flatten("  \n\t\n"));
    }

    @Test
    void aFileLosesItsLicenceHeader() {
        assertEquals("package a.b;\nclass C {}", CodeText.body("/*\n * Licensed ...\n */\npackage a.b;\nclass C {}"));
        assertEquals("package a;", CodeText.body("package a;"));
        assertEquals("class C {}", CodeText.body("class C {}"));
    }

    @Test
    void chunksEndAtLineEndsAndNeverExceedTheLimit() {
        String flat = "aaaa\nbbbb\ncccc\n" + "d".repeat(23);
        List<String> c = CodeText.chunks(flat, 10);
        assertEquals(List.of("aaaa\nbbbb", "cccc", "dddddddddd", "dddddddddd", "ddd"), c);
        for (String s : c) {
            assertTrue(s.length() <= 10, s);
        }
        assertEquals(flat.replace("\n", ""), String.join("", c).replace("\n", ""));
    }

    @Test
    void aNextLineIsTheFirstLineWrittenOrWhatALineLessWriterBeginsWith() {
        assertTrue(CodeExperiment.beginsWith("\nreturn bytes[pos];\n}", "return bytes[pos];"));
        assertTrue(CodeExperiment.beginsWith("return  bytes[pos];}", "return bytes[pos];"));     // no newline written
        assertFalse(CodeExperiment.beginsWith("\nreturn\nbytes[pos];", "return bytes[pos];"));   // cut at the newline
        assertFalse(CodeExperiment.beginsWith("return bytes[i];", "return bytes[pos];"));
        assertFalse(CodeExperiment.beginsWith("x", ""));
        assertTrue(CodeExperiment.beginsWith(" ", ""));
    }

    @Test
    void aLineIsHeldToWhatItsWriterCanSpell(@TempDir Path tmp) throws Exception {
        Path file = tmp.resolve("tokenizer.json");
        BpeTrainer.train(List.of("int x 0;", "return x;"), new BpeTrainer.Options(40, 1, 1), file);
        try (Tokenizer t = Tokenizer.load(file)) {
            // '=' is not in this vocabulary: it encodes as <unk>, which decoding drops.
            assertEquals("int x 0;", dev.calm4j.eval.ExactMatch.normalize(CodeExperiment.spellable(t, "int x = 0;")));
            assertEquals("return x;", CodeExperiment.spellable(t, "return x;"));
        }
    }

    @Test
    void methodNamesAsWords() {
        assertEquals("get charset name", CodeExperiment.words("getCharsetName"));
        assertEquals("to url", CodeExperiment.words("toURL"));
        assertEquals("parse http header", CodeExperiment.words("parseHTTPHeader"));
        assertEquals("max value", CodeExperiment.words("MAX_VALUE"));
    }
}
