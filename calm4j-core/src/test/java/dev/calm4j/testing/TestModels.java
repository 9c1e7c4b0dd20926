package dev.calm4j.testing;

import dev.calm4j.Torch;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.lm.llama.LlamaWeights;
import dev.calm4j.lm.llama.RopeScaling;
import dev.calm4j.nn.Tensors;
import dev.calm4j.tokenize.CharTokenizer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/** Tiny random checkpoints written in HF layout, so tests go through the real loading path. */
public final class TestModels {
    public static final String ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 +-=.,:\n";

    private TestModels() {}

    /** A tiny GQA Llama over the test alphabet's char tokenizer. */
    public static LlamaConfig tinyLlama() {
        return new LlamaConfig("llama", CharTokenizer.vocabSize(ALPHABET), 32, 64, 3, 4, 2, 8, 1e-5, 10000.0,
                RopeScaling.NONE, 128, false, false, false, false, 0, 1, List.of(2), "float32");
    }

    /** Mistral-like: sliding window 5 (so it bites within test lengths), tied embeddings. */
    public static LlamaConfig tinyMistral() {
        return new LlamaConfig("mistral", CharTokenizer.vocabSize(ALPHABET), 32, 48, 2, 4, 1, 8, 1e-5, 10000.0,
                RopeScaling.NONE, 128, true, false, false, false, 5, 1, List.of(2), "float32");
    }

    /** Qwen2-like: q/k/v biases, llama3 rope scaling. */
    public static LlamaConfig tinyQwen() {
        return new LlamaConfig("qwen2", CharTokenizer.vocabSize(ALPHABET), 32, 48, 2, 4, 2, 8, 1e-6, 1e6,
                new RopeScaling("llama3", 4.0, 1.0, 4.0, 32), 128, false, true, false, false, 0, 1, List.of(2), "float32");
    }

    /** A smaller, different-shaped model over the same vocabulary, to augment {@link #tinyLlama()}. */
    public static LlamaConfig tinyAugment() {
        return new LlamaConfig("llama", CharTokenizer.vocabSize(ALPHABET), 24, 48, 2, 3, 3, 8, 1e-5, 10000.0,
                RopeScaling.NONE, 128, false, false, false, false, 0, 1, List.of(2), "float32");
    }

    /** Writes random weights (std 0.2, so logits vary a lot) + config.json + a char tokenizer.json into dir. */
    public static Path write(Path dir, LlamaConfig config, long seed) {
        Torch.init();
        try (LlamaModel m = new LlamaModel(config, LlamaWeights.random(config, seed, 0.2, ScalarType.Float), ScalarType.Float)) {
            LmFamilies.save(m, dir);
        }
        CharTokenizer.write(dir.resolve("tokenizer.json"), ALPHABET);
        assertTrue(Files.isRegularFile(dir.resolve("model.safetensors")));
        return dir;
    }

    public static Tensor ids(long[][] rows) {
        int b = rows.length;
        int t = rows[0].length;
        long[] flat = new long[b * t];
        for (int r = 0; r < b; r++) {
            System.arraycopy(rows[r], 0, flat, r * t, t);
        }
        return Tensors.longs(flat, b, t);
    }

    public static double maxAbsDiff(float[] a, float[] b) {
        if (a.length != b.length) {
            fail("length " + a.length + " != " + b.length);
        }
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs((double) a[i] - b[i]));
        }
        return m;
    }

    public static CausalLm load(Path dir) {
        return LmFamilies.load(dir);
    }
}
