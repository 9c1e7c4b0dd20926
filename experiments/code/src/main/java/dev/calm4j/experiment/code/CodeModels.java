package dev.calm4j.experiment.code;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.experiment.language.BaseModels;
import dev.calm4j.io.AtomicFiles;
import dev.calm4j.tokenize.BpeTrainer;
import dev.calm4j.train.TrainListener;
import dev.calm4j.train.TrainLoop;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.function.BiFunction;

/**
 * The code experiment's own models in one folder: m_A (code), m_B_code_skyline (the anchor further pretrained on the
 * training projects' code) and {@code code_recipe.json}. The anchor itself is the language experiment's m_B, read
 * from its folder; the stamp records its weights' SHA-256, so a retrained anchor is never mixed with a skyline made
 * from the old one.
 */
public final class CodeModels {
    public static final String STAMP = "code_recipe.json";
    static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private final CodeRecipe recipe;
    private final Path dir;
    private final Path anchor;
    private final PrintStream log;
    private final BiFunction<String, Boolean, TrainListener> listeners;

    public CodeModels(CodeRecipe recipe, Path dir, Path anchor, PrintStream log,
                      BiFunction<String, Boolean, TrainListener> listeners) {
        this.recipe = recipe;
        this.dir = dir;
        this.anchor = anchor;
        this.log = log;
        this.listeners = listeners;
    }

    public Path augment() {
        return dir.resolve("m_A");
    }

    public Path anchor() {
        return anchor;
    }

    public Path skyline() {
        return dir.resolve("m_B_code_skyline");
    }

    /** m_A's data and the skyline's: every training file, flat, in pieces of at most the recipe's chunk. */
    public static List<String> trainingText(CodeData d, int chunkChars) {
        List<String> out = new ArrayList<>();
        for (var f : d.trainFiles) {
            out.addAll(CodeText.chunks(CodeText.flatten(CodeText.body(f.text())), chunkChars));
        }
        return out;
    }

    String stamp() throws IOException {
        ObjectNode o = JSON.valueToTree(recipe);
        o.put("anchor_sha256", sha256(anchor.resolve("model.safetensors")));
        return JSON.writeValueAsString(o);
    }

    /** Checks the shipped models against the recipe, or (with {@code retrain}) makes them. */
    public void ensure(CodeData data, boolean retrain) throws IOException {
        if (!Files.isRegularFile(anchor.resolve("model.safetensors"))) {
            throw new Calm4jException(anchor + ": no anchor (the language experiment's m_B) there");
        }
        Path stampFile = dir.resolve(STAMP);
        String want = stamp();
        boolean have = Files.isRegularFile(augment().resolve("model.safetensors"))
                && Files.isRegularFile(skyline().resolve("model.safetensors")) && Files.isRegularFile(stampFile);
        if (have && !retrain) {
            String got = JSON.writeValueAsString(JSON.readTree(stampFile.toFile()));
            if (!got.equals(want)) {
                throw new Calm4jException(stampFile + ": the code models were made with another recipe or anchor; "
                        + "rerun with --retrain to make them with this one");
            }
            return;
        }
        if (!retrain) {
            throw new Calm4jException(dir + ": no code models (m_A, m_B_code_skyline, " + STAMP + "); run with "
                    + "--retrain to make them with the committed recipe");
        }
        Files.createDirectories(augment());
        Files.deleteIfExists(stampFile);
        List<String> text = trainingText(data, recipe.chunkChars());
        log.printf("training m_A's tokenizer (%,d subwords over %,d pieces of the training projects' code) ...%n",
                recipe.augment().vocab(), text.size());
        BpeTrainer.train(text, new BpeTrainer.Options(recipe.augment().vocab(), 2, 2), augment().resolve("tokenizer.json"));
        log.println("pretraining m_A (the training projects' code, Javadoc included) ...");
        TrainLoop.Result a = BaseModels.pretrain(recipe.augment(), text, augment(), recipe.seed() + 1, "m_A (code)",
                listeners.apply("m_A (code)", true));
        log.printf("  m_A: loss %.4f, %.0f s%n", a.finalLoss(), a.seconds());
        log.println("pretraining the skyline (m_B further on the same code) ...");
        int anchorPositions = dev.calm4j.lm.LmFamilies.readConfig(anchor).maxPositionEmbeddings();
        TrainLoop.Result s = BaseModels.continueOn(anchor, text, skyline(), recipe.skyline(), anchorPositions,
                recipe.augment().weightDecay(), recipe.seed() + 2, "the training projects' code through m_B's tokenizer",
                listeners.apply("m_B_code_skyline", true));
        log.printf("  m_B_code_skyline: loss %.4f, %.0f s%n", s.finalLoss(), s.seconds());
        BaseModels.dropCheckpoint(augment());
        BaseModels.dropCheckpoint(skyline());
        AtomicFiles.writeString(stampFile, want + "\n");
    }

    static String sha256(Path file) throws IOException {
        try (InputStream in = Files.newInputStream(file)) {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) {
                md.update(buf, 0, n);
            }
            return HexFormat.of().formatHex(md.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
