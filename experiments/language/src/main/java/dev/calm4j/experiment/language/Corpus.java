package dev.calm4j.experiment.language;

import dev.calm4j.Calm4jException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * The experiment's text, read from what {@code experiments/language/scripts/fetch-data.sh} fetched, split by the
 * recipe: Spanish-English verse pairs (Reina-Valera 1909 beside the King James Version: one versification, so entry
 * i is the same verse in both), whole books held out for testing, English for the anchor (KJV, World English Bible,
 * State of the Union addresses, the test books' English excluded from all of them), Spanish for the augment, and
 * whole held-out speeches for measuring what composition does to the anchor's English.
 */
public record Corpus(List<Pair> trainPairs, List<Pair> testPairs, List<String> anchorDocs, List<String> spanishDocs,
                     List<String> heldOutEnglish, List<String> heldOutSpeeches) {

    /** One verse in both languages. */
    public record Pair(String ref, String es, String en) {}

    static final String KJV = "engKJV2006eb";
    static final String SPANISH = "spaRV1909eb";
    static final String WEB = "engWEB2015eb";

    public static Path moduleDir(Path data, String module) {
        return data.resolve("sword/usr/share/sword/modules/texts/ztext").resolve(module);
    }

    /** Checks that the fetched data is there, naming the command that fetches it. */
    public static void check(Path data) {
        for (String m : List.of(KJV, SPANISH, WEB)) {
            if (!Files.isRegularFile(moduleDir(data, m).resolve("nt.bzz"))) {
                throw new Calm4jException(data + ": the experiment's text is missing (" + m + "); fetch it with "
                        + "experiments/language/scripts/fetch-data.sh" + (data.endsWith("experiments/language/data") ? "" : " " + data));
            }
        }
        if (!Files.isDirectory(data.resolve("sotu"))) {
            throw new Calm4jException(data + ": the State of the Union addresses are missing; fetch them with "
                    + "experiments/language/scripts/fetch-data.sh");
        }
    }

    public static Corpus load(Path data, LanguageRecipe.Split split) {
        check(data);
        Set<String> test = Set.copyOf(split.testBooks());
        List<Sword.Verse> en = Sword.verses(Sword.open(moduleDir(data, KJV)));
        List<Sword.Verse> es = Sword.verses(Sword.open(moduleDir(data, SPANISH)));
        if (en.size() != es.size()) {
            throw new Calm4jException(data + ": KJV has " + en.size() + " verses, Reina-Valera " + es.size()
                    + "; expected one versification");
        }
        List<Pair> train = new ArrayList<>();
        List<Pair> testPairs = new ArrayList<>();
        for (int i = 0; i < en.size(); i++) {
            Sword.Verse e = en.get(i);
            Sword.Verse s = es.get(i);
            if (!e.ref().equals(s.ref())) {
                throw new Calm4jException(data + ": verse " + i + " is " + e.ref() + " in KJV, " + s.ref() + " in Reina-Valera");
            }
            if (e.text().isEmpty() || s.text().isEmpty()) {
                continue;
            }
            (test.contains(e.book()) ? testPairs : train).add(new Pair(e.ref(), s.text(), e.text()));
        }
        for (String b : split.testBooks()) {
            if (testPairs.stream().noneMatch(p -> p.ref().startsWith(b + "."))) {
                throw new Calm4jException("test book " + b + " is not in the KJV module (books are OSIS ids: Gen, Matt, 1Pet, ...)");
            }
        }
        List<String> anchor = new ArrayList<>(chunks(en, test, split.chunkChars()));
        anchor.addAll(chunks(Sword.verses(Sword.open(moduleDir(data, WEB))), test, split.chunkChars()));
        List<String> spanish = chunks(es, test, split.chunkChars());
        List<Path> speeches;
        try (Stream<Path> s = Files.list(data.resolve("sotu"))) {
            speeches = s.filter(p -> p.getFileName().toString().endsWith(".txt")).sorted().toList();
        } catch (IOException e) {
            throw new Calm4jException(data.resolve("sotu") + ": cannot list (" + e.getMessage() + ")");
        }
        List<String> heldOut = new ArrayList<>();
        List<String> heldOutNames = new ArrayList<>();
        for (int i = 0; i < speeches.size(); i++) {
            List<String> c = speechChunks(speeches.get(i), split.chunkChars());
            if (i % split.speechStride() == split.speechOffset()) {
                heldOut.addAll(c);
                heldOutNames.add(speeches.get(i).getFileName().toString());
            } else {
                anchor.addAll(c);
            }
        }
        return new Corpus(List.copyOf(train), List.copyOf(testPairs), List.copyOf(anchor), List.copyOf(spanish),
                List.copyOf(heldOut), List.copyOf(heldOutNames));
    }

    /**
     * Consecutive verses of one chapter joined into pieces of at most {@code max} characters (a longer verse is
     * split at spaces): a model learns from running text, not from one verse at a time.
     */
    static List<String> chunks(List<Sword.Verse> verses, Set<String> exclude, int max) {
        List<String> out = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        String chapter = null;
        for (Sword.Verse v : verses) {
            if (exclude.contains(v.book()) || v.text().isEmpty()) {
                continue;
            }
            String ch = v.book() + "." + v.chapter();
            if (!ch.equals(chapter) || cur.length() + 1 + v.text().length() > max) {
                flush(cur, out);
                chapter = ch;
            }
            for (String piece : split(v.text(), max)) {
                if (cur.length() > 0 && cur.length() + 1 + piece.length() > max) {
                    flush(cur, out);
                }
                if (cur.length() > 0) {
                    cur.append(' ');
                }
                cur.append(piece);
            }
        }
        flush(cur, out);
        return out;
    }

    private static final Pattern SENTENCE_END = Pattern.compile("(?<=[.!?])\\s+");
    private static final Pattern BRACKETED = Pattern.compile("\\[[^\\]]{0,40}\\]");

    /** A speech as pieces of whole sentences, at most {@code max} characters each ("[Applause]" and the like dropped). */
    static List<String> speechChunks(Path file, int max) {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new Calm4jException(file + ": cannot read (" + e.getMessage() + ")");
        }
        text = BRACKETED.matcher(text).replaceAll(" ").replaceAll("\\s+", " ").trim();
        List<String> out = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        for (String sentence : SENTENCE_END.split(text)) {
            for (String piece : split(sentence, max)) {
                if (cur.length() > 0 && cur.length() + 1 + piece.length() > max) {
                    flush(cur, out);
                }
                if (cur.length() > 0) {
                    cur.append(' ');
                }
                cur.append(piece);
            }
        }
        flush(cur, out);
        return out;
    }

    /** {@code s} cut at spaces into pieces of at most {@code max} characters (a longer word is cut where it must). */
    static List<String> split(String s, int max) {
        List<String> out = new ArrayList<>();
        while (s.length() > max) {
            int cut = s.lastIndexOf(' ', max);
            if (cut <= 0) {
                cut = max;
            }
            out.add(s.substring(0, cut).trim());
            s = s.substring(cut).trim();
        }
        if (!s.isEmpty()) {
            out.add(s);
        }
        return out;
    }

    private static void flush(StringBuilder cur, List<String> out) {
        if (cur.length() > 0) {
            out.add(cur.toString());
            cur.setLength(0);
        }
    }

    /** The arrow between a pair's source and its target. */
    static final String ARROW = " =>";

    /**
     * A translation pair's prompt: the source and the arrow, with no space after it. The space before the target
     * belongs to the target ({@link #completion}): a Metaspace tokenizer writes it as the target's first token's
     * "▁", as it does in the pair's whole text ({@link #text}). A prompt ending in a space would end in a lone "▁"
     * token, which no model read in pretraining before a word, and the target would then start with a second one.
     */
    public static String prompt(Pair p) {
        return p.es() + ARROW;
    }

    /** A translation pair's target as a completion of {@link #prompt}: a space, then the English. */
    public static String completion(Pair p) {
        return " " + p.en();
    }

    /** A translation pair as one text, for the augment's pretraining: source, arrow, target. */
    public static String text(Pair p) {
        return prompt(p) + completion(p);
    }
}
