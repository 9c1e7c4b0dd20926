package dev.calm4j.compose;

/**
 * One bridge's wiring: the output of augment model {@code augment}'s block {@code augmentLayer} is read by the
 * anchor right after its block {@code anchorLayer}. All indices are 0-based; "layer i" is always the output of
 * block i (never HF's {@code hidden_states[i]}, which is off by one).
 */
public record Connection(int augment, int augmentLayer, int anchorLayer) {
    public Connection {
        if (augment < 0 || augmentLayer < 0 || anchorLayer < 0) {
            throw new IllegalArgumentException("connection indices must be >= 0");
        }
    }

    @Override
    public String toString() {
        return (augment == 0 ? "" : augment + ":") + augmentLayer + "->" + anchorLayer;   // the form parse() reads
    }
}
