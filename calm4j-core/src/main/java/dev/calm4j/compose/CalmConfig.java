package dev.calm4j.compose;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * {@code calm_config.json} of a bridge checkpoint: the plan (connections in {@code bridges.{k}} order), heads, mode,
 * whether the cross-attention carries the recency bias ({@code recency_bias}, {@link Bridge#recency()}),
 * and which base models the bridges were trained on (path relative to the checkpoint, model_type, config and weight
 * fingerprint). {@code extra} carries free-form provenance (training settings, metrics).
 */
public record CalmConfig(Mode mode, int heads, boolean recency, ModelRef anchor, List<ModelRef> augments,
                         List<Connection> connections, ObjectNode extra) {
    public static final String FILE = "calm_config.json";
    public static final String FORMAT = "calm4j-bridges";
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    /**
     * A base model: {@code path} as stored (relative to the bridge directory when written by calm4j), its weights'
     * fingerprint, and its {@code tokenizer.json}'s ({@link dev.calm4j.tokenize.Tokenizer#fingerprint}; null when the
     * folder had none, or in checkpoints written before tokenizers were recorded), and for an augment whether it
     * reads the text through its own tokenizer ({@code own_tokens}; {@link TextAlignment}) instead of the anchor's ids.
     */
    public record ModelRef(String path, String modelType, String fingerprint, JsonNode config,
                           String tokenizerFingerprint, boolean ownTokens) {
        public ModelRef(String path, String modelType, String fingerprint, JsonNode config, String tokenizerFingerprint) {
            this(path, modelType, fingerprint, config, tokenizerFingerprint, false);
        }
    }

    public CalmConfig {
        augments = List.copyOf(augments);
        connections = List.copyOf(connections);
    }

    /** Bridges without the recency bias (the paper's cross-attention). */
    public CalmConfig(Mode mode, int heads, ModelRef anchor, List<ModelRef> augments, List<Connection> connections,
                      ObjectNode extra) {
        this(mode, heads, false, anchor, augments, connections, extra);
    }

    public ObjectNode toJson() {
        ObjectNode o = JSON.createObjectNode();
        o.put("format", FORMAT);
        o.put("version", 1);
        o.put("mode", mode.jsonName());
        o.put("heads", heads);
        if (recency) {
            o.put("recency_bias", true);        // written only when set: checkpoints without it read as before
        }
        o.set("anchor", ref(anchor));
        ArrayNode a = o.putArray("augments");
        augments.forEach(r -> a.add(ref(r)));
        ArrayNode c = o.putArray("connections");
        for (Connection x : connections) {
            c.addObject().put("augment", x.augment()).put("augment_layer", x.augmentLayer()).put("anchor_layer", x.anchorLayer());
        }
        if (extra != null) {
            o.set("extra", extra);
        }
        return o;
    }

    private static ObjectNode ref(ModelRef r) {
        ObjectNode o = JSON.createObjectNode();
        o.put("path", r.path());
        o.put("model_type", r.modelType());
        o.put("fingerprint", r.fingerprint());
        if (r.tokenizerFingerprint() != null) {
            o.put("tokenizer_fingerprint", r.tokenizerFingerprint());
        }
        if (r.ownTokens()) {
            o.put("own_tokens", true);
        }
        if (r.config() != null) {
            o.set("config", r.config());
        }
        return o;
    }

    public String toJsonString() {
        try {
            return JSON.writeValueAsString(toJson()) + "\n";
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    public static CalmConfig read(Path dir) {
        Path file = dir.resolve(FILE);
        if (!Files.isRegularFile(file)) {
            throw new Calm4jException(file + ": missing (a bridge checkpoint holds " + FILE + " and bridges.safetensors)");
        }
        JsonNode o = dev.calm4j.io.StrictJson.read(file);
        if (!o.isObject()) {
            throw new Calm4jException(file + ": expected a JSON object");
        }
        if (!FORMAT.equals(text(o, "format", file))) {
            throw new Calm4jException(file + ": field 'format' must be '" + FORMAT + "'");
        }
        Mode mode = Mode.parse(text(o, "mode", file), file.toString());
        int heads = integer(o, "heads", file);
        JsonNode rec = o.get("recency_bias");
        if (rec != null && !rec.isBoolean()) {
            throw new Calm4jException(file + ": field 'recency_bias' must be true or false");
        }
        ModelRef anchor = readRef(o.get("anchor"), file, "anchor");
        JsonNode augs = o.get("augments");
        if (augs == null || !augs.isArray() || augs.isEmpty()) {
            throw new Calm4jException(file + ": field 'augments' must be a non-empty array");
        }
        List<ModelRef> augments = new ArrayList<>();
        for (int i = 0; i < augs.size(); i++) {
            augments.add(readRef(augs.get(i), file, "augments[" + i + "]"));
        }
        JsonNode cs = o.get("connections");
        if (cs == null || !cs.isArray() || cs.isEmpty()) {
            throw new Calm4jException(file + ": field 'connections' must be a non-empty array");
        }
        List<Connection> connections = new ArrayList<>();
        for (int i = 0; i < cs.size(); i++) {
            JsonNode c = cs.get(i);
            String where = "connections[" + i + "]";
            if (!c.isObject()) {
                throw new Calm4jException(file + ": field '" + where + "' must be an object");
            }
            int a = c.has("augment") ? integer(c, "augment", file) : 0;
            connections.add(new Connection(a, integer(c, "augment_layer", file), integer(c, "anchor_layer", file)));
        }
        ObjectNode extra = o.get("extra") instanceof ObjectNode e ? e : null;
        return new CalmConfig(mode, heads, rec != null && rec.asBoolean(), anchor, augments, connections, extra);
    }

    private static ModelRef readRef(JsonNode r, Path file, String where) {
        if (r == null || !r.isObject()) {
            throw new Calm4jException(file + ": field '" + where + "' must be an object with path, model_type, fingerprint");
        }
        JsonNode tok = r.get("tokenizer_fingerprint");
        if (tok != null && !tok.isTextual()) {
            throw new Calm4jException(file + ": field 'tokenizer_fingerprint' must be a string");
        }
        JsonNode own = r.get("own_tokens");
        if (own != null && !own.isBoolean()) {
            throw new Calm4jException(file + ": field 'own_tokens' must be true or false");
        }
        String path = text(r, "path", file);
        try {
            if (path.isEmpty() || path.indexOf('\0') >= 0) {
                throw new java.nio.file.InvalidPathException(path, "empty or holds a NUL character");
            }
            Path.of(path);
        } catch (java.nio.file.InvalidPathException e) {
            throw new Calm4jException(file + ": field '" + where + ".path' is not a usable path (" + e.getReason() + ")");
        }
        return new ModelRef(path, text(r, "model_type", file), text(r, "fingerprint", file), r.get("config"),
                tok == null ? null : tok.asText(), own != null && own.asBoolean());
    }

    private static String text(JsonNode o, String field, Path file) {
        JsonNode v = o.get(field);
        if (v == null || !v.isTextual()) {
            throw new Calm4jException(file + ": field '" + field + "' is missing or not a string");
        }
        return v.asText();
    }

    private static int integer(JsonNode o, String field, Path file) {
        JsonNode v = o.get(field);
        if (v == null || !v.isIntegralNumber() || !v.canConvertToInt() || v.asInt() < 0) {
            throw new Calm4jException(file + ": field '" + field + "' must be a non-negative integer");
        }
        return v.asInt();
    }
}
