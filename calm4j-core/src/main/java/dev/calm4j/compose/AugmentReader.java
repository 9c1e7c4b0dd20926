package dev.calm4j.compose;

import dev.calm4j.Calm4jException;
import dev.calm4j.data.Batch;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.nn.Tensors;
import dev.calm4j.tokenize.Tokenizer;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * An augment that reads the text through its own tokenizer ({@link TextAlignment}): its tokens of each example's
 * text, and the {@link CalmModel.AugmentPrompt} that aligns them with the anchor's tokens of a batch. The augment
 * tokenizes the whole text once, as its tokenizer reads a text (with the special tokens its post-processor adds, such
 * as BOS, which end at 0), exactly as {@link dev.calm4j.generate.AlignedCalmSession} reads it while generating.
 */
public final class AugmentReader {
    /** Texts whose tokens are kept, so that an epoch over D_C tokenizes each once; beyond it the memo starts over. */
    private static final int MEMO = 1 << 16;

    private final Tokenizer tokenizer;
    private final int maxLength;
    private final String name;
    private final Map<String, Tokenizer.Tokens> memo = new HashMap<>();

    /**
     * @param augment the augment's config: its context
     * @param name how to name the augment in a message (its folder, say)
     */
    public AugmentReader(Tokenizer tokenizer, ModelConfig augment, String name) {
        this.tokenizer = tokenizer;
        this.maxLength = augment.maxPositionEmbeddings();
        this.name = name;
    }

    /** The augment's tokenizer. */
    public Tokenizer tokenizer() {
        return tokenizer;
    }

    /** The augment's tokens of {@code text}, with its tokenizer's special tokens. */
    public synchronized Tokenizer.Tokens tokens(String text) {
        Tokenizer.Tokens t = memo.get(text);
        if (t != null) {
            return t;
        }
        Tokenizer.Tokens raw = tokenizer.encodeWithEnds(text, true);
        long[] ids = raw.ids();
        if (ids.length == 0) {
            throw new Calm4jException(name + ": reads nothing of the text '" + snippet(text) + "' (no tokens, no BOS)");
        }
        if (ids.length > maxLength) {
            throw new Calm4jException(name + ": the text '" + snippet(text) + "' is " + ids.length + " of its tokens, "
                    + "longer than its context of " + maxLength + "; it is never truncated: shorten the data");
        }
        t = raw;
        if (memo.size() >= MEMO) {
            memo.clear();
        }
        memo.put(text, t);
        return t;
    }

    /**
     * What each augment reads for the batch {@code b} ({@link CalmModel#forward}'s {@code prompts}): in
     * SEPARATE_PROMPT mode the examples' augment prompts, every augment the same; in SAME_SEQUENCE mode, for an
     * augment with a reader, its tokens of each row's text with the cross mask by token ends, and null for one that
     * reads the anchor's ids. Null when no augment needs anything.
     *
     * @param readers per augment, its reader or null
     * @throws Calm4jException when an augment needs text and the data is token ids
     */
    public static List<CalmModel.AugmentPrompt> prompts(CalmModel calm, Batch b, List<AugmentReader> readers) {
        int n = calm.augments().size();
        if (calm.mode() == Mode.SEPARATE_PROMPT) {
            if (b.augmentIds() == null) {
                throw new Calm4jException("separate_prompt composition needs augment prompts in the data");
            }
            CalmModel.AugmentPrompt p = new CalmModel.AugmentPrompt(Tensors.longs(b.augmentIds(), b.rows(), b.augmentLength()),
                    Tensors.bools(b.augmentReal(), b.rows(), b.augmentLength()));
            List<CalmModel.AugmentPrompt> out = new ArrayList<>();
            for (int a = 0; a < n; a++) {
                AugmentReader reader = readers == null ? null : readers.get(a);
                if (reader == null) {
                    out.add(p);                                        // the example's augment prompt, the anchor's ids
                } else {
                    if (b.augmentTexts() == null) {
                        throw new Calm4jException("augment " + a + " reads its prompt through its own tokenizer: the "
                                + "data must be text (\"augment_prompt\" or \"prompt\"), not token ids");
                    }
                    out.add(reader.separate(b.augmentTexts()));        // the same text through its own tokenizer
                }
            }
            return out;
        }
        if (readers == null || readers.stream().allMatch(r -> r == null)) {
            return null;
        }
        if (b.texts() == null) {
            throw new Calm4jException("an augment reads the text through its own tokenizer: the data must be text "
                    + "(\"prompt\"/\"completion\" or \"text\" fields), not token ids");
        }
        int[][] anchorEnds = new int[b.rows()][];
        for (int r = 0; r < b.rows(); r++) {
            int[] all = b.ends()[r];
            anchorEnds[r] = Arrays.copyOf(all, all.length - 1);         // the inputs: every token but the last
        }
        List<CalmModel.AugmentPrompt> out = new ArrayList<>();
        for (int a = 0; a < n; a++) {
            AugmentReader reader = readers.get(a);
            out.add(reader == null ? null : reader.prompt(b.texts(), anchorEnds, b.length()));
        }
        return out;
    }

    /** This augment's tokens of every row's prompt text, right-padded: every anchor position sees them all. */
    public CalmModel.AugmentPrompt separate(String[] texts) {
        int rows = texts.length;
        long[][] t = new long[rows][];
        int s = 0;
        for (int r = 0; r < rows; r++) {
            t[r] = tokens(texts[r]).ids();
            s = Math.max(s, t[r].length);
        }
        long[] ids = new long[rows * s];
        boolean[] real = new boolean[rows * s];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(t[r], 0, ids, r * s, t[r].length);
            Arrays.fill(real, r * s, r * s + t[r].length, true);
        }
        return new CalmModel.AugmentPrompt(Tensors.longs(ids, rows, s), Tensors.bools(real, rows, s));
    }

    /** This augment's tokens of every row's text, right-padded, with the cross mask to the anchor's tokens. */
    CalmModel.AugmentPrompt prompt(String[] texts, int[][] anchorEnds, int anchorLength) {
        int rows = texts.length;
        Tokenizer.Tokens[] t = new Tokenizer.Tokens[rows];
        int s = 0;
        for (int r = 0; r < rows; r++) {
            t[r] = tokens(texts[r]);
            s = Math.max(s, t[r].ids().length);
        }
        long[] ids = new long[rows * s];
        boolean[] real = new boolean[rows * s];
        int[][] ends = new int[rows][];
        for (int r = 0; r < rows; r++) {
            long[] x = t[r].ids();
            System.arraycopy(x, 0, ids, r * s, x.length);
            Arrays.fill(real, r * s, r * s + x.length, true);
            ends[r] = t[r].ends();
        }
        return new CalmModel.AugmentPrompt(Tensors.longs(ids, rows, s), Tensors.bools(real, rows, s),
                TextAlignment.crossMask(anchorEnds, anchorLength, ends, s));
    }

    private static String snippet(String text) {
        return text.length() <= 40 ? text : text.substring(0, 37) + "...";
    }
}
