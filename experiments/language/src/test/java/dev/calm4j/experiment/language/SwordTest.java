package dev.calm4j.experiment.language;

import dev.calm4j.Calm4jException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.zip.Deflater;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SwordTest {
    /**
     * Writes a module in the zText layout: per testament, entries packed into zlib blocks of {@code perBlock} entries,
     * with the .bzs block records and the .bzv entry records.
     */
    static void write(Path dir, String testament, List<String> entries, int perBlock) throws Exception {
        Files.createDirectories(dir);
        ByteArrayOutputStream bzz = new ByteArrayOutputStream();
        ByteBuffer bzs = ByteBuffer.allocate(12 * ((entries.size() + perBlock - 1) / perBlock)).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer bzv = ByteBuffer.allocate(10 * entries.size()).order(ByteOrder.LITTLE_ENDIAN);
        for (int b = 0; b * perBlock < entries.size(); b++) {
            ByteArrayOutputStream raw = new ByteArrayOutputStream();
            for (int i = b * perBlock; i < Math.min(entries.size(), (b + 1) * perBlock); i++) {
                byte[] e = entries.get(i).getBytes(StandardCharsets.UTF_8);
                bzv.putInt(b).putInt(raw.size()).putShort((short) e.length);
                raw.write(e);
            }
            Deflater d = new Deflater();
            d.setInput(raw.toByteArray());
            d.finish();
            byte[] buf = new byte[raw.size() + 64];
            int n = d.deflate(buf);
            d.end();
            bzs.putInt(bzz.size()).putInt(n).putInt(raw.size());
            bzz.write(buf, 0, n);
        }
        Files.write(dir.resolve(testament + ".bzs"), bzs.array());
        Files.write(dir.resolve(testament + ".bzv"), bzv.array());
        Files.write(dir.resolve(testament + ".bzz"), bzz.toByteArray());
    }

    static final List<String> OT = List.of("", "<milestone type=\"x-importer\"/>",
            "<div canonical=\"true\" osisID=\"Gen\" sID=\"gen2\" type=\"book\"/> <title type=\"main\">Genesis</title>",
            "<chapter n=\"1\" osisID=\"Gen.1\" sID=\"Gen.1\"/> ",
            "In the <w lemma=\"strong:H7225\">beginning</w> God<note type=\"study\">a note</note>created.",
            "¶ And the earth  was <transChange type=\"added\">void</transChange>;",
            "<chapter n=\"2\" osisID=\"Gen.2\" sID=\"Gen.2\"/>",
            "",
            "Thus the heavens &amp; the earth.");
    static final List<String> NT = List.of("", "", "<div osisID=\"Matt\" type=\"book\"/>",
            "<chapter n=\"1\" osisID=\"Matt.1\"/>", "The book of the generation.");

    @Test
    void readsVersesWithReferencesAndPlainText(@TempDir Path tmp) throws Exception {
        write(tmp, "ot", OT, 3);
        write(tmp, "nt", NT, 2);
        Sword.Module m = Sword.open(tmp);
        assertEquals(OT.size() + NT.size(), m.entries().size());
        List<Sword.Verse> v = Sword.verses(m);
        assertEquals(List.of("Gen.1.1", "Gen.1.2", "Gen.2.1", "Gen.2.2", "Matt.1.1"), v.stream().map(Sword.Verse::ref).toList());
        assertEquals("In the beginning God created.", v.get(0).text());
        assertEquals("And the earth was void;", v.get(1).text());
        assertEquals("", v.get(2).text());                 // empty verses stay, so two modules stay aligned
        assertEquals("Thus the heavens & the earth.", v.get(3).text());
    }

    @Test
    void refusesDamagedFilesByName(@TempDir Path tmp) throws Exception {
        write(tmp, "ot", OT, 3);
        write(tmp, "nt", NT, 2);
        Files.write(tmp.resolve("nt.bzv"), new byte[] {1, 2, 3});
        Calm4jException e = assertThrows(Calm4jException.class, () -> Sword.open(tmp));
        assertTrue(e.getMessage().contains("partial record"), e.getMessage());
        write(tmp, "nt", NT, 2);
        byte[] z = Files.readAllBytes(tmp.resolve("ot.bzz"));
        z[0] ^= 0x55;
        Files.write(tmp.resolve("ot.bzz"), z);
        e = assertThrows(Calm4jException.class, () -> Sword.open(tmp));
        assertTrue(e.getMessage().contains("ot.bzz"), e.getMessage());
        Files.delete(tmp.resolve("ot.bzs"));
        e = assertThrows(Calm4jException.class, () -> Sword.open(tmp));
        assertTrue(e.getMessage().contains("ot.bzs: missing"), e.getMessage());
    }

    @Test
    void chunksKeepChaptersApartAndRespectTheLimit() {
        List<Sword.Verse> v = List.of(new Sword.Verse("Gen", 1, 1, 0, "aaa bbb"), new Sword.Verse("Gen", 1, 2, 1, "ccc"),
                new Sword.Verse("Gen", 2, 1, 2, "ddd"), new Sword.Verse("Jas", 1, 1, 3, "held out"),
                new Sword.Verse("Gen", 3, 1, 4, "one two three four five six"));
        assertEquals(List.of("aaa bbb ccc", "ddd", "one two", "three four", "five six"),
                Corpus.chunks(v, java.util.Set.of("Jas"), 11));
    }
}
