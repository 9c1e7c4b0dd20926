package dev.calm4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.MemoryFormatOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class SafetensorsTest {
    static {
        Torch.init();
    }

    @TempDir
    Path dir;

    // ------------------------------------------------------------------------------------------------ helpers

    /** A tensor holding exactly {@code raw} (native = little-endian order), built without the code under test. */
    static Tensor fromBytes(byte[] raw, long[] shape, ScalarType st) {
        Tensor t = torch.empty(shape, new TensorOptions(st), new MemoryFormatOptional());
        assertEquals(raw.length, t.nbytes(), "test bug: byte count does not match shape");
        if (raw.length > 0) {
            new BytePointer(t.data_ptr()).capacity(raw.length).put(raw);
        }
        return t;
    }

    /** The raw bytes of a tensor in row-major order. */
    static byte[] bytesOf(Tensor t) {
        Tensor c = t.contiguous();
        byte[] out = new byte[(int) c.nbytes()];
        if (out.length > 0) {
            new BytePointer(c.data_ptr()).capacity(out.length).get(out);
        }
        return out;
    }

    static long[] shapeOf(Tensor t) {
        return Safetensors.shapeOf(t);
    }

    /** Deterministic bytes valid for {@code dtype} (0/1 for BOOL, anything otherwise: NaN payloads included). */
    static byte[] randomBytes(SafetensorsDtype dtype, long numel, long seed) {
        byte[] b = new byte[(int) (numel * dtype.byteSize())];
        Random r = new Random(seed);
        r.nextBytes(b);
        if (dtype == SafetensorsDtype.BOOL) {
            for (int i = 0; i < b.length; i++) {
                b[i] = (byte) (b[i] & 1);
            }
        }
        return b;
    }

    static ByteBuffer le(int capacity) {
        return ByteBuffer.allocate(capacity).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** A file laid out by hand: u64 LE header length, the header padded with spaces to 8 bytes, then data. */
    Path handMade(String fileName, String headerJson, byte[] data) throws IOException {
        byte[] json = headerJson.getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) / 8 * 8;
        ByteBuffer buf = le(8 + padded + data.length);
        buf.putLong(padded);
        buf.put(json);
        for (int i = json.length; i < padded; i++) {
            buf.put((byte) ' ');
        }
        buf.put(data);
        Path p = dir.resolve(fileName);
        Files.write(p, buf.array());
        return p;
    }

    /** A file whose header length field is {@code headerLen}, followed by {@code rest} verbatim. */
    Path withLength(String fileName, long headerLen, byte[] rest) throws IOException {
        ByteBuffer buf = le(8 + rest.length);
        buf.putLong(headerLen);
        buf.put(rest);
        Path p = dir.resolve(fileName);
        Files.write(p, buf.array());
        return p;
    }

    /** Opening must fail with a one-line Calm4jException naming the file and containing every fragment. */
    static Calm4jException assertOpenFails(Path file, String... fragments) {
        Calm4jException e = assertThrows(Calm4jException.class, () -> Safetensors.open(file).close());
        assertMessage(e, file, fragments);
        return e;
    }

    static void assertMessage(Calm4jException e, Path file, String... fragments) {
        String msg = e.getMessage();
        assertTrue(msg.contains(file.getFileName().toString()), () -> "message does not name the file: " + msg);
        for (String f : fragments) {
            assertTrue(msg.contains(f), () -> "message lacks '" + f + "': " + msg);
        }
        assertFalse(msg.contains("\n"), () -> "message is not one line: " + msg);
    }

    static String entry(String dtype, String shape, long begin, long end) {
        return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" + begin + "," + end + "]}";
    }

    // ------------------------------------------------------------------------------------------------ round trips

    @ParameterizedTest
    @EnumSource(SafetensorsDtype.class)
    void roundTripIsBitwiseForEveryDtypeIncludingScalarAndEmpty(SafetensorsDtype dtype) {
        ScalarType st = dtype.scalarType();
        Map<String, Tensor> in = new LinkedHashMap<>();
        in.put("matrix", fromBytes(randomBytes(dtype, 6, 1), new long[] {2, 3}, st));
        in.put("scalar", fromBytes(randomBytes(dtype, 1, 2), new long[] {}, st));
        in.put("empty", fromBytes(new byte[0], new long[] {3, 0, 2}, st));
        in.put("vector", fromBytes(randomBytes(dtype, 5, 3), new long[] {5}, st));
        Path file = dir.resolve("rt.safetensors");
        Safetensors.write(file, in, Map.of("k", "v"));

        try (Safetensors st2 = Safetensors.open(file)) {
            assertEquals(List.copyOf(in.keySet()), List.copyOf(st2.names()), "header order = map order");
            assertEquals(Map.of("k", "v"), st2.metadata());
            long expectedBegin = 0;
            for (Map.Entry<String, Tensor> e : in.entrySet()) {
                Safetensors.TensorInfo info = st2.info(e.getKey());
                assertEquals(dtype, info.dtype());
                assertArrayEquals(shapeOf(e.getValue()), info.shape());
                assertEquals(expectedBegin, info.begin(), "offsets are consecutive");
                expectedBegin = info.end();

                Tensor out = st2.load(e.getKey());
                assertEquals(st, out.scalar_type().intern());
                assertArrayEquals(shapeOf(e.getValue()), shapeOf(out));
                assertArrayEquals(bytesOf(e.getValue()), bytesOf(out), e.getKey() + " bytes differ");
            }
            assertEquals(0, st2.load("scalar").dim(), "0-dim stays 0-dim");
            assertEquals(0, st2.load("empty").numel());
        }
    }

    @Test
    void writerProducesTheExactHfLayout() throws IOException {
        Map<String, Tensor> in = new LinkedHashMap<>();
        in.put("a", fromBytes(le(8).putFloat(1.0f).putFloat(-2.5f).array(), new long[] {2}, ScalarType.Float));
        in.put("b", fromBytes(le(8).putLong(-3).array(), new long[] {1}, ScalarType.Long));
        Path file = dir.resolve("layout.safetensors");
        Safetensors.write(file, in, Map.of("format", "pt"));

        byte[] bytes = Files.readAllBytes(file);
        ByteBuffer buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        long headerLen = buf.getLong(0);
        assertEquals(0, headerLen % 8, "header padded to a multiple of 8");
        String header = new String(bytes, 8, (int) headerLen, StandardCharsets.UTF_8);
        String expectedJson = "{\"__metadata__\":{\"format\":\"pt\"},"
                + "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}}";
        assertEquals(expectedJson, header.stripTrailing());
        assertTrue(header.substring(expectedJson.length()).chars().allMatch(c -> c == ' '), "padding is spaces");
        assertTrue(headerLen - expectedJson.length() < 8);
        assertEquals(8 + headerLen + 16, bytes.length, "no bytes after the data");
        int data = 8 + (int) headerLen;
        assertEquals(1.0f, buf.getFloat(data));
        assertEquals(-2.5f, buf.getFloat(data + 4));
        assertEquals(-3L, buf.getLong(data + 8));
    }

    @Test
    void readsAPythonLayoutFileBuiltByHand() throws IOException {
        // As Python's writer would lay it out: data order differs from header order, whitespace in the JSON.
        String header = "{\"__metadata__\": {\"format\": \"pt\", \"note\": \"hand made\"}, "
                + "\"w\": " + entry("F32", "[2, 2]", 24, 40) + ", "
                + "\"ids\": " + entry("I64", "[3]", 0, 24) + ", "
                + "\"h\": " + entry("F16", "[2]", 40, 44) + ", "
                + "\"b\": " + entry("BF16", "[]", 44, 46) + ", "
                + "\"m\": " + entry("BOOL", "[3]", 46, 49) + "}";
        ByteBuffer data = le(49);
        data.putLong(7).putLong(-1).putLong(1L << 40);
        data.putFloat(1.5f).putFloat(-2f).putFloat(0.25f).putFloat(1e-3f);
        data.putShort((short) 0x3C00).putShort((short) 0xC000); // F16 1.0, -2.0
        data.putShort((short) 0x4049); // BF16 3.140625
        data.put((byte) 1).put((byte) 0).put((byte) 1);
        Path file = handMade("model.safetensors", header, data.array());

        try (Safetensors st = Safetensors.open(file)) {
            assertEquals(List.of("w", "ids", "h", "b", "m"), List.copyOf(st.names()));
            assertEquals(Map.of("format", "pt", "note", "hand made"), st.metadata());
            assertEquals(new Safetensors.TensorInfo("w", SafetensorsDtype.F32, new long[] {2, 2}, 24, 40), st.info("w"));
            assertTrue(st.contains("ids"));
            assertFalse(st.contains("nope"));

            Tensor w = st.load("w");
            assertEquals(ScalarType.Float, w.scalar_type().intern());
            assertArrayEquals(new long[] {2, 2}, shapeOf(w));
            ByteBuffer wb = ByteBuffer.wrap(bytesOf(w)).order(ByteOrder.LITTLE_ENDIAN);
            assertEquals(1.5f, wb.getFloat());
            assertEquals(-2f, wb.getFloat());
            assertEquals(0.25f, wb.getFloat());
            assertEquals(1e-3f, wb.getFloat());
            assertEquals(-2.0, w.get(0).get(1).item_double(), "libtorch sees the same element");

            Tensor ids = st.load("ids");
            assertEquals(ScalarType.Long, ids.scalar_type().intern());
            assertEquals(7L, ids.get(0).item_long());
            assertEquals(-1L, ids.get(1).item_long());
            assertEquals(1L << 40, ids.get(2).item_long());

            Tensor h = st.load("h", ScalarType.Float);
            assertEquals(1.0, h.get(0).item_double());
            assertEquals(-2.0, h.get(1).item_double());

            Tensor b = st.load("b");
            assertEquals(ScalarType.BFloat16, b.scalar_type().intern());
            assertEquals(0, b.dim());
            assertEquals(3.140625, b.item_double());

            Tensor m = st.load("m");
            assertEquals(ScalarType.Bool, m.scalar_type().intern());
            assertArrayEquals(new byte[] {1, 0, 1}, bytesOf(m));
            assertEquals(2L, m.sum().item_long());
        }
    }

    @Test
    void convertsBf16AndF16ToF32Exactly() throws IOException {
        short[] bf16 = {0x3F80, (short) 0xC000, 0x4049, 0x7F80, (short) 0xFF80, 0x0001, 0x3EAB};
        short[] f16 = {0x3C00, (short) 0xC000, 0x3555, 0x7BFF, 0x0001, 0x7C00, (short) 0x8000};
        float[] f16Expected = {1f, -2f, 0.333251953125f, 65504f, 5.9604645e-8f, Float.POSITIVE_INFINITY, -0.0f};
        ByteBuffer data = le(2 * (bf16.length + f16.length));
        for (short s : bf16) {
            data.putShort(s);
        }
        for (short s : f16) {
            data.putShort(s);
        }
        Path file = handMade("conv.safetensors", "{\"bf\":" + entry("BF16", "[7]", 0, 14) + ",\"hf\":"
                + entry("F16", "[7]", 14, 28) + "}", data.array());

        try (Safetensors st = Safetensors.open(file)) {
            Tensor bf = st.load("bf", ScalarType.Float);
            assertEquals(ScalarType.Float, bf.scalar_type().intern());
            ByteBuffer got = ByteBuffer.wrap(bytesOf(bf)).order(ByteOrder.LITTLE_ENDIAN);
            for (short s : bf16) {
                // bf16 -> f32 is exact: the bf16 bits are the top half of the f32 bits.
                assertEquals((s & 0xffff) << 16, got.getInt(), "bf16 0x" + Integer.toHexString(s & 0xffff));
            }
            Tensor hf = st.load("hf", ScalarType.Float);
            got = ByteBuffer.wrap(bytesOf(hf)).order(ByteOrder.LITTLE_ENDIAN);
            for (float f : f16Expected) {
                assertEquals(Float.floatToRawIntBits(f), got.getInt(), "f16 -> " + f);
            }
            assertEquals(ScalarType.Double, st.load("hf", ScalarType.Double).scalar_type().intern());
            assertEquals(ScalarType.Half, st.load("hf", ScalarType.Half).scalar_type().intern(), "same dtype: no conversion");
        }
    }

    @Test
    void loadWithConversionIsSafeInsideAPointerScope() {
        Path file = dir.resolve("scope.safetensors");
        Safetensors.write(file, Map.of("x", torch.randn(new long[] {4, 4}, new TensorOptions(ScalarType.BFloat16))),
                null);
        try (Safetensors st = Safetensors.open(file)) {
            for (int i = 0; i < 3; i++) {
                try (PointerScope scope = new PointerScope()) {
                    Tensor x = st.load("x", ScalarType.Float);
                    assertEquals(16, x.numel());
                    assertTrue(Double.isFinite(x.sum().item_double()));
                }
            }
        }
    }

    @Test
    void chunkedCopyReassemblesTensorsAcrossReads() {
        byte[] raw = randomBytes(SafetensorsDtype.F32, 250, 9);
        Tensor t = fromBytes(raw, new long[] {10, 25}, ScalarType.Float);
        byte[] flags = randomBytes(SafetensorsDtype.BOOL, 37, 10);
        Tensor b = fromBytes(flags, new long[] {37}, ScalarType.Bool);
        Path file = dir.resolve("chunks.safetensors");
        Map<String, Tensor> in = new LinkedHashMap<>();
        in.put("t", t);
        in.put("b", b);
        Safetensors.write(file, in, null);
        try (Safetensors st = Safetensors.open(file)) {
            for (long chunk : new long[] {1, 7, 999, 1000, 4096}) {
                assertArrayEquals(raw, bytesOf(st.read(st.info("t"), chunk)), "chunk " + chunk);
                assertArrayEquals(flags, bytesOf(st.read(st.info("b"), chunk)), "chunk " + chunk);
            }
        }
    }

    /**
     * Loading reads into the tensor's own memory and leaves no mapping of the file behind: a mapped chunk stays
     * mapped (resident, as large as what was read) until a GC happens to unmap it, which once doubled a model's
     * memory at load.
     */
    @Test
    void loadingLeavesNoMappingOfTheFile() throws IOException {
        Path maps = Path.of("/proc/self/maps");
        assertTrue(Files.isReadable(maps), "this check reads /proc/self/maps (Linux)");
        Path file = dir.resolve("unmapped.safetensors");
        Safetensors.write(file, Map.of("w", torch.randn(new long[] {256, 256}, new TensorOptions(ScalarType.Float))), null);
        String real = file.toRealPath().toString();
        try (Safetensors st = Safetensors.open(file)) {
            for (int i = 0; i < 3; i++) {
                try (Tensor w = st.load("w"); Tensor wb = st.load("w", ScalarType.BFloat16)) {
                    assertEquals(65536, wb.numel());
                    assertTrue(Files.readAllLines(maps).stream().noneMatch(l -> l.endsWith(real)),
                            "the file is still mapped after a load");
                }
            }
        }
    }

    @Test
    void writesNonContiguousTensorsAsTheirLogicalValues() {
        Tensor base = torch.arange(new org.bytedeco.pytorch.Scalar(0.0), new org.bytedeco.pytorch.Scalar(6.0),
                new TensorOptions(ScalarType.Float)).reshape(2, 3);
        Tensor transposed = base.t();
        assertFalse(transposed.is_contiguous());
        Path file = dir.resolve("t.safetensors");
        Safetensors.write(file, Map.of("t", transposed), null);
        try (Safetensors st = Safetensors.open(file)) {
            Tensor back = st.load("t");
            assertArrayEquals(new long[] {3, 2}, shapeOf(back));
            assertTrue(back.equal(transposed));
            assertEquals(1.0, back.get(1).get(0).item_double());
        }
    }

    @Test
    void writeReplacesAnExistingFileAndLeavesNoTemporaryFiles() throws IOException {
        Path file = dir.resolve("w.safetensors");
        Safetensors.write(file, Map.of("a", torch.ones(new long[] {2}, new TensorOptions(ScalarType.Float))), null);
        Safetensors.write(file, Map.of("b", torch.zeros(new long[] {3}, new TensorOptions(ScalarType.Int))), null);
        try (Safetensors st = Safetensors.open(file)) {
            assertEquals(List.of("b"), List.copyOf(st.names()));
        }
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(file.getFileName()), files.map(Path::getFileName).toList());
        }
    }

    @Test
    void failedWriteLeavesTheOldFileAndNoTemporaryFile() throws IOException {
        Path file = dir.resolve("keep.safetensors");
        Safetensors.write(file, Map.of("a", torch.ones(new long[] {2}, new TensorOptions(ScalarType.Float))), null);
        byte[] before = Files.readAllBytes(file);

        Map<String, Tensor> bad = new LinkedHashMap<>();
        bad.put("good", torch.ones(new long[] {2}, new TensorOptions(ScalarType.Float)));
        bad.put("hole", new Tensor());
        Calm4jException e = assertThrows(Calm4jException.class, () -> Safetensors.write(file, bad, null));
        assertMessage(e, file, "tensor 'hole'", "undefined");

        Map<String, Tensor> complex = Map.of("z", torch.zeros(new long[] {2}, new TensorOptions(ScalarType.ComplexFloat)));
        e = assertThrows(Calm4jException.class, () -> Safetensors.write(file, complex, null));
        assertMessage(e, file, "tensor 'z'", "ComplexFloat", "F32");

        Map<String, Tensor> reserved = Map.of("__metadata__", torch.ones(new long[] {1}, new TensorOptions(ScalarType.Float)));
        e = assertThrows(Calm4jException.class, () -> Safetensors.write(file, reserved, null));
        assertMessage(e, file, "__metadata__");

        assertArrayEquals(before, Files.readAllBytes(file));
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(file.getFileName()), files.map(Path::getFileName).toList());
        }
    }

    // ------------------------------------------------------------------------------------------------ bad input

    @Test
    void rejectsAFileShorterThanTheLengthPrefix() throws IOException {
        Path file = dir.resolve("short.safetensors");
        Files.write(file, new byte[] {1, 2, 3, 4, 5});
        assertOpenFails(file, "5 bytes", "8-byte header length");
        Path empty = dir.resolve("empty.safetensors");
        Files.write(empty, new byte[0]);
        assertOpenFails(empty, "0 bytes");
    }

    @Test
    void rejectsAHeaderLengthLargerThanTheFile() throws IOException {
        Path file = withLength("big.safetensors", 1000, "{}".getBytes(StandardCharsets.UTF_8));
        assertOpenFails(file, "header length 1000", "larger than the 2 bytes");
    }

    @Test
    void rejectsAnAbsurdHeaderLengthWithoutAllocating() throws IOException {
        assertOpenFails(withLength("huge.safetensors", 1L << 60, new byte[16]), "header length 1152921504606846976",
                "exceeds");
        // 2^64-1 reads as -1 in a signed long: must still be rejected, not wrap around.
        assertOpenFails(withLength("neg.safetensors", -1L, new byte[16]), "18446744073709551615", "exceeds");
    }

    @Test
    void rejectsAHeaderThatIsNotAJsonObject() throws IOException {
        assertOpenFails(handMade("text.safetensors", "this is not json", new byte[0]), "header", "not valid JSON");
        assertOpenFails(handMade("array.safetensors", "[1, 2]", new byte[0]), "header", "expected a JSON object");
        assertOpenFails(handMade("blank.safetensors", "", new byte[0]), "header is empty");
        assertOpenFails(handMade("trailing.safetensors", "{} {}", new byte[0]), "not valid JSON");
        assertOpenFails(handMade("dup.safetensors", "{\"a\":" + entry("U8", "[1]", 0, 1) + ",\"a\":"
                + entry("U8", "[1]", 1, 2) + "}", new byte[2]), "not valid JSON", "a");
        assertOpenFails(withLength("utf.safetensors", 8, new byte[] {'{', '"', (byte) 0xff, '"', ':', '1', '}', ' '}),
                "UTF-8");
    }

    @Test
    void rejectsBadMetadata() throws IOException {
        assertOpenFails(handMade("meta.safetensors", "{\"__metadata__\":{\"n\":3}}", new byte[0]), "__metadata__",
                "'n'", "expected a string");
        assertOpenFails(handMade("meta2.safetensors", "{\"__metadata__\":[]}", new byte[0]), "__metadata__");
    }

    @Test
    void rejectsAnUnknownDtype() throws IOException {
        Path file = handMade("dtype.safetensors", "{\"x\":" + entry("U16", "[2]", 0, 4) + "}", new byte[4]);
        assertOpenFails(file, "tensor 'x'", "dtype 'U16'", "BF16");
        assertOpenFails(handMade("dtype2.safetensors", "{\"x\":{\"shape\":[1],\"data_offsets\":[0,1]}}", new byte[1]),
                "tensor 'x'", "'dtype'", "missing");
    }

    @Test
    void rejectsABadShape() throws IOException {
        assertOpenFails(handMade("neg.safetensors", "{\"x\":" + entry("F32", "[2, -1]", 0, 8) + "}", new byte[8]),
                "tensor 'x'", "shape[1]", "-1", "non-negative");
        assertOpenFails(handMade("frac.safetensors", "{\"x\":" + entry("F32", "[1.5]", 0, 4) + "}", new byte[4]),
                "tensor 'x'", "shape[0]");
        assertOpenFails(handMade("str.safetensors", "{\"x\":" + entry("F32", "\"2\"", 0, 8) + "}", new byte[8]),
                "tensor 'x'", "'shape'");
        // 2^32 * 2^32 overflows a long: must be caught, not wrap to a small size.
        assertOpenFails(handMade("ovf.safetensors", "{\"x\":" + entry("F32", "[4294967296, 4294967296]", 0, 0) + "}",
                new byte[0]), "tensor 'x'", "overflows");
        assertOpenFails(handMade("ovf2.safetensors", "{\"x\":" + entry("F32", "[99999999999999999999]", 0, 0) + "}",
                new byte[0]), "tensor 'x'", "shape[0]");
    }

    @Test
    void rejectsOffsetsBeyondTheData() throws IOException {
        Path file = handMade("beyond.safetensors", "{\"x\":" + entry("F32", "[16]", 0, 64) + "}", new byte[16]);
        assertOpenFails(file, "tensor 'x'", "data_offsets [0, 64]", "16 bytes");
    }

    @Test
    void rejectsEndBeforeBegin() throws IOException {
        Path file = handMade("order.safetensors", "{\"x\":" + entry("U8", "[0]", 8, 4) + "}", new byte[16]);
        assertOpenFails(file, "tensor 'x'", "data_offsets [8, 4]", "end before begin");
        assertOpenFails(handMade("arity.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}",
                new byte[1]), "tensor 'x'", "'data_offsets'");
        assertOpenFails(handMade("negoff.safetensors", "{\"x\":" + entry("U8", "[0]", -4, 0) + "}", new byte[1]),
                "tensor 'x'", "data_offsets[0]");
    }

    @Test
    void rejectsASizeThatDoesNotMatchDtypeTimesShape() throws IOException {
        Path file = handMade("model.safetensors", "{\"model.norm.weight\":" + entry("F32", "[64]", 0, 100) + "}",
                new byte[100]);
        Calm4jException e = assertOpenFails(file);
        assertEquals(file + ": tensor 'model.norm.weight': data_offsets [0, 100] hold 100 bytes but shape [64] x F32 "
                + "needs 256", e.getMessage());
        // 0-dim: one element, not zero.
        assertOpenFails(handMade("scalar.safetensors", "{\"s\":" + entry("F64", "[]", 0, 0) + "}", new byte[0]),
                "tensor 's'", "needs 8");
    }

    @Test
    void rejectsOverlappingTensors() throws IOException {
        String header = "{\"a\":" + entry("F32", "[4]", 0, 16) + ",\"b\":" + entry("F32", "[4]", 8, 24) + "}";
        assertOpenFails(handMade("overlap.safetensors", header, new byte[24]), "'a'", "'b'", "overlap");
        // Touching ranges and empty tensors inside another range are fine.
        String ok = "{\"a\":" + entry("F32", "[2]", 0, 8) + ",\"b\":" + entry("F32", "[2]", 8, 16) + ",\"e\":"
                + entry("F32", "[0]", 4, 4) + "}";
        try (Safetensors st = Safetensors.open(handMade("touch.safetensors", ok, new byte[16]))) {
            assertEquals(3, st.names().size());
        }
    }

    @Test
    void reportsAMissingTensorOnLoad() throws IOException {
        Path file = handMade("model.safetensors", "{\"a\":" + entry("U8", "[1]", 0, 1) + "}", new byte[1]);
        try (Safetensors st = Safetensors.open(file)) {
            Calm4jException e = assertThrows(Calm4jException.class, () -> st.load("x"));
            assertEquals(file + ": missing tensor 'x'", e.getMessage());
            e = assertThrows(Calm4jException.class, () -> st.load("x", ScalarType.Float));
            assertEquals(file + ": missing tensor 'x'", e.getMessage());
            e = assertThrows(Calm4jException.class, () -> st.info("x"));
            assertEquals(file + ": missing tensor 'x'", e.getMessage());
        }
    }

    @Test
    void rejectsADataSectionCutAfterTheHeader() throws IOException {
        Path file = dir.resolve("cut.safetensors");
        Map<String, Tensor> in = new LinkedHashMap<>();
        in.put("first", torch.ones(new long[] {4}, new TensorOptions(ScalarType.Float)));
        in.put("second", torch.ones(new long[] {4}, new TensorOptions(ScalarType.Float)));
        Safetensors.write(file, in, null);
        long headerLen = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN).getLong(0);

        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
            ch.truncate(8 + headerLen + 20); // half of 'second' is gone
        }
        assertOpenFails(file, "tensor 'second'", "data_offsets [16, 32]", "20 bytes", "truncated");
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
            ch.truncate(8 + headerLen); // all data gone
        }
        assertOpenFails(file, "tensor 'first'", "data_offsets [0, 16]", "0 bytes");
    }

    @Test
    void rejectsBoolBytesOtherThanZeroOrOneOnLoad() throws IOException {
        Path file = handMade("bool.safetensors", "{\"m\":" + entry("BOOL", "[3]", 0, 3) + "}", new byte[] {1, 0, 7});
        try (Safetensors st = Safetensors.open(file)) {
            Calm4jException e = assertThrows(Calm4jException.class, () -> st.load("m"));
            assertMessage(e, file, "tensor 'm'", "element 2", "byte 7");
        }
    }

    @Test
    void rejectsMissingFilesAndDirectories() {
        Path missing = dir.resolve("nothere.safetensors");
        assertOpenFails(missing, "not found");
        Calm4jException e = assertThrows(Calm4jException.class, () -> Safetensors.open(dir).close());
        assertTrue(e.getMessage().contains("directory"), e.getMessage());
    }

    @Test
    void tensorInfoIsAValueType() {
        long[] shape = {2, 3};
        var a = new Safetensors.TensorInfo("x", SafetensorsDtype.F16, shape, 0, 12);
        shape[0] = 99;
        assertArrayEquals(new long[] {2, 3}, a.shape(), "defensive copy in");
        a.shape()[0] = 99;
        assertArrayEquals(new long[] {2, 3}, a.shape(), "defensive copy out");
        assertEquals(a, new Safetensors.TensorInfo("x", SafetensorsDtype.F16, new long[] {2, 3}, 0, 12));
        assertEquals(6, a.numel());
        assertEquals(12, a.byteLength());
        assertEquals(1, new Safetensors.TensorInfo("s", SafetensorsDtype.F32, new long[0], 0, 4).numel());
        assertTrue(Arrays.toString(a.shape()).contains("2"));
    }

    @Test
    void dtypeTableMatchesTheFormat() {
        for (SafetensorsDtype d : SafetensorsDtype.values()) {
            assertEquals(d, SafetensorsDtype.fromHeader(d.headerName()).orElseThrow());
            assertEquals(d, SafetensorsDtype.fromScalarType(d.scalarType()).orElseThrow());
            // The byte size must agree with libtorch's, or loads would be mis-sized.
            assertEquals(d.byteSize(), torch.empty(new long[] {1}, new TensorOptions(d.scalarType()),
                    new MemoryFormatOptional()).element_size(), d.name());
        }
        assertTrue(SafetensorsDtype.fromHeader("f32").isEmpty(), "case-sensitive, as in the format");
        assertTrue(SafetensorsDtype.fromScalarType(ScalarType.ComplexFloat).isEmpty());
    }
}
