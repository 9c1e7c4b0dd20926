package dev.calm4j.compose;

import dev.calm4j.Calm4jException;

import java.util.Locale;

/** What an augmenting model reads. */
public enum Mode {
    /**
     * The paper's setting: both models read the same growing token sequence; a causal cross-mask lets anchor position
     * t see augment positions {@code <= t} only (without it, training reads the label: a bug of the official code).
     */
    SAME_SEQUENCE,
    /**
     * The augment reads its own text once (e.g. the prompt), as an encoder; the anchor sees all of it (padding
     * excluded). The paper's weaker "m_A as encoder" ablation, and the way to feed an augment a different input.
     */
    SEPARATE_PROMPT;

    public String jsonName() {
        return name().toLowerCase(Locale.ROOT);
    }

    public static Mode parse(String s, String where) {
        for (Mode m : values()) {
            if (m.jsonName().equals(s) || m.name().equals(s) || m.jsonName().replace('_', '-').equals(s)) {
                return m;
            }
        }
        throw new Calm4jException(where + ": mode '" + s + "' is not one of same_sequence, separate_prompt");
    }
}
