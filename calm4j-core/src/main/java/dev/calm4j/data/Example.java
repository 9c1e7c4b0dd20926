package dev.calm4j.data;

import java.util.Arrays;
import java.util.Objects;

/**
 * One training or evaluation sequence for a causal LM.
 *
 * <p>{@code target[i]} says whether token {@code ids[i]} is predicted and scored (counts in the loss and in exact
 * match). {@code target[0]} is always false: the first token has nothing before it to be predicted from. Every
 * example has at least one target, so {@link #promptLength()} and {@link #completion()} are always defined.
 *
 * <p>{@code augmentIds} is what an augmenting model reads in "separate prompt" mode ({@link DataRules#separatePrompt()});
 * null otherwise. {@code line} is the 1-based source line, for messages (for plain-text files, the 1-based chunk
 * number; 0 for data made in code without a source line).
 *
 * <p>Immutable: arrays are copied in and out, so an example can be shared between batches and threads.
 */
public record Example(long[] ids, boolean[] target, long[] augmentIds, int line) {

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
