package dev.calm4j.data;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * Examples laid out as right-padded, row-major arrays, ready to become tensors of shape {@code [rows, length]}.
 *
 * <p>Row r holds example r shifted for next-token prediction: {@code inputs} are its ids without the last,
 * {@code labels} its ids without the first where that token is a target, else {@link #IGNORE_INDEX}. Padding comes
 * after the real tokens, so under a causal mask no real position ever attends to it; {@code real} marks the real
 * input positions for key masks and pooling.
 *
 * <p>The arrays are this batch's own (built fresh by {@link #of}) and are not copied by the accessors: treat them
 * as read-only.
 *
 * @param length       T, the longest example's length minus one
 * @param inputs       {@code [rows*T]} ids[0..n-2], then padId
 * @param labels       {@code [rows*T]} ids[1..n-1] where a target, else -100; -100 on padding
 * @param real         {@code [rows*T]} true where the input position holds a real token
 * @param targetCount  number of labels that are not -100
 * @param augmentLength longest augment prompt; 0 when the examples have none
 * @param augmentIds   {@code [rows*augmentLength]} right-padded with padId, or null
 * @param augmentReal  {@code [rows*augmentLength]} true where augmentIds holds a real token, or null
 * @param texts        per row, the example's text ({@link Example.Text}), for an augment with its own tokenizer; null
 *                     when the examples have none
 * @param ends         per row, where each of the example's tokens ends in its text (all n of them; the inputs are the
 *                     first n-1); null with {@code texts}
 * @param augmentTexts per row, the text of its augment prompt ({@link Example#augmentText}), or null
 */
public record Batch(int rows, int length, long[] inputs, long[] labels, boolean[] real, int targetCount,
                    int augmentLength, long[] augmentIds, boolean[] augmentReal, String[] texts, int[][] ends,
                    String[] augmentTexts) {

    public Batch(int rows, int length, long[] inputs, long[] labels, boolean[] real, int targetCount,
                 int augmentLength, long[] augmentIds, boolean[] augmentReal) {
        this(rows, length, inputs, labels, real, targetCount, augmentLength, augmentIds, augmentReal, null, null, null);
    }

    /** The label of an unscored position: PyTorch's default {@code ignore_index} of cross-entropy. */
    public static final long IGNORE_INDEX = -100;

    public Batch {
        Objects.requireNonNull(inputs, "inputs");
        Objects.requireNonNull(labels, "labels");
        Objects.requireNonNull(real, "real");
        long cells = (long) rows * length;
        if (rows < 1 || length < 1 || inputs.length != cells || labels.length != cells || real.length != cells) {
            throw new IllegalArgumentException("batch arrays do not match rows " + rows + " x length " + length);
        }
        boolean augment = augmentIds != null;
        if (augment != (augmentReal != null) || augment != (augmentLength > 0)) {
            throw new IllegalArgumentException("augmentIds, augmentReal and augmentLength must be given together");
        }
        if (augment && (augmentIds.length != (long) rows * augmentLength
                || augmentReal.length != (long) rows * augmentLength)) {
            throw new IllegalArgumentException("augment arrays do not match rows " + rows + " x augmentLength "
                    + augmentLength);
        }
        if ((texts == null) != (ends == null) || (texts != null && (texts.length != rows || ends.length != rows))) {
            throw new IllegalArgumentException("texts and ends must be given together, one per row");
        }
    }

    /** The target tokens {@link #of} would count for {@code examples} (a label for every target after the first id). */
    public static int targetCount(List<Example> examples) {
        int n = 0;
        for (Example e : examples) {
            boolean[] target = e.target();
            for (int i = 1; i < target.length; i++) {
                n += target[i] ? 1 : 0;
            }
        }
        return n;
    }

    /** Lays out {@code examples} (all with augment ids or all without) padded with {@code padId}. */
    public static Batch of(List<Example> examples, long padId) {
        if (examples.isEmpty()) {
            throw new IllegalArgumentException("a batch needs at least one example");
        }
        int rows = examples.size();
        boolean augment = examples.get(0).hasAugment();
        int maxLength = 0;
        int maxAugment = 0;
        for (Example e : examples) {
            if (e.hasAugment() != augment) {
                throw new IllegalArgumentException("a batch cannot mix examples with and without augment ids");
            }
            maxLength = Math.max(maxLength, e.length());
            if (augment) {
                maxAugment = Math.max(maxAugment, e.augmentIds().length);
            }
        }
        int t = maxLength - 1;
        int cells = Math.multiplyExact(rows, t);
        long[] inputs = new long[cells];
        long[] labels = new long[cells];
        boolean[] real = new boolean[cells];
        Arrays.fill(inputs, padId);
        Arrays.fill(labels, IGNORE_INDEX);
        int augmentCells = Math.multiplyExact(rows, maxAugment);
        long[] augmentIds = augment ? new long[augmentCells] : null;
        boolean[] augmentReal = augment ? new boolean[augmentCells] : null;
        if (augment) {
            Arrays.fill(augmentIds, padId);
        }
        int targets = 0;
        boolean withText = examples.stream().allMatch(e -> e.text() != null);
        boolean withAugmentText = examples.stream().allMatch(e -> e.augmentText() != null);
        String[] augmentTexts = withAugmentText ? new String[rows] : null;
        String[] texts = withText ? new String[rows] : null;
        int[][] ends = withText ? new int[rows][] : null;
        for (int r = 0; r < rows; r++) {
            Example e = examples.get(r);
            if (withText) {
                texts[r] = e.text().value();
                ends[r] = e.text().ends();
            }
            if (withAugmentText) {
                augmentTexts[r] = e.augmentText();
            }
            long[] ids = e.ids();
            boolean[] target = e.target();
            int base = r * t;
            for (int i = 0; i + 1 < ids.length; i++) {
                inputs[base + i] = ids[i];
                real[base + i] = true;
                if (target[i + 1]) {
                    labels[base + i] = ids[i + 1];
                    targets++;
                }
            }
            if (augment) {
                long[] a = e.augmentIds();
                System.arraycopy(a, 0, augmentIds, r * maxAugment, a.length);
                Arrays.fill(augmentReal, r * maxAugment, r * maxAugment + a.length, true);
            }
        }
        return new Batch(rows, t, inputs, labels, real, targets, maxAugment, augmentIds, augmentReal, texts, ends,
                augmentTexts);
    }

    // Records compare arrays by reference; batches are compared by content (e.g. resumed vs uninterrupted runs).
    @Override
    public boolean equals(Object o) {
        return o instanceof Batch b && rows == b.rows && length == b.length && targetCount == b.targetCount
                && augmentLength == b.augmentLength && Arrays.equals(inputs, b.inputs)
                && Arrays.equals(labels, b.labels) && Arrays.equals(real, b.real)
                && Arrays.equals(augmentIds, b.augmentIds) && Arrays.equals(augmentReal, b.augmentReal);
    }

    @Override
    public int hashCode() {
        return Objects.hash(rows, length, Arrays.hashCode(inputs), Arrays.hashCode(labels), augmentLength,
                Arrays.hashCode(augmentIds));
    }

    @Override
    public String toString() {
        return "Batch[" + rows + " x " + length + ", " + targetCount + " targets"
                + (augmentIds == null ? "" : ", augment " + rows + " x " + augmentLength) + "]";
    }
}
