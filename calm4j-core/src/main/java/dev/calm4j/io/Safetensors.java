package dev.calm4j.io;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * Reads and writes the <a href="https://github.com/huggingface/safetensors">safetensors</a> format: an 8-byte
 * little-endian header length N, N bytes of JSON header, then the raw little-endian tensor data. Each header entry
 * is {@code "name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}} with offsets relative to the
 * start of the data section; an optional {@code "__metadata__"} entry maps strings to strings.
 *
 * <p>The whole header is validated in {@link #open} before any tensor memory is allocated: a damaged or hostile
 * file must end in a {@link Calm4jException}, never in a huge allocation or a native crash (libtorch trusts the
 * shapes and pointers it is given). Tensor data is then memory-mapped one tensor at a time, so files over 2 GiB work,
 * and copied into libtorch-owned memory: a returned tensor never points into the mapping.
 *
 * <p>Loads may run concurrently from several threads; {@link #close()} must not race with them.
 */
public final class Safetensors implements AutoCloseable {
    /** Largest header accepted (the reference implementation uses 100 MB); protects against absurd lengths. */
    static final long MAX_HEADER_BYTES = 100L << 20;

    /** Bytes mapped and copied per step; {@link FileChannel#map} cannot map more than 2 GiB at once. */
    static final long COPY_CHUNK_BYTES = 1L << 30;

    static final String METADATA_KEY = "__metadata__";

    /** Strict JSON: duplicate keys would let two readers disagree about a tensor, and trailing junk means damage. */
    static final JsonMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    /**
     * One header entry. {@code begin} and {@code end} are byte offsets relative to the start of the data section,
     * exactly as in the header; {@code shape} is copied in and out so the record stays immutable.
     */
    public record TensorInfo(String name, SafetensorsDtype dtype, long[] shape, long begin, long end) {
        public TensorInfo {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(dtype, "dtype");
            shape = shape.clone();
        }

        @Override
        public long[] shape() {
            return shape.clone();
        }

        /** Number of elements; 1 for a 0-dim tensor, 0 when any dimension is 0. Validated not to overflow. */
        public long numel() {
            long n = 1;
            for (long d : shape) {
                n = Math.multiplyExact(n, d);
            }
            return n;
        }

        /** Bytes of data: {@code end - begin}. */
        public long byteLength() {
            return end - begin;
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof TensorInfo t
                    && name.equals(t.name)
                    && dtype == t.dtype
                    && Arrays.equals(shape, t.shape)
                    && begin == t.begin
                    && end == t.end;
        }

        @Override
        public int hashCode() {
            return Objects.hash(name, dtype, Arrays.hashCode(shape), begin, end);
        }

        @Override
        public String toString() {
            return "TensorInfo[" + name + " " + dtype + " " + Arrays.toString(shape) + " @[" + begin + ", " + end + "]]";
        }
    }

    private final Path path;
    private final FileChannel channel;
    private final long dataStart;
    private final Map<String, String> metadata;
    private final Map<String, TensorInfo> tensors;
    private volatile boolean closed;

    private Safetensors(Path path, FileChannel channel, long dataStart, Map<String, String> metadata,
            Map<String, TensorInfo> tensors) {
        this.path = path;
        this.channel = channel;
        this.dataStart = dataStart;
        this.metadata = Collections.unmodifiableMap(metadata);
        this.tensors = Collections.unmodifiableMap(tensors);
    }

    // ------------------------------------------------------------------------------------------------ reading

    /** Opens {@code file} and validates its whole header; no tensor data is read yet. */
    public static Safetensors open(Path file) {
        Objects.requireNonNull(file, "file");
        requireLittleEndianPlatform(file);
        if (Files.isDirectory(file)) {
            throw new Calm4jException(file + ": is a directory, expected a .safetensors file");
        }
        if (Files.exists(file) && !Files.isRegularFile(file)) {
            // a FIFO would block the read forever, a device stream without end
            throw new Calm4jException(file + ": is not a regular file (a FIFO, socket or device?), expected a "
                    + ".safetensors file");
        }
        FileChannel ch;
        try {
            ch = FileChannel.open(file, StandardOpenOption.READ);
        } catch (NoSuchFileException e) {
            throw new Calm4jException(file + ": file not found, expected a .safetensors file", e);
        } catch (IOException e) {
            throw new Calm4jException(file + ": cannot open: " + e, e);
        }
        try {
            return readHeader(file, ch);
        } catch (RuntimeException e) {
            closeQuietly(ch);
            throw e;
        } catch (IOException e) {
            closeQuietly(ch);
            throw new Calm4jException(file + ": cannot read header: " + e, e);
        }
    }

    private static Safetensors readHeader(Path file, FileChannel ch) throws IOException {
        long fileSize = ch.size();
        if (fileSize < 8) {
            throw new Calm4jException(file + ": file is " + fileSize
                    + " bytes, expected at least the 8-byte header length (truncated or not a safetensors file)");
        }
        ByteBuffer prefix = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
        readFully(ch, prefix, 0);
        long headerLen = prefix.getLong(0); // u64 on disk: compare unsigned so 2^63.. is not seen as negative
        if (Long.compareUnsigned(headerLen, MAX_HEADER_BYTES) > 0) {
            throw new Calm4jException(file + ": header length " + Long.toUnsignedString(headerLen)
                    + " exceeds the limit of " + MAX_HEADER_BYTES + " bytes (corrupt or not a safetensors file)");
        }
        if (headerLen > fileSize - 8) {
            throw new Calm4jException(file + ": header length " + headerLen + " is larger than the "
                    + (fileSize - 8) + " bytes that follow it (file truncated?)");
        }
        ByteBuffer headerBuf = ByteBuffer.allocate((int) headerLen);
        readFully(ch, headerBuf, 8);
        String headerText;
        try {
            headerText = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(headerBuf.flip())
                    .toString();
        } catch (CharacterCodingException e) {
            throw new Calm4jException(file + ": header is not valid UTF-8, expected a JSON object", e);
        }
        JsonNode root;
        try {
            root = JSON.readTree(headerText);
        } catch (JsonProcessingException e) {
            throw new Calm4jException(file + ": header is not valid JSON (" + oneLine(e.getOriginalMessage())
                    + "), expected a JSON object", e);
        }
        if (root == null || root.isMissingNode()) {
            throw new Calm4jException(file + ": header is empty, expected a JSON object");
        }
        if (!root.isObject()) {
            throw new Calm4jException(file + ": header is " + describe(root) + ", expected a JSON object");
        }

        long dataSize = fileSize - 8 - headerLen;
        Map<String, String> metadata = new LinkedHashMap<>();
        Map<String, TensorInfo> tensors = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> field : root.properties()) {
            if (METADATA_KEY.equals(field.getKey())) {
                metadata = parseMetadata(file, field.getValue());
            } else {
                tensors.put(field.getKey(), parseEntry(file, field.getKey(), field.getValue(), dataSize));
            }
        }
        checkNoOverlap(file, tensors.values());
        return new Safetensors(file, ch, 8 + headerLen, metadata, tensors);
    }

    private static Map<String, String> parseMetadata(Path file, JsonNode node) {
        if (!node.isObject()) {
            throw new Calm4jException(file + ": field '" + METADATA_KEY + "' is " + describe(node)
                    + ", expected an object of string values");
        }
        Map<String, String> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : node.properties()) {
            if (!e.getValue().isTextual()) {
                throw new Calm4jException(file + ": field '" + METADATA_KEY + "' key '" + e.getKey() + "' is "
                        + describe(e.getValue()) + ", expected a string");
            }
            out.put(e.getKey(), e.getValue().textValue());
        }
        return out;
    }

    private static TensorInfo parseEntry(Path file, String name, JsonNode node, long dataSize) {
        String where = file + ": tensor '" + name + "'";
        if (!node.isObject()) {
            throw new Calm4jException(where + " is " + describe(node)
                    + ", expected an object with dtype, shape and data_offsets");
        }
        JsonNode dtypeNode = node.get("dtype");
        if (dtypeNode == null || !dtypeNode.isTextual()) {
            throw new Calm4jException(where + ": field 'dtype' is " + describe(dtypeNode)
                    + ", expected a string, one of " + SafetensorsDtype.supportedList());
        }
        SafetensorsDtype dtype = SafetensorsDtype.fromHeader(dtypeNode.textValue())
                .orElseThrow(() -> new Calm4jException(where + ": dtype '" + dtypeNode.textValue()
                        + "' is not supported, expected one of " + SafetensorsDtype.supportedList()));

        JsonNode shapeNode = node.get("shape");
        if (shapeNode == null || !shapeNode.isArray()) {
            throw new Calm4jException(where + ": field 'shape' is " + describe(shapeNode)
                    + ", expected an array of non-negative integers");
        }
        long[] shape = new long[shapeNode.size()];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = nonNegativeLong(shapeNode.get(i), where + ": shape[" + i + "]");
        }

        JsonNode offNode = node.get("data_offsets");
        if (offNode == null || !offNode.isArray() || offNode.size() != 2) {
            throw new Calm4jException(where + ": field 'data_offsets' is " + describe(offNode)
                    + ", expected an array [begin, end] of two non-negative integers");
        }
        long begin = nonNegativeLong(offNode.get(0), where + ": data_offsets[0]");
        long end = nonNegativeLong(offNode.get(1), where + ": data_offsets[1]");
        String offsets = "data_offsets [" + begin + ", " + end + "]";
        if (end < begin) {
            throw new Calm4jException(where + ": " + offsets + " has end before begin, expected begin <= end");
        }
        if (end > dataSize) {
            throw new Calm4jException(where + ": " + offsets + " reach past the end of the data section ("
                    + dataSize + " bytes; file truncated?)");
        }
        long needed;
        try {
            long numel = 1;
            for (long d : shape) {
                numel = Math.multiplyExact(numel, d);
            }
            needed = Math.multiplyExact(numel, dtype.byteSize());
        } catch (ArithmeticException e) {
            throw new Calm4jException(where + ": shape " + Arrays.toString(shape) + " x " + dtype
                    + " overflows 64 bits, expected a size that matches " + offsets);
        }
        if (needed != end - begin) {
            throw new Calm4jException(where + ": " + offsets + " hold " + (end - begin) + " bytes but shape "
                    + Arrays.toString(shape) + " x " + dtype + " needs " + needed);
        }
        return new TensorInfo(name, dtype, shape, begin, end);
    }

    private static long nonNegativeLong(JsonNode n, String where) {
        if (n == null || !n.isIntegralNumber() || !n.canConvertToLong() || n.longValue() < 0) {
            throw new Calm4jException(where + " is " + describe(n) + ", expected a non-negative integer");
        }
        return n.longValue();
    }

    /** Two tensors sharing bytes would alias after a write through either; the format forbids it. */
    private static void checkNoOverlap(Path file, Iterable<TensorInfo> infos) {
        List<TensorInfo> sorted = new ArrayList<>();
        for (TensorInfo t : infos) {
            if (t.end() > t.begin()) { // empty tensors own no bytes and overlap nothing
                sorted.add(t);
            }
        }
        sorted.sort(Comparator.comparingLong(TensorInfo::begin));
        for (int i = 1; i < sorted.size(); i++) {
            TensorInfo a = sorted.get(i - 1);
            TensorInfo b = sorted.get(i);
            if (b.begin() < a.end()) {
                throw new Calm4jException(file + ": tensor '" + b.name() + "' data_offsets [" + b.begin() + ", "
                        + b.end() + "] overlap tensor '" + a.name() + "' data_offsets [" + a.begin() + ", "
                        + a.end() + "], expected disjoint byte ranges");
            }
        }
    }

    public Path path() {
        return path;
    }

    /** The {@code __metadata__} map (empty if absent), in header order. */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** Tensor names in header order. */
    public Set<String> names() {
        return tensors.keySet();
    }

    public boolean contains(String name) {
        return tensors.containsKey(name);
    }

    /** The validated header entry; {@link Calm4jException} if there is no such tensor. */
    public TensorInfo info(String name) {
        TensorInfo info = tensors.get(name);
        if (info == null) {
            throw new Calm4jException(path + ": missing tensor '" + name + "'");
        }
        return info;
    }

    /** A new CPU tensor owned by libtorch holding a copy of the stored data, in the stored dtype. */
    public Tensor load(String name) {
        return read(info(name), COPY_CHUNK_BYTES);
    }

    /**
     * Like {@link #load(String)} but converted to {@code target} (e.g. BF16 stored, Float wanted). The stored-dtype
     * copy is freed at once rather than left to the GC: for a large model it is as big as the model.
     */
    public Tensor load(String name, ScalarType target) {
        Objects.requireNonNull(target, "target");
        if (SafetensorsDtype.fromScalarType(target).isEmpty()) {
            throw new IllegalArgumentException("load target " + target + " is not one of "
                    + SafetensorsDtype.supportedList());
        }
        Tensor raw = load(name);
        // intern(): JavaCPP hands out fresh enum objects from native calls, so == on the raw values is false.
        if (raw.scalar_type().intern() == target.intern()) {
            return raw;
        }
        Tensor converted = raw.to(target);
        raw.close(); // drops only our reference; 'converted' owns its own storage
        return converted;
    }

    /** Reads one tensor, mapping and copying at most {@code chunkBytes} at a time (small in tests). */
    Tensor read(TensorInfo info, long chunkBytes) {
        if (closed) {
            throw new IllegalStateException(path + ": already closed");
        }
        long n = info.byteLength();
        // The header was validated, so shape and dtype agree with n: libtorch allocates exactly n bytes.
        Tensor t = torch.empty(info.shape(), new TensorOptions(info.dtype().scalarType()), new MemoryFormatOptional());
        if (n == 0) {
            return t;
        }
        try {
            long fileSize = channel.size();
            if (dataStart + info.end() > fileSize) {
                // Reading past EOF would fail half-way; the file must have shrunk since open().
                throw new Calm4jException(path + ": tensor '" + info.name() + "' data ends at byte "
                        + (dataStart + info.end()) + " but the file is now " + fileSize
                        + " bytes (modified while open?)");
            }
            BytePointer dst = new BytePointer(t.data_ptr()).capacity(n);
            // Read straight into the tensor's memory, not through a mapping: a mapped chunk stays mapped (and counted
            // in the process's resident memory, as large as the model) until a GC unmaps it.
            for (long pos = 0; pos < n; ) {
                long len = Math.min(chunkBytes, n - pos);
                ByteBuffer chunk = dst.position(pos).limit(pos + len).asByteBuffer();   // [0, len) of the tensor
                readFully(channel, chunk, dataStart + info.begin() + pos);
                if (info.dtype() == SafetensorsDtype.BOOL) {
                    checkBoolBytes(info, chunk, pos);
                }
                pos += len;
            }
            return t;
        } catch (IOException e) {
            t.close();
            throw new Calm4jException(path + ": tensor '" + info.name() + "': cannot read data: " + e, e);
        } catch (RuntimeException e) {
            t.close();
            throw e;
        }
    }

    /** libtorch assumes bool bytes are 0 or 1; anything else is undefined behaviour in its kernels. */
    private void checkBoolBytes(TensorInfo info, ByteBuffer src, long chunkStart) {
        for (int i = 0; i < src.limit(); i++) {
            byte b = src.get(i);
            if (b != 0 && b != 1) {
                throw new Calm4jException(path + ": tensor '" + info.name() + "': BOOL element " + (chunkStart + i)
                        + " is byte " + (b & 0xff) + ", expected 0 or 1");
            }
        }
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            closeQuietly(channel);
        }
    }

    // ------------------------------------------------------------------------------------------------ writing

    /**
     * Writes {@code tensors} (in map order, contiguous, consecutive offsets) with optional string
     * {@code metadata} (null or empty: no {@code __metadata__} entry). The file appears atomically: data goes to a
     * temporary file in the same directory, which is synced and then renamed over {@code file}; on any error the
     * temporary file is deleted and an existing {@code file} is left as it was. Parent directories are created.
     */
    public static void write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) {
        Objects.requireNonNull(file, "file");
        Objects.requireNonNull(tensors, "tensors");
        requireLittleEndianPlatform(file);

        // Validate everything and build the header first, so a bad tensor leaves no file behind at all.
        List<Entry> entries = new ArrayList<>(tensors.size());
        ObjectNode header = JSON.createObjectNode();
        if (metadata != null && !metadata.isEmpty()) {
            ObjectNode meta = header.putObject(METADATA_KEY);
            metadata.forEach((k, v) -> {
                if (k == null || v == null) {
                    throw new Calm4jException(file + ": field '" + METADATA_KEY + "' has a null key or value for key '"
                            + k + "', expected strings");
                }
                meta.put(k, v);
            });
        }
        long offset = 0;
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            String name = e.getKey();
            Tensor t = e.getValue();
            SafetensorsDtype dtype = checkWritable(file, name, t);
            long[] shape = shapeOf(t);
            long bytes = Math.multiplyExact(t.numel(), dtype.byteSize());
            entries.add(new Entry(name, t, bytes));
            ObjectNode entry = header.putObject(name);
            entry.put("dtype", dtype.headerName());
            ArrayNode shapeArr = entry.putArray("shape");
            for (long d : shape) {
                shapeArr.add(d);
            }
            entry.putArray("data_offsets").add(offset).add(offset + bytes);
            offset += bytes;
        }
        byte[] json;
        try {
            json = JSON.writeValueAsBytes(header);
        } catch (JsonProcessingException e) {
            throw new Calm4jException(file + ": cannot encode header: " + e.getOriginalMessage(), e);
        }
        // Pad with spaces so the data section starts 8-byte aligned, as the HF writer does.
        int padded = (json.length + 7) & ~7;
        if (padded > MAX_HEADER_BYTES) {
            throw new Calm4jException(file + ": header would be " + padded + " bytes, over the " + MAX_HEADER_BYTES
                    + "-byte limit readers accept (too many tensors?)");
        }
        byte[] headerBytes = Arrays.copyOf(json, padded);
        Arrays.fill(headerBytes, json.length, padded, (byte) ' ');

        writeAtomically(file, ch -> {
            writeFully(ch, ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, padded));
            writeFully(ch, ByteBuffer.wrap(headerBytes));
            for (Entry en : entries) {
                writeTensorData(ch, en);
            }
        });
    }

    private record Entry(String name, Tensor tensor, long bytes) {}

    /**
     * Checks a tensor can be written as safetensors, before any native call that would crash on it. Returns its
     * dtype. Package-private: {@link WeightFiles#writeSharded} validates with it before splitting into shards.
     */
    static SafetensorsDtype checkWritable(Path file, String name, Tensor t) {
        if (name == null) {
            throw new Calm4jException(file + ": a tensor has a null name, expected a string");
        }
        String where = file + ": tensor '" + name + "'";
        if (METADATA_KEY.equals(name)) {
            throw new Calm4jException(where + ": the name is reserved for metadata, expected another name");
        }
        if (t == null || t.isNull() || !t.defined()) {
            throw new Calm4jException(where + " is undefined, expected a defined tensor");
        }
        if (!t.is_cpu()) {
            throw new Calm4jException(where + " is on device " + t.device().str().getString()
                    + ", expected a CPU tensor (move it with .cpu() first)");
        }
        if (t.layout().intern() != torch.Layout.Strided || t.is_quantized()) { // intern(): see SafetensorsDtype
            throw new Calm4jException(where + " has layout " + t.layout() + (t.is_quantized() ? " (quantized)" : "")
                    + ", expected a dense strided tensor");
        }
        Optional<SafetensorsDtype> dtype = SafetensorsDtype.fromScalarType(t.scalar_type());
        if (dtype.isEmpty()) {
            throw new Calm4jException(where + " has dtype " + t.scalar_type() + ", expected one of "
                    + SafetensorsDtype.supportedList());
        }
        return dtype.get();
    }

    static long[] shapeOf(Tensor t) {
        long[] shape = new long[(int) t.dim()];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = t.size(i);
        }
        return shape;
    }

    private static void writeTensorData(FileChannel ch, Entry en) throws IOException {
        if (en.bytes() == 0) {
            return; // data_ptr() may be null for an empty tensor; nothing to write anyway
        }
        Tensor c = en.tensor().contiguous(); // a new reference (a copy only if the layout was not contiguous)
        try {
            if (c.nbytes() != en.bytes()) {
                throw new IllegalStateException("tensor '" + en.name() + "': nbytes " + c.nbytes() + " != " + en.bytes());
            }
            BytePointer src = new BytePointer(c.data_ptr()).capacity(en.bytes());
            for (long pos = 0; pos < en.bytes(); ) {
                long len = Math.min(COPY_CHUNK_BYTES, en.bytes() - pos);
                writeFully(ch, src.position(pos).limit(pos + len).asByteBuffer());
                pos += len;
            }
        } finally {
            c.close(); // 'c' is still referenced above until here, so its memory stays valid during the writes
        }
    }

    // ------------------------------------------------------------------------------------------------ file helpers

    /** Body of an atomic write: fills a fresh channel. */
    @FunctionalInterface
    interface ChannelWriter {
        void write(FileChannel ch) throws IOException;
    }

    /**
     * Writes {@code file} via a temporary sibling that is synced and then renamed over it, so readers see either the
     * old file or the complete new one, never a partial file; the temporary file is deleted on any failure.
     */
    static void writeAtomically(Path file, ChannelWriter body) {
        Path abs = file.toAbsolutePath();
        Path dir = abs.getParent();
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new Calm4jException(file + ": cannot create directory " + dir + ": " + e, e);
        }
        // Not Files.createTempFile: that makes the file 0600, which the rename would carry over to the result.
        Path tmp = dir.resolve("." + abs.getFileName() + "." + Long.toHexString(ThreadLocalRandom.current().nextLong())
                + ".tmp");
        boolean done = false;
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                body.write(ch);
                ch.force(true); // the rename must not become durable before the data does
            }
            try {
                Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                throw new Calm4jException(file + ": the file system cannot rename atomically within " + dir, e);
            }
            done = true;
        } catch (IOException e) {
            throw new Calm4jException(file + ": cannot write: " + e, e);
        } finally {
            if (!done) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // best effort; the original error is the one worth reporting
                }
            }
        }
    }

    private static void readFully(FileChannel ch, ByteBuffer buf, long position) throws IOException {
        long pos = position;
        while (buf.hasRemaining()) {
            int n = ch.read(buf, pos);
            if (n < 0) {
                throw new IOException("unexpected end of file at byte " + pos);
            }
            pos += n;
        }
    }

    private static void writeFully(FileChannel ch, ByteBuffer buf) throws IOException {
        while (buf.hasRemaining()) {
            ch.write(buf);
        }
    }

    private static void closeQuietly(FileChannel ch) {
        try {
            ch.close();
        } catch (IOException ignored) {
            // nothing useful to do: the channel was read-only
        }
    }

    /** The format is little-endian and tensors are copied byte for byte, so a big-endian host would need swaps. */
    private static void requireLittleEndianPlatform(Path file) {
        if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
            throw new Calm4jException(file + ": safetensors is little-endian and this platform is big-endian, "
                    + "which calm4j does not support");
        }
    }

    /** Short description of a JSON value for error messages ("a string", "missing", ...). */
    static String describe(JsonNode n) {
        if (n == null || n.isMissingNode()) {
            return "missing";
        }
        if (n.isNull()) {
            return "null";
        }
        String text = n.toString();
        if (text.length() > 60) {
            text = text.substring(0, 57) + "...";
        }
        return (n.isObject() ? "an object " : n.isArray() ? "an array " : n.isTextual() ? "the string "
                : n.isNumber() ? "the number " : n.isBoolean() ? "the boolean " : "") + oneLine(text);
    }

    static String oneLine(String s) {
        return s == null ? "" : s.replaceAll("\\s*[\\r\\n]+\\s*", " ");
    }
}
