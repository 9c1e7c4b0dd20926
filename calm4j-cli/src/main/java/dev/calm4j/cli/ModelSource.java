package dev.calm4j.cli;

import dev.calm4j.Calm4jException;
import dev.calm4j.compose.AugmentReader;
import dev.calm4j.compose.BridgeCheckpoint;
import dev.calm4j.compose.CalmConfig;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.Mode;
import dev.calm4j.eval.EvalModel;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.tokenize.Tokenizer;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.train.Lora;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * What {@code eval} and {@code generate} run: one model, one model with LoRA adapters, or an anchor composed with
 * augments through a bridge checkpoint. Resolved from flags and configs first (cheap: data can be checked before any
 * weights are read), then {@link #load}ed.
 *
 * @param anchorDir the (anchor) model folder: from the flag, else the path the bridge checkpoint records
 * @param calm      the bridge checkpoint's config, or null
 */
record ModelSource(Path anchorDir, ModelConfig anchorConfig, List<Path> augmentDirs, Path bridgesDir, CalmConfig calm,
                   Path loraDir) {

    /** @param modelFlag the flag that names the model in this command ("--model" or "--anchor"), for messages */
    static ModelSource resolve(String modelFlag, Path model, List<Path> augments, Path bridges, Path lora,
                               boolean allowMismatch) {
        List<Path> augs = augments == null ? List.of() : List.copyOf(augments);
        if (!augs.isEmpty() && bridges == null) {
            throw new Calm4jException("--augment needs --bridges DIR (bridges trained by calm compose); to see a "
                    + "composition's plan, use calm inspect --anchor DIR --augment DIR");
        }
        if (allowMismatch && bridges == null) {
            throw new Calm4jException("--allow-mismatch only applies to --bridges");
        }
        if (lora != null && bridges != null) {
            throw new Calm4jException("--lora and --bridges exclude each other (LoRA adapts a single model; bridges "
                    + "compose several)");
        }
        CalmConfig calm = null;
        Path anchorDir = model;
        if (bridges != null) {
            calm = CalmConfig.read(bridges);
            if (anchorDir == null) {
                anchorDir = bridges.resolve(calm.anchor().path()).normalize();
                if (!Files.isDirectory(anchorDir)) {
                    throw new Calm4jException(bridges.resolve(CalmConfig.FILE) + ": the anchor model folder it records, "
                            + anchorDir + ", does not exist (pass " + modelFlag + " DIR)");
                }
            }
            if (!augs.isEmpty() && augs.size() != calm.augments().size()) {
                throw new Calm4jException(bridges.resolve(CalmConfig.FILE) + ": the bridges were trained with "
                        + calm.augments().size() + " augmenting model(s), " + augs.size() + " --augment given");
            }
            if (augs.isEmpty()) {
                for (int a = 0; a < calm.augments().size(); a++) {
                    Path p = bridges.resolve(calm.augments().get(a).path()).normalize();
                    if (!Files.isDirectory(p)) {
                        throw new Calm4jException(bridges.resolve(CalmConfig.FILE) + ": the augment " + a + " model folder "
                                + "it records, " + p + ", does not exist (pass --augment DIR for each augment, in order)");
                    }
                }
            }
        } else if (anchorDir == null) {
            throw new Calm4jException("give " + modelFlag + " DIR (or --bridges DIR, which records its anchor)");
        }
        return new ModelSource(anchorDir, LmFamilies.readConfig(anchorDir), augs, bridges, calm, lora);
    }

    boolean composed() {
        return calm != null;
    }

    Mode mode() {
        return calm == null ? Mode.SAME_SEQUENCE : calm.mode();
    }

    /** The augment folders the composition will use: the flags, else the paths the checkpoint records. */
    List<Path> effectiveAugments() {
        if (calm == null) {
            return List.of();
        }
        if (!augmentDirs.isEmpty()) {
            return augmentDirs;
        }
        return calm.augments().stream().map(r -> bridgesDir.resolve(r.path()).normalize()).toList();
    }

    /** The model, its frozen weights in {@code weights} and its activations in {@code compute} (bf16-mixed when they differ). */
    Loaded load(boolean allowMismatch, ScalarType weights, ScalarType compute) {
        if (calm != null) {
            BridgeCheckpoint.Loaded l = BridgeCheckpoint.load(bridgesDir, anchorDir, augmentDirs.isEmpty() ? null : augmentDirs,
                    allowMismatch, weights, compute);
            CalmModel m = l.model();
            String desc = String.format("anchor %s + %s via bridges %s (%s, %s, %,d bridge parameters)", anchorDir,
                    effectiveAugments().size() == 1 ? "augment " + effectiveAugments().get(0)
                            : "augments " + effectiveAugments(), bridgesDir, m.mode().jsonName(), m.plan().spec(),
                    m.bridgeParameterCount());
            // An augment that reads the text through its own tokenizer gets a reader of its folder's tokenizer.json.
            List<AugmentReader> readers = new java.util.ArrayList<>();
            List<AutoCloseable> tokenizers = new java.util.ArrayList<>();
            for (int a = 0; a < m.augments().size(); a++) {
                if (m.ownTokens(a)) {
                    Path dir = l.augmentDirs().get(a);
                    Tokenizer t = Tokenizer.load(dir);
                    tokenizers.add(t);
                    readers.add(new AugmentReader(t, m.augments().get(a).config(), dir.toString()));
                } else {
                    readers.add(null);
                }
            }
            Tokenizer anchorTok = tokenizers.isEmpty() || !Tokenizer.exists(l.anchorDir()) ? null : Tokenizer.load(l.anchorDir());
            if (anchorTok != null) {
                tokenizers.add(anchorTok);
            }
            return new Loaded(m.anchor(), tokenizers.toArray(new AutoCloseable[0]), l, EvalModel.of(m, readers, anchorTok),
                    desc);
        }
        CausalLm lm = LmFamilies.load(anchorDir, weights, compute);
        if (loraDir == null) {
            return new Loaded(lm, null, null, EvalModel.of(lm), "model " + anchorDir);
        }
        if (!(lm instanceof LlamaModel base)) {
            lm.close();
            throw new Calm4jException(anchorDir + ": LoRA supports the Llama family (llama, mistral, qwen2)");
        }
        try {
            Lora lora = Lora.load(loraDir, base);
            LlamaModel adapted = lora.apply(base);
            return new Loaded(adapted, new AutoCloseable[] {lora, base}, null, EvalModel.of(adapted),
                    String.format("model %s + LoRA %s (rank %d on %s, %,d parameters)", anchorDir, loraDir, lora.rank(),
                            String.join(",", lora.targets()), lora.parameterCount()));
        } catch (RuntimeException e) {
            base.close();
            throw e;
        }
    }

    /**
     * A loaded model. {@code lm} is what single-model code runs (the model, or its LoRA-adapted view; the anchor of a
     * composition); {@code calm} is non-null for a composition.
     */
    record Loaded(CausalLm lm, AutoCloseable[] owned, BridgeCheckpoint.Loaded calm, EvalModel evalModel,
                  String description) implements AutoCloseable {
        @Override
        public void close() {
            if (calm != null) {
                calm.close();
            }
            if (owned != null) {
                for (AutoCloseable c : owned) {
                    try {
                        c.close();
                    } catch (Exception e) {
                        throw new IllegalStateException(e);
                    }
                }
            }
            if (calm == null && owned == null) {
                lm.close();
            }
        }
    }
}
