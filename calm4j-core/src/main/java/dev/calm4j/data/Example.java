package dev.calm4j.data;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * One training or evaluation sequence for a causal LM.
 *
 * <p>{@code target[i]} says whether token {@code ids[i]} is predicted and scored (counts in the loss and in exact
 * match). {@code target[0]} is always false: the first token has nothing before it to be predicted from. Every
 * example has at least one target, so {@link #promptLength()} and {@link #completion()} are always defined.
 *
 * <p>{@code augmentIds} is what an augmenting model reads in "separate prompt" mode ({@link DataRules#separatePrompt()});
 * null otherwise. {@code augmentText} is the text those ids were read from (the record's augment prompt, else its
 * prompt), for an augment that reads it through a tokenizer of its own; null for token-id data or outside that mode. {@code line} is the 1-based source line, for messages (for plain-text files, the 1-based chunk
 * number; 0 for data made in code without a source line).
 *
 * <p>Immutable: arrays are copied in and out, so an example can be shared between batches and threads.
 */
public record Example(long[] ids, boolean[] target, long[] augmentIds, int line, Text text, String augmentText) {

    /**
     * The text the sequence was read from, and where each of its tokens ends in it (in characters as the tokenizers
     * library counts them; BOS ends at 0, EOS where the text ends): what a model with another tokenizer reads, aligned
     * on those ends (docs/design.md §3). Null for pre-tokenized data.
     */
    public record Text(String value, int[] ends) {
        public Text {
            Objects.requireNonNull(value, "value");
            for (int i = 1; i < ends.length; i++) {
                if (ends[i] < ends[i - 1]) {
                    throw new IllegalArgumentException("token ends must not decrease: " + Arrays.toString(ends));
                }
            }
            ends = ends.clone();
        }

        @Override
        public int[] ends() {
            return ends.clone();
        }

        /**
         * The text of consecutive fields and their tokens' ends, shifted into the joined text, after {@code before}
         * tokens with no span (BOS: end 0) and followed by {@code after} (EOS: the text's end).
         */
        static Text of(List<Part> parts, int before, int after) {
            StringBuilder text = new StringBuilder();
            int n = before + after;
            for (Part p : parts) {
                n += p.ends().length;
            }
            int[] ends = new int[n];
            int k = before;
            int offset = 0;
            for (Part p : parts) {
                for (int e : p.ends()) {
                    ends[k++] = offset + e;
                }
                text.append(p.text());
                offset += p.text().codePointCount(0, p.text().length());
            }
            for (int i = 0; i < after; i++) {
                ends[k++] = offset;
            }
            return new Text(text.toString(), ends);
        }
    }

    public Example(long[] ids, boolean[] target, long[] augmentIds, int line) {
        this(ids, target, augmentIds, line, null, null);
    }

    public Example(long[] ids, boolean[] target, long[] augmentIds, int line, Text text) {
        this(ids, target, augmentIds, line, text, null);
    }

    public Example {
        Objects.requireNonNull(ids, "ids");
        Objects.requireNonNull(target, "target");
        if (ids.length != target.length) {
            throw new IllegalArgumentException("ids has " + ids.length + " tokens but target has " + target.length);
        }
        if (ids.length < 2) {
            throw new IllegalArgumentException("an example needs at least 2 tokens (one to read, one to predict), got "
                    + ids.length);
        }
        if (target[0]) {
            throw new IllegalArgumentException("target[0] must be false: the first token cannot be predicted");
        }
        if (firstTarget(target) < 0) {
            throw new IllegalArgumentException("an example needs at least one target token");
        }
        requireNonNegative(ids, "ids");
        if (augmentIds != null) {
            if (augmentIds.length == 0) {
                throw new IllegalArgumentException("augmentIds must be null or non-empty");
            }
            requireNonNegative(augmentIds, "augmentIds");
        }
        if (line < 0) {
            throw new IllegalArgumentException("line must be >= 0, got " + line);
        }
        if (text != null && text.ends.length != ids.length) {
            throw new IllegalArgumentException(ids.length + " ids but " + text.ends.length + " token ends");
        }
        ids = ids.clone();
        target = target.clone();
        augmentIds = augmentIds == null ? null : augmentIds.clone();
    }

    @Override
    public long[] ids() {
        return ids.clone();
    }

    @Override
    public boolean[] target() {
        return target.clone();
    }

    @Override
    public long[] augmentIds() {
        return augmentIds == null ? null : augmentIds.clone();
    }

    /** Number of tokens in {@link #ids()}. */
    public int length() {
        return ids.length;
    }

    /** Index of the first target token: the prompt is everything before it. */
    public int promptLength() {
        return firstTarget(target);
    }

    /** The ids before the first target (BOS included when the rules added one). */
    public long[] prompt() {
        return Arrays.copyOf(ids, promptLength());
    }

    /** The target tokens, in order (EOS included when the rules added one). */
    public long[] completion() {
        long[] out = new long[targetCount()];
        int k = 0;
        for (int i = 0; i < ids.length; i++) {
            if (target[i]) {
                out[k++] = ids[i];
            }
        }
        return out;
    }

    /** Number of target tokens. */
    public int targetCount() {
        int n = 0;
        for (boolean t : target) {
            if (t) {
                n++;
            }
        }
        return n;
    }

    public boolean hasAugment() {
        return augmentIds != null;
    }

    // Records compare arrays by reference; examples are values, so compare contents.
    @Override
    public boolean equals(Object o) {
        return o instanceof Example e && line == e.line && Arrays.equals(ids, e.ids)
                && Arrays.equals(target, e.target) && Arrays.equals(augmentIds, e.augmentIds);
    }

    @Override
    public int hashCode() {
        return Objects.hash(Arrays.hashCode(ids), Arrays.hashCode(target), Arrays.hashCode(augmentIds), line);
    }

    @Override
    public String toString() {
        return "Example[line " + line + ", ids=" + Arrays.toString(ids) + ", promptLength=" + promptLength()
                + (augmentIds == null ? "" : ", augmentIds=" + Arrays.toString(augmentIds)) + "]";
    }

    private static int firstTarget(boolean[] target) {
        for (int i = 0; i < target.length; i++) {
            if (target[i]) {
                return i;
            }
        }
        return -1;
    }

    private static void requireNonNegative(long[] ids, String name) {
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] < 0) {
                throw new IllegalArgumentException(name + "[" + i + "] is negative (" + ids[i] + ")");
            }
        }
    }
}
