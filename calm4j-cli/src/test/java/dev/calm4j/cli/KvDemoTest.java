package dev.calm4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The main job in its quick mode, on the shipped base models: it runs end to end, writes every artefact and every
 * cell, and the shipped base models are what the experiment needs on either side of the composition (m_A knows the
 * keys, neither base model can do arithmetic over keys, the probe reads held-out values from m_A, and the anchor check
 * ran with m_B's learned operand code), the bridges, trained with NUM-MATH mixed into D_C, leave most of m_B's
 * arithmetic intact, and the claim's direction holds: CALM well above m_B and the matched LoRA on KV-MATH over keys
 * that no D_C example contains. The quick job trains one seed for 800 steps (about 2.5 minutes), so
 * the size of the claim (85 % on held-out keys) is the main job's, not this test's.
 */
class KvDemoTest {
    @TempDir
    Path tmp;

    @Test
    void quickDemoRunsEndToEndOnTheShippedModels() throws Exception {
        Path out = tmp.resolve("run");
        CliTest.Run r = CliTest.calm("demo", "--quick", "--no-progress", "--out", out.toString());
        assertEquals(0, r.code(), r.err() + r.out());
        assertTrue(r.out().contains("Table 1"), r.out());
        assertTrue(r.out().contains("seed 1, CALM m_A\u2295m_B: loss"), "the run log is UTF-8, not a byte per char: " + r.out());
        for (String f : new String[] {"report.md", "results.json", "accuracy.png", "loss.png", "config.json",
                "data/keys.jsonl", "data/composition_train.jsonl"}) {
            assertTrue(Files.size(out.resolve(f)) > 0, f);
        }
        JsonNode res = new ObjectMapper().readTree(out.resolve("results.json").toFile());
        JsonNode m = res.get("models");
        for (String model : List.of("m_A", "m_B", "calm", "lora")) {            // quick: CALM and the LoRA control
            for (String d : List.of("kv_subs", "num_math", "kv_math_heldout_keys", "kv_math_heldout_expr")) {
                JsonNode c = m.get(model).get(d);
                double a = c.get("accuracy").asDouble();
                assertTrue(c.get("n").asInt() > 0 && a >= 0 && a <= 1, model + "." + d + ": " + c);
                assertTrue(c.get("ci95").get(0).asDouble() <= a + 1e-9 && a <= c.get("ci95").get(1).asDouble() + 1e-9, model + "." + d + ": " + c);
            }
        }
        assertTrue(acc(m, "m_A", "kv_subs") >= 0.95, "m_A must know the keys");
        for (String model : List.of("m_A", "m_B")) {
            assertTrue(acc(m, model, "kv_math_heldout_keys") <= 0.05, model + " alone must not do KV-MATH");
        }
        assertTrue(acc(m, "m_B", "num_math") >= 0.5, "m_B must do arithmetic on numbers");
        double probe = 0;
        for (JsonNode p : res.withArray("probe")) {
            probe = Math.max(probe, p.get("value_accuracy").asDouble());
        }
        assertTrue(probe >= 0.8, "the probe must read held-out keys' values from m_A: " + probe);
        JsonNode oracle = res.get("anchor_oracle");
        assertTrue(oracle.get("injected").asText().contains("code"), "the shipped m_B has a learned operand code: " + oracle);
        assertTrue(oracle.get("n").asInt() > 0 && oracle.get("accuracy").asDouble() >= 0 && oracle.get("accuracy").asDouble() <= 1, oracle.toString());
        assertTrue(acc(m, "calm", "num_math") >= acc(m, "m_B", "num_math") - 0.2,
                "bridges trained with NUM-MATH in D_C must not break m_B's arithmetic: " + m.get("calm").get("num_math"));
        assertTrue(!m.has("calm_random_augment") && !m.has("calm_encoder"), "quick trains only CALM and LoRA");
        // The claim's direction, on held-out keys: CALM well above the anchor alone and the matched LoRA.
        double calm = acc(m, "calm", "kv_math_heldout_keys");
        assertTrue(calm >= 0.15 && calm >= acc(m, "m_B", "kv_math_heldout_keys") + 0.10
                && calm >= acc(m, "lora", "kv_math_heldout_keys") + 0.10,
                "CALM on held-out keys " + m.get("calm").get("kv_math_heldout_keys") + ", m_B "
                        + m.get("m_B").get("kv_math_heldout_keys") + ", LoRA " + m.get("lora").get("kv_math_heldout_keys"));
        assertTrue(res.get("wall_time_s").asDouble() > 0);
    }

    @Test
    void nonPositiveSizesAreRefusedBeforeAnythingRuns() throws Exception {
        for (String flag : List.of("--composition-examples", "--heads", "--steps", "--jobs", "--length-group", "--decay-fraction",
                "--query-init")) {
            Path out = tmp.resolve("bad" + flag);
            CliTest.Run r = CliTest.calm("demo", "--quick", "--no-progress", "--out", out.toString(), flag,
                    flag.equals("--query-init") ? "1.5" : "0");                  // 0 is a valid query init: zeros
            assertTrue(r.code() != 0, flag + ": " + r.out());
            assertTrue(r.err().contains(flag), flag + ": " + r.err());
            assertTrue(!r.err().contains("Exception") && !Files.exists(out), flag + ": " + r.err());
        }
    }

    private static double acc(JsonNode m, String model, String dataset) {
        return m.get(model).get(dataset).get("accuracy").asDouble();
    }
}
