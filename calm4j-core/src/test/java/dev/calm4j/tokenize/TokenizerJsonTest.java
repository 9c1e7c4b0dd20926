package dev.calm4j.tokenize;

import dev.calm4j.Calm4jException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * tokenizer.json files the native library would abort the JVM on are refused in Java first. The first case was found
 * by ReadersFuzzTest#tokenizer; loading it through the library (without this check) ends the process.
 */
class TokenizerJsonTest {
    @TempDir
    Path tmp;

    private Path resource(String name) throws IOException {
        try (InputStream in = getClass().getResourceAsStream("/dev/calm4j/fuzz/ReadersFuzzTestInputs/tokenizer/" + name)) {
            return Files.write(tmp.resolve(name), in.readAllBytes());
        }
    }

    private static void refused(Path f, String why) {
        String m = assertThrows(Calm4jException.class, () -> Tokenizer.load(f)).getMessage();
        assertTrue(m.startsWith(f + ": not a valid tokenizer.json (") && m.contains(why), m);
    }

    @Test
    void whatTheNativeParserWouldAbortOnIsRefused() throws IOException {
        refused(resource("decoder-syntax-error.json"), "");
        String chars = Files.readString(resource("chars.json"));
        Path f = tmp.resolve("t.json");
        Files.writeString(f, chars.replaceFirst("\"decoder\" : \\{", "\"decoder\" : {\"x\": " + "[".repeat(70)
                + "]".repeat(70) + ","));
        refused(f, "nested deeper than 64 levels");
        Files.writeString(f, chars.replaceFirst("\"decoder\" : \\{", "\"decoder\" : {\"x\": 1e400,"));
        refused(f, "outside the double range");
        Files.writeString(f, chars.replaceFirst("\"decoder\" : \\{", "\"decoder\" : {\"x\": \"\\\\ud800\","));
        refused(f, "unpaired UTF-16 surrogate");
        Files.writeString(f, chars + "{}");
        refused(f, "content after the JSON object");
    }

    @Test
    void realTokenizersStillLoad() throws IOException {
        for (String n : new String[] {"chars.json", "bpe.json", "bpe_merges.json"}) {
            try (Tokenizer t = Tokenizer.load(resource(n))) {
                assertTrue(t.encode("ab", false).length > 0);
            }
        }
    }
}
