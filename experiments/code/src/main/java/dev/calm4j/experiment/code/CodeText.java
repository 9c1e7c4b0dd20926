package dev.calm4j.experiment.code;

import java.util.ArrayList;
import java.util.List;

/**
 * How the experiment writes Java for its models: every line stripped of its indentation and trailing blanks, blank
 * lines dropped, lines joined by {@code '\n'}; a file without its licence header. Why flat: the subword tokenizers'
 * pre-tokenizer (a {@code "▁"} before every space-separated word) makes every indenting space a token of its own,
 * which would spend a third of each model's positions on indentation that Java does not need.
 */
public final class CodeText {
    private CodeText() {}

    /** {@code code} with each line stripped and blank lines dropped. */
    public static String flatten(String code) {
        StringBuilder sb = new StringBuilder();
        for (String line : code.split("\\R", -1)) {
            String s = line.strip();
            if (s.isEmpty()) {
                continue;
            }
            if (!sb.isEmpty()) {
                sb.append('\n');
            }
            sb.append(s);
        }
        return sb.toString();
    }

    /**
     * A source file from its {@code package} line on: the licence header before it is the same in every file of a
     * project and would be most of what a model learns. A file without a package line is kept whole.
     */
    public static String body(String fileText) {
        int at = fileText.startsWith("package ") ? 0 : fileText.indexOf("\npackage ");
        return at < 0 ? fileText : fileText.substring(at == 0 ? 0 : at + 1);
    }

    /** Flat text cut at line ends into pieces of at most {@code maxChars} (a longer line is cut where it must be). */
    public static List<String> chunks(String flat, int maxChars) {
        List<String> out = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        for (String line : flat.split("\n", -1)) {
            while (line.length() > maxChars) {
                if (!cur.isEmpty()) {
                    out.add(cur.toString());
                    cur.setLength(0);
                }
                out.add(line.substring(0, maxChars));
                line = line.substring(maxChars);
            }
            if (!cur.isEmpty() && cur.length() + 1 + line.length() > maxChars) {
                out.add(cur.toString());
                cur.setLength(0);
            }
            if (!cur.isEmpty()) {
                cur.append('\n');
            }
            cur.append(line);
        }
        if (!cur.isEmpty()) {
            out.add(cur.toString());
        }
        return out;
    }
}
