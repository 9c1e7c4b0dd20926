package dev.calm4j.io;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.regex.Pattern;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * The weights of a Hugging Face checkpoint directory: a single {@code model.safetensors}, or shards listed by
 * {@code model.safetensors.index.json} ({@code {"metadata": {...}, "weight_map": {"name": "model-00001-of-00002.safetensors"}}}).
 * When both exist the single file wins, as in {@code transformers}.
 *
 * <p>Every shard's header is validated on {@link #open}, and every index entry is checked against its shard, so a
 * broken checkpoint fails up front with a message naming the file rather than halfway through loading a model.
 */
public final class WeightFiles implements AutoCloseable {
    public static final String SINGLE_FILE = "model.safetensors";
    public static final String INDEX_FILE = "model.safetensors.index.json";

    /** Shard names written by {@link #writeSharded}, and the ones it removes when stale. */
    private static final Pattern SHARD_NAME = Pattern.compile("model-\\d{5}-of-\\d{5}\\.safetensors");

    /** An index is a few hundred KiB even for huge models; the bound stops a bogus file being read into memory. */
    private static final long MAX_INDEX_BYTES = 100L << 20;

    private final Path dir;
    /** The file a missing tensor is reported against: the single file or the index. */
    private final Path source;
    private final List<Safetensors> files;
    private final Map<String, Safetensors> byName;

    private WeightFiles(Path dir, Path source, List<Safetensors> files, Map<String, Safetensors> byName) {
        this.dir = dir;
        this.source = source;
        this.files = files;
        this.byName = Collections.unmodifiableMap(byName);
    }

    /** Opens the weights in {@code dir}, validating every file's header and the index against the shards. */
    public static WeightFiles open(Path dir) {
        Objects.requireNonNull(dir, "dir");
        if (!Files.isDirectory(dir)) {
            throw new Calm4jException(dir + ": not a directory, expected a checkpoint directory holding "
                    + SINGLE_FILE + " or " + INDEX_FILE);
        }
        Path single = dir.resolve(SINGLE_FILE);
        Path index = dir.resolve(INDEX_FILE);
        if (Files.exists(single)) {
            Safetensors st = Safetensors.open(single);
            Map<String, Safetensors> byName = new LinkedHashMap<>();
            for (String name : st.names()) {
                byName.put(name, st);
            }
            return new WeightFiles(dir, single, List.of(st), byName);
        }
        if (Files.exists(index)) {
            return openSharded(dir, index);
        }
        throw new Calm4jException(dir + ": no weights found, expected " + SINGLE_FILE + " or " + INDEX_FILE);
    }

    private static WeightFiles openSharded(Path dir, Path index) {
        Map<String, String> weightMap = readIndex(index);
        Map<String, Safetensors> shards = new LinkedHashMap<>(); // shard file name -> reader, first-use order
        try {
            Map<String, Safetensors> byName = new LinkedHashMap<>();
            for (Map.Entry<String, String> e : weightMap.entrySet()) {
                String tensor = e.getKey();
                String shardName = e.getValue();
                Safetensors shard = shards.get(shardName);
                if (shard == null) {
                    Path shardPath = dir.resolve(shardName);
                    if (!Files.isRegularFile(shardPath)) {
                        throw new Calm4jException(index + ": weight_map['" + tensor + "'] names shard '" + shardName
                                + "', but " + shardPath + " does not exist");
                    }
                    shard = Safetensors.open(shardPath);
                    shards.put(shardName, shard);
                }
                if (!shard.contains(tensor)) {
                    throw new Calm4jException(index + ": weight_map['" + tensor + "'] names shard '" + shardName
                            + "', but " + shard.path() + " has no tensor '" + tensor + "'");
                }
                byName.put(tensor, shard);
            }
            return new WeightFiles(dir, index, List.copyOf(shards.values()), byName);
        } catch (RuntimeException e) {
            shards.values().forEach(Safetensors::close);
            throw e;
        }
    }

    /** Parses and validates the index; returns its weight_map in file order. */
    private static Map<String, String> readIndex(Path index) {
        byte[] bytes;
        StrictJson.requireRegularFile(index, "a safetensors index");
        try {
            long size = Files.size(index);
            if (size > MAX_INDEX_BYTES) {
                throw new Calm4jException(index + ": file is " + size + " bytes, expected an index under "
                        + MAX_INDEX_BYTES + " bytes");
            }
            bytes = Files.readAllBytes(index);
        } catch (IOException e) {
            throw new Calm4jException(index + ": cannot read: " + e, e);
        }
        JsonNode root;
        try {
            root = Safetensors.JSON.readTree(bytes);
        } catch (IOException e) {
            String msg = e instanceof JsonProcessingException j ? j.getOriginalMessage() : e.toString();
            throw new Calm4jException(index + ": not valid JSON (" + Safetensors.oneLine(msg)
                    + "), expected an object with field 'weight_map'", e);
        }
        if (root == null || !root.isObject()) {
            throw new Calm4jException(index + ": content is " + Safetensors.describe(root)
                    + ", expected a JSON object with field 'weight_map'");
        }
        JsonNode metadata = root.get("metadata");
        if (metadata != null && !metadata.isNull() && !metadata.isObject()) {
            throw new Calm4jException(index + ": field 'metadata' is " + Safetensors.describe(metadata)
                    + ", expected an object");
        }
        JsonNode map = root.get("weight_map");
        if (map == null || !map.isObject()) {
            throw new Calm4jException(index + ": field 'weight_map' is " + Safetensors.describe(map)
                    + ", expected an object mapping tensor names to shard file names");
        }
        Map<String, String> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : map.properties()) {
            JsonNode v = e.getValue();
            String where = index + ": weight_map['" + e.getKey() + "']";
            if (!v.isTextual()) {
                throw new Calm4jException(where + " is " + Safetensors.describe(v) + ", expected a shard file name");
            }
            String shard = v.textValue();
            // Shards live next to the index; a path here could read any file on the machine.
            if (shard.isEmpty() || shard.equals(".") || shard.equals("..") || shard.contains("/")
                    || shard.contains("\\") || shard.indexOf('\0') >= 0) {
                throw new Calm4jException(where + " is '" + shard
                        + "', expected a plain file name in the same directory as the index");
            }
            out.put(e.getKey(), shard);
        }
        return out;
    }

    public Path dir() {
        return dir;
    }

    /** All tensor names, in file (or weight_map) order. */
    public Set<String> names() {
        return byName.keySet();
    }

    public boolean contains(String name) {
        return byName.containsKey(name);
    }

    public Safetensors.TensorInfo info(String name) {
        return shardOf(name).info(name);
    }

    /** Loads a tensor converted to {@code target}; {@link Calm4jException} naming the file if it is absent. */
    public Tensor load(String name, ScalarType target) {
        return shardOf(name).load(name, target);
    }

    private Safetensors shardOf(String name) {
        Safetensors s = byName.get(name);
        if (s == null) {
            throw new Calm4jException(source + ": missing tensor '" + name + "'");
        }
        return s;
    }

    @Override
    public void close() {
        files.forEach(Safetensors::close);
    }

    // ------------------------------------------------------------------------------------------------ writing

    /**
     * Writes {@code tensors} into {@code dir} the way {@code transformers} does: a single {@code model.safetensors}
     * when they fit in {@code maxShardBytes}, otherwise {@code model-0000k-of-0000n.safetensors} shards (filled in
     * map order; a tensor bigger than the limit gets a shard of its own) plus {@code model.safetensors.index.json}.
     * Every file is written atomically and the index last, so a reader never sees an index naming unwritten shards.
     * Afterwards files of an earlier save that would shadow or confuse this one (a stale single file, index or
     * {@code model-*-of-*.safetensors} shard not written now) are deleted, as {@code save_pretrained} does.
     * Files get metadata {@code {"format": "pt"}}, which {@code transformers} requires.
     */
    public static void writeSharded(Path dir, Map<String, Tensor> tensors, long maxShardBytes) {
        Objects.requireNonNull(dir, "dir");
        Objects.requireNonNull(tensors, "tensors");
        if (maxShardBytes <= 0) {
            throw new IllegalArgumentException("maxShardBytes must be positive, got " + maxShardBytes);
        }
        // Validate all tensors before writing anything, so one bad tensor does not leave half a checkpoint.
        List<Map<String, Tensor>> shards = new ArrayList<>();
        Map<String, Tensor> current = new LinkedHashMap<>();
        long currentBytes = 0;
        long totalBytes = 0;
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            SafetensorsDtype dtype = Safetensors.checkWritable(dir, e.getKey(), e.getValue());
            long bytes = Math.multiplyExact(e.getValue().numel(), dtype.byteSize());
            if (!current.isEmpty() && currentBytes + bytes > maxShardBytes) {
                shards.add(current);
                current = new LinkedHashMap<>();
                currentBytes = 0;
            }
            current.put(e.getKey(), e.getValue());
            currentBytes += bytes;
            totalBytes += bytes;
        }
        shards.add(current); // possibly empty: an empty checkpoint is still a valid single file

        Map<String, String> fileMetadata = Map.of("format", "pt");
        Set<String> written = new HashSet<>();
        if (shards.size() == 1) {
            Safetensors.write(dir.resolve(SINGLE_FILE), shards.get(0), fileMetadata);
            written.add(SINGLE_FILE);
        } else {
            int n = shards.size();
            ObjectNode index = Safetensors.JSON.createObjectNode();
            index.putObject("metadata").put("total_size", totalBytes);
            ObjectNode weightMap = index.putObject("weight_map");
            for (int k = 0; k < n; k++) {
                String shardName = String.format("model-%05d-of-%05d.safetensors", k + 1, n);
                Safetensors.write(dir.resolve(shardName), shards.get(k), fileMetadata);
                written.add(shardName);
                for (String name : shards.get(k).keySet()) {
                    weightMap.put(name, shardName);
                }
            }
            byte[] json;
            try {
                json = Safetensors.JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(index);
            } catch (JsonProcessingException e) {
                throw new Calm4jException(dir.resolve(INDEX_FILE) + ": cannot encode index: " + e.getOriginalMessage(), e);
            }
            Safetensors.writeAtomically(dir.resolve(INDEX_FILE), ch -> {
                ByteBuffer buf = ByteBuffer.wrap(json);
                while (buf.hasRemaining()) {
                    ch.write(buf);
                }
            });
            written.add(INDEX_FILE);
        }
        removeStale(dir, written);
    }

    private static void removeStale(Path dir, Set<String> written) {
        List<Path> stale = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
            for (Path p : ds) {
                String f = p.getFileName().toString();
                boolean ours = f.equals(SINGLE_FILE) || f.equals(INDEX_FILE) || SHARD_NAME.matcher(f).matches();
                if (ours && !written.contains(f) && Files.isRegularFile(p)) {
                    stale.add(p);
                }
            }
            for (Path p : stale) {
                Files.deleteIfExists(p);
            }
        } catch (IOException e) {
            throw new Calm4jException(dir + ": weights written, but removing files of an earlier save failed: " + e, e);
        }
    }
}
