package dev.calm4j.lm;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.lm.llama.RopeScaling;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * Typed, validating access to the fields of a Hugging Face {@code config.json}, for the family config records:
 * every error is one line naming the file ({@code source}) and the field, and says what was expected.
 *
 * <p>Integers that size tables are read with bounds ({@link #bounded}) so that a hostile config cannot make calm4j
 * allocate a huge table (per-layer lists, rotary cos/sin) before the weights have been checked against it.
 * Reads both layouts transformers writes: 4.x (top-level {@code rope_theta}, {@code rope_scaling},
 * {@code torch_dtype}) and 5.x ({@code rope_parameters}, {@code dtype}).
 */
public record HfConfigFields(JsonNode node, String source) {
    /** Most layers, heads and widths a config may ask for (far above any released model). */
    public static final int MAX_LAYERS = 1024;
    public static final int MAX_HEADS = 1024;
    public static final int MAX_WIDTH = 1 << 17;
    public static final int MAX_VOCAB = 1 << 22;
    public static final int MAX_POSITIONS = 1 << 22;
    /** Rotary tables hold max_position_embeddings x head_dim floats, twice: at most 512 MB each. */
    public static final long MAX_ROTARY_ENTRIES = 1L << 27;

    private static final Set<String> DTYPES = Set.of("float32", "bfloat16", "float16");

    /** Rotary frequencies: the base and the scaling rule. */
    public record Rope(double theta, RopeScaling scaling) {}

    private Calm4jException error(String name, String problem) {
        return new Calm4jException(source + ": field '" + name + "' " + problem);
    }

    /** Refuses a config whose {@code model_type} is not {@code expected}. */
    public void modelType(String expected) {
        String type = string("model_type", null);
        if (!expected.equals(type)) {
            throw error("model_type", type == null ? "is missing (expected '" + expected + "')"
                    : "is '" + type + "', expected '" + expected + "'");
        }
    }

    public int integer(String name, Integer dflt) {
        JsonNode v = node.get(name);
        if (v == null || v.isNull()) {
            if (dflt == null) {
                throw error(name, "is missing (expected an integer)");
            }
            return dflt;
        }
        if (!v.isIntegralNumber() || !v.canConvertToInt()) {
            throw error(name, "is " + v + ", expected an integer");
        }
        return v.asInt();
    }

    /** An integer in {@code [min, max]}. */
    public int bounded(String name, Integer dflt, int min, int max) {
        int v = integer(name, dflt);
        if (v < min || v > max) {
            throw error(name, "is " + v + ", expected an integer from " + min + " to " + max);
        }
        return v;
    }

    public double number(String name, Double dflt) {
        JsonNode v = node.get(name);
        if (v == null || v.isNull()) {
            if (dflt == null) {
                throw error(name, "is missing (expected a number)");
            }
            return dflt;
        }
        if (!v.isNumber()) {
            throw error(name, "is " + v + ", expected a number");
        }
        return v.asDouble();
    }

    /** A finite number {@code > 0}. */
    public double positive(String name, Double dflt) {
        double v = number(name, dflt);
        if (!(v > 0) || Double.isInfinite(v)) {
            throw error(name, "is " + v + ", expected a number > 0");
        }
        return v;
    }

    public boolean bool(String name, boolean dflt) {
        JsonNode v = node.get(name);
        if (v == null || v.isNull()) {
            return dflt;
        }
        if (!v.isBoolean()) {
            throw error(name, "is " + v + ", expected true or false");
        }
        return v.asBoolean();
    }

    public String string(String name, String dflt) {
        JsonNode v = node.get(name);
        if (v == null || v.isNull()) {
            return dflt;
        }
        if (!v.isTextual()) {
            throw error(name, "is " + v + ", expected a string");
        }
        return v.asText();
    }

    /** Whether the field is present and not null. */
    public boolean has(String name) {
        return node.hasNonNull(name);
    }

    /** {@code hidden_act}: the three families here are SwiGLU, so only {@code silu}. */
    public void silu() {
        String act = string("hidden_act", "silu");
        if (!act.equals("silu")) {
            throw error("hidden_act", "is '" + act + "', expected 'silu' (SwiGLU)");
        }
    }

    /** {@code dtype} (5.x) or {@code torch_dtype} (4.x); float32 when neither is given. */
    public String dtype() {
        String name = has("dtype") ? "dtype" : "torch_dtype";
        String d = string(name, "float32");
        if (!DTYPES.contains(d)) {
            throw error(name, "is '" + d + "', expected one of float32, bfloat16, float16");
        }
        return d;
    }

    /** {@code bos_token_id}, or -1 when absent. */
    public int bos() {
        return has("bos_token_id") ? integer("bos_token_id", null) : -1;
    }

    /** {@code eos_token_id}: HF allows an integer or a list of them; empty when absent. */
    public List<Integer> eos() {
        return ids("eos_token_id");
    }

    /** Token ids under {@code name}: an integer, a list of them (at most {@link #MAX_HEADS}), or absent (none). */
    public List<Integer> ids(String name) {
        JsonNode e = node.get(name);
        List<Integer> ids = new ArrayList<>();
        if (e != null && e.isArray()) {
            if (e.size() > MAX_HEADS) {
                throw error(name, "has " + e.size() + " entries, expected at most " + MAX_HEADS);
            }
            for (JsonNode x : e) {
                if (!x.isIntegralNumber() || !x.canConvertToInt()) {
                    throw error(name, "holds " + x + ", expected integers");
                }
                ids.add(x.asInt());
            }
        } else if (e != null && !e.isNull()) {
            ids.add(integer(name, null));
        }
        return ids;
    }

    /** An integer under {@code name}, or under HF's alias for it when {@code name} is absent (GPT-2's n_embd ...). */
    public int integer(String name, String alias, Integer dflt) {
        return integer(!node.hasNonNull(name) && alias != null && node.hasNonNull(alias) ? alias : name, dflt);
    }

    /** A required list of numbers, at most {@link #MAX_WIDTH} long (the record checks its length against the config). */
    public List<Double> numbers(String name) {
        JsonNode v = node.get(name);
        if (v == null || v.isNull()) {
            throw error(name, "is missing (expected a list of numbers)");
        }
        if (!v.isArray() || v.size() > MAX_WIDTH) {
            throw error(name, "is " + brief(v) + ", expected a list of numbers");
        }
        List<Double> out = new ArrayList<>();
        for (JsonNode x : v) {
            if (!x.isNumber()) {
                throw error(name, "holds " + brief(x) + ", expected numbers");
            }
            out.add(x.asDouble());
        }
        return out;
    }

    /**
     * A list of exactly {@code size} strings, each one of {@code allowed}; null when the field is absent or null.
     * (size is a validated layer count, so the list is never longer than {@link #MAX_LAYERS}.)
     */
    public List<String> strings(String name, int size, Set<String> allowed) {
        JsonNode v = node.get(name);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isArray() || v.size() != size) {
            throw error(name, "is " + brief(v) + ", expected a list of " + size + " entries (one per layer)");
        }
        List<String> out = new ArrayList<>(size);
        for (JsonNode x : v) {
            if (!x.isTextual() || !allowed.contains(x.asText())) {
                throw error(name, "holds " + x + ", expected one of " + allowed);
            }
            out.add(x.asText());
        }
        return out;
    }

    /** A list of exactly {@code size} integers, each one of {@code allowed}; null when absent or null. */
    public List<Integer> ints(String name, int size, Set<Integer> allowed) {
        JsonNode v = node.get(name);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isArray() || v.size() != size) {
            throw error(name, "is " + brief(v) + ", expected a list of " + size + " entries (one per layer)");
        }
        List<Integer> out = new ArrayList<>(size);
        for (JsonNode x : v) {
            if (!x.isIntegralNumber() || !x.canConvertToInt() || !allowed.contains(x.asInt())) {
                throw error(name, "holds " + x + ", expected one of " + allowed);
            }
            out.add(x.asInt());
        }
        return out;
    }

    private static String brief(JsonNode v) {
        if (v.isArray()) {
            return "a list of " + v.size() + " entries";
        }
        String s = v.toString();
        return s.length() > 40 ? s.substring(0, 40) + "..." : s;
    }

    /**
     * The rotary parameters: 5.x {@code rope_parameters} {rope_type, rope_theta, ...}, else 4.x top-level
     * {@code rope_theta} and {@code rope_scaling} (type under {@code rope_type} or, older, {@code type}). A theta
     * missing everywhere is the family's default, as in HF. Scaling types calm4j does not implement are refused.
     */
    public Rope rope(double defaultTheta) {
        double topTheta = positive("rope_theta", defaultTheta);
        if (has("rope_parameters")) {
            JsonNode rp = node.get("rope_parameters");
            if (!rp.isObject()) {
                throw error("rope_parameters", "is " + brief(rp) + ", expected an object");
            }
            rp.fields().forEachRemaining(e -> {
                if (e.getValue().isObject()) {
                    throw error("rope_parameters", "is nested per layer type ('" + e.getKey()
                            + "'), expected one set of rotary parameters for every layer");
                }
            });
            HfConfigFields r = new HfConfigFields(rp, source + ": rope_parameters");
            return new Rope(r.positive("rope_theta", topTheta), r.scaling("rope_parameters"));
        }
        JsonNode rs = node.get("rope_scaling");
        if (rs == null || rs.isNull()) {
            return new Rope(topTheta, RopeScaling.NONE);
        }
        if (!rs.isObject()) {
            throw error("rope_scaling", "is " + brief(rs) + ", expected an object or null");
        }
        return new Rope(topTheta, new HfConfigFields(rs, source + ": rope_scaling").scaling("rope_scaling"));
    }

    private RopeScaling scaling(String field) {
        String type = has("rope_type") ? string("rope_type", null) : string("type", "default");
        try {
            return switch (type) {
                case "default" -> RopeScaling.NONE;
                case "linear" -> new RopeScaling("linear", number("factor", null), 0, 0, 0);
                case "llama3" -> new RopeScaling("llama3", number("factor", null), number("low_freq_factor", null),
                        number("high_freq_factor", null), integer("original_max_position_embeddings", null));
                default -> throw new IllegalArgumentException("rope type '" + type
                        + "' is not supported (supported: default, linear, llama3)");
            };
        } catch (IllegalArgumentException ex) {
            throw new Calm4jException(source + ": " + ex.getMessage());
        }
    }

    /** Refuses rotary tables larger than {@link #MAX_ROTARY_ENTRIES} (max_position_embeddings x head_dim). */
    public void rotaryTableFits(int maxPositions, int headDim) {
        if ((long) maxPositions * headDim > MAX_ROTARY_ENTRIES) {
            throw error("max_position_embeddings", "is " + maxPositions + ", which with head_dim " + headDim
                    + " needs a rotary table over " + MAX_ROTARY_ENTRIES + " entries (expected a smaller context)");
        }
    }

    // ---------------------------------------------------------------------------------------------- writing

    /** Writes the rotary parameters in the 4.x layout (top-level {@code rope_theta}, {@code rope_scaling}). */
    public static void putRope(ObjectNode o, double theta, RopeScaling s) {
        o.put("rope_theta", theta);
        if (s.type().equals("default")) {
            o.putNull("rope_scaling");
            return;
        }
        ObjectNode rs = o.putObject("rope_scaling");
        rs.put("rope_type", s.type());
        rs.put("factor", s.factor());
        if (s.type().equals("llama3")) {
            rs.put("low_freq_factor", s.lowFreqFactor());
            rs.put("high_freq_factor", s.highFreqFactor());
            rs.put("original_max_position_embeddings", s.originalMaxPositions());
        }
    }

    /** Writes {@code bos_token_id} (when set) and {@code eos_token_id} (an integer, or a list of several). */
    public static void putSpecialTokens(ObjectNode o, int bos, List<Integer> eos) {
        if (bos >= 0) {
            o.put("bos_token_id", bos);
        }
        if (eos.size() == 1) {
            o.put("eos_token_id", eos.get(0));
        } else if (!eos.isEmpty()) {
            ArrayNode a = o.putArray("eos_token_id");
            eos.forEach(a::add);
        }
    }
}
