package dev.calm4j.hostile;

import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.data.DataRules;
import dev.calm4j.data.Dataset;
import dev.calm4j.tokenize.CharTokenizer;
import dev.calm4j.tokenize.Tokenizer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Line lengths are checked on bytes before anything is decoded or tokenized. */
class HostileDataTest {
    @TempDir
    Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    private Tokenizer tokenizer() {
        Path t = tmp.resolve("tok/tokenizer.json");
        CharTokenizer.write(t, "abcdefghijklmnopqrstuvwxyz0123456789= ");
        return Tokenizer.load(t.getParent());
    }

    private static final DataRules RULES = new DataRules(64, 64, 2, 1, false);

    @Test
    void aTenMegabyteLineIsRefusedBeforeTokenizing() throws IOException {
        Path f = tmp.resolve("huge.jsonl");
        try (OutputStream o = Files.newOutputStream(f)) {
            o.write("{\"prompt\": \"a=\", \"completion\": \"12\"}\n{\"text\": \"".getBytes(StandardCharsets.UTF_8));
            byte[] chunk = "abcdefghij".repeat(1000).getBytes(StandardCharsets.UTF_8);
            for (int i = 0; i < 1000; i++) {
                o.write(chunk);                          // 10 MB of text on line 2
            }
            o.write("\"}\n".getBytes(StandardCharsets.UTF_8));
        }
        try (Tokenizer t = tokenizer()) {
            long t0 = System.nanoTime();
            String m = assertThrows(Calm4jException.class, () -> Dataset.read(f, t, RULES)).getMessage();
            assertEquals(f + ":2: line is longer than 1048576 bytes (the limit; --max-line-bytes raises it)", m);
            assertTrue(System.nanoTime() - t0 < 3_000_000_000L, "took " + (System.nanoTime() - t0) / 1e9 + " s");
        }
    }

    @Test
    void theLimitIsConfigurableAndAppliesToPlainText() throws IOException {
        Path f = tmp.resolve("d.jsonl");
        Files.writeString(f, "{\"prompt\": \"a=\", \"completion\": \"12\"}\n{\"prompt\": \"bcdefghijk=\", \"completion\": \"34\"}\n");
        try (Tokenizer t = tokenizer()) {
            assertEquals(2, Dataset.read(f, t, RULES, 100).size());
            String m = assertThrows(Calm4jException.class, () -> Dataset.read(f, t, RULES, 40)).getMessage();
            assertEquals(f + ":2: line is longer than 40 bytes (the limit; --max-line-bytes raises it)", m);
            Path txt = tmp.resolve("d.txt");
            Files.writeString(txt, "ab cd\nefgh ijkl mnop\nq\n");
            assertTrue(Dataset.read(txt, t, RULES, 20).size() >= 1);
            m = assertThrows(Calm4jException.class, () -> Dataset.read(txt, t, RULES, 10)).getMessage();
            assertEquals(txt + ":2: line is longer than 10 bytes (the limit; --max-line-bytes raises it)", m);
            Files.writeString(txt, "ab\n".repeat(100));
            m = assertThrows(Calm4jException.class, () -> Dataset.read(txt, t, RULES, 10)).getMessage();
            assertTrue(m.contains("is tokenized whole, at most 160 bytes"), m);
        }
    }
}
