package dev.calm4j.compose;

import dev.calm4j.Calm4jException;
import dev.calm4j.io.AtomicFiles;
import dev.calm4j.io.ModelFingerprint;
import dev.calm4j.io.Safetensors;
import dev.calm4j.nn.Finite;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.tokenize.Tokenizer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A bridge checkpoint: a directory with {@code bridges.safetensors} (only bridge tensors, {@code bridges.{k}.*}) and
 * {@code calm_config.json}. Loading checks each base model's weight fingerprint against the one recorded, so bridges
 * are never silently applied to a model they were not trained on.
 */
public final class BridgeCheckpoint {
    public static final String WEIGHTS = "bridges.safetensors";

    /**
     * The {@code __metadata__} key of {@code bridges.safetensors} that records the plan the tensors were trained
     * for: the heads, the mode and the connections do not all show in the tensors' shapes (a bridge's q/k/v/o are
     * D x D whatever the heads; every connection of one augment has the same shapes), so an edited
     * {@code calm_config.json} would otherwise silently run other attention over the same weights.
     */
    public static final String PLAN_KEY = "calm4j_plan";

    private BridgeCheckpoint() {}

    /** The plan as recorded beside the tensors: mode, heads, connections, own-tokenizer augments; one line. */
    static String plan(CalmConfig c) {
        StringBuilder sb = new StringBuilder("{\"mode\":\"").append(c.mode().jsonName()).append("\",\"heads\":")
                .append(c.heads()).append(",\"connections\":[");
        for (int i = 0; i < c.connections().size(); i++) {
            Connection x = c.connections().get(i);
            sb.append(i == 0 ? "" : ",").append('[').append(x.augment()).append(',').append(x.augmentLayer())
                    .append(',').append(x.anchorLayer()).append(']');
        }
        sb.append("],\"own_tokens\":[");
        for (int i = 0; i < c.augments().size(); i++) {
            sb.append(i == 0 ? "" : ",").append(c.augments().get(i).ownTokens());
        }
        sb.append(']');
        if (c.recency()) {
            sb.append(",\"recency_bias\":true");    // only when set: plans recorded before the option read as before
        }
        return sb.append('}').toString();
    }

    /**
     * Base models, bridges and the config they were loaded with; closing frees all of them.
     *
     * @param anchorDir the folder the anchor was loaded from
     * @param augmentDirs the folders the augments were loaded from, in the checkpoint's order
     */
    public record Loaded(CalmModel model, CalmConfig config, Path anchorDir, List<Path> augmentDirs)
            implements AutoCloseable {
        public Loaded {
            augmentDirs = List.copyOf(augmentDirs);
        }

        @Override
        public void close() {
            model.close();
            model.anchor().close();
            model.augments().forEach(CausalLm::close);
        }
    }

    /**
     * Describes a base model for {@code calm_config.json}: path relative to the checkpoint, type, the weights'
     * fingerprint, and its tokenizer's when the folder has one.
     */
    public static CalmConfig.ModelRef describe(Path modelDir, Path checkpointDir, CausalLm model, String fingerprint) {
        Path abs = modelDir.toAbsolutePath().normalize();
        Path base = checkpointDir.toAbsolutePath().normalize();
        String path;
        try {
            path = base.relativize(abs).toString();
        } catch (IllegalArgumentException e) {
            path = abs.toString();
        }
        return new CalmConfig.ModelRef(path.isEmpty() ? "." : path, model.config().modelType(), fingerprint,
                model.config().toJson(), Tokenizer.exists(modelDir) ? Tokenizer.fingerprint(modelDir) : null);
    }

    /** Writes both files atomically (each to a temp file, then renamed); the config goes last. */
    public static void save(Path dir, CalmModel model, CalmConfig config) {
        if (config.recency() != model.recency()) {
            throw new IllegalArgumentException("calm_config.json's recency_bias (" + config.recency()
                    + ") is not the bridges' (" + model.recency() + ")");
        }
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new Calm4jException(dir + ": cannot create directory (" + e.getMessage() + ")");
        }
        Map<String, Tensor> t = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : model.bridgeTensors().entrySet()) {
            t.put(e.getKey(), e.getValue().detach());
        }
        Safetensors.write(dir.resolve(WEIGHTS), t, Map.of("format", "pt", "calm4j", "bridges", PLAN_KEY, plan(config)));
        try {
            AtomicFiles.writeString(dir.resolve(CalmConfig.FILE), config.toJsonString());
        } catch (IOException e) {
            throw new Calm4jException(dir.resolve(CalmConfig.FILE) + ": cannot write (" + e.getMessage() + ")");
        }
    }

    /**
     * Loads the base models (from {@code anchorDir}/{@code augmentDirs} when given, else from the paths recorded in the
     * config, relative to the checkpoint) and the bridges.
     *
     * @param allowMismatch load even when a base model's fingerprint differs from the recorded one
     */
    public static Loaded load(Path dir, Path anchorDir, List<Path> augmentDirs, boolean allowMismatch, ScalarType dtype) {
        return load(dir, anchorDir, augmentDirs, allowMismatch, dtype, dtype);
    }

    /**
     * As above, the frozen models' weights in {@code weightDtype} and their activations in {@code computeDtype}
     * (bf16-mixed when they differ).
     */
    public static Loaded load(Path dir, Path anchorDir, List<Path> augmentDirs, boolean allowMismatch,
                              ScalarType weightDtype, ScalarType computeDtype) {
        CalmConfig cfg = CalmConfig.read(dir);
        Path weights = dir.resolve(WEIGHTS);
        if (Files.isRegularFile(weights)) {
            try (Safetensors st = Safetensors.open(weights)) {
                checkPlan(st, cfg, dir);          // before any base model is loaded
            }
        }
        Path anchorPath = anchorDir != null ? anchorDir : dir.resolve(cfg.anchor().path()).normalize();
        List<Path> augPaths = new ArrayList<>();
        if (augmentDirs != null && !augmentDirs.isEmpty()) {
            if (augmentDirs.size() != cfg.augments().size()) {
                throw new Calm4jException(dir.resolve(CalmConfig.FILE) + ": the bridges were trained with "
                        + cfg.augments().size() + " augmenting model(s), " + augmentDirs.size() + " given");
            }
            augPaths.addAll(augmentDirs);
        } else {
            for (CalmConfig.ModelRef r : cfg.augments()) {
                augPaths.add(dir.resolve(r.path()).normalize());
            }
        }
        checkFingerprint(dir, "anchor", cfg.anchor(), anchorPath, allowMismatch);
        for (int a = 0; a < augPaths.size(); a++) {
            checkFingerprint(dir, "augment " + a, cfg.augments().get(a), augPaths.get(a), allowMismatch);
        }
        CausalLm anchor = LmFamilies.load(anchorPath, weightDtype, computeDtype);
        List<CausalLm> augments = new ArrayList<>();
        try {
            for (Path p : augPaths) {
                augments.add(LmFamilies.load(p, weightDtype, computeDtype));
            }
            CompositionPlan plan = new CompositionPlan(cfg.connections());
            if (!plan.connections().equals(cfg.connections())) {
                throw new Calm4jException(dir.resolve(CalmConfig.FILE) + ": field 'connections' must be listed in "
                        + "application order (by anchor layer, then augment, then augment layer)");
            }
            boolean[] own = new boolean[augments.size()];
            for (int a = 0; a < own.length; a++) {
                own[a] = cfg.augments().get(a).ownTokens();
                if (own[a] && !Tokenizer.exists(augPaths.get(a))) {
                    throw new Calm4jException(dir.resolve(CalmConfig.FILE) + ": augment " + a + " reads the text through "
                            + "its own tokenizer, but " + augPaths.get(a).resolve("tokenizer.json") + " is missing");
                }
            }
            plan.check(anchor.config(), augments.stream().map(CausalLm::config).toList(),
                    augPaths.stream().map(Path::toString).toList(), cfg.heads(), cfg.mode(), own);
            List<Bridge> bridges = readBridges(dir, plan, anchor, augments, cfg);
            return new Loaded(new CalmModel(anchor, augments, plan, bridges, cfg.mode(), cfg.heads(), own), cfg,
                    anchorPath, augPaths);
        } catch (RuntimeException e) {
            anchor.close();
            augments.forEach(CausalLm::close);
            throw e;
        }
    }

    private static void checkFingerprint(Path dir, String role, CalmConfig.ModelRef ref, Path modelDir, boolean allow) {
        if (!Files.isDirectory(modelDir)) {
            throw new Calm4jException(dir.resolve(CalmConfig.FILE) + ": " + role + " model folder " + modelDir
                    + " does not exist (pass --" + (role.equals("anchor") ? "anchor" : "augment") + " DIR)");
        }
        String actual = ModelFingerprint.of(modelDir);
        if (!actual.equals(ref.fingerprint()) && !allow) {
            throw new Calm4jException(dir + ": these bridges were trained on a different " + role + " model ("
                    + ref.fingerprint().substring(0, Math.min(19, ref.fingerprint().length())) + "…) than "
                    + modelDir + " (" + actual.substring(0, 19) + "…); refusing to load (--allow-mismatch overrides)");
        }
        // The bridges learnt to read the text as this tokenizer cut it: another one moves every token.
        if (ref.tokenizerFingerprint() != null && !allow) {
            String tok = Tokenizer.exists(modelDir) ? Tokenizer.fingerprint(modelDir) : null;
            if (!ref.tokenizerFingerprint().equals(tok)) {
                throw new Calm4jException(dir + ": these bridges were trained with another " + role + " tokenizer than "
                        + modelDir.resolve("tokenizer.json") + (tok == null ? " (missing)" : "") + " (recorded "
                        + ref.tokenizerFingerprint().substring(0, Math.min(19, ref.tokenizerFingerprint().length()))
                        + "…); refusing to load (--allow-mismatch overrides)");
            }
        }
    }

    /**
     * Refuses a {@code calm_config.json} whose plan differs from the one recorded with the tensors. Checkpoints
     * written before the plan was recorded carry none and are read as before.
     */
    static void checkPlan(Safetensors st, CalmConfig cfg, Path dir) {
        String recorded = st.metadata().get(PLAN_KEY);
        if (recorded != null && !recorded.equals(plan(cfg))) {
            throw new Calm4jException(dir.resolve(CalmConfig.FILE) + ": the plan (mode, heads, connections, recency bias) differs from "
                    + "the one recorded with the bridge tensors in " + WEIGHTS + " (" + recorded + "); the file was "
                    + "edited, or belongs to other bridges");
        }
    }

    private static List<Bridge> readBridges(Path dir, CompositionPlan plan, CausalLm anchor, List<CausalLm> augments,
                                            CalmConfig cfg) {
        int heads = cfg.heads();
        Path file = dir.resolve(WEIGHTS);
        if (!Files.isRegularFile(file)) {
            throw new Calm4jException(file + ": missing (a bridge checkpoint holds " + WEIGHTS + ")");
        }
        List<Bridge> bridges = new ArrayList<>();
        try (Safetensors st = Safetensors.open(file)) {
            checkPlan(st, cfg, dir);
            long db = anchor.hiddenSize();
            int expected = plan.size() * Bridge.NAMES.length;
            if (st.names().size() != expected) {
                throw new Calm4jException(file + ": holds " + st.names().size() + " tensors, the " + plan.size()
                        + " connections of calm_config.json need " + expected);
            }
            for (int k = 0; k < plan.size(); k++) {
                long da = augments.get(plan.get(k).augment()).hiddenSize();
                Map<String, long[]> shapes = new LinkedHashMap<>();
                shapes.put("proj.weight", new long[] {db, da});
                shapes.put("proj.bias", new long[] {db});
                for (String n : new String[] {"q.weight", "k.weight", "v.weight", "o.weight"}) {
                    shapes.put(n, new long[] {db, db});
                }
                Map<String, Tensor> t = new LinkedHashMap<>();
                for (Map.Entry<String, long[]> e : shapes.entrySet()) {
                    String name = "bridges." + k + "." + e.getKey();
                    if (!st.contains(name)) {
                        throw new Calm4jException(file + ": missing tensor '" + name + "'");
                    }
                    long[] found = st.info(name).shape();
                    if (!Arrays.equals(found, e.getValue())) {
                        throw new Calm4jException(file + ": tensor '" + name + "' has shape " + Arrays.toString(found)
                                + ", connection " + plan.get(k) + " between these models needs " + Arrays.toString(e.getValue()));
                    }
                    Tensor x = st.load(name, Bridge.masterDtype(anchor.computeDtype()));   // master weights (Bridge#as)
                    t.put(e.getKey(), x);
                    Finite.require(x, file + ": tensor '" + name + "'");
                }
                bridges.add(Bridge.of(t, heads, cfg.recency()));
            }
        }
        return bridges;
    }
}
