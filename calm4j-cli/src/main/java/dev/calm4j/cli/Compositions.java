package dev.calm4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.compose.Bridge;
import dev.calm4j.compose.CompositionException;
import dev.calm4j.compose.CompositionPlan;
import dev.calm4j.compose.Connection;
import dev.calm4j.compose.Mode;
import dev.calm4j.compose.TextAlignment;
import dev.calm4j.lm.ModelConfig;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * A composition resolved from model configs alone (no weights): the plan, the heads and the parameter counts that
 * {@code compose}, {@code lora --match-bridges} and {@code inspect} print.
 */
record Compositions(Path anchorDir, ModelConfig anchor, List<Path> augmentDirs, List<ModelConfig> augments,
                    CompositionPlan plan, int heads, Mode mode, boolean[] ownTokens) {

    /**
     * @param connections "3->5,7->11" / "0:3->5,1:2->9", or null for the paper's default for every augment
     * @param heads       null for the anchor's attention heads
     */
    static Compositions resolve(Path anchorDir, ModelConfig anchor, List<Path> augmentDirs, List<ModelConfig> augments,
                                String connections, Integer heads, Mode mode) {
        if (augments.isEmpty()) {
            throw new Calm4jException("a composition needs at least one --augment DIR");
        }
        CompositionPlan plan = CompositionPlan.resolve(connections, anchor, augments);
        int h = heads == null ? anchor.numAttentionHeads() : heads;
        // An augment with a tokenizer of its own reads the text (same_sequence) or its prompt (separate_prompt)
        // through it (docs/design.md §3).
        boolean[] own = TextAlignment.ownTokens(anchorDir, augmentDirs);
        try {
            plan.check(anchor, augments, augmentDirs.stream().map(Path::toString).toList(), h, mode, own);
        } catch (CompositionException e) {
            // the same message, led by the option that set the wrong part
            String flag = switch (e.part()) {
                case AUGMENTS -> "--augment: ";
                case CONNECTIONS -> connections == null ? "" : "--connections: ";
                case HEADS -> "--heads: ";
                case MODE -> "--mode: ";
            };
            throw new Calm4jException(flag + e.getMessage());
        }
        return new Compositions(anchorDir, anchor, List.copyOf(augmentDirs), List.copyOf(augments), plan, h, mode, own);
    }

    long bridgeParameters(int k) {
        Connection c = plan.get(k);
        return Bridge.parameterCount(augments.get(c.augment()).hiddenSize(), anchor.hiddenSize());
    }

    long bridgeParameters() {
        long n = 0;
        for (int k = 0; k < plan.size(); k++) {
            n += bridgeParameters(k);
        }
        return n;
    }

    /** The plan as a table, then bridge parameters against the base models'. */
    void print(PrintWriter out) {
        out.printf("composition     %d bridge(s), %s, %d heads%n", plan.size(), mode.jsonName(), heads);
        for (int a = 0; a < augments.size(); a++) {
            if (ownTokens[a]) {
                out.printf(mode == Mode.SAME_SEQUENCE
                        ? "  augment %d reads the text through its own tokenizer, aligned by where tokens end%n"
                        : "  augment %d reads its prompt through its own tokenizer%n", a);
            }
        }
        out.printf("  %-6s  %-7s  %-30s  %12s%n", "bridge", "augment", "augment layer -> anchor layer", "parameters");
        for (int k = 0; k < plan.size(); k++) {
            Connection c = plan.get(k);
            out.printf("  %6d  %7d  %-30s  %,12d%n", k, c.augment(),
                    String.format("%13d -> %d", c.augmentLayer(), c.anchorLayer()), bridgeParameters(k));
        }
        long total = bridgeParameters();
        out.printf("bridges         %,d parameters (%s of the anchor)%n", total, percent(total, anchor.parameterCount()));
        out.printf("anchor          %s%n", describe(anchorDir, anchor));
        for (int a = 0; a < augments.size(); a++) {
            out.printf("augment %-7d %s%n", a, describe(augmentDirs.get(a), augments.get(a)));
        }
    }

    ObjectNode toJson(ObjectMapper m) {
        ObjectNode o = m.createObjectNode();
        o.put("mode", mode.jsonName());
        o.put("heads", heads);
        o.put("connections", plan.spec());
        ArrayNode b = o.putArray("bridges");
        for (int k = 0; k < plan.size(); k++) {
            Connection c = plan.get(k);
            b.addObject().put("bridge", k).put("augment", c.augment()).put("augment_layer", c.augmentLayer())
                    .put("anchor_layer", c.anchorLayer()).put("parameters", bridgeParameters(k));
        }
        o.put("bridge_parameters", bridgeParameters());
        o.set("anchor", model(m, anchorDir, anchor));
        ArrayNode a = o.putArray("augments");
        for (int i = 0; i < augments.size(); i++) {
            a.add(model(m, augmentDirs.get(i), augments.get(i)));
        }
        o.put("bridge_fraction_of_anchor", (double) bridgeParameters() / anchor.parameterCount());
        return o;
    }

    private static ObjectNode model(ObjectMapper m, Path dir, ModelConfig c) {
        return m.createObjectNode().put("path", dir.toString()).put("model_type", c.modelType())
                .put("layers", c.numHiddenLayers()).put("hidden_size", c.hiddenSize())
                .put("parameters", c.parameterCount());
    }

    static String describe(Path dir, ModelConfig c) {
        return String.format("%s: %s, %d layers, hidden %d, %,d parameters%s", dir, c.modelType(), c.numHiddenLayers(),
                c.hiddenSize(), c.parameterCount(),
                Files.isDirectory(dir) ? "" : " (folder missing; config as recorded in the checkpoint)");
    }

    static String percent(long part, long whole) {
        double p = 100.0 * part / whole;
        return p >= 0.1 ? String.format("%.1f%%", p) : String.format("%.3f%%", p);
    }
}
