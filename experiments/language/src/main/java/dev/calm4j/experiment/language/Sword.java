package dev.calm4j.experiment.language;

import dev.calm4j.Calm4jException;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * Reads a SWORD zText Bible module, the format of Debian's {@code sword-text-*} packages, into verses of plain text.
 * Written by hand because no Java library reads it, and the format is three small files per testament:
 * {@code ot.bzs}/{@code nt.bzs} hold 12-byte little-endian records (offset, compressed size, raw size) of zlib blocks
 * in {@code .bzz}; {@code .bzv} holds 10-byte records (block, offset in the block, size), one per index entry in
 * versification order: the module heading, the testament heading, then per book a book heading and per chapter a
 * chapter heading followed by its verses. Entries are OSIS markup; the headings carry the book's and chapter's
 * {@code osisID}, which is how books and chapters are told apart from verses here.
 */
public final class Sword {
    /** One verse: its book's OSIS id ("Gen", "1Pet"), chapter and verse (1-based), its index entry, plain text. */
    public record Verse(String book, int chapter, int verse, int entry, String text) {
        public String ref() {
            return book + "." + chapter + "." + verse;
        }
    }

    /**
     * Every index entry of a module, Old Testament then New, as markup ("" for an empty one); the New Testament's
     * start at {@code newTestament}.
     */
    public record Module(Path dir, List<String> entries, int newTestament) {}

    /** The largest block a module may ask to inflate (the biggest in the Debian modules is ~150 KB). */
    static final int MAX_BLOCK_BYTES = 16 << 20;

    private Sword() {}

    public static Module open(Path dir) {
        List<String> all = new ArrayList<>(testament(dir, "ot"));
        int nt = all.size();
        all.addAll(testament(dir, "nt"));
        return new Module(dir, List.copyOf(all), nt);
    }

    private static List<String> testament(Path dir, String t) {
        Path bzs = dir.resolve(t + ".bzs");
        Path bzv = dir.resolve(t + ".bzv");
        Path bzz = dir.resolve(t + ".bzz");
        for (Path p : List.of(bzs, bzv, bzz)) {
            if (!Files.isRegularFile(p)) {
                throw new Calm4jException(p + ": missing (expected a SWORD zText module in " + dir + ")");
            }
        }
        try {
            ByteBuffer blocks = ByteBuffer.wrap(Files.readAllBytes(bzs)).order(ByteOrder.LITTLE_ENDIAN);
            ByteBuffer index = ByteBuffer.wrap(Files.readAllBytes(bzv)).order(ByteOrder.LITTLE_ENDIAN);
            byte[] data = Files.readAllBytes(bzz);
            if (blocks.capacity() % 12 != 0 || index.capacity() % 10 != 0) {
                throw new Calm4jException(dir + ": " + t + ".bzs or " + t + ".bzv has a partial record (sizes "
                        + blocks.capacity() + ", " + index.capacity() + ")");
            }
            Map<Integer, byte[]> inflated = new HashMap<>();
            List<String> out = new ArrayList<>();
            for (int i = 0; i < index.capacity() / 10; i++) {
                long block = Integer.toUnsignedLong(index.getInt(i * 10));
                long offset = Integer.toUnsignedLong(index.getInt(i * 10 + 4));
                int size = Short.toUnsignedInt(index.getShort(i * 10 + 8));
                if (size == 0) {
                    out.add("");
                    continue;
                }
                if (block >= blocks.capacity() / 12) {
                    throw new Calm4jException(bzv + ": entry " + i + " points at block " + block + " of "
                            + blocks.capacity() / 12);
                }
                byte[] raw = inflated.computeIfAbsent((int) block, b -> inflate(bzz, data, blocks, b));
                if (offset + size > raw.length) {
                    throw new Calm4jException(bzv + ": entry " + i + " lies outside its block (" + offset + "+" + size
                            + " > " + raw.length + ")");
                }
                out.add(new String(raw, (int) offset, size, StandardCharsets.UTF_8));
            }
            return out;
        } catch (IOException e) {
            throw new Calm4jException(dir + ": cannot read (" + e.getMessage() + ")");
        }
    }

    private static byte[] inflate(Path file, byte[] data, ByteBuffer blocks, int b) {
        long off = Integer.toUnsignedLong(blocks.getInt(b * 12));
        long comp = Integer.toUnsignedLong(blocks.getInt(b * 12 + 4));
        long raw = Integer.toUnsignedLong(blocks.getInt(b * 12 + 8));
        if (off + comp > data.length || raw > MAX_BLOCK_BYTES) {
            throw new Calm4jException(file + ": block " + b + " is out of range (offset " + off + ", " + comp
                    + " bytes compressed, " + raw + " raw; file " + data.length + " bytes)");
        }
        Inflater inf = new Inflater();
        try {
            inf.setInput(data, (int) off, (int) comp);
            byte[] out = new byte[(int) raw];
            int n = 0;
            while (n < out.length && !inf.finished()) {
                int k = inf.inflate(out, n, out.length - n);
                if (k == 0 && (inf.needsInput() || inf.needsDictionary())) {
                    break;
                }
                n += k;
            }
            if (n != raw) {
                throw new Calm4jException(file + ": block " + b + " inflates to " + n + " bytes, its record says " + raw);
            }
            return out;
        } catch (DataFormatException e) {
            throw new Calm4jException(file + ": block " + b + " is not zlib data (" + e.getMessage() + ")");
        } finally {
            inf.end();
        }
    }

    private static final Pattern BOOK = Pattern.compile("<div\\b[^>]*\\btype=\"book\"[^>]*>");
    private static final Pattern OSIS_ID = Pattern.compile("\\bosisID=\"([^\"]+)\"");
    private static final Pattern CHAPTER = Pattern.compile("<chapter\\b[^>]*\\bosisID=\"([^\".]+)\\.(\\d+)\"");

    /**
     * The module's verses with their references, read from its own headings. Entries that are neither a heading nor
     * the two module-level ones are verses, numbered from 1 within their chapter (a chapter heading's osisID names
     * its book, whatever the last book heading said); empty verses are kept (as "") so
     * that two modules of one versification stay aligned entry for entry.
     */
    public static List<Verse> verses(Module m) {
        List<Verse> out = new ArrayList<>();
        String book = null;
        int chapter = 0;
        int verse = 0;
        List<String> e = m.entries();
        for (int i = 0; i < e.size(); i++) {
            String s = e.get(i);
            if (i == 0 || i == m.newTestament()) {
                book = null;           // a testament starts with the module's and the testament's headings
                chapter = 0;
            }
            Matcher bm = BOOK.matcher(s);
            Matcher cm = CHAPTER.matcher(s);
            if (bm.find()) {
                Matcher id = OSIS_ID.matcher(bm.group());
                if (!id.find()) {
                    throw new Calm4jException(m.dir() + ": entry " + i + " opens a book without an osisID");
                }
                book = id.group(1);
                chapter = 0;
                verse = 0;
            } else if (cm.find()) {
                // The chapter's own osisID names its book: some modules (the World English Bible's, in another
                // versification) leave a book heading empty, so a chapter may follow another book's heading.
                book = cm.group(1);
                chapter = Integer.parseInt(cm.group(2));
                verse = 0;
            } else if (chapter > 0) {
                out.add(new Verse(book, chapter, ++verse, i, plain(s)));
            }
        }
        return out;
    }

    private static final Pattern NOTE = Pattern.compile("<note\\b[^>]*>.*?</note>", Pattern.DOTALL);
    private static final Pattern TITLE = Pattern.compile("<title\\b[^>]*>.*?</title>", Pattern.DOTALL);
    private static final Pattern TAG = Pattern.compile("<[^>]*>");
    private static final Pattern SPACE = Pattern.compile("\\s+");

    /**
     * OSIS markup to plain text: notes and titles dropped (each replaced by a space, or words around a note glue
     * together, "God&lt;note&gt;...&lt;/note&gt;created"), other tags stripped, the paragraph sign removed, runs of
     * white space made one space.
     */
    static String plain(String osis) {
        String s = NOTE.matcher(osis).replaceAll(" ");
        s = TITLE.matcher(s).replaceAll(" ");
        s = TAG.matcher(s).replaceAll("");
        s = s.replace('¶', ' ').replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
        return SPACE.matcher(s).replaceAll(" ").trim();
    }
}
