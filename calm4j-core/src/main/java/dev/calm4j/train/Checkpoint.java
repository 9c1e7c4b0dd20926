package dev.calm4j.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.io.AtomicFiles;
import dev.calm4j.io.Safetensors;
import dev.calm4j.io.StrictJson;
import dev.calm4j.nn.Finite;
import org.bytedeco.pytorch.AdamW;
import org.bytedeco.pytorch.InputArchive;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.OutputArchive;
import org.bytedeco.pytorch.Tensor;

import java.io.IOException;
import java.io.InputStream;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Consumer;
import java.util.stream.Stream;

/**
 * The resumable state of a training run in {@code OUT/checkpoint/}: {@code trainable.safetensors} (the trained
 * tensors), {@code optimizer.pt} (libtorch's AdamW state) and {@code state.json} ({@code step},
 * {@code data_position}, {@code train_config}, and the SHA-256 of the two other files).
 *
 * <p><b>Saving</b> survives a kill at any instant: the new state is written into {@code checkpoint.tmp/}
 * ({@code state.json} last, every file flushed to disk), then {@code checkpoint/} is renamed to
 * {@code checkpoint.old/}, {@code checkpoint.tmp/} to {@code checkpoint/}, and {@code checkpoint.old/} deleted.
 * <b>{@link #recover}</b> maps every state a kill can leave to one checkpoint, before anything reads it:
 * <ol>
 *   <li>a complete {@code checkpoint.tmp/} (its {@code state.json}, written last, is there, and the other two files
 *       match the checksums it records) is the newest state: the save is finished with it (the older
 *       {@code checkpoint/}, if any, is dropped). This covers a kill after writing, between the two renames, and
 *       before the first save's rename.</li>
 *   <li>otherwise a {@code checkpoint/} is complete (it only ever appears by renaming a complete folder): an
 *       incomplete {@code checkpoint.tmp/} and any {@code checkpoint.old/} are litter and are deleted.</li>
 *   <li>otherwise a {@code checkpoint.old/} (killed after the first rename, before the second) becomes
 *       {@code checkpoint/} again.</li>
 *   <li>otherwise there is no checkpoint; an incomplete {@code checkpoint.tmp/} is deleted.</li>
 * </ol>
 * A folder is always deleted {@code state.json} first, so a half-deleted one is never mistaken for complete.
 *
 * <p><b>Loading</b> validates {@code state.json} field by field (presence, types, ranges, the data position against
 * the step and batch), the files against their recorded checksums, and every tensor's name, shape and finiteness,
 * before libtorch reads the optimizer state; each problem is one line naming the file and the field.
 */
public final class Checkpoint {
    public static final String DIR = "checkpoint";
    public static final String STATE = "state.json";
    public static final String TRAINABLE = "trainable.safetensors";
    public static final String OPTIMIZER = "optimizer.pt";

    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * Called with the name of each stage of a save ("written", "old", "renamed", "done"); tests throw from it to
     * leave the folder exactly as a kill at that instant would.
     */
    static volatile Consumer<String> stageHook = s -> {};

    private Checkpoint() {}

    /**
     * What {@code state.json} records, validated.
     *
     * @param worldSize the ranks of the run that wrote it ({@code world_size}; 1 when absent): each drew
     *     {@code batch} rows of every micro-batch of {@code batch x worldSize}
     */
    public record State(int step, long dataPosition, JsonNode trainConfig, int worldSize) {
        public State(int step, long dataPosition, JsonNode trainConfig) {
            this(step, dataPosition, trainConfig, 1);
        }
    }

    static Path tmp(Path out) {
        return out.resolve(DIR + ".tmp");
    }

    static Path old(Path out) {
        return out.resolve(DIR + ".old");
    }

    /**
     * Brings {@code out} to one of two states, a complete {@code checkpoint/} or none, by the rule above; returns
     * what it did, for a message (null when there was nothing to do). Call it holding the folder's lock.
     */
    public static String recover(Path out) {
        Path ck = out.resolve(DIR);
        Path tmp = tmp(out);
        Path old = old(out);
        try {
            removeTornWrites(out);
            if (complete(tmp)) {
                deleteTree(old);
                if (Files.exists(ck)) {
                    Files.move(ck, old);
                }
                Files.move(tmp, ck);
                deleteTree(old);
                return "completed an interrupted save: " + tmp.getFileName() + " became " + ck;
            }
            if (Files.isDirectory(ck)) {
                boolean litter = Files.exists(tmp) || Files.exists(old);
                deleteTree(tmp);
                deleteTree(old);
                return litter ? "removed an interrupted save's leftovers beside " + ck : null;
            }
            if (Files.isDirectory(old)) {
                Files.move(old, ck);
                deleteTree(tmp);
                return "restored " + ck + " from " + old.getFileName() + " (a save was interrupted)";
            }
            if (Files.exists(tmp)) {
                deleteTree(tmp);
                return "removed an incomplete save (" + tmp.getFileName() + ")";
            }
            return null;
        } catch (IOException e) {
            throw new Calm4jException(ck + ": cannot recover the checkpoint (" + e.getMessage() + ")");
        }
    }

    /**
     * Deletes the temporary files of writes a kill interrupted ({@code .NAME.*.tmp}: every file calm4j writes goes
     * through one and is renamed when complete, see {@link AtomicFiles}), in the run's folder and its checkpoint.
     */
    private static void removeTornWrites(Path out) throws IOException {
        for (Path dir : new Path[] {out, out.resolve(DIR)}) {
            if (!Files.isDirectory(dir)) {
                continue;
            }
            try (Stream<Path> s = Files.list(dir)) {
                for (Path p : s.toList()) {
                    String n = p.getFileName().toString();
                    if (n.startsWith(".") && n.endsWith(".tmp") && Files.isRegularFile(p)) {
                        Files.deleteIfExists(p);
                    }
                }
            }
        }
    }

    /** Whether {@code dir} holds a whole save: state.json (written last) and both files as it recorded them. */
    private static boolean complete(Path dir) {
        Path state = dir.resolve(STATE);
        if (!Files.isRegularFile(state)) {
            return false;
        }
        try {
            JsonNode sums = StrictJson.read(state).get("sha256");
            for (String f : new String[] {TRAINABLE, OPTIMIZER}) {
                Path p = dir.resolve(f);
                if (!Files.isRegularFile(p)
                        || (sums != null && !sha256(p).equals(sums.path(f).asText()))) {
                    return false;
                }
            }
            return true;
        } catch (Calm4jException e) {
            return false;
        }
    }

    /** Writes the state after {@code step} steps, crash-safe (see above). */
    static void save(Path out, int step, long position, TrainConfig cfg, Map<String, Tensor> params, AdamW opt) {
        save(out, step, position, cfg, params, opt, 1);
    }

    /** As above, for a run of {@code worldSize} ranks (recorded as {@code world_size}). */
    static void save(Path out, int step, long position, TrainConfig cfg, Map<String, Tensor> params, AdamW opt,
                     int worldSize) {
        Path ck = out.resolve(DIR);
        Path tmp = tmp(out);
        Path old = old(out);
        try {
            deleteTree(tmp);
            Files.createDirectories(tmp);
            Map<String, Tensor> detached = new LinkedHashMap<>();
            params.forEach((k, v) -> detached.put(k, v.detach()));
            Safetensors.write(tmp.resolve(TRAINABLE), detached, Map.of("format", "pt"));
            OutputArchive a = new OutputArchive();
            opt.save(a);
            a.save_to(tmp.resolve(OPTIMIZER).toString());
            fsync(tmp.resolve(OPTIMIZER));
            ObjectNode s = JSON.createObjectNode();
            s.put("step", step);
            s.put("data_position", position);
            s.set("train_config", cfg.toJson());
            if (worldSize > 1) {
                s.put("world_size", worldSize);
            }
            ObjectNode sums = s.putObject("sha256");
            sums.put(TRAINABLE, sha256(tmp.resolve(TRAINABLE)));
            sums.put(OPTIMIZER, sha256(tmp.resolve(OPTIMIZER)));
            AtomicFiles.writeString(tmp.resolve(STATE), s.toPrettyString() + "\n");
            fsync(tmp);
            stageHook.accept("written");
            deleteTree(old);
            if (Files.exists(ck)) {
                Files.move(ck, old);
            }
            stageHook.accept("old");
            Files.move(tmp, ck);
            fsync(out);
            stageHook.accept("renamed");
            deleteTree(old);
            stageHook.accept("done");
        } catch (IOException e) {
            throw new Calm4jException(ck + ": cannot write checkpoint (" + e.getMessage() + ")");
        }
    }

    /**
     * Reads and validates {@code checkpoint/state.json} against the run's settings; null when there is no
     * checkpoint. Run {@link #recover} first.
     */
    public static State readState(Path out) {
        Path ck = out.resolve(DIR);
        if (!Files.exists(ck)) {
            return null;
        }
        Path file = ck.resolve(STATE);
        JsonNode s = StrictJson.read(file);
        if (!s.isObject()) {
            throw new Calm4jException(file + ": expected a JSON object with step, data_position and train_config");
        }
        JsonNode step = s.get("step");
        if (step == null || !step.isIntegralNumber() || !step.canConvertToInt() || step.asInt() < 1) {
            throw new Calm4jException(file + ": field 'step' is " + step + ", expected an integer >= 1");
        }
        JsonNode pos = s.get("data_position");
        if (pos == null || !pos.isIntegralNumber() || !pos.canConvertToLong() || pos.asLong() < 0) {
            throw new Calm4jException(file + ": field 'data_position' is " + pos + ", expected an integer >= 0");
        }
        JsonNode tc = s.get("train_config");
        if (tc == null || !tc.isObject()) {
            throw new Calm4jException(file + ": field 'train_config' is " + (tc == null ? "missing" : tc)
                    + ", expected the run's settings (an object)");
        }
        JsonNode sums = s.get("sha256");
        if (sums != null && !sums.isObject()) {
            throw new Calm4jException(file + ": field 'sha256' is " + sums + ", expected an object");
        }
        JsonNode world = s.get("world_size");
        if (world != null && (!world.isIntegralNumber() || !world.canConvertToInt() || world.asInt() < 1)) {
            throw new Calm4jException(file + ": field 'world_size' is " + world + ", expected an integer >= 1");
        }
        return new State(step.asInt(), pos.asLong(), tc, world == null ? 1 : world.asInt());
    }

    /**
     * Restores the run from {@code out/checkpoint/} into {@code params} and {@code opt}, after checking everything
     * against {@code cfg}; returns the state. Run {@link #recover} first.
     */
    static State load(Path out, TrainConfig cfg, Map<String, Tensor> params, AdamW opt) {
        return load(out, cfg, params, opt, 1);
    }

    /**
     * As above, for a run of {@code worldSize} ranks. A checkpoint written by another number of ranks continues when
     * the global micro-batch ({@code batch x ranks}) is the same, since the data order and the gradients depend only
     * on it; otherwise it is refused with the flags that would continue it.
     */
    static State load(Path out, TrainConfig cfg, Map<String, Tensor> params, AdamW opt, int worldSize) {
        Path dir = out.resolve(DIR);
        Path stateFile = dir.resolve(STATE);
        State s = readState(out);
        if (s == null) {
            throw new Calm4jException(dir + ": missing");
        }
        JsonNode now;
        try {
            now = JSON.readTree(cfg.toJson().toString());     // same number types as read back
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
        ObjectNode savedCmp = s.trainConfig().deepCopy();
        savedCmp.remove("steps");
        ObjectNode nowCmp = now.deepCopy();
        nowCmp.remove("steps");
        long savedGlobal = (long) savedCmp.path("batching").path("size").asLong() * s.worldSize();
        long nowGlobal = (long) cfg.batching().size() * worldSize;
        if (savedCmp.path("batching").isObject() && s.worldSize() != worldSize) {
            if (savedGlobal != nowGlobal) {
                long saved = savedCmp.path("batching").path("size").asLong();
                throw new Calm4jException(stateFile + ": written by " + s.worldSize() + " rank(s) of --batch " + saved
                        + " (" + savedGlobal + " rows per micro-batch), this run has " + worldSize + " of --batch "
                        + cfg.batching().size() + " (" + nowGlobal + "); resume with " + worldSize + " rank(s) of --batch "
                        + (savedGlobal % worldSize == 0 ? String.valueOf(savedGlobal / worldSize) : "(none fits)")
                        + " or with " + s.worldSize() + " of --batch " + saved);
            }
            ((ObjectNode) savedCmp.get("batching")).put("size", cfg.batching().size());   // the same global batch
        }
        if (!savedCmp.equals(nowCmp)) {
            throw new Calm4jException(stateFile + ": the checkpoint was written with other "
                    + "training settings (" + s.trainConfig() + "); resume with the same flags (only --steps may grow)");
        }
        if (s.step() > cfg.steps()) {
            throw new Calm4jException(stateFile + ": field 'step' is " + s.step() + ", beyond --steps " + cfg.steps());
        }
        // Every step draws exactly batch x accumulation examples: any other position would train on other data.
        long expected = (long) s.step() * nowGlobal * cfg.batching().accumulation();
        if (s.dataPosition() != expected) {
            throw new Calm4jException(stateFile + ": field 'data_position' is " + s.dataPosition() + ", expected "
                    + expected + " (step " + s.step() + " x batch " + cfg.batching().size()
                    + (worldSize > 1 ? " x ranks " + worldSize : "") + " x accumulation "
                    + cfg.batching().accumulation() + ")");
        }
        Path trainable = dir.resolve(TRAINABLE);
        Path optimizer = dir.resolve(OPTIMIZER);
        StrictJson.requireRegularFile(trainable, "the checkpoint's trained tensors");
        StrictJson.requireRegularFile(optimizer, "the checkpoint's optimizer state");
        JsonNode sums = StrictJson.read(stateFile).get("sha256");
        if (sums != null) {
            verify(stateFile, sums, trainable);
            verify(stateFile, sums, optimizer);
        }
        try {
            if (Files.size(optimizer) == 0) {
                throw new Calm4jException(optimizer + ": empty (expected libtorch's serialized optimizer state)");
            }
        } catch (IOException e) {
            throw new Calm4jException(optimizer + ": cannot read (" + e.getMessage() + ")");
        }
        Map<String, Tensor> loaded = new LinkedHashMap<>();
        try (Safetensors st = Safetensors.open(trainable); NoGradGuard ng = new NoGradGuard()) {
            if (st.names().size() != params.size()) {
                throw new Calm4jException(trainable + ": holds " + st.names().size() + " tensors, the run trains "
                        + params.size() + " (checkpoint of another model?)");
            }
            for (Map.Entry<String, Tensor> e : params.entrySet()) {
                if (!st.contains(e.getKey())) {
                    throw new Calm4jException(trainable + ": missing tensor '" + e.getKey()
                            + "' (checkpoint of another model?)");
                }
                long[] want = e.getValue().sizes().vec().get();
                long[] found = st.info(e.getKey()).shape();
                if (!Arrays.equals(found, want)) {
                    throw new Calm4jException(trainable + ": tensor '" + e.getKey() + "' has shape "
                            + Arrays.toString(found) + ", the model's is " + Arrays.toString(want));
                }
            }
            for (Map.Entry<String, Tensor> e : params.entrySet()) {
                Tensor t = st.load(e.getKey(), e.getValue().scalar_type());
                loaded.put(e.getKey(), t);
                Finite.require(t, trainable + ": tensor '" + e.getKey() + "'");
            }
            params.forEach((k, v) -> v.copy_(loaded.get(k)));
        }
        try {
            InputArchive in = new InputArchive();
            in.load_from(optimizer.toString());
            opt.load(in);
        } catch (RuntimeException e) {
            // libtorch's own message is a multi-line C++ trace: the first line says what broke
            String m = String.valueOf(e.getMessage()).strip().split("\n")[0];
            throw new Calm4jException(optimizer + ": not a readable optimizer state (" + m + ")");
        }
        return s;
    }

    /**
     * Gives every rank of {@code dp} the checkpoint rank 0 has just loaded from {@code out} (with {@link #load}): its
     * three files travel over the process group (the other ranks may be on hosts without a copy), and each other rank
     * loads them, validated the same way, from a temporary folder of its own. Returns the state on every rank.
     */
    static State share(Path out, TrainConfig cfg, Map<String, Tensor> params, AdamW opt, DataParallel dp) {
        Path dir = out.resolve(DIR);
        Path tmp = null;
        try {
            if (!dp.writes()) {
                tmp = Files.createTempDirectory("calm4j-rank" + dp.rank() + "-");
                Files.createDirectories(tmp.resolve(DIR));
            }
            for (String f : new String[] {TRAINABLE, OPTIMIZER, STATE}) {
                byte[] b = dp.broadcast(dp.writes() ? Files.readAllBytes(dir.resolve(f)) : null, "the checkpoint's " + f);
                if (tmp != null) {
                    Files.write(tmp.resolve(DIR).resolve(f), b);
                }
            }
            return dp.writes() ? readState(out) : load(tmp, cfg, params, opt, dp.size());
        } catch (IOException e) {
            throw new Calm4jException("rank " + dp.rank() + ": cannot pass on the checkpoint (" + e.getMessage() + ")");
        } finally {
            if (tmp != null) {
                try {
                    deleteTree(tmp.resolve(DIR));
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // a temporary folder left behind is harmless
                }
            }
        }
    }

    private static void verify(Path stateFile, JsonNode sums, Path file) {
        JsonNode want = sums.get(file.getFileName().toString());
        if (want == null || !want.isTextual()) {
            throw new Calm4jException(stateFile + ": field 'sha256." + file.getFileName() + "' is missing or not a string");
        }
        if (!want.asText().equals(sha256(file))) {
            throw new Calm4jException(file + ": content differs from the SHA-256 recorded in " + stateFile
                    + " (damaged or replaced)");
        }
    }

    static String sha256(Path file) {
        try (InputStream in = Files.newInputStream(file)) {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) {
                md.update(buf, 0, n);
            }
            return "sha256:" + HexFormat.of().formatHex(md.digest());
        } catch (IOException e) {
            throw new Calm4jException(file + ": cannot read (" + e.getMessage() + ")");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Flushes a file's (or a folder's entries') bytes to the disk, so a rename never publishes unwritten data. */
    private static void fsync(Path p) throws IOException {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException e) {
            if (!Files.isDirectory(p)) {
                throw e;
            }
            // some file systems cannot open a folder for fsync; the files inside were flushed one by one
        }
    }

    static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) {
            return;
        }
        Files.deleteIfExists(p.resolve(STATE));      // first: what is left can no longer pass for complete
        try (Stream<Path> s = Files.walk(p)) {
            for (Path x : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(x);
            }
        }
    }
}
