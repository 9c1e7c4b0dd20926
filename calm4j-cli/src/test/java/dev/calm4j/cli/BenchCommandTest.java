package dev.calm4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code calm bench} in process on tiny configs, a few steps: every mode prints its JSON fields, all positive. No timing asserts. */
class BenchCommandTest {
    @TempDir
    Path tmp;

    private Path config(String name, int hidden, int ff, int layers, int heads) throws Exception {
        Path p = tmp.resolve(name);
        Files.writeString(p, """
                {"model_type": "llama", "vocab_size": 64, "hidden_size": %d, "intermediate_size": %d,
                 "num_hidden_layers": %d, "num_attention_heads": %d, "num_key_value_heads": %d,
                 "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                 "tie_word_embeddings": false}
                """.formatted(hidden, ff, layers, heads, heads));
        return p;
    }

    private JsonNode bench(String... extra) throws Exception {
        Path anchor = config("anchor.json", 32, 64, 3, 4);
        Path augment = config("augment.json", 16, 32, 2, 2);
        String[] base = {"bench", "--anchor", anchor.toString(), "--augment", augment.toString(), "--connections",
                "0->1,1->2", "--batch", "2", "--seq", "8", "--steps", "2", "--warmup", "1", "--gemm-sizes", "64", "--json"};
        String[] args = new String[base.length + extra.length];
        System.arraycopy(base, 0, args, 0, base.length);
        System.arraycopy(extra, 0, args, base.length, extra.length);
        CliTest.Run r = CliTest.calm(args);
        assertEquals(0, r.code(), r.err());
        return new ObjectMapper().readTree(r.out());
    }

    private static void positive(JsonNode j, String... fields) {
        for (String f : fields) {
            assertTrue(j.hasNonNull(f), "missing " + f + " in " + j);
            assertTrue(j.get(f).asDouble() > 0, f + " = " + j.get(f) + " is not positive");
        }
    }

    @Test
    void trainingModesReportEveryField() throws Exception {
        for (String mode : new String[] {"calm-train", "calm-forward", "anchor-full-ft"}) {
            JsonNode j = bench("--mode", mode);
            assertEquals(mode, j.get("mode").asText());
            positive(j, "tokens_per_s", "step_ms", "flops_per_step", "gflops_per_s", "peak_rss_mb", "gemm_peak_gflops",
                    "rss_first_mb", "rss_last_mb", "threads");
            assertEquals(16, j.get("tokens_per_step").asLong());
            assertTrue(Double.isFinite(j.get("loss_last").asDouble()));
            // The phases are medians of disjoint parts of each step: each no more than the slowest step.
            JsonNode ph = j.get("phase_ms");
            assertTrue(ph.get("forward").asDouble() > 0, mode + ": " + ph);
            boolean trains = !mode.equals("calm-forward");
            assertEquals(trains, ph.get("backward").asDouble() > 0, mode + ": " + ph);
            assertEquals(trains, ph.get("optimizer").asDouble() > 0, mode + ": " + ph);
            for (String p : new String[] {"forward", "backward", "optimizer"}) {
                assertTrue(ph.get(p).asDouble() <= j.get("step_ms_max").asDouble(), mode + " " + p + ": " + ph);
            }
        }
    }

    @Test
    void calmTrainFlopsAreThoseOfTheFormula() throws Exception {
        JsonNode j = bench("--mode", "calm-train", "--threads", "1");
        long sum = 0;
        for (JsonNode v : j.get("flops_breakdown")) {
            sum += v.asLong();
        }
        assertEquals(j.get("flops_per_step").asLong(), sum);
        assertEquals(1, j.get("threads").asInt());
        assertTrue(j.get("trainable_params").asLong() > 0 && j.get("frozen_params").asLong() > 0);
    }

    @Test
    void decodeReportsComposedAndSingleModelRates() throws Exception {
        JsonNode j = bench("--mode", "calm-decode", "--prompt", "8", "--new-tokens", "4");
        positive(j, "tokens_per_s", "step_ms", "flops_per_step", "gflops_per_s", "peak_rss_mb", "gemm_peak_gflops",
                "anchor_decode_tokens_per_s", "augment_decode_tokens_per_s", "back_to_back_decode_tokens_per_s",
                "composed_vs_back_to_back", "prefill_tokens_per_s");
    }

    @Test
    void bf16RunsAndBadInputIsOneLine() throws Exception {
        JsonNode j = bench("--mode", "calm-train", "--dtype", "bf16");
        assertEquals("bf16", j.get("dtype").asText());
        positive(j, "tokens_per_s", "gflops_per_s");
        j = bench("--mode", "calm-train", "--dtype", "bf16-mixed", "--labelled", "0.5");
        assertEquals("bf16-mixed", j.get("dtype").asText());
        assertEquals("labelled positions", j.get("loss_head").asText());
        positive(j, "tokens_per_s", "gflops_per_s");

        CliTest.Run r = CliTest.calm("bench", "--anchor", tmp.resolve("missing.json").toString(), "--mode", "anchor-full-ft");
        assertEquals(2, r.code());
        assertTrue(r.err().startsWith("calm: error: --anchor"), r.err());
        Path a = config("a.json", 32, 64, 3, 4);
        r = CliTest.calm("bench", "--anchor", a.toString(), "--augment", a.toString(), "--mode", "nope");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--mode"), r.err());
    }
}
