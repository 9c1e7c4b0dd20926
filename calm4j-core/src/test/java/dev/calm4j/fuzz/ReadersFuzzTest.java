package dev.calm4j.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.data.DataRules;
import dev.calm4j.data.Dataset;
import dev.calm4j.io.Safetensors;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.tokenize.CharTokenizer;
import dev.calm4j.tokenize.Tokenizer;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Coverage-guided fuzz targets for the readers of files a user hands calm4j: every input must be read or refused
 * with a {@link Calm4jException}; any other exception, a hang or a crash is a finding. Under {@code mvn verify} each
 * target replays its seeds ({@code src/test/resources/dev/calm4j/fuzz/ReadersFuzzTestInputs/<target>/}); with
 * {@code JAZZER_FUZZ=1} one target is fuzzed (README: Robustness).
 */
class ReadersFuzzTest {
    /** One scratch folder per JVM: the readers take paths, and a fuzzing run makes millions of inputs. */
    static final Path DIR;

    static {
        try {
            DIR = Split.scratch("calm4j-fuzz");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        Torch.init();
    }

    static Path write(String name, byte[] data) {
        try {
            Path p = DIR.resolve(name);
            Files.write(p, data);
            p.toFile().deleteOnExit();
            return p;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @FuzzTest(maxExecutions = 1_000_000, maxDuration = "3h")
    void safetensors(byte[] data) {
        Path f = write("fuzz.safetensors", data);
        try (Safetensors st = Safetensors.open(f)) {
            for (String n : st.names()) {
                st.load(n).close();
            }
            st.metadata();
        } catch (Calm4jException expected) {
            // refused with a message: what a hostile file must get
        }
    }

    @FuzzTest(maxExecutions = 1_000_000, maxDuration = "3h")
    void config(byte[] data) {
        Path f = write("config.json", data);
        ModelConfig c;
        try {
            c = LmFamilies.readConfigFile(f);
        } catch (Calm4jException expected) {
            return;
        }
        // what was accepted is usable: its tensor list is bounded, and the config calm4j writes reads back
        if (LmFamilies.weightNames(c).isEmpty()) {
            throw new AssertionError("a config without tensors: " + c);
        }
        LmFamilies.configFromJson(c.toJson(), "written form of " + c);
    }

    private static final Object TOKENIZER_LOCK = new Object();

    @FuzzTest(maxExecutions = 1_000_000, maxDuration = "3h")
    void tokenizer(byte[] data) {
        Path f = write("tokenizer.json", data);
        synchronized (TOKENIZER_LOCK) {
            try (Tokenizer t = Tokenizer.load(f)) {
                t.encode("key a=12, b=3", false);
            } catch (Calm4jException expected) {
                // refused
            }
        }
    }

    private static Tokenizer chars;

    @FuzzTest(maxExecutions = 1_000_000, maxDuration = "3h")
    void jsonl(byte[] data) {
        if (chars == null) {
            Path t = DIR.resolve("chars/tokenizer.json");
            CharTokenizer.write(t, "abcdefghijklmnopqrstuvwxyz0123456789=+ ");
            chars = Tokenizer.load(t.getParent());
        }
        Path f = write("data.jsonl", data);
        try {
            Dataset.read(f, chars, new DataRules(32, 48, 2, 1, data.length > 0 && (data[0] & 1) == 1), 4096);
        } catch (Calm4jException expected) {
            // refused with file:line
        }
    }
}
