package dev.calm4j.compose;

import dev.calm4j.Calm4jException;
import dev.calm4j.lm.ModelConfig;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * Which anchor layer reads which augment layer. Either the paper's default or explicit pairs.
 *
 * <p>The paper's default (docs/design.md §3): for an augment of N_A layers and an anchor of N_B layers,
 * n = max(1, floor(N_A / 4)) connections; connection i = 1..n joins augment layer min(4i, N_A) - 1 to anchor layer
 * round(i * N_B / n) - 1. So equal depths give 3->3, 7->7, ...; a 4-layer augment into an 8-layer anchor gives 3->7.
 *
 * <p>Connections are kept sorted by (anchor layer, augment, augment layer): the order bridges are applied in, and the
 * order {@code bridges.{k}} is numbered in a checkpoint.
 */
public record CompositionPlan(List<Connection> connections) {

    public CompositionPlan {
        if (connections.isEmpty()) {
            throw new Calm4jException("a composition needs at least one connection");
        }
        List<Connection> sorted = new ArrayList<>(connections);
        sorted.sort(Comparator.comparingInt(Connection::anchorLayer).thenComparingInt(Connection::augment)
                .thenComparingInt(Connection::augmentLayer));
        for (int i = 1; i < sorted.size(); i++) {
            if (sorted.get(i).equals(sorted.get(i - 1))) {
                throw new Calm4jException("connection " + sorted.get(i) + " is listed twice");
            }
        }
        connections = List.copyOf(sorted);
    }

    /** The paper's default plan for one augment (index {@code augment}). */
    public static List<Connection> paperDefault(int augment, int augmentLayers, int anchorLayers) {
        int n = Math.max(1, augmentLayers / 4);
        List<Connection> c = new ArrayList<>();
        for (int i = 1; i <= n; i++) {
            int a = Math.min(4 * i, augmentLayers) - 1;
            int b = (int) Math.round((double) i * anchorLayers / n) - 1;
            c.add(new Connection(augment, a, Math.max(0, b)));
        }
        return c;
    }

    /**
     * The plan for these models: {@code connections} parsed ({@link #parse}), or, when it is null, the paper's default
     * ({@link #paperDefault}) for every augment in turn. Not yet checked against the models: see {@link #check}.
     *
     * @param connections "3->5,7->11" / "0:3->5,1:2->9", or null for the paper's default
     * @throws Calm4jException when {@code connections} does not parse, or names a connection twice
     */
    public static CompositionPlan resolve(String connections, ModelConfig anchor, List<? extends ModelConfig> augments) {
        List<Connection> list = new ArrayList<>();
        if (connections == null) {
            for (int a = 0; a < augments.size(); a++) {
                list.addAll(paperDefault(a, augments.get(a).numHiddenLayers(), anchor.numHiddenLayers()));
            }
        } else {
            list.addAll(parse(connections));
        }
        return new CompositionPlan(list);
    }

    /**
     * Parses {@code "3->5,7->11"} (augment 0) or, with several augments, {@code "0:3->5,1:2->9"} (augment index,
     * colon, pair). Whitespace is ignored.
     */
    public static List<Connection> parse(String spec) {
        List<Connection> out = new ArrayList<>();
        String s = spec.replaceAll("\\s+", "");
        if (s.isEmpty()) {
            throw new Calm4jException("--connections is empty (expected pairs like \"3->5,7->11\")");
        }
        for (String part : s.split(",")) {
            int augment = 0;
            String pair = part;
            int colon = part.indexOf(':');
            if (colon >= 0) {
                augment = parseIndex(part.substring(0, colon), part, spec);
                pair = part.substring(colon + 1);
            }
            String[] ab = pair.split("->", -1);
            if (ab.length != 2) {
                throw new Calm4jException("--connections: '" + part + "' is not a pair like 3->5 (augment layer -> anchor "
                        + "layer, 0-based) in \"" + spec + "\"");
            }
            out.add(new Connection(augment, parseIndex(ab[0], part, spec), parseIndex(ab[1], part, spec)));
        }
        return out;
    }

    private static int parseIndex(String x, String part, String spec) {
        try {
            int v = Integer.parseInt(x);
            if (v < 0) {
                throw new NumberFormatException();
            }
            return v;
        } catch (NumberFormatException e) {
            throw new Calm4jException("--connections: '" + part + "' needs non-negative integer layer indices (in \""
                    + spec + "\")");
        }
    }

    /**
     * Everything a composition must satisfy before a weight is touched, checked in this one place for the library,
     * the CLI and bridge checkpoints alike: at least one augment, every index within the models' depths, every augment
     * read by some connection, heads that divide the anchor's hidden size, and in {@code same_sequence} mode augments
     * whose vocabularies take the anchor's token ids.
     *
     * @throws CompositionException naming the part that is wrong
     * @param augmentNames how to name each augment in a message (its folder, say); null for "augment i"
     */
    public void check(ModelConfig anchor, List<? extends ModelConfig> augments, List<String> augmentNames, int heads,
                      Mode mode) {
        check(anchor, augments, augmentNames, heads, mode, null);
    }

    /**
     * As above, where {@code ownTokens[a]} says that augment {@code a} reads the text through its own tokenizer
     * ({@link TextAlignment}) instead of the anchor's ids, so that its vocabulary need not take them (null: none does).
     */
    public void check(ModelConfig anchor, List<? extends ModelConfig> augments, List<String> augmentNames, int heads,
                      Mode mode, boolean[] ownTokens) {
        if (augments.isEmpty()) {
            throw new CompositionException(CompositionException.Part.AUGMENTS, "a composition needs at least one augmenting model");
        }
        int[] depths = augments.stream().mapToInt(ModelConfig::numHiddenLayers).toArray();
        try {
            validate(anchor.numHiddenLayers(), depths);
        } catch (Calm4jException e) {
            throw new CompositionException(CompositionException.Part.CONNECTIONS, e.getMessage());
        }
        for (int a = 0; a < augments.size(); a++) {
            String name = augmentNames == null ? "augment " + a : "augment " + a + " (" + augmentNames.get(a) + ")";
            if (deepestAugmentLayer(a) < 0) {
                throw new CompositionException(CompositionException.Part.CONNECTIONS, name + " has no connection; "
                        + "give it one (e.g. \"" + a + ":" + (depths[a] - 1) + "->" + (anchor.numHiddenLayers() - 1)
                        + "\") or drop it");
            }
            boolean own = ownTokens != null && ownTokens[a];
            if (mode == Mode.SAME_SEQUENCE && !own && augments.get(a).vocabSize() < anchor.vocabSize()) {
                throw new CompositionException(CompositionException.Part.MODE, "same_sequence mode feeds the anchor's token ids to " + name
                        + ", whose vocabulary (" + augments.get(a).vocabSize() + ") is smaller than the anchor's ("
                        + anchor.vocabSize() + "); give it its own tokenizer.json (it then reads the text through it) "
                        + "or use separate_prompt");
            }
        }
        if (heads <= 0 || anchor.hiddenSize() % heads != 0) {
            throw new CompositionException(CompositionException.Part.HEADS, "bridge heads (" + heads + ") must be positive and divide the anchor hidden size ("
                    + anchor.hiddenSize() + ")");
        }
    }

    /** Checks every index against the models' depths. */
    void validate(int anchorLayers, int[] augmentLayers) {
        for (Connection c : connections) {
            if (c.augment() >= augmentLayers.length) {
                throw new Calm4jException("connection " + c + " names augment " + c.augment() + " but there are "
                        + augmentLayers.length + " augmenting model(s)");
            }
            if (c.augmentLayer() >= augmentLayers[c.augment()]) {
                throw new Calm4jException("connection " + c + ": augment layer " + c.augmentLayer()
                        + " does not exist (the augment has layers 0.." + (augmentLayers[c.augment()] - 1) + ")");
            }
            if (c.anchorLayer() >= anchorLayers) {
                throw new Calm4jException("connection " + c + ": anchor layer " + c.anchorLayer()
                        + " does not exist (the anchor has layers 0.." + (anchorLayers - 1) + ")");
            }
        }
    }

    public int size() {
        return connections.size();
    }

    public Connection get(int k) {
        return connections.get(k);
    }

    /** Highest augment layer read from augment {@code a}, or -1 when none: the augment runs no further. */
    public int deepestAugmentLayer(int a) {
        return connections.stream().filter(c -> c.augment() == a).mapToInt(Connection::augmentLayer).max().orElse(-1);
    }

    /** The augment layers read from augment {@code a}, ascending, each once (empty when none). */
    public List<Integer> augmentLayers(int a) {
        return connections.stream().filter(c -> c.augment() == a).map(Connection::augmentLayer).distinct().sorted().toList();
    }

    /** The lowest anchor layer a bridge writes after: blocks 0..it run as in the anchor alone. */
    public int lowestAnchorLayer() {
        return connections.stream().mapToInt(Connection::anchorLayer).min().orElseThrow();
    }

    /**
     * The plan as {@link #parse} reads it (and {@code --connections} takes it): "3->5,7->11" when every connection
     * reads augment 0, else "0:3->5,1:2->9" with the augment index on every pair.
     */
    public String spec() {
        boolean several = connections.stream().anyMatch(c -> c.augment() != 0);
        return String.join(",", connections.stream()
                .map(c -> (several ? c.augment() + ":" : "") + c.augmentLayer() + "->" + c.anchorLayer()).toList());
    }

    @Override
    public String toString() {
        return String.join(",", connections.stream().map(Connection::toString).toList());
    }
}
