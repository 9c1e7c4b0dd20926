package dev.calm4j.generate;

import org.bytedeco.pytorch.Tensor;

/**
 * What the generator drives: something that takes new token ids for every row and returns the logits of the last
 * new position. A session keeps whatever state it needs between calls (KV caches for a model; for a composed model
 * both models' caches and every bridge's), so the generator is the same for one model and for a composition.
 */
public interface Session extends AutoCloseable {

    /**
     * Appends {@code ids [B, t]} to every row.
     *
     * @param keyPadding boolean {@code [B, past+t]} (true = real token) or null when no row is padded
     * @return logits {@code [B, V]} at the last new position
     */
    Tensor advance(Tensor ids, Tensor keyPadding);

    /**
     * Whether row {@code row} can take {@code id} as its next token. A row that cannot is finished there: the
     * generator keeps {@code id} in its output (the logits it came from were computed) and never feeds it. Every
     * position of a plain session is checked before the first call; a session whose parts read the text through other
     * tokenizers (more or fewer tokens than the anchor's) knows only once the text grows.
     */
    default boolean fits(int row, long id) {
        return true;
    }

    /** Positions held so far. */
    int length();

    @Override
    void close();
}
