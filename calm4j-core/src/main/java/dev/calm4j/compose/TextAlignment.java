package dev.calm4j.compose;

import dev.calm4j.nn.Tensors;
import org.bytedeco.pytorch.Tensor;

/**
 * Composition of models that read the same text through different tokenizers: which augment tokens each anchor
 * token may see. Anchor token t may attend augment token s iff s's span ends at or before the end of t's span (both
 * as {@link dev.calm4j.tokenize.Tokenizer#encodeWithEnds} counts them), so that nothing an anchor position sees comes
 * from text after it. With identical tokenizers this is exactly the causal mask of {@code same_sequence}.
 */
public final class TextAlignment {
    private TextAlignment() {}

    /**
     * Per augment, whether it reads the text through its own tokenizer: its folder's {@code tokenizer.json} differs
     * from the anchor's (both present). With one tokenizer, or without tokenizers (token ids in and out), an augment
     * reads the anchor's ids.
     */
    public static boolean[] ownTokens(java.nio.file.Path anchorDir, java.util.List<java.nio.file.Path> augmentDirs) {
        boolean[] own = new boolean[augmentDirs.size()];
        if (!dev.calm4j.tokenize.Tokenizer.exists(anchorDir)) {
            return own;
        }
        String anchor = dev.calm4j.tokenize.Tokenizer.fingerprint(anchorDir);
        for (int a = 0; a < own.length; a++) {
            java.nio.file.Path d = augmentDirs.get(a);
            own[a] = dev.calm4j.tokenize.Tokenizer.exists(d) && !dev.calm4j.tokenize.Tokenizer.fingerprint(d).equals(anchor);
        }
        return own;
    }

    /**
     * The cross mask for a batch of rows, each right-padded.
     *
     * @param anchorEnds per row, its anchor tokens' ends (rows may be shorter than {@code anchorLength}: padding)
     * @param augmentEnds per row, its augment tokens' ends (shorter rows are padded to {@code augmentLength})
     * @return a mask {@code [B, 1, T, S]} and which anchor positions see any augment token ({@code [B, 1, T, 1]});
     *     a position that sees none is given augment position 0 so that the softmax stays finite, and its result is
     *     zeroed by {@link Bridge#apply}; anchor padding sees every real augment token (its output is never read)
     */
    public static Bridge.CrossMask crossMask(int[][] anchorEnds, int anchorLength, int[][] augmentEnds, int augmentLength) {
        int b = anchorEnds.length;
        if (augmentEnds.length != b) {
            throw new IllegalArgumentException(b + " anchor rows, " + augmentEnds.length + " augment rows");
        }
        boolean[] allowed = new boolean[b * anchorLength * augmentLength];
        boolean[] visible = new boolean[b * anchorLength];
        for (int r = 0; r < b; r++) {
            int[] ta = anchorEnds[r];
            int[] sa = augmentEnds[r];
            if (ta.length > anchorLength || sa.length > augmentLength) {
                throw new IllegalArgumentException("row " + r + ": " + ta.length + " / " + sa.length
                        + " tokens, longer than the batch's " + anchorLength + " / " + augmentLength);
            }
            for (int t = 0; t < anchorLength; t++) {
                int base = (r * anchorLength + t) * augmentLength;
                boolean any = false;
                for (int s = 0; s < sa.length; s++) {
                    boolean ok = t >= ta.length || sa[s] <= ta[t];       // padding queries: anything real
                    allowed[base + s] = ok;
                    any |= ok;
                }
                visible[r * anchorLength + t] = any;
                if (!any) {
                    allowed[base] = true;                                // one key for a finite softmax; zeroed after
                }
            }
        }
        Tensor mask = Tensors.bools(allowed, b, 1, anchorLength, augmentLength);
        Tensor vis = Tensors.bools(visible, b, 1, anchorLength, 1);
        return new Bridge.CrossMask(mask, false, vis);
    }
}
