package dev.calm4j.train;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.compose.AugmentReader;
import dev.calm4j.compose.BridgeCheckpoint;
import dev.calm4j.compose.CalmConfig;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.data.Batch;
import dev.calm4j.io.ModelFingerprint;
import org.bytedeco.pytorch.Tensor;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Trains the bridges of a composition; the base models stay frozen (their weights never require grad). */
public final class BridgeObjective implements Objective {
    private final CalmModel calm;
    private final Path anchorDir;
    private final List<Path> augmentDirs;
    private final String anchorFingerprint;
    private final List<String> augmentFingerprints = new ArrayList<>();

    private final FrozenStateCache states;      // null: every step runs the frozen parts of the models
    private final List<AugmentReader> readers;  // per augment, its own tokenizer's reader, or null (the anchor's ids)

    /** With the frozen models' bridge-independent states cached per training row ({@link FrozenStateCache}). */
    public BridgeObjective(CalmModel calm, Path anchorDir, List<Path> augmentDirs) {
        this(calm, anchorDir, augmentDirs, new FrozenStateCache(FrozenStateCache.DEFAULT_BUDGET_FLOATS));
    }

    /**
     * @param states where the frozen models' bridge-independent states are cached (may be shared with other
     *     compositions over the same base models), or null to run the whole models every step
     */
    public BridgeObjective(CalmModel calm, Path anchorDir, List<Path> augmentDirs, FrozenStateCache states) {
        this(calm, anchorDir, augmentDirs, states, null);
    }

    /**
     * @param readers per augment that reads the text through its own tokenizer ({@link CalmModel#ownTokens}), its
     *     reader; null entries (or a null list) for augments that read the anchor's ids. Such compositions run the
     *     frozen models every step: their states are not cached per row.
     */
    public BridgeObjective(CalmModel calm, Path anchorDir, List<Path> augmentDirs, FrozenStateCache states,
                           List<AugmentReader> readers) {
        this.readers = readers == null ? null : java.util.Collections.unmodifiableList(new ArrayList<>(readers));
        boolean own = false;
        for (int a = 0; a < calm.augments().size(); a++) {
            boolean has = readers != null && readers.get(a) != null;
            if (has != calm.ownTokens(a)) {
                throw new IllegalArgumentException("augment " + a + ": a reader " + (has ? "given" : "missing")
                        + " for an augment that " + (calm.ownTokens(a) ? "reads its own tokens" : "reads the anchor's ids"));
            }
            own |= has;
        }
        states = own ? null : states;
        this.states = states;
        this.calm = calm;
        this.anchorDir = anchorDir;
        this.augmentDirs = List.copyOf(augmentDirs);
        this.anchorFingerprint = ModelFingerprint.of(anchorDir);
        for (Path p : augmentDirs) {
            augmentFingerprints.add(ModelFingerprint.of(p));
        }
    }

    @Override
    public Map<String, Tensor> parameters() {
        return calm.bridgeTensors();
    }

    @Override
    public Tensor lossSum(Batch b) {
        List<CalmModel.AugmentPrompt> prompts = AugmentReader.prompts(calm, b, readers);
        Tensor ids = Losses.inputs(b);
        CalmModel.Given given = states != null ? states.states(calm, b) : null;
        return Losses.sum(calm.hidden(ids, null, prompts, null, given), calm::logits, b);   // head where labelled
    }

    /** The frozen-state cache, or null when off. */
    public FrozenStateCache stateCache() {
        return states;
    }

    /** The calm_config.json describing these bridges, as if saved to {@code dir}. */
    public CalmConfig config(Path dir, ObjectNode provenance) {
        List<CalmConfig.ModelRef> augs = new ArrayList<>();
        for (int a = 0; a < augmentDirs.size(); a++) {
            CalmConfig.ModelRef r = BridgeCheckpoint.describe(augmentDirs.get(a), dir, calm.augments().get(a),
                    augmentFingerprints.get(a));
            augs.add(new CalmConfig.ModelRef(r.path(), r.modelType(), r.fingerprint(), r.config(), r.tokenizerFingerprint(),
                    calm.ownTokens(a)));
        }
        return new CalmConfig(calm.mode(), calm.heads(), calm.recency(), BridgeCheckpoint.describe(anchorDir, dir, calm.anchor(),
                anchorFingerprint), augs, calm.plan().connections(), provenance);
    }

    @Override
    public void save(Path dir, ObjectNode provenance) {
        BridgeCheckpoint.save(dir, calm, config(dir, provenance));
    }

    @Override
    public String describe() {
        return String.format("CALM bridges %s (%s, %d heads, %,d parameters)", calm.plan(), calm.mode().jsonName(),
                calm.heads(), calm.bridgeParameterCount());
    }
}
