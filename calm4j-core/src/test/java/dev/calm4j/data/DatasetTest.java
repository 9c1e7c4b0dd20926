package dev.calm4j.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.tokenize.CharTokenizer;
import dev.calm4j.tokenize.Tokenizer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DatasetTest {
    static final String ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 +-=";
    /** 4 specials (pad 0, BOS 1, EOS 2, unk 3) + 40 characters. */
    static final int VOCAB = 44;
    static final long BOS = 1;
    static final long EOS = 2;
    static final long IGNORE = -100;

    @TempDir
    static Path tokenizerDir;

    static Tokenizer tokenizer;

    @TempDir
    Path dir;

    @BeforeAll
    static void loadTokenizer() {
        Torch.init();
        CharTokenizer.write(tokenizerDir.resolve("tokenizer.json"), ALPHABET);
        tokenizer = Tokenizer.load(tokenizerDir.resolve("tokenizer.json"));
    }

    @AfterAll
    static void closeTokenizer() {
        tokenizer.close();
    }

    // ---- helpers -------------------------------------------------------------------------------------------------

    /** BOS 1 and EOS 2, context 32. */
    static DataRules specials() {
        return new DataRules(32, VOCAB, (int) EOS, (int) BOS, false);
    }

    /** Neither BOS nor EOS, context 32. */
    static DataRules bare() {
        return DataRules.of(32, VOCAB);
    }

    /** The char tokenizer's ids, computed independently of it: alphabet position + 4. */
    static long[] chars(String s) {
        return s.chars().mapToLong(c -> {
            int i = ALPHABET.indexOf(c);
            if (i < 0) {
                throw new IllegalArgumentException("not in the test alphabet: " + (char) c);
            }
            return i + 4;
        }).toArray();
    }

    static long[] ids(long... ids) {
        return ids;
    }

    static long[] cat(long[]... parts) {
        return Arrays.stream(parts).flatMapToLong(Arrays::stream).toArray();
    }

    /** "0011" -> {false, false, true, true}. */
    static boolean[] mask(String bits) {
        boolean[] m = new boolean[bits.length()];
        for (int i = 0; i < m.length; i++) {
            m[i] = bits.charAt(i) == '1';
        }
        return m;
    }

    Path write(String name, String... lines) throws IOException {
        Path f = dir.resolve(name);
        Files.writeString(f, String.join("\n", lines) + "\n");
        return f;
    }

    Dataset read(String name, Tokenizer tok, DataRules rules, String... lines) throws IOException {
        return Dataset.read(write(name, lines), tok, rules);
    }

    /** Asserts reading fails with one line that starts with {@code file:line:} (or {@code file:}) and names parts. */
    Calm4jException fails(int line, Tokenizer tok, DataRules rules, List<String> mentions, String... lines)
            throws IOException {
        Path f = write("bad.jsonl", lines);
        return failsOn(f, line, tok, rules, mentions);
    }

    static Calm4jException failsOn(Path f, int line, Tokenizer tok, DataRules rules, List<String> mentions) {
        Calm4jException e = assertThrows(Calm4jException.class, () -> Dataset.read(f, tok, rules));
        String m = e.getMessage();
        String where = line > 0 ? f + ":" + line + ": " : f + ": ";
        assertTrue(m.startsWith(where), "expected '" + where + "' at the start of: " + m);
        assertFalse(m.contains("\n"), "one line: " + m);
        for (String part : mentions) {
            assertTrue(m.contains(part), "expected '" + part + "' in: " + m);
        }
        return e;
    }

    static void assertExample(Example e, long[] ids, String targets, long[] augment, int line) {
        assertArrayEquals(ids, e.ids(), "ids of " + e);
        assertArrayEquals(mask(targets), e.target(), "targets of " + e);
        assertArrayEquals(augment, e.augmentIds(), "augment ids of " + e);
        assertEquals(line, e.line(), "line of " + e);
    }

    // ---- shapes and rules ----------------------------------------------------------------------------------------

    @Test
    void tokenizerIsTheCharTokenizerTheTestsAssume() {
        assertEquals(VOCAB, CharTokenizer.vocabSize(ALPHABET));
        assertArrayEquals(ids(4, 5, 40, 41, 43, 39), tokenizer.encode("ab +=9", false));
        assertArrayEquals(chars("ab +=9"), tokenizer.encode("ab +=9", false));
    }

    @Test
    void promptCompletionGetsBosAndEosAndScoresOnlyTheCompletionAndEos() throws IOException {
        Dataset d = read("d.jsonl", tokenizer, specials(), "{\"prompt\": \"ab\", \"completion\": \"c\"}");
        assertEquals(1, d.size());
        Example e = d.get(0);
        assertExample(e, ids(1, 4, 5, 6, 2), "00011", null, 1);
        assertEquals(3, e.promptLength());
        assertArrayEquals(ids(1, 4, 5), e.prompt());
        assertArrayEquals(ids(6, 2), e.completion());
        assertEquals(2, d.targetTokens());
        assertEquals(dir.resolve("d.jsonl").toString(), d.source());
    }

    @Test
    void promptCompletionWithoutSpecialsIsJustTheConcatenation() throws IOException {
        Example e = read("d.jsonl", tokenizer, bare(), "{\"prompt\": \"ab\", \"completion\": \"cd\"}").get(0);
        assertExample(e, ids(4, 5, 6, 7), "0011", null, 1);
        assertArrayEquals(ids(4, 5), e.prompt());
        assertArrayEquals(ids(6, 7), e.completion());
    }

    @Test
    void eosAloneCanBeTheWholeCompletionAndBosAloneCanBeTheWholePrompt() throws IOException {
        Example eosOnly = read("a.jsonl", tokenizer, bare().withEos((int) EOS),
                "{\"prompt\": \"a\", \"completion\": \"\"}").get(0);
        assertExample(eosOnly, ids(4, 2), "01", null, 1);
        Example bosOnly = read("b.jsonl", tokenizer, bare().withBos((int) BOS),
                "{\"prompt\": \"\", \"completion\": \"a\"}").get(0);
        assertExample(bosOnly, ids(1, 4), "01", null, 1);
    }

    @Test
    void textScoresEveryTokenAfterTheFirst() throws IOException {
        assertExample(read("a.jsonl", tokenizer, specials(), "{\"text\": \"abc\"}").get(0),
                ids(1, 4, 5, 6, 2), "01111", null, 1);
        Example e = read("b.jsonl", tokenizer, bare(), "{\"text\": \"abc\"}").get(0);
        assertExample(e, ids(4, 5, 6), "011", null, 1);
        assertEquals(1, e.promptLength());
        assertArrayEquals(ids(5, 6), e.completion());
    }

    @Test
    void preTokenizedShapesNeedNoTokenizerAndBosIsNeverDoubled() throws IOException {
        Dataset d = read("ids.jsonl", null, specials(),
                "{\"prompt_ids\": [1, 4], \"completion_ids\": [5, 6]}",
                "{\"prompt_ids\": [4], \"completion_ids\": [5]}",
                "{\"ids\": [7, 8]}",
                "{\"ids\": [1, 7]}");
        assertEquals(4, d.size());
        assertExample(d.get(0), ids(1, 4, 5, 6, 2), "00111", null, 1);
        assertExample(d.get(1), ids(1, 4, 5, 2), "0011", null, 2);
        assertExample(d.get(2), ids(1, 7, 8, 2), "0111", null, 3);
        assertExample(d.get(3), ids(1, 7, 2), "011", null, 4);
        assertEquals(3 + 2 + 3 + 2, d.targetTokens());
    }

    @Test
    void otherFieldsAreIgnoredBlankLinesSkippedAndLineNumbersKept() throws IOException {
        Dataset d = read("meta.jsonl", tokenizer, bare(),
                "\uFEFF{\"key\": \"k1\", \"prompt\": \"a\", \"completion\": \"b\", \"meta\": {\"x\": [1, 2]}}",
                "",
                "   ",
                "{\"text\": \"cd\", \"source\": 3}");
        assertEquals(2, d.size());
        assertExample(d.get(0), ids(4, 5), "01", null, 1);
        assertExample(d.get(1), ids(6, 7), "01", null, 4);
    }

    @Test
    void jsonExtensionReadsTheSameWay() throws IOException {
        Dataset d = read("d.JSON", null, bare(), "{\"ids\": [4, 5]}");
        assertExample(d.get(0), ids(4, 5), "01", null, 1);
    }

    @Test
    void separatePromptGivesEveryExampleAugmentIds() throws IOException {
        Dataset d = read("sep.jsonl", tokenizer, specials().withSeparatePrompt(true),
                "{\"prompt\": \"ab\", \"completion\": \"c\", \"augment_prompt\": \"xy\"}",
                "{\"prompt\": \"ab\", \"completion\": \"c\"}",
                "{\"prompt_ids\": [4], \"completion_ids\": [5], \"augment_prompt_ids\": [1, 9, 9]}",
                "{\"text\": \"abc\"}",
                "{\"ids\": [4, 5], \"augment_prompt_ids\": [6]}");
        // The augment prompt gets the BOS rule (the augmenting model reads it from the start), never EOS.
        assertExample(d.get(0), ids(1, 4, 5, 6, 2), "00011", ids(1, 27, 28), 1);
        // Without an augment field: the prompt part of the sequence.
        assertExample(d.get(1), ids(1, 4, 5, 6, 2), "00011", ids(1, 4, 5), 2);
        assertArrayEquals(d.get(1).prompt(), d.get(1).augmentIds());
        assertExample(d.get(2), ids(1, 4, 5, 2), "0011", ids(1, 9, 9), 3);
        assertExample(d.get(3), ids(1, 4, 5, 6, 2), "01111", ids(1), 4);
        assertExample(d.get(4), ids(1, 4, 5, 2), "0111", ids(1, 6), 5);

        Example noBos = read("sep2.jsonl", tokenizer, bare().withSeparatePrompt(true),
                "{\"prompt\": \"ab\", \"completion\": \"c\", \"augment_prompt\": \"x\"}").get(0);
        assertExample(noBos, ids(4, 5, 6), "001", ids(27), 1);
    }

    @Test
    void augmentFieldsAreIgnoredWhenThePromptIsShared() throws IOException {
        Dataset d = read("shared.jsonl", null, specials(),
                "{\"prompt_ids\": [4], \"completion_ids\": [5], \"augment_prompt_ids\": [9]}",
                // Not even type-checked or tokenized: the field is not used in this mode.
                "{\"ids\": [4, 5], \"augment_prompt\": 17}");
        assertNull(d.get(0).augmentIds());
        assertNull(d.get(1).augmentIds());
        assertFalse(d.get(0).hasAugment());
    }

    @Test
    void plainTextIsCutIntoChunksOfExactlyMaxLength() throws IOException {
        Path f = dir.resolve("corpus.txt");
        Files.writeString(f, "abcdefghij");
        // 10 characters + EOS = 11 stream tokens: 4 + 4 + 3.
        Dataset d = Dataset.read(f, tokenizer, DataRules.of(4, VOCAB).withEos((int) EOS));
        assertEquals(3, d.size());
        assertExample(d.get(0), chars("abcd"), "0111", null, 1);
        assertExample(d.get(1), chars("efgh"), "0111", null, 2);
        assertExample(d.get(2), cat(chars("ij"), ids(EOS)), "011", null, 3);
        assertEquals(3 + 3 + 2, d.targetTokens());

        // With BOS every chunk starts with it, still maxLength tokens in all: 3 stream tokens each.
        Dataset b = Dataset.read(f, tokenizer, new DataRules(4, VOCAB, (int) EOS, (int) BOS, false));
        assertEquals(4, b.size());
        assertExample(b.get(0), cat(ids(BOS), chars("abc")), "0111", null, 1);
        assertExample(b.get(1), cat(ids(BOS), chars("def")), "0111", null, 2);
        assertExample(b.get(2), cat(ids(BOS), chars("ghi")), "0111", null, 3);
        assertExample(b.get(3), cat(ids(BOS), chars("j"), ids(EOS)), "011", null, 4);

        // Separate prompt: the augmenting model reads the chunk's prompt part, its first token.
        Dataset s = Dataset.read(f, tokenizer, DataRules.of(4, VOCAB).withSeparatePrompt(true));
        assertExample(s.get(0), chars("abcd"), "0111", chars("a"), 1);
    }

    @Test
    void plainTextDropsALastChunkOfOneToken() throws IOException {
        Path f = dir.resolve("short.md");
        Files.writeString(f, "abcde");
        Dataset d = Dataset.read(f, tokenizer, DataRules.of(4, VOCAB));
        assertEquals(1, d.size());
        assertExample(d.get(0), chars("abcd"), "0111", null, 1);
    }

    @Test
    void writeJsonlRoundTripsAtomicallyAndReplaces() throws IOException {
        Path f = dir.resolve("gen").resolve("data.jsonl");
        Map<String, Object> first = new LinkedHashMap<>();
        first.put("key", "k0");
        first.put("prompt", "ab");
        first.put("completion", "c");
        Map<String, Object> second = new LinkedHashMap<>();
        second.put("prompt_ids", new long[] {1, 4});
        second.put("completion_ids", List.of(5, 6));
        Dataset.writeJsonl(f, List.of(first, second));

        assertEquals(List.of("{\"key\":\"k0\",\"prompt\":\"ab\",\"completion\":\"c\"}",
                "{\"prompt_ids\":[1,4],\"completion_ids\":[5,6]}"), Files.readAllLines(f));
        Dataset d = Dataset.read(f, tokenizer, specials());
        assertExample(d.get(0), ids(1, 4, 5, 6, 2), "00011", null, 1);
        assertExample(d.get(1), ids(1, 4, 5, 6, 2), "00111", null, 2);

        Dataset.writeJsonl(f, List.of(Map.of("ids", List.of(7, 8))));
        assertEquals(1, Dataset.read(f, null, bare()).size());
        try (Stream<Path> s = Files.list(f.getParent())) {
            assertEquals(List.of("data.jsonl"), s.map(p -> p.getFileName().toString()).collect(Collectors.toList()),
                    "no temp file left behind");
        }
    }

    @Test
    void datasetOfCodeGeneratedExamples() {
        Example a = new Example(ids(1, 4, 5), mask("001"), null, 1);
        Example b = new Example(ids(1, 6, 7, 8), mask("0011"), null, 2);
        Dataset d = Dataset.of(List.of(a, b), "generated");
        assertEquals(2, d.size());
        assertEquals(b, d.get(1));
        assertEquals(3, d.targetTokens());
        assertEquals("generated", d.source());
        assertThrows(UnsupportedOperationException.class, () -> d.examples().add(a));

        Calm4jException empty = assertThrows(Calm4jException.class, () -> Dataset.of(List.of(), "nothing-here"));
        assertTrue(empty.getMessage().contains("nothing-here"), empty.getMessage());
        Example withAugment = new Example(ids(1, 4), mask("01"), ids(1), 3);
        assertThrows(IllegalArgumentException.class, () -> Dataset.of(List.of(a, withAugment), "mixed"));
    }

    @Test
    void exampleKeepsItsInvariantsAndItsOwnArrays() {
        assertThrows(IllegalArgumentException.class, () -> new Example(ids(4, 5), mask("11"), null, 1));
        assertThrows(IllegalArgumentException.class, () -> new Example(ids(4, 5), mask("011"), null, 1));
        assertThrows(IllegalArgumentException.class, () -> new Example(ids(4, 5), mask("00"), null, 1));
        assertThrows(IllegalArgumentException.class, () -> new Example(ids(4), mask("0"), null, 1));
        assertThrows(IllegalArgumentException.class, () -> new Example(ids(4, -5), mask("01"), null, 1));
        assertThrows(IllegalArgumentException.class, () -> new Example(ids(4, 5), mask("01"), ids(), 1));

        long[] in = ids(4, 5, 6);
        boolean[] t = mask("011");
        Example e = new Example(in, t, null, 1);
        in[1] = 9;
        t[1] = false;
        e.ids()[2] = 9;
        assertArrayEquals(ids(4, 5, 6), e.ids());
        assertArrayEquals(mask("011"), e.target());
        assertEquals(new Example(ids(4, 5, 6), mask("011"), null, 1), e);
        assertNotEquals(new Example(ids(4, 5, 6), mask("001"), null, 1), e);
    }

    @Test
    void rulesRefuseImpossibleSettings() {
        assertThrows(Calm4jException.class, () -> DataRules.of(1, VOCAB));
        assertThrows(Calm4jException.class, () -> DataRules.of(8, 0));
        Calm4jException eos = assertThrows(Calm4jException.class, () -> DataRules.of(8, VOCAB).withEos(VOCAB));
        assertTrue(eos.getMessage().contains("eosId 44"), eos.getMessage());
        assertThrows(Calm4jException.class, () -> DataRules.of(8, VOCAB).withBos(-1));
    }

    // ---- errors: all found while reading, one line each, naming file, line and field -----------------------------

    @Test
    void malformedJsonNamesItsLine() throws IOException {
        fails(2, tokenizer, bare(), List.of("malformed JSON", "column"),
                "{\"prompt\": \"a\", \"completion\": \"b\"}",
                "{\"prompt\": \"a\", \"completion\": }",
                "{\"prompt\": \"a\", \"completion\": \"b\"}");
        fails(1, tokenizer, bare(), List.of("malformed JSON"), "{\"text\": \"ab\"} {\"text\": \"cd\"}");
        fails(1, tokenizer, bare(), List.of("malformed JSON", "text"), "{\"text\": \"ab\", \"text\": \"cd\"}");
        // A pretty-printed JSON array is a common mistake: say what the format is.
        fails(1, null, bare(), List.of("malformed JSON", "one JSON object per line"), "[", "{\"ids\": [4, 5]}", "]");
    }

    @Test
    void aLineThatIsNotAnObjectIsRefused() throws IOException {
        fails(3, null, bare(), List.of("expected a JSON object", "an array", "one JSON object per line"),
                "{\"ids\": [4, 5]}", "", "[4, 5]");
        fails(1, null, bare(), List.of("expected a JSON object", "a string"), "\"ab\"");
    }

    @Test
    void unknownShapeSaysWhichFieldsAreAccepted() throws IOException {
        fails(1, tokenizer, bare(), List.of("no accepted fields", "\"question\"", "\"answer\"", "\"prompt\"",
                "\"completion\"", "\"text\"", "\"prompt_ids\"", "\"completion_ids\"", "\"ids\"", "\"augment_prompt\""),
                "{\"question\": \"a\", \"answer\": \"b\"}");
        fails(1, tokenizer, bare(), List.of("no accepted fields", "has none"), "{}");
    }

    @Test
    void mixedOrIncompleteShapesAreRefused() throws IOException {
        fails(1, tokenizer, bare(), List.of("mixes shapes", "\"text\"", "\"ids\""),
                "{\"text\": \"ab\", \"ids\": [4, 5]}");
        fails(1, tokenizer, bare(), List.of("mixes shapes", "\"prompt\"", "\"completion_ids\""),
                "{\"prompt\": \"ab\", \"completion_ids\": [4]}");
        fails(2, tokenizer, bare(), List.of("\"prompt\"", "no \"completion\""),
                "{\"text\": \"ab\"}", "{\"prompt\": \"ab\"}");
        fails(1, null, bare(), List.of("\"completion_ids\"", "no \"prompt_ids\""), "{\"completion_ids\": [4]}");
        fails(1, null, specials().withSeparatePrompt(true), List.of("\"augment_prompt\"", "\"augment_prompt_ids\"",
                "not both"), "{\"ids\": [4, 5], \"augment_prompt\": \"a\", \"augment_prompt_ids\": [4]}");
    }

    @Test
    void wrongFieldTypesAreRefused() throws IOException {
        fails(1, null, bare(), List.of("\"prompt_ids\"", "array of integer token ids", "a string"),
                "{\"prompt_ids\": \"abc\", \"completion_ids\": [4]}");
        fails(1, null, bare(), List.of("\"ids\"", "element 1", "1.5"), "{\"ids\": [4, 1.5]}");
        fails(1, null, bare(), List.of("\"ids\"", "element 1", "a string"), "{\"ids\": [4, \"5\"]}");
        fails(1, tokenizer, bare(), List.of("\"prompt\"", "must be a string", "a number"),
                "{\"prompt\": 5, \"completion\": \"a\"}");
        fails(1, tokenizer, bare(), List.of("\"text\"", "must be a string", "null"), "{\"text\": null}");
        fails(1, tokenizer, bare().withSeparatePrompt(true), List.of("\"augment_prompt_ids\"", "an object"),
                "{\"text\": \"ab\", \"augment_prompt_ids\": {}}");
    }

    @Test
    void textWithoutATokenizerSaysWhatToDoInstead() throws IOException {
        fails(2, null, bare(), List.of("\"prompt\"", "needs a tokenizer.json", "\"prompt_ids\"/\"completion_ids\""),
                "{\"ids\": [4, 5]}", "{\"prompt\": \"a\", \"completion\": \"b\"}");
        fails(1, null, bare(), List.of("\"text\"", "needs a tokenizer.json", "\"ids\""), "{\"text\": \"ab\"}");
        fails(1, null, bare().withSeparatePrompt(true), List.of("\"augment_prompt\"", "needs a tokenizer.json",
                "\"augment_prompt_ids\""), "{\"ids\": [4, 5], \"augment_prompt\": \"a\"}");
        Path txt = dir.resolve("corpus.txt");
        Files.writeString(txt, "abcdef");
        failsOn(txt, 0, null, bare(), List.of("plain-text", "needs a tokenizer.json"));
    }

    @Test
    void tokenIdsOutsideTheVocabularyAreRefused() throws IOException {
        fails(1, null, bare(), List.of("prompt_ids[1] = 44", "[0, 44)"),
                "{\"prompt_ids\": [4, 44], \"completion_ids\": [5]}");
        fails(1, null, bare(), List.of("completion_ids[0] = 99", "[0, 44)"),
                "{\"prompt_ids\": [4], \"completion_ids\": [99]}");
        fails(1, null, bare(), List.of("ids[0] = -1"), "{\"ids\": [-1, 4]}");
        fails(1, null, bare().withSeparatePrompt(true), List.of("augment_prompt_ids[0] = 50"),
                "{\"ids\": [4, 5], \"augment_prompt_ids\": [50]}");
        // A tokenizer whose ids do not fit the model: "z" is id 29, the model has 10.
        fails(1, tokenizer, DataRules.of(8, 10), List.of("\"text\"", "tokenizes to id 29", "[0, 10)",
                "tokenizer.json"), "{\"text\": \"az\"}");
        Path txt = dir.resolve("corpus.txt");
        Files.writeString(txt, "abz");
        failsOn(txt, 0, tokenizer, DataRules.of(8, 10), List.of("tokenizes to id 29", "[0, 10)"));
    }

    @Test
    void sequencesLongerThanTheContextAreRefusedNeverTruncated() throws IOException {
        DataRules eight = new DataRules(8, VOCAB, (int) EOS, (int) BOS, false);
        // 1 + 5 + 3 + 1 = 10 tokens.
        fails(2, tokenizer, eight, List.of("sequence is 10 tokens", "8", "maxLength"),
                "{\"prompt\": \"a\", \"completion\": \"b\"}",
                "{\"prompt\": \"abcde\", \"completion\": \"fgh\"}");
        fails(1, null, eight, List.of("sequence is 9 tokens", "8"), "{\"ids\": [4, 5, 6, 7, 8, 9, 10]}");
        fails(1, null, eight.withSeparatePrompt(true), List.of("\"augment_prompt_ids\" is 9 tokens", "8"),
                "{\"ids\": [4, 5], \"augment_prompt_ids\": [4, 5, 6, 7, 8, 9, 10, 11]}");
        // Exactly at the limit is fine.
        assertEquals(8, read("ok.jsonl", null, eight, "{\"ids\": [4, 5, 6, 7, 8, 9]}").get(0).length());
    }

    @Test
    void examplesWithNothingToScoreOrNothingToReadAreRefused() throws IOException {
        fails(1, tokenizer, bare(), List.of("\"completion\" is empty", "no EOS"),
                "{\"prompt\": \"ab\", \"completion\": \"\"}");
        fails(1, null, bare(), List.of("\"completion_ids\" is empty", "no EOS"),
                "{\"prompt_ids\": [4], \"completion_ids\": []}");
        fails(1, tokenizer, bare(), List.of("\"prompt\" is empty", "no BOS"),
                "{\"prompt\": \"\", \"completion\": \"ab\"}");
        fails(1, tokenizer, bare(), List.of("\"text\" yields 1 token", "at least 2"), "{\"text\": \"a\"}");
        fails(1, tokenizer, specials(), List.of("\"text\" is empty"), "{\"text\": \"\"}");
        fails(1, null, specials(), List.of("\"ids\" is empty"), "{\"ids\": []}");
        fails(1, tokenizer, bare().withSeparatePrompt(true), List.of("\"augment_prompt\" is empty"),
                "{\"text\": \"ab\", \"augment_prompt\": \"\"}");
    }

    @Test
    void emptyDatasetsAndMissingFilesNameTheFile() throws IOException {
        failsOn(write("blank.jsonl", "", "  "), 0, tokenizer, bare(), List.of("no examples"));
        Path empty = dir.resolve("empty.jsonl");
        Files.writeString(empty, "");
        failsOn(empty, 0, tokenizer, bare(), List.of("no examples"));
        Path emptyText = dir.resolve("empty.txt");
        Files.writeString(emptyText, "");
        failsOn(emptyText, 0, tokenizer, bare(), List.of("no examples", "at least 2"));
        Path oneChar = dir.resolve("one.txt");
        Files.writeString(oneChar, "a");
        failsOn(oneChar, 0, tokenizer, bare(), List.of("no examples", "1 token"));
        failsOn(dir.resolve("nope.jsonl"), 0, tokenizer, bare(), List.of("missing"));
        failsOn(dir, 0, tokenizer, bare(), List.of("directory"));
    }

    @Test
    void invalidUtf8NamesItsLine() throws IOException {
        Path f = dir.resolve("bytes.jsonl");
        byte[] good = "{\"ids\": [4, 5]}\n".getBytes(StandardCharsets.UTF_8);
        byte[] bad = {'{', '"', 't', 'e', 'x', 't', '"', ':', '"', (byte) 0xFF, '"', '}', '\n'};
        Files.write(f, cat2(good, bad));
        failsOn(f, 2, tokenizer, bare(), List.of("UTF-8"));
    }

    private static byte[] cat2(byte[] a, byte[] b) {
        byte[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    // ---- batches -------------------------------------------------------------------------------------------------

    @Test
    void batchShiftsPadsAndMasksExactly() {
        Example long5 = new Example(ids(1, 4, 5, 6, 2), mask("00011"), null, 1);
        Example short3 = new Example(ids(4, 5, 6), mask("011"), null, 2);
        Batch b = Batch.of(List.of(long5, short3), 99);
        assertEquals(2, b.rows());
        assertEquals(4, b.length());
        assertArrayEquals(ids(1, 4, 5, 6, /**/ 4, 5, 99, 99), b.inputs());
        assertArrayEquals(ids(IGNORE, IGNORE, 6, 2, /**/ 5, 6, IGNORE, IGNORE), b.labels());
        assertArrayEquals(mask("1111" + "1100"), b.real());
        assertEquals(4, b.targetCount());
        assertEquals(0, b.augmentLength());
        assertNull(b.augmentIds());
        assertNull(b.augmentReal());
    }

    @Test
    void batchPadsAugmentIdsSeparately() {
        Example a = new Example(ids(1, 4, 5), mask("001"), ids(1, 4), 1);
        Example c = new Example(ids(1, 6), mask("01"), ids(7, 8, 9), 2);
        Batch b = Batch.of(List.of(a, c), 0);
        assertArrayEquals(ids(1, 4, /**/ 1, 0), b.inputs());
        assertArrayEquals(ids(IGNORE, 5, /**/ 6, IGNORE), b.labels());
        assertArrayEquals(mask("11" + "10"), b.real());
        assertEquals(2, b.targetCount());
        assertEquals(3, b.augmentLength());
        assertArrayEquals(ids(1, 4, 0, /**/ 7, 8, 9), b.augmentIds());
        assertArrayEquals(mask("110" + "111"), b.augmentReal());

        Example plain = new Example(ids(1, 6), mask("01"), null, 3);
        assertThrows(IllegalArgumentException.class, () -> Batch.of(List.of(a, plain), 0));
        assertThrows(IllegalArgumentException.class, () -> Batch.of(List.of(), 0));
    }

    @Test
    void batchFromReadDataScoresExactlyTheDatasetsTargets() throws IOException {
        Dataset d = read("d.jsonl", tokenizer, specials(),
                "{\"prompt\": \"ab\", \"completion\": \"c\"}", "{\"text\": \"de\"}", "{\"ids\": [9, 10, 11]}");
        List<Batch> batches = Batcher.sequential(d, 8);
        assertEquals(1, batches.size());
        assertEquals(d.targetTokens(), batches.get(0).targetCount());
    }

    /** Ten two-token examples; example i predicts id 4 + i, so a batch's labels say which examples it holds. */
    static Dataset numbered(int n) {
        List<Example> examples = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            examples.add(new Example(ids(BOS, 4 + i), mask("01"), null, i + 1));
        }
        return Dataset.of(examples, "numbered");
    }

    static List<Integer> indices(Batch b) {
        assertEquals(1, b.length());
        return Arrays.stream(b.labels()).mapToObj(l -> (int) (l - 4)).collect(Collectors.toList());
    }

    static List<Integer> draw(Batcher batcher, int batches) {
        List<Integer> out = new ArrayList<>();
        for (int i = 0; i < batches; i++) {
            out.addAll(indices(batcher.next()));
        }
        return out;
    }

    @Test
    void batcherIsDeterministicAndReshufflesEachEpoch() {
        Dataset d = numbered(10);
        List<Integer> run = draw(new Batcher(d, 3, 7), 10);     // 30 examples: 3 epochs
        assertEquals(run, draw(new Batcher(d, 3, 7), 10), "same seed, same order");
        assertNotEquals(run, draw(new Batcher(d, 3, 8), 10), "another seed, another order");

        List<Integer> all = IntStream.range(0, 10).boxed().collect(Collectors.toList());
        List<List<Integer>> epochs = List.of(run.subList(0, 10), run.subList(10, 20), run.subList(20, 30));
        for (List<Integer> epoch : epochs) {
            assertEquals(all, epoch.stream().sorted().collect(Collectors.toList()), "each epoch is a permutation");
        }
        assertNotEquals(all, epochs.get(0), "shuffled");
        assertNotEquals(epochs.get(0), epochs.get(1), "reshuffled each epoch");
        assertNotEquals(epochs.get(1), epochs.get(2), "reshuffled each epoch");
        // The batch that crosses an epoch boundary takes the end of one shuffle and the start of the next.
        Batcher b = new Batcher(d, 3, 7);
        draw(b, 3);
        assertEquals(9, b.position());
        assertEquals(0, b.epoch());
        assertEquals(List.of(run.get(9), run.get(10), run.get(11)), indices(b.next()));
        assertEquals(12, b.position());
        assertEquals(1, b.epoch());
    }

    /** Example i: BOS, then 0-8 filler tokens (a length that varies with i), then its own id 100+i as the target. */
    static Dataset ragged(int n) {
        List<Example> examples = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int fill = (i * 7) % 9;
            long[] ids = new long[fill + 2];
            boolean[] target = new boolean[fill + 2];
            ids[0] = BOS;
            for (int j = 1; j <= fill; j++) {
                ids[j] = 3;
            }
            ids[fill + 1] = 100 + i;
            target[fill + 1] = true;
            examples.add(new Example(ids, target, null, i + 1));
        }
        return Dataset.of(examples, "ragged");
    }

    static List<Integer> raggedIndices(Batch b) {
        List<Integer> out = new ArrayList<>();
        for (int r = 0; r < b.rows(); r++) {
            for (int t = 0; t < b.length(); t++) {
                long l = b.labels()[r * b.length() + t];
                if (l != Batch.IGNORE_INDEX) {
                    out.add((int) (l - 100));
                }
            }
        }
        return out;
    }

    @Test
    void lengthGroupingKeepsEpochsWholeDeterministicAndResumableWithLessPadding() {
        Dataset d = ragged(24);
        List<Integer> all = IntStream.range(0, 24).boxed().collect(Collectors.toList());
        Batcher grouped = new Batcher(d, 4, 7, 3);                  // 6 batches per epoch: 2 runs of 3 batches
        Batcher plain = new Batcher(d, 4, 7);
        List<Integer> order = new ArrayList<>();
        List<Long> positions = new ArrayList<>();
        List<Batch> reference = new ArrayList<>();
        long groupedCells = 0;
        long plainCells = 0;
        for (int i = 0; i < 18; i++) {                              // 3 epochs
            positions.add(grouped.position());
            Batch b = grouped.next();
            reference.add(b);
            order.addAll(raggedIndices(b));
            groupedCells += (long) b.rows() * b.length();
            Batch p = plain.next();
            plainCells += (long) p.rows() * p.length();
        }
        for (int e = 0; e < 3; e++) {
            assertEquals(all, order.subList(24 * e, 24 * e + 24).stream().sorted().collect(Collectors.toList()),
                    "epoch " + e + " is a permutation");
        }
        assertNotEquals(order.subList(0, 24), order.subList(24, 48), "regrouped each epoch");
        assertTrue(groupedCells < plainCells, "grouping pads less: " + groupedCells + " cells against " + plainCells);
        // Within each run of 3 batches, every row of the shorter batches is no longer than any row of the longer ones.
        for (int run = 0; run < 6; run++) {
            List<Batch> three = reference.subList(3 * run, 3 * run + 3).stream()
                    .sorted(java.util.Comparator.comparingInt(Batch::length)).toList();
            for (int k = 0; k + 1 < 3; k++) {
                int longestHere = three.get(k).length();
                for (int r = 0; r < 4; r++) {
                    int len = 0;
                    for (int t = 0; t < three.get(k + 1).length(); t++) {
                        len += three.get(k + 1).real()[r * three.get(k + 1).length() + t] ? 1 : 0;
                    }
                    assertTrue(len >= longestHere || three.get(k).length() == three.get(k + 1).length(),
                            "run " + run + ": a row of " + len + " tokens in a batch after one of length " + longestHere);
                }
            }
        }
        assertEquals(order, draw18(new Batcher(d, 4, 7, 3)), "same seed, same order");
        assertNotEquals(order, draw18(new Batcher(d, 4, 8, 3)), "another seed, another order");
        for (int k = 0; k < reference.size(); k++) {
            Batcher resumed = Batcher.resume(d, 4, 7, 3, positions.get(k));
            for (int i = k; i < reference.size(); i++) {
                assertEquals(reference.get(i), resumed.next(), "resumed at " + positions.get(k) + ", batch " + i);
            }
        }
        assertThrows(IllegalArgumentException.class, () -> new Batcher(d, 4, 7, 0));
    }

    static List<Integer> draw18(Batcher b) {
        List<Integer> out = new ArrayList<>();
        for (int i = 0; i < 18; i++) {
            out.addAll(raggedIndices(b.next()));
        }
        return out;
    }

    @Test
    void resumingFromAPositionReproducesTheUninterruptedRun() {
        Dataset d = numbered(10);
        Batcher uninterrupted = new Batcher(d, 3, 42);
        List<Batch> reference = new ArrayList<>();
        List<Long> positions = new ArrayList<>();
        for (int i = 0; i < 12; i++) {
            positions.add(uninterrupted.position());
            reference.add(uninterrupted.next());
        }
        for (int k = 0; k < reference.size(); k++) {
            Batcher resumed = Batcher.resume(d, 3, 42, positions.get(k));
            assertEquals(positions.get(k), resumed.position());
            for (int i = k; i < reference.size(); i++) {
                assertEquals(reference.get(i), resumed.next(), "resumed at " + positions.get(k) + ", batch " + i);
            }
            assertEquals(uninterrupted.position(), resumed.position());
        }
        // Any position works, not only batch boundaries.
        List<Integer> stream = new ArrayList<>();
        reference.forEach(b -> stream.addAll(indices(b)));
        Batcher mid = Batcher.resume(d, 3, 42, 17);
        assertEquals(1, mid.epoch());
        assertEquals(stream.subList(17, 20), indices(mid.next()));
        assertEquals(2, mid.epoch());
    }

    @Test
    void sequentialBatchesKeepDatasetOrder() {
        List<Batch> batches = Batcher.sequential(numbered(10), 4);
        assertEquals(List.of(4, 4, 2), batches.stream().map(Batch::rows).collect(Collectors.toList()));
        List<Integer> order = new ArrayList<>();
        batches.forEach(b -> order.addAll(indices(b)));
        assertEquals(IntStream.range(0, 10).boxed().collect(Collectors.toList()), order);
    }
}
