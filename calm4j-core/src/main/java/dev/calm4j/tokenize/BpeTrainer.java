package dev.calm4j.tokenize;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.io.AtomicFiles;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;
import java.util.TreeMap;

/**
 * Trains a byte-pair-encoding subword tokenizer on text and writes it as a Hugging Face {@code tokenizer.json}
 * that HF's {@code tokenizers} and calm4j's {@link Tokenizer} read alike.
 *
 * <p>The file: no normalizer (token spans must map onto the original text); a {@code Metaspace} pre-tokenizer
 * (every {@code ' '} becomes {@code "▁"}, a {@code "▁"} is put before each text that lacks one, and the text is cut
 * before every {@code "▁"}, so each word carries its leading space); a BPE model whose alphabet is every character
 * seen at least {@link Options#minCharCount} times (other characters encode as {@code <unk>}); a {@code Metaspace}
 * decoder, so {@code decode(encode(text))} gives back text with single spaces between words. Special tokens and
 * their ids are those of {@link CharTokenizer#SPECIALS}; no post-processor, so {@code encode} adds no BOS or EOS.
 * Other whitespace (newline, tab) is an ordinary character inside a word.
 *
 * <p>Training counts the words exactly as the pre-tokenizer cuts them, then repeatedly merges the most frequent
 * adjacent pair of symbols (ties: the pair whose left, then right, symbol comes first in {@link String} order),
 * updating pair counts only around the merged places. The same texts and options give a byte-identical file.
 */
public final class BpeTrainer {
    /** What the pre-tokenizer puts in place of a space, and in front of every word. */
    public static final String SPACE = "\u2581";
    private static final int SPACE_CP = 0x2581;

    private BpeTrainer() {}

    /**
     * @param vocabSize    largest vocabulary, special tokens included; training ends earlier when no pair is
     *                     frequent enough
     * @param minPairCount a pair seen fewer times than this is never merged
     * @param minCharCount a character seen fewer times than this is left out of the alphabet (it encodes as
     *                     {@code <unk>})
     */
    public record Options(int vocabSize, int minPairCount, int minCharCount) {
        public Options {
            if (vocabSize <= CharTokenizer.SPECIALS.size()) {
                throw new IllegalArgumentException("vocabSize " + vocabSize + " leaves no room beside the "
                        + CharTokenizer.SPECIALS.size() + " special tokens");
            }
            if (minPairCount < 1) {
                throw new IllegalArgumentException("minPairCount " + minPairCount + " < 1");
            }
            if (minCharCount < 1) {
                throw new IllegalArgumentException("minCharCount " + minCharCount + " < 1");
            }
        }
    }

    /**
     * What training produced.
     *
     * @param vocabSize tokens in the written vocabulary, special tokens included
     * @param alphabet  single characters in it ({@code "▁"} included)
     * @param merges    merges written (more than {@code vocabSize - 4 - alphabet} when two merges spell the same
     *                  token)
     */
    public record Summary(int vocabSize, int alphabet, int merges) {}

    /** Trains on {@code texts} (each one encoded on its own, e.g. one sentence or line) and writes {@code out}. */
    public static Summary train(Iterable<String> texts, Options options, Path out) {
        Trained t = fit(texts, options);
        try {
            AtomicFiles.writeString(out, toJson(t));
        } catch (IOException e) {
            throw new Calm4jException(out + ": cannot write (" + e.getMessage() + ")");
        }
        return new Summary(t.tokens.size(), t.alphabet, t.merges.size());
    }

    /** The words {@code text} is cut into, as the written Metaspace pre-tokenizer (prepend "always") cuts them. */
    static List<String> words(String text) {
        List<String> words = new ArrayList<>();
        if (text.isEmpty()) {
            return words;
        }
        String s = text.replace(' ', '\u2581');
        if (s.charAt(0) != '\u2581') {
            s = SPACE + s;
        }
        int start = 0;
        for (int i = 1; i < s.length(); i++) {
            if (s.charAt(i) == '\u2581') {
                words.add(s.substring(start, i));
                start = i;
            }
        }
        words.add(s.substring(start));
        return words;
    }

    private record Trained(List<String> tokens, int alphabet, List<int[]> merges) {}

    private static Trained fit(Iterable<String> texts, Options options) {
        // Distinct words in first-seen order; their counts.
        Map<String, long[]> wordCounts = new LinkedHashMap<>();
        for (String text : texts) {
            for (String w : words(text)) {
                wordCounts.computeIfAbsent(w, k -> new long[1])[0]++;
            }
        }
        // The alphabet: frequent characters in code-point order, so ids do not depend on the order of the texts.
        TreeMap<Integer, Long> charCounts = new TreeMap<>();
        for (Map.Entry<String, long[]> e : wordCounts.entrySet()) {
            e.getKey().codePoints().forEach(cp -> charCounts.merge(cp, e.getValue()[0], Long::sum));
        }
        List<String> tokens = new ArrayList<>(CharTokenizer.SPECIALS);
        Map<String, Integer> ids = new HashMap<>();
        for (int i = 0; i < tokens.size(); i++) {
            ids.put(tokens.get(i), i);
        }
        charCounts.putIfAbsent(SPACE_CP, Long.MAX_VALUE);   // "▁" starts every word: always encodable
        for (Map.Entry<Integer, Long> e : charCounts.entrySet()) {
            String ch = Character.toString(e.getKey());
            if (e.getValue() >= options.minCharCount() && !ids.containsKey(ch)) {
                ids.put(ch, tokens.size());
                tokens.add(ch);
            }
        }
        int alphabet = tokens.size() - CharTokenizer.SPECIALS.size();
        if (tokens.size() > options.vocabSize()) {
            throw new IllegalArgumentException("vocabSize " + options.vocabSize() + " is below the "
                    + CharTokenizer.SPECIALS.size() + " special tokens and " + alphabet
                    + " characters seen at least " + options.minCharCount() + " times; raise vocabSize or minCharCount");
        }

        // Words as symbol ids; -1 marks a character outside the alphabet, which no pair crosses.
        int n = wordCounts.size();
        int[][] syms = new int[n][];
        int[] lens = new int[n];
        long[] freq = new long[n];
        int w = 0;
        for (Map.Entry<String, long[]> e : wordCounts.entrySet()) {
            int[] cps = e.getKey().codePoints().toArray();
            syms[w] = new int[cps.length];
            for (int i = 0; i < cps.length; i++) {
                Integer id = ids.get(Character.toString(cps[i]));
                syms[w][i] = id == null || id < CharTokenizer.SPECIALS.size() ? -1 : id;
            }
            lens[w] = cps.length;
            freq[w] = e.getValue()[0];
            w++;
        }

        Pairs pairs = new Pairs();
        for (w = 0; w < n; w++) {
            for (int i = 0; i + 1 < lens[w]; i++) {
                pairs.add(syms[w][i], syms[w][i + 1], freq[w], w);
            }
        }
        for (int q : pairs.changed) {
            pairs.rose[q] = false;
        }
        pairs.changed.clear();
        PriorityQueue<long[]> queue = new PriorityQueue<>((x, y) -> {
            if (x[1] != y[1]) {
                return Long.compare(y[1], x[1]);
            }
            return comparePairs(tokens, x[0], y[0]);
        });
        for (int p = 0; p < pairs.size; p++) {
            if (pairs.counts[p] > 0) {
                queue.add(new long[] {pairs.keys[p], pairs.counts[p]});
            }
        }

        List<int[]> merges = new ArrayList<>();
        List<Integer> touched = new ArrayList<>();
        while (tokens.size() < options.vocabSize() && !queue.isEmpty()) {
            long[] top = queue.poll();
            int p = pairs.index(top[0]);
            long actual = pairs.counts[p];
            if (actual != top[1]) {
                // Stale: the count fell since it was queued; requeue at its present count.
                if (actual > 0) {
                    queue.add(new long[] {top[0], actual});
                }
                continue;
            }
            if (actual < options.minPairCount()) {
                break;
            }
            int a = (int) (top[0] >>> 32);
            int b = (int) top[0];
            String merged = tokens.get(a) + tokens.get(b);
            Integer existing = ids.get(merged);
            int c;
            if (existing != null) {
                c = existing;   // two merges can spell the same token; the vocabulary holds it once
            } else {
                c = tokens.size();
                tokens.add(merged);
                ids.put(merged, c);
            }
            merges.add(new int[] {a, b});

            pairs.changed.clear();
            int[] where = pairs.where[p].toSortedArray();
            for (int word : where) {
                mergeWord(syms[word], lens, word, a, b, c, freq[word], pairs);
            }
            // A pair whose count rose needs a fresh queue entry; fallen ones are corrected when they surface.
            touched.clear();
            touched.addAll(pairs.changed);
            touched.sort(null);
            for (int q : touched) {
                if (pairs.counts[q] > 0 && pairs.rose[q]) {
                    queue.add(new long[] {pairs.keys[q], pairs.counts[q]});
                }
                pairs.rose[q] = false;
            }
        }
        return new Trained(tokens, alphabet, merges);
    }

    /** Replaces every non-overlapping (a, b) in the word, left to right, by c, updating the pair counts. */
    private static void mergeWord(int[] s, int[] lens, int word, int a, int b, int c, long f, Pairs pairs) {
        int len = lens[word];
        int out = 0;
        for (int i = 0; i < len; i++) {
            if (i + 1 < len && s[i] == a && s[i + 1] == b) {
                pairs.add(a, b, -f, -1);
                if (out > 0) {
                    int prev = s[out - 1];   // already rewritten: may be c from a merge just before
                    pairs.add(prev, a, -f, -1);
                    pairs.add(prev, c, f, word);
                }
                if (i + 2 < len) {
                    int next = s[i + 2];
                    pairs.add(b, next, -f, -1);
                    pairs.add(c, next, f, word);
                }
                s[out++] = c;
                i++;
            } else {
                s[out++] = s[i];
            }
        }
        lens[word] = out;
    }

    private static int comparePairs(List<String> tokens, long x, long y) {
        int c = tokens.get((int) (x >>> 32)).compareTo(tokens.get((int) (y >>> 32)));
        return c != 0 ? c : tokens.get((int) x).compareTo(tokens.get((int) y));
    }

    /** Pair counts and the words each pair occurs in, by a dense index per pair. */
    private static final class Pairs {
        private final HashMap<Long, Integer> index = new HashMap<>();
        long[] keys = new long[1024];
        long[] counts = new long[1024];
        IntSet[] where = new IntSet[1024];
        boolean[] rose = new boolean[1024];
        int size;
        final List<Integer> changed = new ArrayList<>();

        int index(long key) {
            return index.get(key);
        }

        /** Adds {@code delta} to the pair's count; {@code word >= 0} records that the pair occurs in it. */
        void add(int left, int right, long delta, int word) {
            if (left < 0 || right < 0) {
                return;
            }
            long key = ((long) left << 32) | (right & 0xffffffffL);
            Integer p = index.get(key);
            if (p == null) {
                p = size++;
                if (p == keys.length) {
                    int grown = keys.length * 2;
                    keys = Arrays.copyOf(keys, grown);
                    counts = Arrays.copyOf(counts, grown);
                    where = Arrays.copyOf(where, grown);
                    rose = Arrays.copyOf(rose, grown);
                }
                keys[p] = key;
                where[p] = new IntSet();
                index.put(key, p);
            }
            counts[p] += delta;
            if (delta > 0 && !rose[p]) {
                rose[p] = true;
                changed.add(p);
            }
            if (word >= 0) {
                where[p].add(word);
            }
        }
    }

    /** A growable set of word indices (appends in order; one word is added many times in a row). */
    private static final class IntSet {
        private int[] items = new int[4];
        private int size;

        void add(int v) {
            if (size > 0 && items[size - 1] == v) {
                return;
            }
            if (size == items.length) {
                items = Arrays.copyOf(items, size * 2);
            }
            items[size++] = v;
        }

        int[] toSortedArray() {
            int[] a = Arrays.copyOf(items, size);
            Arrays.sort(a);
            int m = 0;
            for (int i = 0; i < a.length; i++) {
                if (m == 0 || a[m - 1] != a[i]) {
                    a[m++] = a[i];
                }
            }
            return Arrays.copyOf(a, m);
        }
    }

    private static String toJson(Trained t) {
        ObjectMapper json = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode root = json.createObjectNode();
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        ArrayNode added = root.putArray("added_tokens");
        for (int i = 0; i < CharTokenizer.SPECIALS.size(); i++) {
            ObjectNode tok = added.addObject();
            tok.put("id", i);
            tok.put("content", CharTokenizer.SPECIALS.get(i));
            tok.put("single_word", false);
            tok.put("lstrip", false);
            tok.put("rstrip", false);
            tok.put("normalized", false);
            tok.put("special", true);
        }
        root.putNull("normalizer");
        ObjectNode pre = root.putObject("pre_tokenizer");
        pre.put("type", "Metaspace");
        pre.put("replacement", SPACE);
        pre.put("prepend_scheme", "always");
        pre.put("split", true);
        root.putNull("post_processor");
        ObjectNode dec = root.putObject("decoder");
        dec.put("type", "Metaspace");
        dec.put("replacement", SPACE);
        dec.put("prepend_scheme", "always");
        dec.put("split", true);
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE");
        model.putNull("dropout");
        model.put("unk_token", "<unk>");
        model.putNull("continuing_subword_prefix");
        model.putNull("end_of_word_suffix");
        model.put("fuse_unk", false);
        model.put("byte_fallback", false);
        model.put("ignore_merges", false);
        ObjectNode vocab = model.putObject("vocab");
        for (int i = 0; i < t.tokens.size(); i++) {
            vocab.put(t.tokens.get(i), i);
        }
        ArrayNode merges = model.putArray("merges");
        for (int[] m : t.merges) {
            merges.addArray().add(t.tokens.get(m[0])).add(t.tokens.get(m[1]));
        }
        try {
            return json.writeValueAsString(root) + "\n";
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }
}
