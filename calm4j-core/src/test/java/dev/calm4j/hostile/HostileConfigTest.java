package dev.calm4j.hostile;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.io.Safetensors;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.nn.Rotary;
import dev.calm4j.testing.TestModels;
import dev.calm4j.nn.Tensors;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Config sizes checked before anything is sized by them, configs that disagree with their weights, strict JSON. */
class HostileConfigTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    @BeforeAll
    static void init() {
        Torch.init();
    }

    private Path model() {
        return TestModels.write(tmp.resolve("m"), TestModels.tinyLlama(), 1);
    }

    private static void edit(Path dir, String field, long value) throws IOException {
        ObjectNode c = (ObjectNode) JSON.readTree(dir.resolve("config.json").toFile());
        c.put(field, value);
        Files.writeString(dir.resolve("config.json"), c.toString());
    }

    private static String refused(Path dir) {
        long t0 = System.nanoTime();
        String m = assertThrows(Calm4jException.class, () -> LmFamilies.load(dir).close()).getMessage();
        assertTrue(System.nanoTime() - t0 < 5_000_000_000L, "refused only after " + (System.nanoTime() - t0) / 1e9 + " s");
        return m;
    }

    @Test
    void hugeSizesAreRefusedBeforeAllocating() throws IOException {
        Path dir = model();
        edit(dir, "num_hidden_layers", Integer.MAX_VALUE);
        assertTrue(refused(dir).contains("field 'num_hidden_layers' is 2147483647, expected at most"), refused(dir));
        for (String f : new String[] {"vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "head_dim"}) {
            Path d = TestModels.write(tmp.resolve(f), TestModels.tinyLlama(), 1);
            edit(d, f, 1L << 30);
            assertTrue(refused(d).contains("field '" + f + "' is 1073741824"), refused(d));
        }
        Path d = TestModels.write(tmp.resolve("pos"), TestModels.tinyLlama(), 1);
        edit(d, "max_position_embeddings", 134217728);
        assertTrue(refused(d).contains("field 'max_position_embeddings' is 134217728, expected at most"), refused(d));
    }

    @Test
    void rotaryTablesGrowWithUseNotWithTheDeclaredMaximum() throws IOException {
        Path dir = model();
        edit(dir, "max_position_embeddings", 1 << 22);    // 4M positions declared: 4M x 8 x 2 floats if built whole
        float[] want;
        float[] got;
        try (CausalLm m = TestModels.load(model2()); NoGradGuard ng = new NoGradGuard()) {
            want = Tensors.toFloats(m.forward(TestModels.ids(new long[][] {{1, 5, 6, 7}})));
        }
        try (CausalLm m = LmFamilies.load(dir); NoGradGuard ng = new NoGradGuard()) {
            got = Tensors.toFloats(m.forward(TestModels.ids(new long[][] {{1, 5, 6, 7}})));
        }
        assertArrayEquals(want, got, "the declared maximum changes nothing for the positions used");
        try (Rotary r = new Rotary(8, 1 << 22, 10000.0, dev.calm4j.lm.llama.RopeScaling.NONE)) {
            assertEquals(Rotary.INITIAL_POSITIONS, r.cosTable().size(0));
            Tensor[] cs = r.range(10_000, 4);      // grows on demand, doubling
            assertEquals(4, cs[0].size(2));
            assertEquals(10_004, r.cosTable().size(0));
            try (Rotary whole = new Rotary(8, 10_004, 10000.0, dev.calm4j.lm.llama.RopeScaling.NONE)) {
                float[] a = Tensors.toFloats(whole.range(10_000, 4)[0].contiguous());
                float[] b = Tensors.toFloats(cs[0].contiguous());
                assertEquals(0, TestModels.maxAbsDiff(a, b), 1e-6);
            }
        }
    }

    private Path model2() {
        return TestModels.write(tmp.resolve("m2"), TestModels.tinyLlama(), 1);
    }

    @Test
    void aConfigWithFewerLayersThanTheFileIsRefused() throws IOException {
        Path dir = model();
        edit(dir, "num_hidden_layers", 2);     // the file holds 3
        String m = refused(dir);
        assertTrue(m.contains("tensor 'model.layers.2.") && m.contains("more layers than its num_hidden_layers"), m);
    }

    @Test
    void extraNonLayerTensorsAreStillIgnored() throws IOException {
        Path dir = model();
        Map<String, Tensor> w = new LinkedHashMap<>();
        try (Safetensors st = Safetensors.open(dir.resolve("model.safetensors"))) {
            for (String n : st.names()) {
                w.put(n, st.load(n));
            }
        }
        w.put("model.layers.0.self_attn.rotary_emb.inv_freq", Tensors.floats(new float[] {1, 2, 3, 4}, 4));
        Safetensors.write(dir.resolve("model.safetensors"), w, Map.of("format", "pt"));
        LmFamilies.load(dir).close();
    }

    @Test
    void trailingContentAndDuplicateKeysAreRefused() throws IOException {
        Path dir = model();
        String c = Files.readString(dir.resolve("config.json")).strip();
        Files.writeString(dir.resolve("config.json"), c + "{}");
        assertTrue(refused(dir).contains("config.json: not valid JSON (Trailing token"), refused(dir));
        Files.writeString(dir.resolve("config.json"), c.substring(0, c.length() - 1) + ", \"vocab_size\": 7}");
        assertTrue(refused(dir).contains("Duplicate field 'vocab_size'"), refused(dir));
        Files.writeString(dir.resolve("config.json"), "");
        assertTrue(refused(dir).contains("config.json: empty"), refused(dir));
    }
}
