package dev.calm4j.experiment.code;

import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A method's summary as the code → text task asks for it: the first sentence of its Javadoc's description, as plain
 * text. The comment's content ({@code JavadocComment.getContent()}, without {@code /**} and {@code *}{@code /}) is
 * read as the javadoc tool reads it, then rendered:
 * <ul>
 *   <li>leading {@code *} of each line removed; the description ends at the first line that starts with a block tag
 *       ({@code @param}, {@code @return}, ...);</li>
 *   <li>the first sentence ends at the first block-level HTML tag ({@code <p>}, {@code <pre>}, {@code <ul>}, ...) or at
 *       the first period followed by whitespace or the end, outside inline tags, except after the abbreviations
 *       {@code e.g.}, {@code i.e.}, {@code etc.}, {@code vs.} (the javadoc tool's simple rule would stop there);</li>
 *   <li>inline tags: {@code {@code x}} and {@code {@literal x}} give {@code x} verbatim; {@code {@link A#b(int) label}}
 *       and {@code {@linkplain ...}} give the label when there is one, else the reference with its parameter list
 *       dropped, package names dropped and {@code #} written {@code .} ({@code java.util.Map#get(Object)} →
 *       {@code Map.get}, {@code #b} → {@code b}); {@code
 *       {@value A#B}} gives {@code A.B}; {@code {@docRoot}} gives nothing; {@code {@index word ...}} gives the word;
 *       any other inline tag its content; braces are balanced, so {@code {@code Map<K, {V}>}} is one tag;</li>
 *   <li>outside inline tags, HTML tags are removed and entities decoded ({@code &lt;}, {@code &#60;}, {@code &#x3c;},
 *       {@code &nbsp;}, a few named ones; an unknown entity stays as written);</li>
 *   <li>whitespace (newlines included) collapsed to one space and trimmed.</li>
 * </ul>
 * A description that is empty, or whose first sentence is only {@code {@inheritDoc}}, gives no summary
 * ({@link Result#reason} says why).
 */
public final class JavadocSummary {
    private JavadocSummary() {}

    /** A summary, or why there is none ({@code summary} null then). */
    public record Result(String summary, String reason) {
        static Result of(String summary) {
            return new Result(summary, null);
        }

        static Result none(String reason) {
            return new Result(null, reason);
        }

        public boolean present() {
            return summary != null;
        }
    }

    /** Reasons a comment gives no summary, as counted in the data summary. */
    public static final String EMPTY = "empty description";
    public static final String INHERIT_DOC = "only {@inheritDoc}";

    private static final Pattern BLOCK_TAG_LINE = Pattern.compile("^\\s*@[a-zA-Z]");
    private static final Pattern BLOCK_HTML = Pattern.compile(
            "<(p|pre|ul|ol|dl|li|table|h[1-6]|hr|blockquote|div)(\\s[^>]*)?/?>", Pattern.CASE_INSENSITIVE);
    private static final Pattern HTML_TAG = Pattern.compile("</?[a-zA-Z][^<>]*>|<!--.*?-->", Pattern.DOTALL);
    private static final Pattern ENTITY = Pattern.compile("&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,9});");
    private static final Map<String, String> NAMED = Map.ofEntries(
            Map.entry("lt", "<"), Map.entry("gt", ">"), Map.entry("amp", "&"), Map.entry("quot", "\""),
            Map.entry("apos", "'"), Map.entry("nbsp", " "), Map.entry("mdash", "\u2014"), Map.entry("ndash", "\u2013"),
            Map.entry("hellip", "\u2026"), Map.entry("times", "\u00d7"), Map.entry("le", "\u2264"),
            Map.entry("ge", "\u2265"), Map.entry("ne", "\u2260"), Map.entry("plusmn", "\u00b1"),
            Map.entry("infin", "\u221e"), Map.entry("pi", "\u03c0"), Map.entry("copy", "\u00a9"),
            Map.entry("rarr", "\u2192"), Map.entry("larr", "\u2190"), Map.entry("middot", "\u00b7"),
            Map.entry("lsquo", "\u2018"), Map.entry("rsquo", "\u2019"), Map.entry("ldquo", "\u201c"),
            Map.entry("rdquo", "\u201d"), Map.entry("sup2", "\u00b2"), Map.entry("deg", "\u00b0"));
    private static final String[] ABBREVIATIONS = {"e.g.", "i.e.", "etc.", "vs."};

    /** The summary of a Javadoc comment's content. */
    public static Result of(String content) {
        String description = description(content);
        // Render into text with, per character, whether a sentence may end there (not inside an inline tag).
        StringBuilder text = new StringBuilder();
        StringBuilder breakable = new StringBuilder();   // '1' where a period may end the sentence
        int i = 0;
        int n = description.length();
        StringBuilder html = new StringBuilder();
        boolean sawTag = false;
        while (i < n) {
            if (description.startsWith("{@", i)) {
                int end = closingBrace(description, i);
                if (end < 0) {   // unbalanced: javadoc reports an error; read the rest as text
                    html.append(description, i, n);
                    break;
                }
                boolean blockHtmlBefore = appendHtml(html, text, breakable, !sawTag);
                sawTag = true;
                if (blockHtmlBefore) {
                    break;
                }
                String tag = description.substring(i + 2, end);
                int space = firstWhitespace(tag);
                String name = space < 0 ? tag : tag.substring(0, space);
                String body = space < 0 ? "" : tag.substring(space + 1).strip();
                String rendered = inlineTag(name, body);
                text.append(rendered);
                breakable.append("0".repeat(rendered.length()));
                i = end + 1;
            } else {
                html.append(description.charAt(i));
                i++;
            }
        }
        appendHtml(html, text, breakable, !sawTag);
        String sentence = firstSentence(text, breakable);
        if (sentence.isEmpty()) {   // "{@inheritDoc}" renders as nothing: the summary would be the overridden one's
            return Result.none(description.contains("{@inheritDoc}") ? INHERIT_DOC : EMPTY);
        }
        return Result.of(sentence);
    }

    /** The description: the content with each line's leading {@code *} removed, up to the first block tag line. */
    static String description(String content) {
        StringBuilder out = new StringBuilder();
        for (String line : content.split("\r\n|\r|\n", -1)) {
            String l = line.stripLeading();
            if (l.startsWith("*")) {
                l = l.substring(1);
            } else {
                l = line;
            }
            if (BLOCK_TAG_LINE.matcher(l).find()) {
                break;
            }
            out.append(l).append('\n');
        }
        return out.toString();
    }

    /**
     * Moves the pending HTML text into the output, stopping at a block-level HTML tag; true when one was found (the
     * first sentence ends there).
     */
    private static boolean appendHtml(StringBuilder html, StringBuilder text, StringBuilder breakable, boolean atStart) {
        String s = html.toString();
        html.setLength(0);
        Matcher block = BLOCK_HTML.matcher(s);
        boolean stop = false;
        if (block.find()) {
            // A block tag at the very start (e.g. "<p>Returns ...") opens the description rather than ending it.
            if (atStart && s.substring(0, block.start()).isBlank()) {
                s = s.substring(block.end());
                Matcher next = BLOCK_HTML.matcher(s);
                if (next.find()) {
                    s = s.substring(0, next.start());
                    stop = true;
                }
            } else {
                s = s.substring(0, block.start());
                stop = true;
            }
        }
        String plain = decodeEntities(HTML_TAG.matcher(s).replaceAll(""));
        text.append(plain);
        breakable.append("1".repeat(plain.length()));
        return stop;
    }

    /** The text up to and including the first sentence-ending period, whitespace collapsed. */
    private static String firstSentence(StringBuilder text, StringBuilder breakable) {
        int end = text.length();
        for (int i = 0; i < text.length(); i++) {
            if (text.charAt(i) == '.' && breakable.charAt(i) == '1'
                    && (i + 1 == text.length() || Character.isWhitespace(text.charAt(i + 1)))
                    && !endsWithAbbreviation(text, i + 1)) {
                end = i + 1;
                break;
            }
        }
        return collapse(text.substring(0, end));
    }

    private static boolean endsWithAbbreviation(CharSequence text, int end) {
        for (String a : ABBREVIATIONS) {
            int start = end - a.length();
            if (start >= 0 && text.subSequence(start, end).toString().toLowerCase(Locale.ROOT).equals(a)
                    && (start == 0 || !Character.isLetterOrDigit(text.charAt(start - 1)))) {
                return true;
            }
        }
        return false;
    }

    static String inlineTag(String name, String body) {
        switch (name) {
            case "code":
            case "literal":
                return body;
            case "link":
            case "linkplain": {
                String ref = body;
                int paren = ref.indexOf('(');
                int label = labelStart(ref);
                if (label >= 0) {
                    return ref.substring(label).strip();
                }
                if (paren >= 0) {
                    ref = ref.substring(0, paren);
                }
                return reference(ref);
            }
            case "value":
                return reference(body);
            case "docRoot":
            case "inheritDoc":
                return "";
            case "index": {
                int space = firstWhitespace(body);
                String word = space < 0 ? body : body.substring(0, space);
                return word.length() > 1 && word.startsWith("\"") && word.endsWith("\"")
                        ? word.substring(1, word.length() - 1) : word;
            }
            default:
                return body;
        }
    }

    /** Where a {@code @link}'s label starts: after the reference (whose parameter list may hold spaces). */
    private static int labelStart(String ref) {
        int depth = 0;
        for (int i = 0; i < ref.length(); i++) {
            char c = ref.charAt(i);
            if (c == '(') {
                depth++;
            } else if (c == ')') {
                depth--;
            } else if (depth == 0 && Character.isWhitespace(c)) {
                String rest = ref.substring(i).strip();
                return rest.isEmpty() ? -1 : ref.indexOf(rest, i);
            }
        }
        return -1;
    }

    /** {@code java.util.Map.Entry#getKey} → {@code Map.Entry.getKey}: package segments (lower-case) dropped. */
    private static String reference(String ref) {
        String r = ref.strip();
        int hash = r.indexOf('#');
        String type = hash < 0 ? r : r.substring(0, hash);
        String member = hash < 0 ? "" : r.substring(hash + 1);
        String[] parts = type.split("\\.");
        int first = 0;
        while (first < parts.length - 1 && !parts[first].isEmpty() && Character.isLowerCase(parts[first].charAt(0))) {
            first++;
        }
        type = String.join(".", java.util.Arrays.asList(parts).subList(first, parts.length));
        if (hash < 0) {
            return type;
        }
        return type.isEmpty() ? member : type + "." + member;
    }

    private static int closingBrace(String s, int open) {
        int depth = 0;
        for (int i = open; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '{') {
                depth++;
            } else if (c == '}') {
                depth--;
                if (depth == 0) {
                    return i;
                }
            }
        }
        return -1;
    }

    private static int firstWhitespace(String s) {
        for (int i = 0; i < s.length(); i++) {
            if (Character.isWhitespace(s.charAt(i))) {
                return i;
            }
        }
        return -1;
    }

    static String decodeEntities(String s) {
        Matcher m = ENTITY.matcher(s);
        StringBuilder out = new StringBuilder();
        while (m.find()) {
            String e = m.group(1);
            String value;
            if (e.startsWith("#x") || e.startsWith("#X")) {
                value = codePoint(Integer.parseInt(e.substring(2), 16), m.group());
            } else if (e.startsWith("#")) {
                value = codePoint(Integer.parseInt(e.substring(1)), m.group());
            } else {
                value = NAMED.getOrDefault(e, m.group());
            }
            m.appendReplacement(out, Matcher.quoteReplacement(value));
        }
        m.appendTail(out);
        return out.toString();
    }

    private static String codePoint(int cp, String asWritten) {
        return Character.isValidCodePoint(cp) && cp != 0 ? new String(Character.toChars(cp)) : asWritten;
    }

    /** Whitespace runs (any Unicode space, newlines included) to one space, trimmed. */
    static String collapse(String s) {
        StringBuilder out = new StringBuilder(s.length());
        boolean space = false;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (Character.isWhitespace(c) || Character.isSpaceChar(c)) {
                space = true;
            } else {
                if (space && out.length() > 0) {
                    out.append(' ');
                }
                space = false;
                out.append(c);
            }
        }
        return out.toString();
    }
}
