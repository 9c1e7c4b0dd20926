package dev.calm4j.testing;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.LmSession;
import dev.calm4j.generate.Sampler;
import dev.calm4j.lm.AttentionContext;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.nn.Tensors;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.function.Consumer;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A golden fixture made by Hugging Face transformers itself (a tools/make_family_golden_*.py script): a checkpoint
 * folder under src/test/resources/golden/ with {@code golden.json} ({@code input_ids}, {@code logits},
 * {@code greedy_from}, {@code greedy_ids}, and optionally {@code hidden_1} and more), plus what the family tests
 * do with one.
 */
public record HfFixture(Path dir, JsonNode json) {
    private static final ObjectMapper JSON = new ObjectMapper();

    public static HfFixture read(String name) {
        try {
            Path dir = Path.of(HfFixture.class.getResource("/golden/" + name + "/config.json").toURI()).getParent();
            return new HfFixture(dir, JSON.readTree(dir.resolve("golden.json").toFile()));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    public boolean has(String field) {
        return json.has(field);
    }

    /** A 2-d integer field, e.g. {@code input_ids}. */
    public long[][] ids(String field) {
        JsonNode a = json.get(field);
        long[][] out = new long[a.size()][];
        for (int r = 0; r < out.length; r++) {
            out[r] = new long[a.get(r).size()];
            for (int c = 0; c < out[r].length; c++) {
                out[r][c] = a.get(r).get(c).asLong();
            }
        }
        return out;
    }

    /** A 1-d integer field, e.g. {@code greedy_ids}. */
    public long[] row(String field) {
        JsonNode a = json.get(field);
        long[] out = new long[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.get(i).asLong();
        }
        return out;
    }

    /** A 3-d float field, flattened row-major, e.g. {@code logits} [B][T][V]. */
    public float[] floats(String field) {
        JsonNode a = json.get(field);
        int n = a.size() * a.get(0).size() * a.get(0).get(0).size();
        float[] out = new float[n];
        int k = 0;
        for (JsonNode b : a) {
            for (JsonNode t : b) {
                for (JsonNode v : t) {
                    out[k++] = (float) v.asDouble();
                }
            }
        }
        return out;
    }

    public CausalLm load() {
        return LmFamilies.load(dir);
    }

    /** Logits {@code [B, T, V]} of a full forward, flattened. */
    public static float[] logits(CausalLm m, long[][] ids) {
        try (NoGradGuard ng = new NoGradGuard()) {
            return Tensors.toFloats(m.forward(TestModels.ids(ids)));
        }
    }

    /** The output of block {@code block} for {@code ids}, flattened ({@code embed}, then layers 0..block). */
    public static float[] blockOutput(CausalLm m, long[][] ids, int block) {
        try (NoGradGuard ng = new NoGradGuard()) {
            Tensor x = TestModels.ids(ids);
            AttentionContext ctx = m.context(0, x.size(1), null);
            Tensor h = m.embed(x);
            for (int i = 0; i <= block; i++) {
                h = m.layer(i, h, ctx, null);
            }
            return Tensors.toFloats(h);
        }
    }

    /** {@code n} greedy ids after {@code prompt}, with a KV cache or recomputing everything at every step. */
    public static long[] greedy(CausalLm m, long[] prompt, int n, boolean cached) {
        Generator.Result r = Generator.generate((b, max) -> cached ? LmSession.cached(m, b, max) : LmSession.recompute(m),
                List.of(prompt), m.config().vocabSize(), m.config().maxPositionEmbeddings(),
                new Generator.Options(n, Sampler.greedy(), Set.of(), false), null);
        return r.generated().get(0);
    }

    /** A copy of this fixture's folder, with {@code config.json} edited by {@code edit}, to be loaded by a test. */
    public Path copyWith(Path to, Consumer<ObjectNode> edit) {
        try {
            Files.createDirectories(to);
            try (Stream<Path> files = Files.list(dir)) {
                for (Path f : files.toList()) {
                    Files.copy(f, to.resolve(f.getFileName().toString()));
                }
            }
            ObjectNode c = (ObjectNode) JSON.readTree(to.resolve("config.json").toFile());
            edit.accept(c);
            Files.writeString(to.resolve("config.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(c));
            return to;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Loading {@code dir} is refused by one line naming every fragment. */
    public static void refused(Path dir, String... fragments) {
        Calm4jException e = assertThrows(Calm4jException.class, () -> LmFamilies.load(dir).close());
        assertTrue(!e.getMessage().contains("\n"), "one line: " + e.getMessage());
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "message '" + e.getMessage() + "' should mention '" + f + "'");
        }
    }
}
