package dev.calm4j.experiment.language;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.io.AtomicFiles;
import dev.calm4j.plot.Png;
import org.jfree.chart.ChartFactory;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.CategoryAxis;
import org.jfree.chart.axis.CategoryLabelPositions;
import org.jfree.chart.plot.CategoryPlot;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.chart.plot.XYPlot;
import org.jfree.chart.renderer.category.StatisticalBarRenderer;
import org.jfree.chart.renderer.xy.XYErrorRenderer;
import org.jfree.data.statistics.DefaultStatisticalCategoryDataset;
import org.jfree.data.xy.YIntervalSeries;
import org.jfree.data.xy.YIntervalSeriesCollection;

import java.awt.Color;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/** report.md and its charts, from results.json's content. */
final class Report {
    static final Map<String, String> LABELS = new LinkedHashMap<>();

    static {
        LABELS.put("copy_source", "floor: copy the Spanish source");
        LABELS.put("random_verse", "floor: a random training verse");
        LABELS.put("m_B", "m_B alone (English anchor)");
        LABELS.put("m_A", "m_A alone (augment)");
        LABELS.put("lora", "m_B + LoRA on D_C");
        LABELS.put("calm", "CALM m_A⊕m_B");
        LABELS.put("calm_random_augment", "CALM, random m_A");
        LABELS.put("calm_encoder", "CALM, m_A as encoder");
        LABELS.put("skyline", "skyline: m_B further pretrained on m_A's data, + LoRA on D_C");
    }

    /** The paper's Table 2 averages (FLORES-200 XX→En chrF, 10 low-resource languages), where a row has one. */
    static final Map<String, String> PAPER = Map.of("m_A", "37.2", "m_B", "41.7", "calm", "46.1", "skyline", "48.2");

    private Report() {}

    static String label(String row) {
        if (row.contains("@")) {
            String[] p = row.split("@");
            return LABELS.getOrDefault(p[0], p[0]) + ", D_C " + p[1].replace("pct", " %");
        }
        return LABELS.getOrDefault(row, row);
    }

    static void write(LanguageExperiment.Config cfg, ObjectNode results) throws java.io.IOException {
        JsonNode rows = results.get("rows");
        StringBuilder md = new StringBuilder();
        md.append("# Language experiment: Spanish → English through an augment\n\n");
        md.append(String.format("Greedy translations of %d verses of the held-out books %s (no model trained on either "
                        + "side of them), scored with chrF (sacrebleu's chrF2, corpus level); intervals: 95 %% bootstrap over "
                        + "verses, every seed's translations pooled. D_C: %d examples (%.0f %% of the training books' verse "
                        + "pairs, plus English). Seeds %s; bridges %s, %d heads%s, %,d parameters; LoRA rank %d on q/v.%n%n",
                rows.get("m_B").get("n").asInt(), cfg.recipe().split().testBooks(), results.get("composition_examples").asInt(),
                100 * cfg.composition().pairShare(), cfg.seeds(), cfg.bridges().connections(), cfg.bridges().heads(),
                cfg.bridges().recency() ? " with the recency bias" : "", results.get("bridge_parameters").asLong(), results.get("lora_rank").asInt()));
        md.append("| row | chrF | 95 % CI | per seed | reference bits/char | held-out English bits/char | paper (Table 2 avg) |\n");
        md.append("|---|---|---|---|---|---|---|\n");
        double mB = rows.path("m_B").path("heldout_english_bits_per_char").asDouble(Double.NaN);
        for (Iterator<Map.Entry<String, JsonNode>> it = rows.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (e.getKey().contains("@")) {
                continue;
            }
            md.append(line(e.getKey(), e.getValue(), mB));
        }
        md.append("\n![chrF per row](chrf.png)\n\n");
        boolean sweep = false;
        for (Iterator<String> it = rows.fieldNames(); it.hasNext(); ) {
            sweep |= it.next().contains("@");
        }
        if (sweep) {
            md.append("## chrF against the size of D_C (first seed)\n\n| row | chrF | 95 % CI | reference bits/char |\n|---|---|---|---|\n");
            for (Iterator<Map.Entry<String, JsonNode>> it = rows.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                if (e.getKey().contains("@")) {
                    JsonNode v = e.getValue();
                    md.append(String.format("| %s | %.1f | %.1f–%.1f | %.3f |%n", label(e.getKey()), v.get("chrf").asDouble(),
                            v.get("ci95").get(0).asDouble(), v.get("ci95").get(1).asDouble(),
                            v.path("reference_bits_per_char").asDouble(Double.NaN)));
                }
            }
            md.append("\n![chrF against D_C size](chrf_dc_size.png)\n\n");
        }
        md.append(targets(rows));
        md.append(String.format("%nFiles: `results.json`, `config.json`, `predictions.jsonl` (every row's source, reference "
                + "and hypothesis), `data/` (D_C, the test verses, the held-out English). Wall time %.0f s.%n",
                results.get("wall_time_s").asDouble()));
        AtomicFiles.writeString(cfg.out().resolve("report.md"), md.toString());
        chart(cfg.out().resolve("chrf.png"), rows);
        if (sweep) {
            sweepChart(cfg.out().resolve("chrf_dc_size.png"), rows, cfg);
        }
    }

    private static String line(String key, JsonNode v, double mB) {
        String perSeed = v.get("per_seed").size() > 1 ? join(v.get("per_seed")) : "";
        String bits = v.has("reference_bits_per_char") ? String.format("%.3f", v.get("reference_bits_per_char").asDouble()) : "";
        String eng = "";
        if (v.has("heldout_english_bits_per_char")) {
            double x = v.get("heldout_english_bits_per_char").asDouble();
            eng = key.equals("m_B") ? String.format("%.3f", x) : String.format("%.3f (%+.1f %%)", x, 100 * (x / mB - 1));
        }
        return String.format("| %s | %.1f | %.1f–%.1f | %s | %s | %s | %s |%n", label(key), v.get("chrf").asDouble(),
                v.get("ci95").get(0).asDouble(), v.get("ci95").get(1).asDouble(), perSeed, bits, eng,
                PAPER.getOrDefault(key, ""));
    }

    private static String join(JsonNode a) {
        StringBuilder s = new StringBuilder();
        for (JsonNode x : a) {
            s.append(s.length() > 0 ? " / " : "").append(String.format("%.1f", x.asDouble()));
        }
        return s.toString();
    }

    /** The claims, each with its measured margin: met or not, never hidden. */
    static String targets(JsonNode rows) {
        StringBuilder s = new StringBuilder("## Targets\n\n");
        JsonNode calm = rows.get("calm");
        if (calm == null) {
            return "";
        }
        double c = calm.get("chrf").asDouble();
        double cLo = calm.get("ci95").get(0).asDouble();
        double cHi = calm.get("ci95").get(1).asDouble();
        for (String other : new String[] {"m_A", "lora", "calm_random_augment"}) {
            JsonNode o = rows.get(other);
            if (o == null) {
                continue;
            }
            double d = c - o.get("chrf").asDouble();
            boolean above = cLo > o.get("ci95").get(1).asDouble();
            boolean below = cHi < o.get("ci95").get(0).asDouble();
            String verdict = d >= 3 && above ? "met"
                    : "not met (" + (above ? "above, by less than 3" : below ? "below it, intervals apart" : "intervals overlap") + ")";
            s.append(String.format("- CALM − %s: %+.1f chrF (target ≥ +3, intervals apart): %s%n", label(other), d, verdict));
        }
        JsonNode sky = rows.get("skyline");
        if (sky != null) {
            double d = c - sky.get("chrf").asDouble();
            s.append(String.format("- CALM − skyline: %+.1f chrF (target ≥ −3): %s%n", d, d >= -3 ? "met" : "not met"));
        }
        double mB = rows.path("m_B").path("heldout_english_bits_per_char").asDouble(Double.NaN);
        if (calm.has("heldout_english_bits_per_char")) {
            double x = calm.get("heldout_english_bits_per_char").asDouble() / mB - 1;
            s.append(String.format("- CALM's held-out English against m_B's: %+.2f %% bits/char (target within 2 %%): %s%n",
                    100 * x, Math.abs(x) <= 0.02 ? "met" : "not met"));
        }
        return s.toString();
    }

    private static void chart(Path png, JsonNode rows) {
        DefaultStatisticalCategoryDataset d = new DefaultStatisticalCategoryDataset();
        for (Iterator<Map.Entry<String, JsonNode>> it = rows.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (e.getKey().contains("@")) {
                continue;
            }
            JsonNode v = e.getValue();
            double mean = v.get("chrf").asDouble();
            double half = (v.get("ci95").get(1).asDouble() - v.get("ci95").get(0).asDouble()) / 2;
            d.add(mean, half, "chrF", shortLabel(e.getKey()));
        }
        JFreeChart chart = ChartFactory.createBarChart("Spanish → English, held-out books: chrF (95 % CI)", null, "chrF",
                d, PlotOrientation.HORIZONTAL, false, false, false);
        CategoryPlot plot = chart.getCategoryPlot();
        StatisticalBarRenderer r = new StatisticalBarRenderer();
        r.setSeriesPaint(0, new Color(0x4477aa));
        r.setErrorIndicatorPaint(Color.BLACK);
        plot.setRenderer(r);
        plot.setBackgroundPaint(Color.WHITE);
        plot.setRangeGridlinePaint(Color.LIGHT_GRAY);
        CategoryAxis axis = plot.getDomainAxis();
        axis.setCategoryLabelPositions(CategoryLabelPositions.STANDARD);
        Png.write(png, chart, 900, 480);
    }

    private static String shortLabel(String key) {
        return switch (key) {
            case "copy_source" -> "floor: copy source";
            case "random_verse" -> "floor: random verse";
            case "m_B" -> "m_B alone";
            case "m_A" -> "m_A alone";
            case "lora" -> "m_B + LoRA";
            case "calm" -> "CALM";
            case "calm_random_augment" -> "CALM, random m_A";
            case "calm_encoder" -> "CALM, m_A encoder";
            case "skyline" -> "skyline";
            default -> key;
        };
    }

    private static void sweepChart(Path png, JsonNode rows, LanguageExperiment.Config cfg) {
        YIntervalSeriesCollection d = new YIntervalSeriesCollection();
        for (String m : new String[] {"calm", "lora"}) {
            YIntervalSeries s = new YIntervalSeries(m.equals("calm") ? "CALM" : "m_B + LoRA");
            Map<Double, String> keys = new LinkedHashMap<>();
            for (double share : cfg.sweep()) {
                keys.put(share, m + "@" + LanguageExperiment.pct(share));
            }
            keys.put(cfg.composition().pairShare(), m);
            for (Map.Entry<Double, String> k : keys.entrySet()) {
                JsonNode v = rows.get(k.getValue());
                if (v == null) {
                    continue;
                }
                double x = 100 * k.getKey();
                if (k.getValue().equals(m)) {
                    // The sweep is the first seed's; the main rows' interval pools every seed, so their first seed
                    // is drawn without one rather than with an interval that is not its own.
                    double y = v.get("per_seed").get(0).asDouble();
                    s.add(x, y, y, y);
                } else {
                    s.add(x, v.get("chrf").asDouble(), v.get("ci95").get(0).asDouble(), v.get("ci95").get(1).asDouble());
                }
            }
            d.addSeries(s);
        }
        JFreeChart chart = ChartFactory.createXYLineChart("chrF against D_C size (% of the training pairs)", "D_C, % of pairs",
                "chrF", d, PlotOrientation.VERTICAL, true, false, false);
        XYPlot plot = chart.getXYPlot();
        XYErrorRenderer r = new XYErrorRenderer();       // lines, points and their intervals in one colour per row
        r.setDefaultLinesVisible(true);
        r.setDrawXError(false);
        plot.setRenderer(r);
        plot.setBackgroundPaint(Color.WHITE);
        Png.write(png, chart, 800, 480);
    }
}
