package dev.calm4j.io;

import static dev.calm4j.io.SafetensorsTest.bytesOf;
import static dev.calm4j.io.SafetensorsTest.fromBytes;
import static dev.calm4j.io.SafetensorsTest.randomBytes;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class WeightFilesTest {
    static {
        Torch.init();
    }

    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    /** Six 64-byte tensors of mixed dtypes, then a 200-byte one; 584 bytes in all. */
    static Map<String, Tensor> sampleTensors() {
        Map<String, Tensor> m = new LinkedHashMap<>();
        m.put("embed.weight", fromBytes(randomBytes(SafetensorsDtype.F32, 16, 1), new long[] {4, 4}, ScalarType.Float));
        m.put("layers.0.w", fromBytes(randomBytes(SafetensorsDtype.BF16, 32, 2), new long[] {32}, ScalarType.BFloat16));
        m.put("layers.0.b", fromBytes(randomBytes(SafetensorsDtype.F16, 32, 3), new long[] {2, 16}, ScalarType.Half));
        m.put("layers.1.w", fromBytes(randomBytes(SafetensorsDtype.I64, 8, 4), new long[] {8}, ScalarType.Long));
        m.put("layers.1.mask", fromBytes(randomBytes(SafetensorsDtype.BOOL, 64, 5), new long[] {8, 8}, ScalarType.Bool));
        m.put("norm.scale", fromBytes(randomBytes(SafetensorsDtype.F64, 8, 6), new long[] {8}, ScalarType.Double));
        m.put("lm_head", fromBytes(randomBytes(SafetensorsDtype.F32, 50, 7), new long[] {5, 10}, ScalarType.Float));
        return m;
    }

    private Set<String> filesIn(Path d) throws IOException {
        try (Stream<Path> s = Files.list(d)) {
            return s.map(p -> p.getFileName().toString()).collect(Collectors.toCollection(TreeSet::new));
        }
    }

    private static void assertAllEqual(Map<String, Tensor> expected, WeightFiles wf) {
        assertEquals(List.copyOf(expected.keySet()), List.copyOf(wf.names()));
        for (Map.Entry<String, Tensor> e : expected.entrySet()) {
            assertTrue(wf.contains(e.getKey()));
            Tensor back = wf.load(e.getKey(), e.getValue().scalar_type().intern());
            assertEquals(e.getValue().scalar_type().intern(), back.scalar_type().intern(), e.getKey());
            assertArrayEquals(SafetensorsTest.shapeOf(e.getValue()), SafetensorsTest.shapeOf(back), e.getKey());
            assertArrayEquals(bytesOf(e.getValue()), bytesOf(back), e.getKey());
            assertArrayEquals(SafetensorsTest.shapeOf(e.getValue()), wf.info(e.getKey()).shape());
        }
    }

    private static void assertMessage(Calm4jException e, String... fragments) {
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), () -> "message lacks '" + f + "': " + e.getMessage());
        }
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
    }

    @Test
    void writesShardsAndAnIndexAndReadsEverythingBack() throws IOException {
        Map<String, Tensor> in = sampleTensors();
        WeightFiles.writeSharded(dir, in, 150); // two 64-byte tensors per shard; the 200-byte one alone

        assertEquals(Set.of("model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors", WeightFiles.INDEX_FILE),
                filesIn(dir));
        JsonNode index = JSON.readTree(dir.resolve(WeightFiles.INDEX_FILE).toFile());
        assertEquals(584, index.get("metadata").get("total_size").asLong());
        JsonNode map = index.get("weight_map");
        assertEquals(7, map.size());
        assertEquals("model-00001-of-00004.safetensors", map.get("embed.weight").asText());
        assertEquals("model-00001-of-00004.safetensors", map.get("layers.0.w").asText());
        assertEquals("model-00002-of-00004.safetensors", map.get("layers.0.b").asText());
        assertEquals("model-00003-of-00004.safetensors", map.get("norm.scale").asText());
        assertEquals("model-00004-of-00004.safetensors", map.get("lm_head").asText());
        for (int k = 1; k <= 4; k++) {
            Path shard = dir.resolve(String.format("model-%05d-of-00004.safetensors", k));
            try (Safetensors st = Safetensors.open(shard)) {
                assertEquals(Map.of("format", "pt"), st.metadata());
                for (String name : st.names()) {
                    assertEquals(shard.getFileName().toString(), map.get(name).asText(), "shard holds only its own");
                }
            }
        }

        try (WeightFiles wf = WeightFiles.open(dir)) {
            assertAllEqual(in, wf);
            Tensor asFloat = wf.load("layers.0.w", ScalarType.Float);
            assertEquals(ScalarType.Float, asFloat.scalar_type().intern());
            assertTrue(asFloat.equal(in.get("layers.0.w").to(ScalarType.Float)));
        }
    }

    @Test
    void writesASingleFileWhenEverythingFits() throws IOException {
        Map<String, Tensor> in = sampleTensors();
        WeightFiles.writeSharded(dir, in, 584);
        assertEquals(Set.of(WeightFiles.SINGLE_FILE), filesIn(dir));
        try (WeightFiles wf = WeightFiles.open(dir)) {
            assertAllEqual(in, wf);
        }
    }

    @Test
    void aNewSaveRemovesTheFilesOfAnOlderOneButNothingElse() throws IOException {
        Files.writeString(dir.resolve("config.json"), "{}");
        Files.writeString(dir.resolve("model-00009-of-00009.safetensors"), "stale shard of an older save");
        Map<String, Tensor> in = sampleTensors();
        WeightFiles.writeSharded(dir, in, 1 << 20);
        assertEquals(Set.of("config.json", WeightFiles.SINGLE_FILE), filesIn(dir));

        Map<String, Tensor> two = new LinkedHashMap<>();
        two.put("a", in.get("lm_head"));
        two.put("b", in.get("embed.weight"));
        WeightFiles.writeSharded(dir, two, 100);
        // A stale model.safetensors would shadow the new index, so it must be gone.
        assertEquals(Set.of("config.json", WeightFiles.INDEX_FILE, "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"), filesIn(dir));
        try (WeightFiles wf = WeightFiles.open(dir)) {
            assertAllEqual(two, wf);
        }

        WeightFiles.writeSharded(dir, two, 10_000);
        assertEquals(Set.of("config.json", WeightFiles.SINGLE_FILE), filesIn(dir));
    }

    @Test
    void anInvalidTensorWritesNothing() throws IOException {
        Map<String, Tensor> in = sampleTensors();
        in.put("broken", new Tensor());
        Calm4jException e = assertThrows(Calm4jException.class, () -> WeightFiles.writeSharded(dir.resolve("out"), in, 100));
        assertMessage(e, "out", "tensor 'broken'", "undefined");
        assertFalse(Files.exists(dir.resolve("out")), "validation happens before anything is created");
    }

    @Test
    void reportsAShardTheIndexNamesButThatIsMissing() throws IOException {
        WeightFiles.writeSharded(dir, sampleTensors(), 150);
        Files.delete(dir.resolve("model-00002-of-00004.safetensors"));
        Calm4jException e = assertThrows(Calm4jException.class, () -> WeightFiles.open(dir).close());
        assertMessage(e, WeightFiles.INDEX_FILE, "model-00002-of-00004.safetensors", "does not exist");
    }

    @Test
    void reportsATensorMappedToAShardThatLacksIt() throws IOException {
        WeightFiles.writeSharded(dir, sampleTensors(), 150);
        Path indexFile = dir.resolve(WeightFiles.INDEX_FILE);
        ObjectNode index = (ObjectNode) JSON.readTree(indexFile.toFile());
        ((ObjectNode) index.get("weight_map")).put("lm_head", "model-00001-of-00004.safetensors");
        JSON.writeValue(indexFile.toFile(), index);
        Calm4jException e = assertThrows(Calm4jException.class, () -> WeightFiles.open(dir).close());
        assertMessage(e, WeightFiles.INDEX_FILE, "model-00001-of-00004.safetensors", "'lm_head'", "has no tensor");
    }

    @Test
    void reportsADirectoryWithoutWeights() throws IOException {
        Files.writeString(dir.resolve("config.json"), "{}");
        Calm4jException e = assertThrows(Calm4jException.class, () -> WeightFiles.open(dir).close());
        assertMessage(e, dir.toString(), WeightFiles.SINGLE_FILE, WeightFiles.INDEX_FILE);
        e = assertThrows(Calm4jException.class, () -> WeightFiles.open(dir.resolve("nope")).close());
        assertMessage(e, "nope", "not a directory");
    }

    @Test
    void reportsAMalformedIndex() throws IOException {
        Path index = dir.resolve(WeightFiles.INDEX_FILE);
        List<String[]> cases = new ArrayList<>();
        cases.add(new String[] {"{not json", "not valid JSON"});
        cases.add(new String[] {"[]", "expected a JSON object"});
        cases.add(new String[] {"{\"metadata\":{}}", "'weight_map'"});
        cases.add(new String[] {"{\"weight_map\":[]}", "'weight_map'"});
        cases.add(new String[] {"{\"metadata\":3,\"weight_map\":{}}", "'metadata'"});
        cases.add(new String[] {"{\"weight_map\":{\"a\":7}}", "weight_map['a']", "shard file name"});
        cases.add(new String[] {"{\"weight_map\":{\"a\":\"../model.safetensors\"}}", "weight_map['a']", "plain file name"});
        for (String[] c : cases) {
            Files.writeString(index, c[0]);
            Calm4jException e = assertThrows(Calm4jException.class, () -> WeightFiles.open(dir).close(), c[0]);
            String[] fragments = new String[c.length];
            fragments[0] = WeightFiles.INDEX_FILE;
            System.arraycopy(c, 1, fragments, 1, c.length - 1);
            assertMessage(e, fragments);
        }
    }

    @Test
    void reportsAMissingTensorNamingTheFile() throws IOException {
        WeightFiles.writeSharded(dir, sampleTensors(), 150);
        try (WeightFiles wf = WeightFiles.open(dir)) {
            Calm4jException e = assertThrows(Calm4jException.class, () -> wf.load("nope", ScalarType.Float));
            assertEquals(dir.resolve(WeightFiles.INDEX_FILE) + ": missing tensor 'nope'", e.getMessage());
            assertFalse(wf.contains("nope"));
        }
        Path single = dir.resolve("single");
        WeightFiles.writeSharded(single, sampleTensors(), 1 << 20);
        try (WeightFiles wf = WeightFiles.open(single)) {
            Calm4jException e = assertThrows(Calm4jException.class, () -> wf.info("nope"));
            assertEquals(single.resolve(WeightFiles.SINGLE_FILE) + ": missing tensor 'nope'", e.getMessage());
        }
    }
}
