package dev.calm4j.generate;

import dev.calm4j.Calm4jException;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.Mode;
import dev.calm4j.compose.TextAlignment;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.nn.Tensors;
import dev.calm4j.tokenize.Tokenizer;
import org.bytedeco.pytorch.Tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Cached generation for a composition whose augments read the text through their own tokenizers
 * ({@link CalmModel#ownTokens}, docs/design.md §3), exact: every step's logits are those of the composed forward over
 * that step's whole text, each model reading it through its own tokenizer.
 *
 * <p>A row's text is its prompt followed by the text of the anchor tokens generated so far, decoded together (byte
 * pieces that only form a character together come out right once the character is complete). A generated anchor
 * token ends where the text ends after it. One step ({@link #advance}), top to bottom:
 * <ol>
 *   <li>the new anchor tokens are appended; the text grows by their text;</li>
 *   <li>every own-token augment re-tokenizes the whole text of each row; its cache, and each of its bridges' keys and
 *       values, keep the longest prefix of tokens that is unchanged in every row (a BPE may merge its last token with
 *       the new text), and each row's remaining tokens are read again, right-padded (right padding never moves a real
 *       token under causal attention, so this is exact);</li>
 *   <li>held anchor positions whose visible augment tokens changed (the rule of {@link TextAlignment}, against the new
 *       tokenization) are computed again, from the first one in any row: they saw a tokenization that the full
 *       forward over today's text no longer has, and every later anchor position attends to them;</li>
 *   <li>the composition runs over the anchor positions to compute, with the cross mask of each of them over every
 *       held augment token, and returns the last position's logits.</li>
 * </ol>
 * An augment that reads the anchor's ids (a shared tokenizer) follows the anchor's cache, as in {@link CalmSession}.
 *
 * <p>Generation starts from prompt texts, since the augments need text: {@link #start} tokenizes them and gives the
 * anchor ids to hand to {@link Generator} with the factory that opens sessions over them; {@link #generate} does both.
 */
public final class AlignedCalmSession implements Session {
    private final CalmModel model;
    private final Tokenizer anchorTokenizer;
    private final List<Tokenizer> augmentTokenizers;     // per augment; null where it reads the anchor's ids
    private final List<String> promptTexts;
    private final List<Tokenizer.Tokens> promptTokens;   // the anchor's tokens of each prompt, with their ends
    private final String[] decodedPrompts;               // the prompt ids decoded: what a continuation is cut after
    private final CalmModel.CalmCache cache;
    private final int batch;
    private final int maxLength;

    // Every anchor column so far, row-major [B, maxLength]: its id, whether it is a real token, where its text ends.
    private final long[] anchorIds;
    private final boolean[] anchorReal;
    private final int[] anchorEnds;
    private int columns;

    private final int[] promptRead;                      // per row, how many of its prompt tokens arrived
    private final List<List<Long>> generated;            // per row, the anchor tokens after its prompt
    private final String[] texts;                        // per row, the text read so far
    private final Tokenizer.Tokens[][] held;             // [augment][row]: the tokens its cache holds for the row
    // What fits() read, per row: the text and each own-token augment's tokens of it, which the next advance() reads
    // again when that token is fed (the same text), so that each text is tokenized once.
    private final String[] checkedText;
    private final Tokenizer.Tokens[][] checked;          // [augment][row]
    private Reuse lastReuse;

    /**
     * What {@link #start} prepared.
     *
     * @param prompts each prompt's anchor ids (with the tokenizer's special tokens): give these to {@link Generator}
     * @param sessions opens the session over them
     */
    public record Start(List<long[]> prompts, Generator.SessionFactory sessions) {}

    /**
     * What the last {@link #advance} kept from the caches and what it computed again.
     *
     * @param anchorKept anchor positions kept (those after them, and the new ones, were computed)
     * @param anchorHeld anchor positions the cache held before the step
     * @param augmentKept per augment, the tokens an own-token augment kept (0 for an augment that reads the anchor's ids)
     * @param augmentHeld per augment, the tokens its cache held before the step (its longest row)
     */
    public record Reuse(int anchorKept, int anchorHeld, int[] augmentKept, int[] augmentHeld) {}

    private AlignedCalmSession(CalmModel model, Tokenizer anchorTokenizer, List<Tokenizer> augmentTokenizers,
                               List<String> promptTexts, List<Tokenizer.Tokens> promptTokens, int batch, int maxLength) {
        if (batch != promptTexts.size()) {
            throw new Calm4jException("aligned session: opened for " + batch + " rows, started for "
                    + promptTexts.size() + " prompts");
        }
        this.model = model;
        this.anchorTokenizer = anchorTokenizer;
        this.augmentTokenizers = augmentTokenizers;
        this.promptTexts = promptTexts;
        this.promptTokens = promptTokens;
        this.batch = batch;
        this.maxLength = maxLength;
        this.decodedPrompts = new String[batch];
        this.texts = new String[batch];
        this.generated = new ArrayList<>();
        for (int r = 0; r < batch; r++) {
            decodedPrompts[r] = anchorTokenizer.decode(promptTokens.get(r).ids());
            texts[r] = promptTexts.get(r);
            generated.add(new ArrayList<>());
        }
        this.anchorIds = new long[batch * maxLength];
        this.anchorReal = new boolean[batch * maxLength];
        this.anchorEnds = new int[batch * maxLength];
        this.promptRead = new int[batch];
        int n = model.augments().size();
        this.held = new Tokenizer.Tokens[n][batch];
        this.checkedText = new String[batch];
        this.checked = new Tokenizer.Tokens[n][batch];
        for (Tokenizer.Tokens[] rows : held) {
            Arrays.fill(rows, new Tokenizer.Tokens(new long[0], new int[0]));
        }
        // Own-token augments start at the anchor's length and grow as their tokens come (CalmModel reserves room).
        this.cache = model.newCache(batch, maxLength, new int[0]);
    }

    /**
     * Tokenizes the prompts with the anchor's tokenizer and returns their ids with the factory of sessions that
     * continue them: {@code Generator.generate(s.sessions(), s.prompts(), ...)}.
     *
     * @param augmentTokenizers one per augment: its own tokenizer where {@link CalmModel#ownTokens} says it reads the
     *     text through one, null where it reads the anchor's ids
     * @throws Calm4jException when the composition is not {@code same_sequence}, the tokenizers do not match its
     *     augments, or no prompt is given
     */
    public static Start start(CalmModel model, Tokenizer anchorTokenizer, List<Tokenizer> augmentTokenizers,
                              List<String> prompts) {
        if (model.mode() != Mode.SAME_SEQUENCE) {
            throw new Calm4jException("aligned generation is for same_sequence compositions; this one is "
                    + model.mode().jsonName());
        }
        if (anchorTokenizer == null) {
            throw new Calm4jException("aligned generation needs the anchor's tokenizer");
        }
        int n = model.augments().size();
        if (augmentTokenizers == null || augmentTokenizers.size() != n) {
            throw new Calm4jException("aligned generation: give one tokenizer per augment (" + n + "), null for one that "
                    + "reads the anchor's ids; got " + (augmentTokenizers == null ? "none" : augmentTokenizers.size()));
        }
        for (int a = 0; a < n; a++) {
            if (model.ownTokens(a) != (augmentTokenizers.get(a) != null)) {
                throw new Calm4jException("augment " + a + (model.ownTokens(a)
                        ? " reads the text through its own tokenizer: give it"
                        : " reads the anchor's ids: give null for its tokenizer"));
            }
        }
        if (prompts == null || prompts.isEmpty() || prompts.stream().anyMatch(java.util.Objects::isNull)) {
            throw new Calm4jException("aligned generation: give at least one prompt text, none of them null");
        }
        List<String> texts = List.copyOf(prompts);
        List<Tokenizer.Tokens> tokens = texts.stream().map(p -> anchorTokenizer.encodeWithEnds(p, true)).toList();
        List<Tokenizer> augs = new ArrayList<>(augmentTokenizers);        // List.copyOf refuses the nulls
        return new Start(tokens.stream().map(Tokenizer.Tokens::ids).toList(),
                (b, max) -> new AlignedCalmSession(model, anchorTokenizer, augs, texts, tokens, (int) b, max));
    }

    /**
     * Sessions over prompts already tokenized by the anchor (the prompt part of data examples, with where each token
     * ends in {@code texts}): what exact-match evaluation opens, feeding exactly these ids.
     *
     * @throws Calm4jException as {@link #start}, or when a prompt's ids and ends disagree in length
     */
    public static Generator.SessionFactory open(CalmModel model, Tokenizer anchorTokenizer,
                                                List<Tokenizer> augmentTokenizers, List<String> texts,
                                                List<Tokenizer.Tokens> prompts) {
        start(model, anchorTokenizer, augmentTokenizers, texts);             // the same checks
        if (prompts.size() != texts.size()) {
            throw new Calm4jException("aligned session: " + texts.size() + " texts, " + prompts.size() + " prompts");
        }
        List<String> t = List.copyOf(texts);
        List<Tokenizer.Tokens> p = List.copyOf(prompts);
        List<Tokenizer> augs = new ArrayList<>(augmentTokenizers);
        return (b, max) -> new AlignedCalmSession(model, anchorTokenizer, augs, t, p, (int) b, max);
    }

    /**
     * Generates continuations of prompt texts with {@link Generator}: {@link #start}, then
     * {@link Generator#generate(Generator.SessionFactory, List, int, int, Generator.Options, Generator.Listener)}
     * within the anchor's vocabulary and positions.
     */
    public static Generator.Result generate(CalmModel model, Tokenizer anchorTokenizer, List<Tokenizer> augmentTokenizers,
                                            List<String> prompts, Generator.Options options, Generator.Listener listener) {
        Start s = start(model, anchorTokenizer, augmentTokenizers, prompts);
        ModelConfig c = model.anchor().config();
        return Generator.generate(s.sessions(), s.prompts(), c.vocabSize(), c.maxPositionEmbeddings(), options, listener);
    }

    @Override
    public Tensor advance(Tensor ids, Tensor keyPadding) {
        int t = (int) ids.size(1);
        int past = columns;
        if (ids.size(0) != batch || t < 1 || past + t > maxLength) {
            throw new IllegalArgumentException("aligned session: " + ids.size(0) + " rows of " + t + " tokens after "
                    + past + ", for " + batch + " rows of at most " + maxLength);
        }
        long[] add = Tensors.toLongs(ids);
        long[] real = keyPadding == null ? null : Tensors.toLongs(keyPadding);            // [B, past+t], 1 = real

        // 1. The new anchor tokens; each generated one grows its row's text and ends where the text then ends.
        for (int r = 0; r < batch; r++) {
            for (int c = 0; c < t; c++) {
                int at = r * maxLength + past + c;
                anchorIds[at] = add[r * t + c];
                anchorReal[at] = real == null || real[r * (past + t) + past + c] != 0;
                // Padding sees every real augment token (TextAlignment's rule for it); its output is never read.
                anchorEnds[at] = anchorReal[at] ? read(r, anchorIds[at]) : Integer.MAX_VALUE;
            }
        }
        columns += t;

        // 2. Every own-token augment re-tokenizes each row's whole text; its caches keep the tokens unchanged in all rows.
        int n = model.augments().size();
        Tokenizer.Tokens[][] fresh = new Tokenizer.Tokens[n][];
        int[][] unchanged = new int[n][];
        int[] augmentKept = new int[n];
        int[] augmentHeld = new int[n];
        for (int a = 0; a < n; a++) {
            augmentHeld[a] = model.ownTokens(a) ? cache.augment(a).length() : 0;
            if (!model.ownTokens(a)) {
                continue;
            }
            fresh[a] = new Tokenizer.Tokens[batch];
            unchanged[a] = new int[batch];
            augmentKept[a] = Integer.MAX_VALUE;
            for (int r = 0; r < batch; r++) {
                fresh[a][r] = texts[r].equals(checkedText[r]) && checked[a][r] != null ? checked[a][r]
                        : augmentTokenizers.get(a).encodeWithEnds(texts[r], true);
                int limit = model.augments().get(a).config().maxPositionEmbeddings();
                if (fresh[a][r].ids().length > limit) {
                    throw new Calm4jException("augment " + a + " reads row " + r + "'s text as " + fresh[a][r].ids().length
                            + " tokens, more than its max_position_embeddings (" + limit + ")");
                }
                unchanged[a][r] = unchangedPrefix(held[a][r], fresh[a][r]);
                augmentKept[a] = Math.min(augmentKept[a], unchanged[a][r]);
            }
        }

        // 3. Held anchor positions that must now see other augment tokens are computed again, from the first one.
        int anchorKept = past;
        for (int a = 0; a < n; a++) {
            if (!model.ownTokens(a)) {
                continue;
            }
            for (int r = 0; r < batch; r++) {
                for (int c = 0; c < anchorKept; c++) {
                    int at = r * maxLength + c;
                    if (anchorReal[at] && sawOther(held[a][r], fresh[a][r], unchanged[a][r], anchorEnds[at])) {
                        anchorKept = c;
                        break;
                    }
                }
            }
        }

        // 4. Drop from every cache what is computed again.
        model.truncate(cache, anchorKept, augmentKept);

        // 5. The composition over the anchor positions to compute, each augment reading its tokens after those kept.
        int compute = columns - anchorKept;
        long[] input = new long[batch * compute];
        boolean[] keys = new boolean[batch * columns];
        boolean padded = false;
        for (int r = 0; r < batch; r++) {
            System.arraycopy(anchorIds, r * maxLength + anchorKept, input, r * compute, compute);
            for (int c = 0; c < columns; c++) {
                keys[r * columns + c] = anchorReal[r * maxLength + c];
                padded |= !keys[r * columns + c];
            }
        }
        List<CalmModel.AugmentPrompt> prompts = new ArrayList<>();
        for (int a = 0; a < n; a++) {
            prompts.add(model.ownTokens(a) ? augmentInput(a, fresh[a], augmentKept[a], anchorKept) : null);
        }
        Tensor h = model.hidden(Tensors.longs(input, batch, compute), padded ? Tensors.bools(keys, batch, columns) : null,
                prompts, cache);                                                                      // [B, compute, D]
        for (int a = 0; a < n; a++) {
            if (model.ownTokens(a)) {
                held[a] = fresh[a];
            }
        }
        lastReuse = new Reuse(anchorKept, past, augmentKept, augmentHeld);
        return model.logits(h.narrow(1, compute - 1, 1)).squeeze(1);                                 // [B, V]
    }

    /**
     * Takes row {@code r}'s next real anchor token and returns where it ends in the row's text: a prompt token where
     * the prompt's tokenization says, a generated one where the text ends once it is appended.
     */
    private int read(int r, long id) {
        Tokenizer.Tokens prompt = promptTokens.get(r);
        int i = promptRead[r];
        if (i < prompt.ids().length) {
            if (prompt.ids()[i] != id) {
                throw new Calm4jException("aligned session, row " + r + ": prompt token " + i + " is " + id + ", but the "
                        + "session was started for " + prompt.ids()[i] + " (feed the ids of AlignedCalmSession.start)");
            }
            promptRead[r]++;
            return prompt.ends()[i];
        }
        generated.get(r).add(id);
        texts[r] = promptTexts.get(r) + continuation(r);
        return texts[r].codePointCount(0, texts[r].length());
    }

    /**
     * Whether every own-token augment still reads row {@code r}'s text within its positions once {@code id} is
     * appended. The anchor's own positions are bounded before the first step; an augment's are not, as its tokenizer
     * may spend more tokens on the same text (the anchor writing code that a Spanish augment reads piece by piece).
     */
    @Override
    public boolean fits(int r, long id) {
        if (java.util.stream.IntStream.range(0, model.augments().size()).noneMatch(model::ownTokens)) {
            return true;                                  // every augment reads the anchor's ids
        }
        long[] gen = new long[generated.get(r).size() + 1];
        for (int i = 0; i < gen.length - 1; i++) {
            gen[i] = generated.get(r).get(i);
        }
        gen[gen.length - 1] = id;
        String text = promptTexts.get(r) + continuation(r, gen);
        checkedText[r] = text;
        boolean fits = true;
        for (int a = 0; a < model.augments().size(); a++) {
            checked[a][r] = model.ownTokens(a) ? augmentTokenizers.get(a).encodeWithEnds(text, true) : null;
            fits &= checked[a][r] == null
                    || checked[a][r].ids().length <= model.augments().get(a).config().maxPositionEmbeddings();
        }
        return fits;
    }

    /** The text of row {@code r}'s generated tokens ({@link #continuation(int, long[])}). */
    private String continuation(int r) {
        return continuation(r, generated.get(r).stream().mapToLong(Long::longValue).toArray());
    }

    /**
     * The text of generated tokens {@code gen} of row {@code r}. Decoded after the prompt ids, then cut after the
     * decoded prompt: a decoder that treats the start of a text specially (SentencePiece's, which strips one leading
     * space) must not treat the continuation as a start. Decoded alone where the decoded prompt is not a prefix of the
     * whole.
     */
    private String continuation(int r, long[] gen) {
        long[] prompt = promptTokens.get(r).ids();
        long[] all = Arrays.copyOf(prompt, prompt.length + gen.length);
        System.arraycopy(gen, 0, all, prompt.length, gen.length);
        String whole = anchorTokenizer.decode(all);
        return whole.startsWith(decodedPrompts[r]) ? whole.substring(decodedPrompts[r].length()) : anchorTokenizer.decode(gen);
    }

    /** How many leading tokens two tokenizations share, id and end alike. */
    private static int unchangedPrefix(Tokenizer.Tokens before, Tokenizer.Tokens now) {
        int n = Math.min(before.ids().length, now.ids().length);
        int i = 0;
        while (i < n && before.ids()[i] == now.ids()[i] && before.ends()[i] == now.ends()[i]) {
            i++;
        }
        return i;
    }

    /**
     * Whether an anchor token ending at {@code end} sees other augment tokens now than before: another count of them
     * (token ends never decrease, so it sees a prefix), or a prefix that reaches past the tokens that stayed.
     */
    private static boolean sawOther(Tokenizer.Tokens before, Tokenizer.Tokens now, int unchanged, int end) {
        int then = endingBy(before.ends(), end);
        return then != endingBy(now.ends(), end) || then > unchanged;
    }

    /** How many tokens end at or before {@code end} ({@code ends} never decreases). */
    private static int endingBy(int[] ends, int end) {
        int lo = 0;
        int hi = ends.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (ends[mid] <= end) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    /**
     * What augment {@code a} reads this step: each row's tokens after the {@code kept} its cache keeps, right-padded;
     * which of the held and new tokens are real; and the cross mask of the anchor positions from {@code anchorFrom} on
     * over all of them.
     */
    private CalmModel.AugmentPrompt augmentInput(int a, Tokenizer.Tokens[] rows, int kept, int anchorFrom) {
        int s = 0;
        for (Tokenizer.Tokens row : rows) {
            s = Math.max(s, row.ids().length);
        }
        if (s == 0) {
            throw new Calm4jException("augment " + a + " reads no token of the text (empty, and its tokenizer adds none)");
        }
        int add = s - kept;
        long[] ids = new long[batch * add];
        boolean[] real = new boolean[batch * s];
        boolean padded = false;
        int[][] augmentEnds = new int[batch][];
        int[][] anchorEndRows = new int[batch][];
        int compute = columns - anchorFrom;
        for (int r = 0; r < batch; r++) {
            long[] row = rows[r].ids();
            System.arraycopy(row, kept, ids, r * add, row.length - kept);
            Arrays.fill(real, r * s, r * s + row.length, true);
            padded |= row.length < s;
            augmentEnds[r] = rows[r].ends();
            anchorEndRows[r] = Arrays.copyOfRange(anchorEnds, r * maxLength + anchorFrom, r * maxLength + anchorFrom + compute);
        }
        return new CalmModel.AugmentPrompt(Tensors.longs(ids, batch, add), padded ? Tensors.bools(real, batch, s) : null,
                TextAlignment.crossMask(anchorEndRows, compute, augmentEnds, s));
    }

    /** The text row {@code r} reads now: its prompt and the text of its generated anchor tokens. */
    public String text(int r) {
        return texts[r];
    }

    /** What the last {@link #advance} kept from the caches, or null before the first. */
    public Reuse lastReuse() {
        return lastReuse;
    }

    @Override
    public int length() {
        return columns;
    }

    @Override
    public void close() {
        cache.close();
    }
}
