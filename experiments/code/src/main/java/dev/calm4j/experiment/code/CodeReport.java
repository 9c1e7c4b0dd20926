package dev.calm4j.experiment.code;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.io.AtomicFiles;

import java.util.Iterator;
import java.util.Locale;
import java.util.Map;

/**
 * {@code report.md} beside a run's {@code results.json}: every row's scores, and each of the experiment's targets
 * with the figure that meets or misses it. Written from {@code results.json} alone.
 */
final class CodeReport {
    private CodeReport() {}

    private static final Map<String, String> NAMES = Map.of(
            "method_name", "floor: the method's name as words",
            "m_B", "m_B alone (the English anchor)",
            "m_A", "m_A alone (the code model)",
            "lora", "m_B + LoRA on D_C",
            "calm", "**CALM m_A ⊕ m_B**",
            "calm_random_augment", "CALM over a random m_A",
            "calm_encoder", "CALM, m_A as encoder",
            "skyline", "skyline: m_B further pretrained on code, + LoRA on D_C",
            "calm_two_augments", "CALM with both augments (Spanish m_A and code m_A)",
            "calm_spanish", "CALM with the Spanish m_A (the language experiment's)");

    static void write(CodeExperiment.Config cfg, ObjectNode results) throws java.io.IOException {
        StringBuilder sb = new StringBuilder();
        JsonNode rows = results.path("rows");
        sb.append("# Code experiment: one run\n\n");
        sb.append(String.format(Locale.ROOT, "Seeds %s; %d test methods of the held-out projects summarised, %d next lines, "
                        + "%d pieces of their code (%,d characters); D_C %d examples (%d pairs); bridges %s (%,d "
                        + "parameters), LoRA rank %d (%,d); %d steps × %d rows; wall time %.0f s.%n%n",
                results.path("seeds"), results.path("test_pairs").asInt(), results.path("test_next_lines").asInt(),
                results.path("test_code_pieces").asInt(), results.path("test_code_chars").asLong(),
                results.path("composition_examples").asInt(), results.path("composition_pairs").asInt(),
                cfg.bridges().connections(), results.path("bridge_parameters").asLong(), results.path("lora_rank").asInt(),
                results.path("lora_parameters").asLong(), cfg.training().steps(), cfg.training().batch(),
                results.path("wall_time_s").asDouble()));
        sb.append("| row | smoothed BLEU-4 | chrF [95 % CI] | next line EM % [95 % CI] | summary bits/char | code "
                + "bits/char | held-out English bits/char |\n|---|---:|---:|---:|---:|---:|---:|\n");
        double anchorEnglish = rows.path("m_B").path("heldout_english_bits_per_char").asDouble(Double.NaN);
        for (Iterator<Map.Entry<String, JsonNode>> it = rows.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            JsonNode r = e.getValue();
            sb.append("| ").append(NAMES.getOrDefault(e.getKey(), e.getKey())).append(" | ")
                    .append(f1(r.path("smoothed_bleu4").path("value"))).append(" | ")
                    .append(withCi(r.path("chrf"))).append(" | ")
                    .append(withCi(r.path("next_line_exact_match"))).append(" | ")
                    .append(f3(r.path("summary_bits_per_char"))).append(" | ")
                    .append(f3(r.path("code_bits_per_char"))).append(" | ")
                    .append(english(r.path("heldout_english_bits_per_char"), anchorEnglish)).append(" |\n");
        }
        sb.append("\nchrF and BLEU are corpus-level over every seed's summaries pooled; intervals are percentile "
                + "bootstraps over test examples. Next lines are judged as the row's writer can spell them (the anchor "
                + "has no piece for a newline, `{ } = < > | #`); m_A's against the line itself.\n\n");

        sb.append("## Targets\n\n| target | figure | met |\n|---|---|---|\n");
        JsonNode calm = rows.path("calm");
        JsonNode lora = rows.path("lora");
        JsonNode sky = rows.path("skyline");
        if (!calm.isMissingNode() && !lora.isMissingNode()) {
            double d = calm.path("chrf").path("value").asDouble() - lora.path("chrf").path("value").asDouble();
            boolean apart = calm.path("chrf").path("ci95").get(0).asDouble() > lora.path("chrf").path("ci95").get(1).asDouble();
            sb.append(String.format(Locale.ROOT, "| code → text: CALM ≥ m_B+LoRA + 3 chrF, intervals apart | %+.1f chrF; "
                    + "intervals %s | %s |%n", d, apart ? "apart" : "overlap", d >= 3 && apart ? "yes" : "no"));
            double ratio = calm.path("code_bits_per_char").asDouble() / lora.path("code_bits_per_char").asDouble();
            sb.append(String.format(Locale.ROOT, "| code bits/char: CALM ≤ 0.8 × m_B+LoRA | %.3f × | %s |%n", ratio,
                    ratio <= 0.8 ? "yes" : "no"));
        }
        if (!calm.isMissingNode() && !sky.isMissingNode()) {
            double d = calm.path("chrf").path("value").asDouble() - sky.path("chrf").path("value").asDouble();
            sb.append(String.format(Locale.ROOT, "| CALM within 3 chrF of the skyline, or above | %+.1f chrF | %s |%n", d,
                    d >= -3 ? "yes" : "no"));
        }
        if (!calm.isMissingNode()) {
            double e = calm.path("heldout_english_bits_per_char").asDouble() / anchorEnglish - 1;
            sb.append(String.format(Locale.ROOT, "| English bits/char within 2 %% of m_B's | %+.1f %% | %s |%n", 100 * e,
                    Math.abs(e) <= 0.02 ? "yes" : "no"));
        }
        JsonNode lang = results.path("language_task");
        if (lang.size() > 0) {
            sb.append("\n## Two augments at once\n\nThe anchor with the language experiment's Spanish m_A and this code m_A, "
                    + "each with its own bridges and tokenizer, trained on the union of the two D_Cs (twice the steps), "
                    + "beside each single-augment composition. Spanish → English on the language experiment's test "
                    + "verses:\n\n| row | chrF [95 % CI] | reference bits/char | held-out English bits/char |\n|---|---:|---:|---:|\n");
            for (Iterator<Map.Entry<String, JsonNode>> it = lang.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                JsonNode r = e.getValue();
                sb.append(String.format(Locale.ROOT, "| %s | %.1f [%.1f, %.1f] | %.3f | %s |%n",
                        NAMES.getOrDefault(e.getKey(), e.getKey()), r.path("chrf").asDouble(), r.path("ci95").get(0).asDouble(),
                        r.path("ci95").get(1).asDouble(), r.path("reference_bits_per_char").asDouble(),
                        english(r.path("heldout_english_bits_per_char"), anchorEnglish)));
            }
            JsonNode two = rows.path("calm_two_augments");
            JsonNode twoLang = lang.path("calm_two_augments");
            JsonNode oneLang = lang.path("calm_spanish");
            if (!two.isMissingNode() && !calm.isMissingNode() && !oneLang.isMissingNode()) {
                sb.append("\n| target (two augments) | figure | met |\n|---|---|---|\n");
                double dc = two.path("chrf").path("value").asDouble() - calm.path("chrf").path("value").asDouble();
                sb.append(String.format(Locale.ROOT, "| code → text within 1 chrF of CALM with the code m_A | %+.1f | %s |%n",
                        dc, dc >= -1 ? "yes" : "no"));
                double sbits = two.path("summary_bits_per_char").asDouble() / calm.path("summary_bits_per_char").asDouble() - 1;
                sb.append(String.format(Locale.ROOT, "| the summaries' bits/char within 2 %% of CALM with the code m_A | %+.1f %% "
                        + "| %s |%n", 100 * sbits, sbits <= 0.02 ? "yes" : "no"));
                double cb = two.path("code_bits_per_char").asDouble() / calm.path("code_bits_per_char").asDouble() - 1;
                sb.append(String.format(Locale.ROOT, "| code bits/char within 2 %% of CALM with the code m_A | %+.1f %% | %s |%n",
                        100 * cb, cb <= 0.02 ? "yes" : "no"));
                double dl = twoLang.path("chrf").asDouble() - oneLang.path("chrf").asDouble();
                sb.append(String.format(Locale.ROOT, "| Spanish → English within 1 chrF of CALM with the Spanish m_A | %+.1f | %s |%n",
                        dl, dl >= -1 ? "yes" : "no"));
                double lb = twoLang.path("reference_bits_per_char").asDouble() / oneLang.path("reference_bits_per_char").asDouble() - 1;
                sb.append(String.format(Locale.ROOT, "| reference bits/char within 2 %% of CALM with the Spanish m_A | %+.1f %% | %s |%n",
                        100 * lb, lb <= 0.02 ? "yes" : "no"));
                double e = two.path("heldout_english_bits_per_char").asDouble() / anchorEnglish - 1;
                sb.append(String.format(Locale.ROOT, "| English bits/char within 2 %% of m_B's | %+.1f %% | %s |%n", 100 * e,
                        Math.abs(e) <= 0.02 ? "yes" : "no"));
            }
        }
        JsonNode failed = results.path("failed_runs");
        if (failed.size() > 0) {
            sb.append("\n## Runs that failed\n\nTheir rows above pool only the seeds that finished.\n\n| row | seed | error |\n|---|---:|---|\n");
            for (JsonNode f : failed) {
                sb.append("| ").append(f.path("row").asText()).append(" | ").append(f.path("seed").asLong()).append(" | ")
                        .append(f.path("error").asText().replace("|", "\\|").replace("\n", " ")).append(" |\n");
            }
        }
        JsonNode diffs = results.path("paired_differences");
        if (diffs.size() > 0) {
            sb.append("\n## Paired differences (chrF, same test methods, paired bootstrap)\n\n| rows | difference [95 % CI] |\n|---|---:|\n");
            for (Iterator<Map.Entry<String, JsonNode>> it = diffs.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                JsonNode d = e.getValue();
                sb.append(String.format(Locale.ROOT, "| %s | %+.1f [%+.1f, %+.1f] |%n", e.getKey(),
                        d.path("chrf_difference").asDouble(), d.path("ci95").get(0).asDouble(), d.path("ci95").get(1).asDouble()));
            }
        }
        sb.append("\nFiles: `config.json`, `results.json`, `predictions.jsonl` (every row's summaries and next lines with "
                + "their sources and references), `data/` (the exact rows trained and evaluated), `seed-*/*/` (each "
                + "run's metrics and loss.png).\n");
        AtomicFiles.writeString(cfg.out().resolve("report.md"), sb.toString());
    }

    private static String f1(JsonNode n) {
        return n.isMissingNode() || n.isNull() ? "–" : String.format(Locale.ROOT, "%.1f", n.asDouble());
    }

    private static String f3(JsonNode n) {
        return n.isMissingNode() || n.isNull() || Double.isNaN(n.asDouble()) ? "–" : String.format(Locale.ROOT, "%.3f", n.asDouble());
    }

    private static String withCi(JsonNode s) {
        if (s.isMissingNode()) {
            return "–";
        }
        return String.format(Locale.ROOT, "%.1f [%.1f, %.1f]", s.path("value").asDouble(), s.path("ci95").get(0).asDouble(),
                s.path("ci95").get(1).asDouble());
    }

    private static String english(JsonNode n, double anchor) {
        if (n.isMissingNode() || n.isNull()) {
            return "–";
        }
        double v = n.asDouble();
        return Double.isNaN(anchor) ? f3(n) : String.format(Locale.ROOT, "%.3f (%+.1f %%)", v, 100 * (v / anchor - 1));
    }
}
