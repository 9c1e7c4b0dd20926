package dev.calm4j.data;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.calm4j.Calm4jException;
import dev.calm4j.tokenize.Tokenizer;

import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

/**
 * Reads JSON Lines data: one object per line, in one of four shapes (see {@link Dataset#read}). Parses and
 * type-checks fields here; the rules (BOS, EOS, targets, limits) are applied by {@link Sequences}.
 */
final class JsonlReader {
    // Strict: a duplicated key or a second value on the line is a mistake in the data, not something to guess about.
    private static final JsonMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    static final String ACCEPTED = "accepted: {\"prompt\", \"completion\"}, {\"text\"}, "
            + "{\"prompt_ids\", \"completion_ids\"} or {\"ids\"}, optionally with \"augment_prompt\" or "
            + "\"augment_prompt_ids\"";

    /** The accepted shapes, each a set of fields that must all be present. */
    private enum Shape {
        PROMPT_COMPLETION("prompt", "completion"),
        TEXT("text"),
        PROMPT_COMPLETION_IDS("prompt_ids", "completion_ids"),
        IDS("ids");

        final String[] fields;

        Shape(String... fields) {
            this.fields = fields;
        }
    }

    private JsonlReader() {}

    static List<Example> read(Path file, Tokenizer tokenizer, DataRules rules, long maxLineBytes) {
        List<Example> out = new ArrayList<>();
        // Lines are split as bytes and decoded one by one: a Reader decodes ahead of the line it returns, so an
        // invalid byte would be reported on the wrong line.
        CharsetDecoder utf8 = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        int lineNo = 0;
        try (InputStream in = new BufferedInputStream(Files.newInputStream(file), 1 << 16)) {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            for (int b = in.read(); ; b = in.read()) {
                if (b != '\n' && b != -1) {
                    if (bytes.size() >= maxLineBytes) {
                        // checked on bytes, before the line is decoded or tokenized: a huge line costs nothing
                        throw new Calm4jException(file + ":" + (lineNo + 1) + ": " + Dataset.tooLong(maxLineBytes));
                    }
                    bytes.write(b);
                    continue;
                }
                if (b == -1 && bytes.size() == 0) {
                    break;
                }
                lineNo++;
                String line = decode(bytes.toByteArray(), utf8, file, lineNo);
                bytes.reset();
                if (lineNo == 1 && line.startsWith("\uFEFF")) {
                    line = line.substring(1);    // a byte-order mark some editors write
                }
                if (!line.isBlank()) {
                    try {
                        out.add(example(parse(line), tokenizer, rules, lineNo));
                    } catch (DataError e) {
                        throw new Calm4jException(file + ":" + lineNo + ": " + e.getMessage());
                    }
                }
                if (b == -1) {
                    break;
                }
            }
        } catch (IOException e) {
            throw new Calm4jException(file + ": cannot read (" + e.getMessage() + ")");
        }
        return out;
    }

    private static String decode(byte[] line, CharsetDecoder utf8, Path file, int lineNo) {
        try {
            return utf8.decode(ByteBuffer.wrap(line)).toString();   // "\r\n" leaves a '\r': JSON whitespace
        } catch (CharacterCodingException e) {
            throw new Calm4jException(file + ":" + lineNo + ": not valid UTF-8 text");
        }
    }

    private static JsonNode parse(String line) {
        JsonNode node;
        try {
            node = JSON.readTree(line);
        } catch (JacksonException e) {
            JsonLocation at = e.getLocation();
            String column = at == null || at.getColumnNr() < 1 ? "" : " at column " + at.getColumnNr();
            String why = e.getOriginalMessage() == null ? e.getClass().getSimpleName() : e.getOriginalMessage();
            throw new DataError("malformed JSON" + column + ": " + oneLine(why) + arrayHint(line));
        }
        if (!node.isObject()) {
            throw new DataError("expected a JSON object, got " + kind(node) + arrayHint(line) + "; " + ACCEPTED);
        }
        return node;
    }

    private static Example example(JsonNode obj, Tokenizer tokenizer, DataRules rules, int line) {
        Shape shape = shape(obj);
        // Main fields first, so their problems are reported before those of the optional augment field.
        Part first;
        Part second = null;
        switch (shape) {
            case PROMPT_COMPLETION -> {
                String prompt = string(obj, "prompt");
                String completion = string(obj, "completion");
                requireTokenizer(tokenizer, "\"prompt\"/\"completion\"", "\"prompt_ids\"/\"completion_ids\"");
                first = encode(tokenizer, "prompt", prompt);
                second = encode(tokenizer, "completion", completion);
            }
            case TEXT -> {
                String text = string(obj, "text");
                requireTokenizer(tokenizer, "\"text\"", "\"ids\"");
                first = encode(tokenizer, "text", text);
            }
            case PROMPT_COMPLETION_IDS -> {
                first = ids(obj, "prompt_ids");
                second = ids(obj, "completion_ids");
            }
            case IDS -> first = ids(obj, "ids");
            default -> throw new AssertionError(shape);
        }
        Part augment = rules.separatePrompt() ? augment(obj, tokenizer) : null;
        return second != null ? Sequences.pair(first, second, augment, rules, line)
                : Sequences.text(first, augment, rules, line);
    }

    /** The one shape whose fields appear; fields outside all shapes (metadata such as "key") are ignored. */
    private static Shape shape(JsonNode obj) {
        List<Shape> present = new ArrayList<>();
        List<String> seen = new ArrayList<>();
        for (Shape s : Shape.values()) {
            for (String f : s.fields) {
                if (obj.has(f)) {
                    seen.add(f);
                    if (!present.contains(s)) {
                        present.add(s);
                    }
                }
            }
        }
        if (present.isEmpty()) {
            List<String> names = new ArrayList<>();
            obj.fieldNames().forEachRemaining(names::add);
            throw new DataError("no accepted fields (has " + (names.isEmpty() ? "none" : quoted(names)) + "); "
                    + ACCEPTED);
        }
        if (present.size() > 1) {
            throw new DataError("mixes shapes (" + quoted(seen) + "); " + ACCEPTED);
        }
        Shape shape = present.get(0);
        for (String f : shape.fields) {
            if (!obj.has(f)) {
                throw new DataError("has " + quoted(seen) + " but no \"" + f + "\"; " + ACCEPTED);
            }
        }
        return shape;
    }

    private static Part augment(JsonNode obj, Tokenizer tokenizer) {
        boolean text = obj.has("augment_prompt");
        boolean ids = obj.has("augment_prompt_ids");
        if (text && ids) {
            throw new DataError("give \"augment_prompt\" or \"augment_prompt_ids\", not both");
        }
        if (ids) {
            return ids(obj, "augment_prompt_ids");
        }
        if (text) {
            String s = string(obj, "augment_prompt");
            requireTokenizer(tokenizer, "\"augment_prompt\"", "\"augment_prompt_ids\"");
            return encode(tokenizer, "augment_prompt", s);
        }
        return null;
    }

    private static String string(JsonNode obj, String field) {
        JsonNode v = obj.get(field);
        if (!v.isTextual()) {
            throw new DataError("\"" + field + "\" must be a string, got " + kind(v));
        }
        return v.textValue();
    }

    private static Part ids(JsonNode obj, String field) {
        JsonNode v = obj.get(field);
        if (!v.isArray()) {
            throw new DataError("\"" + field + "\" must be an array of integer token ids, got " + kind(v));
        }
        long[] out = new long[v.size()];
        Iterator<JsonNode> it = v.elements();
        for (int i = 0; it.hasNext(); i++) {
            JsonNode e = it.next();
            if (!e.isIntegralNumber() || !e.canConvertToLong()) {
                throw new DataError("\"" + field + "\" must be an array of integer token ids; element " + i + " is "
                        + (e.isNumber() ? e.asText() : kind(e)));
            }
            out[i] = e.longValue();
        }
        return new Part(field, out, false);
    }

    private static Part encode(Tokenizer tokenizer, String field, String text) {
        // No special tokens from the tokenizer: BOS and EOS are the rules' business, added exactly once. Where each
        // token ends in the text travels along: an augment with its own tokenizer aligns on it.
        Tokenizer.Tokens t = tokenizer.encodeWithEnds(text, false);
        return new Part(field, t.ids(), true, text, t.ends());
    }

    private static void requireTokenizer(Tokenizer tokenizer, String fields, String alternative) {
        if (tokenizer == null) {
            throw new DataError("text field " + fields + " needs a tokenizer.json (none was given); or give "
                    + alternative + " (pre-tokenized ids)");
        }
    }

    private static String kind(JsonNode v) {
        return switch (v.getNodeType()) {
            case STRING -> "a string";
            case NUMBER -> "a number";
            case BOOLEAN -> "a boolean";
            case ARRAY -> "an array";
            case OBJECT -> "an object";
            case NULL -> "null";
            default -> v.getNodeType().toString().toLowerCase();
        };
    }

    private static String arrayHint(String line) {
        return line.strip().startsWith("[")
                ? " (a .jsonl/.json data file holds one JSON object per line, not a JSON array)" : "";
    }

    private static String quoted(List<String> names) {
        return "\"" + String.join("\", \"", names) + "\"";
    }

    private static String oneLine(String s) {
        return s.replaceAll("\\s*\\R\\s*", " ").strip();
    }
}
