package dev.calm4j.io;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.calm4j.Calm4jException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Reads the small JSON files calm4j trusts (config.json, calm_config.json, state.json, adapter_config.json): a
 * regular file of bounded size, one JSON value and nothing after it, no duplicated key. A file with trailing content
 * ({@code {...}{}}) is damaged or concatenated, and two readers could disagree about a duplicated key, so both are
 * refused rather than read as the first value.
 */
public final class StrictJson {
    /** Far above any real config (a few KiB; a bridge checkpoint's config embeds two model configs). */
    public static final long MAX_BYTES = 16L << 20;

    public static final JsonMapper MAPPER = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    private StrictJson() {}

    /** The file's JSON value (never null); a missing file, a non-regular file, or bad JSON is refused by name. */
    public static JsonNode read(Path file) {
        requireRegularFile(file, "a JSON file");
        byte[] bytes;
        try {
            long size = Files.size(file);
            if (size > MAX_BYTES) {
                throw new Calm4jException(file + ": file is " + size + " bytes, expected at most " + MAX_BYTES);
            }
            bytes = Files.readAllBytes(file);
        } catch (IOException e) {
            throw new Calm4jException(file + ": cannot read (" + e.getMessage() + ")");
        }
        return parse(bytes, file.toString());
    }

    /** Parses {@code bytes} strictly; {@code where} names the source in errors. */
    public static JsonNode parse(byte[] bytes, String where) {
        JsonNode root;
        try {
            root = MAPPER.readTree(bytes);
        } catch (JsonProcessingException e) {
            throw new Calm4jException(where + ": not valid JSON (" + firstLine(e.getOriginalMessage()) + ")");
        } catch (IOException e) {
            throw new Calm4jException(where + ": not valid JSON (" + firstLine(e.getMessage()) + ")");
        }
        if (root == null || root.isMissingNode()) {
            throw new Calm4jException(where + ": empty, expected a JSON object");
        }
        return root;
    }

    /**
     * Refuses anything but a regular file (following links): a FIFO or a device would block or stream forever, a
     * directory cannot be read. {@code what} says what was expected.
     */
    public static void requireRegularFile(Path file, String what) {
        if (!Files.exists(file)) {
            throw new Calm4jException(file + ": missing (expected " + what + ")");
        }
        if (Files.isDirectory(file)) {
            throw new Calm4jException(file + ": is a directory, expected " + what);
        }
        if (!Files.isRegularFile(file)) {
            throw new Calm4jException(file + ": is not a regular file (a FIFO, socket or device?), expected " + what);
        }
    }

    private static String firstLine(String s) {
        if (s == null) {
            return "unreadable";
        }
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }
}
