package dev.calm4j.tokenize;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.io.AtomicFiles;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/**
 * Writes a character-level Hugging Face {@code tokenizer.json}: one token per character of an alphabet, plus
 * special tokens. It is a real tokenizer.json (WordLevel model, a regex pre-tokenizer that isolates every
 * character, a Fuse decoder), so HF's own {@code tokenizers} and calm4j read it the same way. Used for small models
 * trained from scratch, whose vocabulary is known in advance.
 */
public final class CharTokenizer {
    /** Special tokens, in id order: 0 = pad, 1 = BOS, 2 = EOS, 3 = unknown. */
    public static final List<String> SPECIALS = List.of("<pad>", "<s>", "</s>", "<unk>");

    private CharTokenizer() {}

    /** Writes the tokenizer for {@code alphabet} (distinct characters; ids 4.. in the given order). */
    public static void write(Path file, String alphabet) {
        ObjectMapper json = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode root = json.createObjectNode();
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        ArrayNode added = root.putArray("added_tokens");
        for (int i = 0; i < SPECIALS.size(); i++) {
            ObjectNode t = added.addObject();
            t.put("id", i);
            t.put("content", SPECIALS.get(i));
            t.put("single_word", false);
            t.put("lstrip", false);
            t.put("rstrip", false);
            t.put("normalized", false);
            t.put("special", true);
        }
        root.putNull("normalizer");
        ObjectNode pre = root.putObject("pre_tokenizer");
        pre.put("type", "Split");
        pre.putObject("pattern").put("Regex", "[\\s\\S]");   // every character, newline included (Oniguruma has no (?s))
        pre.put("behavior", "Isolated");
        pre.put("invert", false);
        root.putNull("post_processor");
        root.putObject("decoder").put("type", "Fuse");
        ObjectNode model = root.putObject("model");
        model.put("type", "WordLevel");
        ObjectNode vocab = model.putObject("vocab");
        for (int i = 0; i < SPECIALS.size(); i++) {
            vocab.put(SPECIALS.get(i), i);
        }
        int id = SPECIALS.size();
        for (int i = 0; i < alphabet.length(); ) {
            int cp = alphabet.codePointAt(i);
            String ch = new String(Character.toChars(cp));
            if (vocab.has(ch)) {
                throw new IllegalArgumentException("alphabet repeats '" + ch + "'");
            }
            vocab.put(ch, id++);
            i += Character.charCount(cp);
        }
        model.put("unk_token", "<unk>");
        try {
            AtomicFiles.writeString(file, json.writeValueAsString(root) + "\n");
        } catch (IOException e) {
            throw new Calm4jException(file + ": cannot write (" + e.getMessage() + ")");
        }
    }

    /** Vocabulary size of the tokenizer {@link #write} makes for {@code alphabet}. */
    public static int vocabSize(String alphabet) {
        return SPECIALS.size() + alphabet.codePointCount(0, alphabet.length());
    }
}
