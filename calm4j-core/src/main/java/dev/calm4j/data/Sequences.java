package dev.calm4j.data;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The one place where {@link DataRules} are applied: BOS, EOS, target masks, augment ids, the vocabulary and the
 * context limit. Readers only parse fields into {@link Part}s; every shape ends here, so the rules cannot drift apart
 * between JSON, pre-tokenized and plain-text data. Problems are thrown as {@link DataError} without a location.
 */
final class Sequences {
    private Sequences() {}

    /** {@code [bos] + prompt + completion + [eos]}; the targets are the completion and EOS. */
    static Example pair(Part prompt, Part completion, Part augment, DataRules rules, int line) {
        checkVocab(prompt, rules);
        checkVocab(completion, rules);
        long[] head = withBos(prompt.ids(), rules);
        if (head.length == 0) {
            // Without BOS the first completion token would sit at position 0, which nothing predicts: it would
            // silently drop out of the loss. Better to say so than to score less than the data promises.
            throw new DataError("\"" + prompt.field() + "\" is empty and no BOS id is set, so the first completion "
                    + "token could not be predicted; give a prompt or set a BOS id");
        }
        long[] tail = withEos(completion.ids(), rules);
        if (tail.length == 0) {
            throw new DataError("\"" + completion.field() + "\" is empty and no EOS id is set, so the example has "
                    + "no target tokens to score");
        }
        long[] ids = concat(head, tail);
        checkLength("sequence", ids.length, rules);
        boolean[] target = new boolean[ids.length];
        Arrays.fill(target, head.length, ids.length, true);
        Example.Text text = prompt.text() == null || completion.text() == null ? null
                : Example.Text.of(List.of(prompt, completion), head.length - prompt.ids().length, tail.length - completion.ids().length);
        String augmentText = !rules.separatePrompt() ? null : augment != null ? augment.text() : prompt.text();
        return new Example(ids, target, augmentIds(augment, head, rules), line, text, augmentText);
    }

    /** {@code [bos] + text + [eos]}; every token after the first is a target. */
    static Example text(Part text, Part augment, DataRules rules, int line) {
        checkVocab(text, rules);
        if (text.ids().length == 0) {
            throw new DataError("\"" + text.field() + "\" is empty");
        }
        long[] ids = withEos(withBos(text.ids(), rules), rules);
        if (ids.length < 2) {
            throw new DataError("\"" + text.field() + "\" yields 1 token (with BOS/EOS); an example needs at least "
                    + "2 (one to read, one to predict)");
        }
        checkLength("sequence", ids.length, rules);
        int bos = withBos(text.ids(), rules).length - text.ids().length;
        Example.Text t = text.text() == null ? null : Example.Text.of(List.of(text), bos, ids.length - bos - text.ids().length);
        String augmentText = !rules.separatePrompt() ? null : augment != null ? augment.text() : "";
        return new Example(ids, allButFirst(ids.length), augmentIds(augment, Arrays.copyOf(ids, 1), rules), line, t,
                augmentText);
    }

    /**
     * A plain-text document cut into consecutive chunks of exactly {@code maxLength} tokens: the document's tokens
     * plus EOS form one stream, and each chunk is BOS (when set, and the chunk does not already start with it)
     * followed by the next stream tokens. The last, shorter chunk is kept if it has at least 2 tokens. {@code line}
     * of chunk k is k (1-based): the tokenizer gives no character offsets, so source lines are unknown.
     */
    static List<Example> chunks(long[] documentTokens, DataRules rules) {
        checkVocab(new Part("text", documentTokens, true), rules);
        long[] stream = withEos(documentTokens, rules);
        List<Example> out = new ArrayList<>();
        int pos = 0;
        int chunk = 0;
        while (pos < stream.length) {
            boolean addBos = rules.bosId() != null && stream[pos] != rules.bosId();
            int take = Math.min(rules.maxLength() - (addBos ? 1 : 0), stream.length - pos);
            long[] body = Arrays.copyOfRange(stream, pos, pos + take);
            long[] ids = addBos ? concat(new long[] {rules.bosId()}, body) : body;
            pos += take;
            chunk++;
            if (ids.length >= 2) {
                out.add(new Example(ids, allButFirst(ids.length),
                        augmentIds(null, Arrays.copyOf(ids, 1), rules), chunk));
            }
        }
        return out;
    }

    /**
     * What the augmenting model reads in separate-prompt mode: the record's own augment prompt (with the BOS rule
     * applied, as for any sequence a model reads from the start), else the prompt part of the sequence. Null when
     * the mode is off: the augment fields are then ignored.
     */
    private static long[] augmentIds(Part augment, long[] promptPart, DataRules rules) {
        if (!rules.separatePrompt()) {
            return null;
        }
        if (augment == null) {
            return promptPart;
        }
        checkVocab(augment, rules);
        long[] ids = withBos(augment.ids(), rules);
        if (ids.length == 0) {
            throw new DataError("\"" + augment.field() + "\" is empty and no BOS id is set; the augmenting model "
                    + "would read nothing");
        }
        checkLength("\"" + augment.field() + "\"", ids.length, rules);
        return ids;
    }

    static void checkVocab(Part part, DataRules rules) {
        long[] ids = part.ids();
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] < 0 || ids[i] >= rules.vocabSize()) {
                String range = "outside the vocabulary [0, " + rules.vocabSize() + ")";
                throw new DataError(part.tokenized()
                        ? "\"" + part.field() + "\" tokenizes to id " + ids[i] + " (token " + i + "), " + range
                                + ": does the tokenizer.json belong to this model?"
                        : part.field() + "[" + i + "] = " + ids[i] + " is " + range);
            }
        }
    }

    private static void checkLength(String what, int length, DataRules rules) {
        if (length > rules.maxLength()) {
            throw new DataError(what + " is " + length + " tokens (with BOS/EOS), longer than the model context of "
                    + rules.maxLength() + " (maxLength); it is never truncated: shorten or split it");
        }
    }

    private static long[] withBos(long[] ids, DataRules rules) {
        Integer bos = rules.bosId();
        return bos == null || (ids.length > 0 && ids[0] == bos) ? ids : concat(new long[] {bos}, ids);
    }

    private static long[] withEos(long[] ids, DataRules rules) {
        Integer eos = rules.eosId();
        return eos == null ? ids : concat(ids, new long[] {eos});
    }

    private static boolean[] allButFirst(int length) {
        boolean[] target = new boolean[length];
        Arrays.fill(target, 1, length, true);
        return target;
    }

    private static long[] concat(long[] a, long[] b) {
        long[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
