package dev.calm4j.compose;

import dev.calm4j.Calm4jException;

/**
 * A composition that cannot be built ({@link CompositionPlan#check}), with the part of it that is wrong, so that a
 * front end can name its own option for it (the CLI's {@code --connections}, {@code --heads}, {@code --mode}).
 */
public final class CompositionException extends Calm4jException {
    private static final long serialVersionUID = 1L;

    /** What is wrong: the augments given, the connections, the bridge heads, or the mode for these vocabularies. */
    public enum Part { AUGMENTS, CONNECTIONS, HEADS, MODE }

    private final Part part;

    public CompositionException(Part part, String message) {
        super(message);
        this.part = part;
    }

    public Part part() {
        return part;
    }
}
