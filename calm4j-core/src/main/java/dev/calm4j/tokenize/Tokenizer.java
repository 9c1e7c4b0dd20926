package dev.calm4j.tokenize;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import ai.djl.huggingface.tokenizers.jni.CharSpan;
import dev.calm4j.Calm4jException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * A Hugging Face {@code tokenizer.json}, run by DJL's binding of the Rust tokenizers library (any tokenizer HF can
 * serialise works, byte-level BPE and WordLevel alike). Never truncates: DJL's default silently cuts at 512 tokens.
 */
public final class Tokenizer implements AutoCloseable {
    private final HuggingFaceTokenizer hf;
    private final Path file;

    private Tokenizer(HuggingFaceTokenizer hf, Path file) {
        this.hf = hf;
        this.file = file;
    }

    /** Opens {@code tokenizer.json}, or {@code dir/tokenizer.json} when given a model directory. */
    public static Tokenizer load(Path fileOrDir) {
        Path file = Files.isDirectory(fileOrDir) ? fileOrDir.resolve("tokenizer.json") : fileOrDir;
        if (Files.exists(file) && !Files.isDirectory(file)) {
            dev.calm4j.io.StrictJson.requireRegularFile(file, "a Hugging Face tokenizer.json");
        }
        if (!Files.isRegularFile(file)) {
            throw new Calm4jException(file + ": tokenizer missing (expected a Hugging Face tokenizer.json; "
                    + "for a model without one, pass token ids instead, e.g. --prompt-ids 1,2,3)");
        }
        TokenizerJson.check(file);     // the native library aborts the process on some malformed files
        // DJL checks these before it loads its native library; without them it may contact outside addresses.
        System.setProperty("ai.djl.offline", "true");
        System.setProperty("OPT_OUT_TRACKING", "true");
        try {
            return new Tokenizer(HuggingFaceTokenizer.newInstance(file,
                    Map.of("truncation", "false", "padding", "false", "addSpecialTokens", "true")), file);
        } catch (IOException | RuntimeException e) {
            String m = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage().split("\n")[0];
            throw new Calm4jException(file + ": not a valid tokenizer.json (" + m + ")");
        }
    }

    /**
     * The identity of {@code dir/tokenizer.json} (or of that file): SHA-256 of its bytes, as {@code sha256:<hex>}.
     * Bridges trained on one tokenization of the text must not be loaded onto another.
     */
    public static String fingerprint(Path fileOrDir) {
        Path file = Files.isDirectory(fileOrDir) ? fileOrDir.resolve("tokenizer.json") : fileOrDir;
        dev.calm4j.io.StrictJson.requireRegularFile(file, "a Hugging Face tokenizer.json");
        try {
            byte[] digest = java.security.MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(file));
            return "sha256:" + java.util.HexFormat.of().formatHex(digest);
        } catch (IOException e) {
            throw new Calm4jException(file + ": unreadable (" + e.getMessage() + ")");
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    public static boolean exists(Path dir) {
        Path file = dir.resolve("tokenizer.json");
        if (Files.exists(file)) {
            dev.calm4j.io.StrictJson.requireRegularFile(file, "a Hugging Face tokenizer.json");   // never a FIFO
        }
        return Files.isRegularFile(file);
    }

    /** Token ids of {@code text}, with the special tokens the tokenizer's post-processor adds (e.g. BOS). */
    public long[] encode(String text) {
        try {
            return hf.encode(text).getIds();
        } catch (RuntimeException e) {
            throw failed("encode", e);
        }
    }

    /** Token ids of {@code text} with or without the post-processor's special tokens. */
    public long[] encode(String text, boolean addSpecialTokens) {
        try {
            return hf.encode(text, addSpecialTokens, false).getIds();
        } catch (RuntimeException e) {
            throw failed("encode", e);
        }
    }

    /**
     * Token ids of a text with where each token ends in it.
     *
     * @param ends per token, the end of its span in the text, in characters as the tokenizers library counts them
     *     (Unicode code points); a token without a span (a special token such as BOS) ends where the token before it
     *     ends, 0 for the first
     */
    public record Tokens(long[] ids, int[] ends) {
        public Tokens {
            if (ids.length != ends.length) {
                throw new IllegalArgumentException(ids.length + " ids, " + ends.length + " ends");
            }
        }
    }

    /**
     * {@code text}'s tokens and their ends ({@link Tokens}): what composing models with different tokenizers aligns
     * on, since both read the same text.
     */
    public Tokens encodeWithEnds(String text, boolean addSpecialTokens) {
        Encoding e;
        try {
            e = hf.encode(text, addSpecialTokens, false);
        } catch (RuntimeException ex) {
            throw failed("encode", ex);
        }
        long[] ids = e.getIds();
        CharSpan[] spans = e.getCharTokenSpans();
        int[] ends = new int[ids.length];
        int last = 0;
        for (int i = 0; i < ids.length; i++) {
            CharSpan s = spans == null || i >= spans.length ? null : spans[i];
            if (s != null && s.getEnd() > s.getStart()) {
                last = Math.max(last, s.getEnd());
            }
            ends[i] = last;
        }
        return new Tokens(ids, ends);
    }

    public String decode(long[] ids) {
        return decode(ids, true);
    }

    public String decode(long[] ids, boolean skipSpecialTokens) {
        try {
            return hf.decode(ids, skipSpecialTokens);
        } catch (RuntimeException e) {
            throw failed("decode", e);
        }
    }

    /**
     * A tokenizer.json can load and still fail on text (a WordLevel model without its unknown token meeting a
     * character it lacks): the native library's error becomes one line naming the file.
     */
    private Calm4jException failed(String what, RuntimeException e) {
        String m = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage().strip().split("\n")[0];
        return new Calm4jException(file + ": the tokenizer cannot " + what + " this text (" + m + ")");
    }

    public Path file() {
        return file;
    }

    @Override
    public void close() {
        hf.close();
    }
}
