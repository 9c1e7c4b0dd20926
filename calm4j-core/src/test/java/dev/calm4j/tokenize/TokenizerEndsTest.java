package dev.calm4j.tokenize;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

/**
 * Where each token ends in the text, against the Python {@code tokenizers} package on the same tokenizer.json
 * ({@code tools/make_tokenizer_fixtures.py}): what composing models with different tokenizers aligns on.
 */
class TokenizerEndsTest {
    @TempDir
    Path tmp;

    @ParameterizedTest
    @ValueSource(strings = {"bpe", "bpe_merges"})
    void idsAndEndsMatchThePythonTokenizers(String name) throws Exception {
        Path dir = Path.of("src/test/resources/tokenizers", name);
        JsonNode cases = new ObjectMapper().readTree(dir.resolve("expected.json").toFile());
        try (Tokenizer t = Tokenizer.load(dir)) {
            for (JsonNode c : cases) {
                Tokenizer.Tokens got = t.encodeWithEnds(c.get("text").asText(), true);
                long[] ids = new long[c.get("ids").size()];
                int[] ends = new int[ids.length];
                for (int i = 0; i < ids.length; i++) {
                    ids[i] = c.get("ids").get(i).asLong();
                    ends[i] = c.get("ends").get(i).asInt();
                }
                assertArrayEquals(ids, got.ids(), name + " ids of '" + c.get("text").asText() + "'");
                assertArrayEquals(ends, got.ends(), name + " ends of '" + c.get("text").asText() + "'");
                assertArrayEquals(t.encode(c.get("text").asText()), got.ids(), "the same ids as encode");
            }
        }
    }

    @Test
    void theTwoFixturesCutTheSameTextDifferently() {
        String text = "the sum of xtyqh and é😀 is 57";
        try (Tokenizer a = Tokenizer.load(Path.of("src/test/resources/tokenizers/bpe"));
             Tokenizer b = Tokenizer.load(Path.of("src/test/resources/tokenizers/bpe_merges"))) {
            Tokenizer.Tokens x = a.encodeWithEnds(text, true);
            Tokenizer.Tokens y = b.encodeWithEnds(text, true);
            assertNotEquals(x.ids().length, y.ids().length);
            int codePoints = text.codePointCount(0, text.length());
            assertEquals(codePoints, x.ends()[x.ends().length - 1], "ends count code points");
            assertEquals(codePoints, y.ends()[y.ends().length - 1]);
            assertEquals(0, x.ends()[0], "BOS has no span: it ends at 0");
        }
    }

    @Test
    void aCharacterTokenizerEndsEveryTokenOneCharacterLater() {
        Path file = tmp.resolve("tokenizer.json");
        CharTokenizer.write(file, "abc é");
        try (Tokenizer t = Tokenizer.load(file)) {
            Tokenizer.Tokens got = t.encodeWithEnds("ab é", false);
            assertArrayEquals(new int[] {1, 2, 3, 4}, got.ends());
        }
    }
}
