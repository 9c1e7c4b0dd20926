package dev.calm4j.data;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.calm4j.Calm4jException;
import dev.calm4j.io.AtomicFiles;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.tokenize.Tokenizer;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * An immutable, non-empty list of {@link Example}s and the name of where they came from.
 *
 * <p>Everything about the data is checked while reading (shapes, types, vocabulary, context length), so a bad line
 * stops a run before training starts, with one line that names the file, the line and the field.
 */
public final class Dataset {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final List<Example> examples;
    private final String source;
    private final long targetTokens;

    private Dataset(List<Example> examples, String source) {
        this.examples = examples;
        this.source = source;
        this.targetTokens = examples.stream().mapToLong(Example::targetCount).sum();
    }

    /**
     * Reads a data file.
     *
     * <p>{@code *.jsonl} / {@code *.json}: one JSON object per line (blank lines skipped), one of
     * <ul>
     *   <li>{@code {"prompt": str, "completion": str}}: {@code [bos] + prompt + completion + [eos]}, the completion
     *       and EOS are targets;</li>
     *   <li>{@code {"text": str}}: {@code [bos] + text + [eos]}, every token after the first is a target;</li>
     *   <li>{@code {"prompt_ids": [..], "completion_ids": [..]}} and {@code {"ids": [..]}}: the same, pre-tokenized
     *       (no tokenizer needed);</li>
     * </ul>
     * optionally with {@code "augment_prompt"} or {@code "augment_prompt_ids"} (used when
     * {@link DataRules#separatePrompt()}). Other fields are ignored. Text is encoded without the tokenizer's special
     * tokens; BOS and EOS come from {@code rules} only.
     *
     * <p>Any other extension: UTF-8 plain text, tokenized whole and cut into chunks of exactly {@code maxLength}
     * tokens (see {@link Sequences#chunks}).
     *
     * @param tokenizer null when the data is pre-tokenized
     * @throws Calm4jException {@code file:line: ...} for the first problem found
     */
    public static Dataset read(Path file, Tokenizer tokenizer, DataRules rules) {
        return read(file, tokenizer, rules, DEFAULT_MAX_LINE_BYTES);
    }

    /**
     * The longest line (in bytes, without its newline) a data file may have by default: far above any example a
     * model's context holds, far below what would make the tokenizer's native code run out of memory (a 10 MB line
     * costs it gigabytes).
     */
    public static final long DEFAULT_MAX_LINE_BYTES = 1L << 20;

    /** Plain text is tokenized whole: its size is bounded at this many times the line limit. */
    public static final long PLAIN_TEXT_LINES_OF_BYTES = 16;

    static String tooLong(long maxLineBytes) {
        return "line is longer than " + maxLineBytes + " bytes (the limit; --max-line-bytes raises it)";
    }

    /**
     * As {@link #read(Path, Tokenizer, DataRules)}, refusing lines longer than {@code maxLineBytes} bytes before they
     * are decoded or tokenized ({@code file:line: line is longer than ...}).
     */
    public static Dataset read(Path file, Tokenizer tokenizer, DataRules rules, long maxLineBytes) {
        if (maxLineBytes < 1) {
            throw new Calm4jException("the line limit must be at least 1 byte, got " + maxLineBytes);
        }
        if (Files.isDirectory(file)) {
            throw new Calm4jException(file + ": is a directory, expected a data file (.jsonl, .json or plain text)");
        }
        if (!Files.isRegularFile(file)) {
            throw new Calm4jException(file + ": data file missing");
        }
        String name = file.getFileName().toString().toLowerCase(Locale.ROOT);
        List<Example> examples = name.endsWith(".jsonl") || name.endsWith(".json")
                ? JsonlReader.read(file, tokenizer, rules, maxLineBytes)
                : readPlainText(file, tokenizer, rules, maxLineBytes);
        if (examples.isEmpty()) {
            throw new Calm4jException(file + ": no examples (the file is empty or holds only blank lines)");
        }
        return new Dataset(List.copyOf(examples), file.toString());
    }

    /**
     * As {@link #read(Path, Tokenizer, DataRules)}; without a tokenizer, a message about text fields gets
     * {@code noTokenizerHint} appended in parentheses: where the caller takes its tokenizer from (e.g.
     * "./anchor has no tokenizer.json").
     *
     * @throws Calm4jException {@code file:line: ...} for the first problem found
     */
    public static Dataset read(Path file, Tokenizer tokenizer, DataRules rules, String noTokenizerHint) {
        return read(file, tokenizer, rules, noTokenizerHint, DEFAULT_MAX_LINE_BYTES);
    }

    /** As {@link #read(Path, Tokenizer, DataRules, String)}, with a line limit in bytes. */
    public static Dataset read(Path file, Tokenizer tokenizer, DataRules rules, String noTokenizerHint,
                               long maxLineBytes) {
        try {
            return read(file, tokenizer, rules, maxLineBytes);
        } catch (Calm4jException e) {
            if (tokenizer == null && noTokenizerHint != null && e.getMessage().contains("needs a tokenizer.json")) {
                throw new Calm4jException(e.getMessage() + " (" + noTokenizerHint + ")");
            }
            throw e;
        }
    }

    /**
     * In {@code separate_prompt} mode every augment reads the examples' augment ids: checks that they lie in each
     * augment's vocabulary (a no-op for data without augment ids). A null entry is an augment that reads the prompt
     * text through its own tokenizer, not these ids: skipped.
     *
     * @throws Calm4jException {@code file:line: augment prompt token i is id X, outside augment a's vocabulary}
     */
    public void checkAugmentVocab(List<? extends ModelConfig> augments) {
        for (Example e : examples) {
            long[] ids = e.augmentIds();
            if (ids == null) {
                return;
            }
            for (int a = 0; a < augments.size(); a++) {
                if (augments.get(a) == null) {
                    continue;
                }
                int v = augments.get(a).vocabSize();
                for (int i = 0; i < ids.length; i++) {
                    if (ids[i] >= v) {
                        throw new Calm4jException(source + ":" + e.line() + ": augment prompt token " + i + " is id "
                                + ids[i] + ", outside augment " + a + "'s vocabulary [0, " + v + ")");
                    }
                }
            }
        }
    }

    private static List<Example> readPlainText(Path file, Tokenizer tokenizer, DataRules rules, long maxLineBytes) {
        if (tokenizer == null) {
            throw new Calm4jException(file + ": plain-text data needs a tokenizer.json (none was given); or give a "
                    + ".jsonl file with pre-tokenized \"ids\"");
        }
        String text;
        try {
            long max = maxLineBytes > Long.MAX_VALUE / PLAIN_TEXT_LINES_OF_BYTES ? Long.MAX_VALUE
                    : maxLineBytes * PLAIN_TEXT_LINES_OF_BYTES;
            long size = Files.size(file);
            if (size > max) {
                throw new Calm4jException(file + ": plain text of " + size + " bytes is tokenized whole, at most " + max
                        + " bytes (" + PLAIN_TEXT_LINES_OF_BYTES + " x --max-line-bytes); split it, or give .jsonl lines");
            }
            byte[] raw = Files.readAllBytes(file);
            int line = 1;
            int from = 0;
            for (int i = 0; i <= raw.length; i++) {
                if (i == raw.length || raw[i] == '\n') {
                    if (i - from > maxLineBytes) {
                        throw new Calm4jException(file + ":" + line + ": " + tooLong(maxLineBytes));
                    }
                    line++;
                    from = i + 1;
                }
            }
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(java.nio.charset.CodingErrorAction.REPORT)
                    .onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPORT)
                    .decode(java.nio.ByteBuffer.wrap(raw)).toString();
        } catch (CharacterCodingException e) {
            throw new Calm4jException(file + ": not valid UTF-8 text");
        } catch (IOException e) {
            throw new Calm4jException(file + ": cannot read (" + e.getMessage() + ")");
        }
        long[] tokens = tokenizer.encode(text, false);
        List<Example> chunks;
        try {
            chunks = Sequences.chunks(tokens, rules);
        } catch (DataError e) {
            throw new Calm4jException(file + ": " + e.getMessage());
        }
        if (chunks.isEmpty()) {
            throw new Calm4jException(file + ": no examples: the text yields " + tokens.length + " token(s) (with "
                    + "BOS/EOS fewer than 2); an example needs at least 2 (one to read, one to predict)");
        }
        return chunks;
    }

    /** Data made in code. All examples must agree on having augment ids (a batch cannot mix them). */
    public static Dataset of(List<Example> examples, String sourceName) {
        List<Example> copy = List.copyOf(examples);
        if (copy.isEmpty()) {
            throw new Calm4jException(sourceName + ": no examples");
        }
        boolean augment = copy.get(0).hasAugment();
        for (Example e : copy) {
            if (e.hasAugment() != augment) {
                throw new IllegalArgumentException(sourceName + ": some examples have augment ids and some do not");
            }
        }
        return new Dataset(copy, sourceName);
    }

    /**
     * Writes rows as JSON Lines, atomically (a temp file in the same directory, then a rename), so a crash or a
     * concurrent reader never sees half a data file. Values may be anything Jackson serialises (strings, numbers,
     * {@code long[]}, lists, maps).
     */
    public static void writeJsonl(Path file, List<Map<String, Object>> rows) {
        Path dir = file.toAbsolutePath().getParent();
        Path tmp = dir.resolve("." + file.getFileName() + "." + ProcessHandle.current().pid() + "."
                + System.nanoTime() + ".tmp");
        try {
            Files.createDirectories(dir);
            // Streamed rather than built as one string: generated data sets can be large.
            try (BufferedWriter out = Files.newBufferedWriter(tmp, StandardCharsets.UTF_8,
                    StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                for (int i = 0; i < rows.size(); i++) {
                    out.write(json(rows.get(i), i));
                    out.write('\n');
                }
            }
            AtomicFiles.move(tmp, file);
        } catch (IOException e) {
            deleteQuietly(tmp);
            throw new Calm4jException(file + ": cannot write (" + e.getMessage() + ")");
        } catch (RuntimeException e) {
            deleteQuietly(tmp);
            throw e;
        }
    }

    private static String json(Map<String, Object> row, int index) {
        try {
            return JSON.writeValueAsString(row);
        } catch (JsonProcessingException e) {
            // A value Jackson cannot serialise is a bug in the generating code, not bad user data.
            throw new IllegalArgumentException("row " + index + " cannot be written as JSON: "
                    + e.getOriginalMessage());
        }
    }

    private static void deleteQuietly(Path tmp) {
        try {
            Files.deleteIfExists(tmp);
        } catch (IOException ignored) {
            // The original failure is the one worth reporting.
        }
    }

    public int size() {
        return examples.size();
    }

    public Example get(int i) {
        return examples.get(i);
    }

    /** Unmodifiable. */
    public List<Example> examples() {
        return examples;
    }

    /** Total number of target tokens: what one epoch scores. */
    public long targetTokens() {
        return targetTokens;
    }

    /** The file the examples were read from, or the name given to {@link #of}. */
    public String source() {
        return source;
    }

    @Override
    public String toString() {
        return "Dataset[" + source + ", " + examples.size() + " examples, " + targetTokens + " target tokens]";
    }
}
