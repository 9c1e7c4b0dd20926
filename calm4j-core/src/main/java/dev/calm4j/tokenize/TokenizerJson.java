package dev.calm4j.tokenize;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParseException;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadFeature;
import dev.calm4j.Calm4jException;

import java.io.IOException;
import java.nio.file.Path;

/**
 * Checks a {@code tokenizer.json} as JSON before the native tokenizers library reads it. That library (Rust, through
 * DJL) aborts the whole process, JVM included, on some malformed input instead of returning an error: a syntax error
 * inside a decoder, normalizer or pre-tokenizer section panics while it is parsed (found by fuzzing). Everything its
 * parser would reject is refused here first, in one streaming pass: syntax, trailing content, duplicated keys,
 * nesting deeper than {@link #MAX_DEPTH} (its parser's limit is 128), numbers outside the double range, and strings
 * with unpaired UTF-16 surrogates (which its parser rejects and Java's accepts).
 */
final class TokenizerJson {
    /** Real tokenizers nest about 6 deep. */
    static final int MAX_DEPTH = 64;

    private static final JsonFactory FACTORY = JsonFactory.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .build();

    private TokenizerJson() {}

    static void check(Path file) {
        try (JsonParser p = FACTORY.createParser(file.toFile())) {
            int depth = 0;
            JsonToken t = p.nextToken();
            if (t != JsonToken.START_OBJECT) {
                throw bad(file, "expected a JSON object");
            }
            for (; t != null; t = p.nextToken()) {
                switch (t) {
                    case START_OBJECT, START_ARRAY -> {
                        if (++depth > MAX_DEPTH) {
                            throw bad(file, "nested deeper than " + MAX_DEPTH + " levels");
                        }
                    }
                    case END_OBJECT, END_ARRAY -> depth--;
                    case FIELD_NAME, VALUE_STRING -> checkText(file, p.getText());
                    case VALUE_NUMBER_FLOAT -> {
                        if (!Double.isFinite(p.getDoubleValue())) {
                            throw bad(file, "number " + p.getText() + " is outside the double range");
                        }
                    }
                    default -> { }
                }
                if (depth == 0) {
                    if (p.nextToken() != null) {
                        throw bad(file, "content after the JSON object");
                    }
                    return;
                }
            }
            throw bad(file, "the JSON object is not closed");
        } catch (JsonParseException e) {
            throw bad(file, e.getOriginalMessage().split("\n")[0]);
        } catch (IOException e) {
            throw new Calm4jException(file + ": cannot read (" + e.getMessage() + ")");
        }
    }

    private static void checkText(Path file, String s) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
                i++;
            } else if (Character.isSurrogate(c)) {
                throw bad(file, "a string holds an unpaired UTF-16 surrogate");
            }
        }
    }

    private static Calm4jException bad(Path file, String why) {
        return new Calm4jException(file + ": not a valid tokenizer.json (" + why + ")");
    }
}
