package dev.calm4j.experiment.kv;

import dev.calm4j.data.Dataset;
import dev.calm4j.data.Example;
import dev.calm4j.tokenize.CharTokenizer;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

/**
 * The key-value arithmetic task (paper §4.1, scaled as docs/design.md §4.1 says): {@code n} random keys of 2-6 lowercase
 * letters, values a random permutation of 1..n, expressions over {@code operands} keys with + and -, and the three
 * datasets: KV-SUBS {@code k1+k2-k3=} -> {@code v1+v2-v3}, NUM-MATH {@code v1+v2-v3=} -> result, KV-MATH
 * {@code k1+k2-k3=} -> result. Everything is character-level over one alphabet, so both models share a tokenizer.
 */
public final class KvTask {
    public static final String ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789+-=";
    public static final int BOS = 1;
    public static final int EOS = 2;
    /** A key's letters: uniform in [KEY_MIN_LETTERS, KEY_MAX_LETTERS] (m_B's operand-blind twins take this shape too). */
    public static final int KEY_MIN_LETTERS = 2;
    public static final int KEY_MAX_LETTERS = 6;

    private final List<String> keys;
    private final Map<String, Integer> values;
    private final int operands;
    private final Set<String> heldIn;         // the 20 % of keys composition may train on

    /** An expression: keys (or null for pure numbers), operand values and the operators between them. */
    public record Expr(List<String> keys, int[] values, char[] ops) {
        public int result() {
            int r = values[0];
            for (int i = 0; i < ops.length; i++) {
                r = ops[i] == '+' ? r + values[i + 1] : r - values[i + 1];
            }
            return r;
        }

        public String keyText() {
            StringBuilder s = new StringBuilder(keys.get(0));
            for (int i = 0; i < ops.length; i++) {
                s.append(ops[i]).append(keys.get(i + 1));
            }
            return s.toString();
        }

        public String valueText() {
            StringBuilder s = new StringBuilder().append(values[0]);
            for (int i = 0; i < ops.length; i++) {
                s.append(ops[i]).append(values[i + 1]);
            }
            return s.toString();
        }
    }

    public KvTask(int n, int operands, double heldInFraction, long seed) {
        if (n < 10 || n > 999) {
            throw new IllegalArgumentException("number of keys must be in [10, 999] (values are up to 3 digits), got " + n);
        }
        if (operands < 2) {
            throw new IllegalArgumentException("expressions need at least 2 operands");
        }
        Random r = new Random(seed);
        Set<String> seen = new HashSet<>();
        keys = new ArrayList<>();
        while (keys.size() < n) {
            int len = KEY_MIN_LETTERS + r.nextInt(KEY_MAX_LETTERS - KEY_MIN_LETTERS + 1);
            StringBuilder k = new StringBuilder();
            for (int i = 0; i < len; i++) {
                k.append((char) ('a' + r.nextInt(26)));
            }
            if (seen.add(k.toString())) {
                keys.add(k.toString());
            }
        }
        List<Integer> perm = new ArrayList<>();
        for (int v = 1; v <= n; v++) {
            perm.add(v);
        }
        java.util.Collections.shuffle(perm, r);
        values = new LinkedHashMap<>();
        for (int i = 0; i < n; i++) {
            values.put(keys.get(i), perm.get(i));
        }
        List<String> shuffled = new ArrayList<>(keys);
        java.util.Collections.shuffle(shuffled, r);
        heldIn = new HashSet<>(shuffled.subList(0, Math.max(2, (int) Math.round(heldInFraction * n))));
        this.operands = operands;
    }

    public List<String> keys() {
        return keys;
    }

    public int value(String key) {
        return values.get(key);
    }

    public Map<String, Integer> values() {
        return values;
    }

    public boolean isHeldIn(String key) {
        return heldIn.contains(key);
    }

    public List<String> heldInKeys() {
        return keys.stream().filter(heldIn::contains).toList();
    }

    public List<String> heldOutKeys() {
        return keys.stream().filter(k -> !heldIn.contains(k)).toList();
    }

    public int vocabSize() {
        return CharTokenizer.vocabSize(ALPHABET);
    }

    public void writeTokenizer(Path file) {
        CharTokenizer.write(file, ALPHABET);
    }

    /** A random expression over the given key pool. */
    public Expr expr(List<String> pool, Random r) {
        List<String> ks = new ArrayList<>();
        int[] vs = new int[operands];
        char[] ops = new char[operands - 1];
        for (int i = 0; i < operands; i++) {
            String k = pool.get(r.nextInt(pool.size()));
            ks.add(k);
            vs[i] = values.get(k);
            if (i > 0) {
                ops[i - 1] = r.nextBoolean() ? '+' : '-';
            }
        }
        return new Expr(ks, vs, ops);
    }

    /** Distinct random expressions over {@code pool}, none of whose texts is in {@code exclude}. */
    public List<Expr> exprs(List<String> pool, int count, Set<String> exclude, Random r) {
        List<Expr> out = new ArrayList<>();
        Set<String> taken = new HashSet<>(exclude);
        int tries = 0;
        while (out.size() < count && tries++ < count * 50) {
            Expr e = expr(pool, r);
            if (taken.add(e.keyText())) {
                out.add(e);
            }
        }
        return out;
    }

    // ------------------------------------------------------------------------------------------------------
    // The three formats, as token ids: BOS + prompt, then the completion and EOS are the targets.
    // ------------------------------------------------------------------------------------------------------

    public static Example kvSubs(Expr e) {
        return example(e.keyText() + "=", e.valueText());
    }

    public static Example numMath(Expr e) {
        return example(e.valueText() + "=", Integer.toString(e.result()));
    }

    public static Example kvMath(Expr e) {
        return example(e.keyText() + "=", Integer.toString(e.result()));
    }

    /** A single-key lookup {@code k=} -> {@code v}: mixed into m_A's data, it makes the lookup itself a task. */
    public Example lookup(String key) {
        return example(key + "=", Integer.toString(values.get(key)));
    }

    static Example example(String prompt, String completion) {
        long[] ids = new long[2 + prompt.length() + completion.length()];
        boolean[] target = new boolean[ids.length];
        int i = 0;
        ids[i++] = BOS;
        for (char c : prompt.toCharArray()) {
            ids[i++] = id(c);
        }
        for (char c : completion.toCharArray()) {
            target[i] = true;
            ids[i++] = id(c);
        }
        target[i] = true;
        ids[i] = EOS;
        return new Example(ids, target, null, 0);
    }

    public static long id(char c) {
        int p = ALPHABET.indexOf(c);
        if (p < 0) {
            throw new IllegalArgumentException("character '" + c + "' is not in the KV alphabet");
        }
        return CharTokenizer.SPECIALS.size() + p;
    }

    public static char ch(long id) {
        int p = (int) id - CharTokenizer.SPECIALS.size();
        return p >= 0 && p < ALPHABET.length() ? ALPHABET.charAt(p) : '?';
    }

    public static boolean isLetter(long id) {
        char c = ch(id);
        return c >= 'a' && c <= 'z';
    }

    public static boolean isDigit(long id) {
        char c = ch(id);
        return c >= '0' && c <= '9';
    }

    public static boolean isOperator(long id) {
        char c = ch(id);
        return c == '+' || c == '-' || c == '=';
    }

    /** Examples as a dataset (and the same rows as JSONL text for the run directory). */
    public static Dataset dataset(List<Example> examples, String name) {
        return Dataset.of(examples, name);
    }

    public static List<Map<String, Object>> jsonl(List<Example> examples) {
        List<Map<String, Object>> rows = new ArrayList<>();
        for (Example e : examples) {
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("prompt", text(e.prompt()));
            row.put("completion", text(e.completion()));
            rows.add(row);
        }
        return rows;
    }

    public static String text(long[] ids) {
        StringBuilder s = new StringBuilder();
        for (long id : ids) {
            if (id >= CharTokenizer.SPECIALS.size()) {
                s.append(ch(id));
            }
        }
        return s.toString();
    }

    /** Key text -> value, for the auxiliary value-digit supervision of m_A. */
    public Map<String, Integer> lookupTable() {
        return new HashMap<>(values);
    }
}
