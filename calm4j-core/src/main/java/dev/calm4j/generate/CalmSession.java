package dev.calm4j.generate;

import dev.calm4j.compose.CalmModel;
import dev.calm4j.tokenize.Tokenizer;
import dev.calm4j.compose.Mode;
import dev.calm4j.nn.Tensors;
import org.bytedeco.pytorch.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * A session over a composed model. Cached: the anchor's and every augment's KV caches plus every bridge's
 * keys/values grow by each new token, which goes to both models (the paper's "refresh"). Recompute: the whole
 * sequence runs through the composition at every step (the reference the cache is tested against).
 *
 * <p>In separate-prompt mode each augment reads its own prompt once (right-padded ids with a real-token mask,
 * kept here as Java arrays so no tensor outlives a caller's scope).
 */
public final class CalmSession implements Session {
    private final CalmModel model;
    private final CalmModel.CalmCache cache;      // null in recompute mode
    private final List<long[]> promptIds;          // separate prompt: per augment, [B * S] right-padded
    private final List<boolean[]> promptReal;
    private final List<Integer> promptLen;
    private final long batch;
    private long[] history;
    private int length;

    private CalmSession(CalmModel model, long batch, int maxLength, List<long[][]> prompts, boolean cached) {
        for (int a = 0; a < model.augments().size(); a++) {
            if (model.mode() == dev.calm4j.compose.Mode.SAME_SEQUENCE && model.ownTokens(a)) {
                throw new dev.calm4j.Calm4jException("augment " + a + " reads the text through its own tokenizer: "
                        + "generate from prompt texts (AlignedCalmSession; calm generate --prompt TEXT); exact match "
                        + "over token-id prompts cannot be scored for such a composition");
            }
        }
        this.model = model;
        this.batch = batch;
        this.promptIds = new ArrayList<>();
        this.promptReal = new ArrayList<>();
        this.promptLen = new ArrayList<>();
        if (model.mode() == Mode.SEPARATE_PROMPT) {
            if (prompts == null || prompts.size() != model.augments().size()) {
                throw new dev.calm4j.Calm4jException("separate_prompt composition needs an augment prompt for each of the "
                        + model.augments().size() + " augmenting model(s)");
            }
            for (long[][] rows : prompts) {
                if (rows.length != batch) {
                    throw new dev.calm4j.Calm4jException("augment prompts: " + rows.length + " rows for a batch of " + batch);
                }
                int s = 1;
                for (long[] r : rows) {
                    if (r.length == 0) {
                        throw new dev.calm4j.Calm4jException("an augment prompt is empty");
                    }
                    s = Math.max(s, r.length);
                }
                long[] ids = new long[(int) batch * s];
                boolean[] real = new boolean[(int) batch * s];
                for (int b = 0; b < batch; b++) {
                    System.arraycopy(rows[b], 0, ids, b * s, rows[b].length);
                    for (int c = 0; c < rows[b].length; c++) {
                        real[b * s + c] = true;
                    }
                }
                promptIds.add(ids);
                promptReal.add(real);
                promptLen.add(s);
            }
        }
        this.cache = cached ? model.newCache(batch, maxLength, promptLen.stream().mapToInt(Integer::intValue).toArray()) : null;
    }

    /**
     * What each augment of {@code model} reads when generating from {@code prompts} (one row per prompt): in
     * {@code separate_prompt} mode, per augment, {@code own.get(a)} for every row when given, else each row's prompt
     * itself; null in {@code same_sequence} mode (the augments read the generated sequence).
     *
     * @param own one prompt per augment, or null to let every augment read the prompt
     * @throws dev.calm4j.Calm4jException when {@code own} does not give one prompt per augment, or an id lies outside
     *     an augment's vocabulary
     */
    public static List<long[][]> augmentPrompts(CalmModel model, List<long[]> prompts, List<long[]> own) {
        if (model.mode() != Mode.SEPARATE_PROMPT) {
            return null;
        }
        int n = model.augments().size();
        if (own != null && own.size() != n) {
            throw new dev.calm4j.Calm4jException(own.size() + " augment prompt(s) given; the composition has " + n
                    + " augmenting model(s): give one per augment, or none to let every augment read the prompt");
        }
        List<long[][]> out = new ArrayList<>();
        for (int a = 0; a < n; a++) {
            long[][] rows = new long[prompts.size()][];
            int vocab = model.augments().get(a).config().vocabSize();
            for (int r = 0; r < rows.length; r++) {
                rows[r] = own != null ? own.get(a) : prompts.get(r);
                for (long id : rows[r]) {
                    if (id < 0 || id >= vocab) {
                        throw new dev.calm4j.Calm4jException("augment prompt " + a + ": token id " + id
                                + " is outside augment " + a + "'s vocabulary [0, " + vocab + ")");
                    }
                }
            }
            out.add(rows);
        }
        return out;
    }

    /**
     * As {@link #augmentPrompts}, from texts, for a {@code separate_prompt} composition whose augments may have
     * tokenizers of their own: augment a reads {@code augmentTexts.get(a)} (or, when null, each row's prompt text)
     * through {@code tokenizers.get(a)} when it has one (its own special tokens included), else through the anchor's
     * tokenizer with the anchor's BOS rule ({@code anchorEncode}).
     *
     * @param tokenizers per augment, its own tokenizer or null
     * @param anchorEncode the anchor's encoding of a text, as the caller prepares prompts (BOS rule included)
     */
    public static List<long[][]> augmentPromptsFromText(CalmModel model, List<String> promptTexts, List<String> augmentTexts,
                                                        List<Tokenizer> tokenizers,
                                                        java.util.function.Function<String, long[]> anchorEncode) {
        int n = model.augments().size();
        if (augmentTexts != null && augmentTexts.size() != n) {
            throw new dev.calm4j.Calm4jException(augmentTexts.size() + " augment prompt(s) given; the composition has " + n
                    + " augmenting model(s): give one per augment, or none to let every augment read the prompt");
        }
        List<long[][]> out = new ArrayList<>();
        for (int a = 0; a < n; a++) {
            long[][] rows = new long[promptTexts.size()][];
            Tokenizer own = tokenizers == null ? null : tokenizers.get(a);
            for (int r = 0; r < rows.length; r++) {
                String text = augmentTexts != null ? augmentTexts.get(a) : promptTexts.get(r);
                rows[r] = own != null ? own.encodeWithEnds(text, true).ids() : anchorEncode.apply(text);
                if (rows[r].length == 0) {
                    throw new dev.calm4j.Calm4jException("augment prompt " + a + " is empty");
                }
                int vocab = model.augments().get(a).config().vocabSize();
                for (long id : rows[r]) {
                    if (id < 0 || id >= vocab) {
                        throw new dev.calm4j.Calm4jException("augment prompt " + a + ": token id " + id
                                + " is outside augment " + a + "'s vocabulary [0, " + vocab + ")");
                    }
                }
            }
            out.add(rows);
        }
        return out;
    }

    public static CalmSession cached(CalmModel model, long batch, int maxLength, List<long[][]> augmentPrompts) {
        return new CalmSession(model, batch, maxLength, augmentPrompts, true);
    }

    public static CalmSession recompute(CalmModel model, long batch, List<long[][]> augmentPrompts) {
        return new CalmSession(model, batch, 1, augmentPrompts, false);
    }

    private List<CalmModel.AugmentPrompt> prompts() {
        if (model.mode() != Mode.SEPARATE_PROMPT) {
            return null;
        }
        List<CalmModel.AugmentPrompt> p = new ArrayList<>();
        for (int a = 0; a < promptIds.size(); a++) {
            int s = promptLen.get(a);
            p.add(new CalmModel.AugmentPrompt(Tensors.longs(promptIds.get(a), batch, s), Tensors.bools(promptReal.get(a), batch, s)));
        }
        return p;
    }

    @Override
    public Tensor advance(Tensor ids, Tensor keyPadding) {
        long t = ids.size(1);
        Tensor h;
        if (cache != null) {
            h = model.hidden(ids, keyPadding, prompts(), cache);                         // [B, t, D]
        } else {
            long[] add = Tensors.toLongs(ids);
            long[] all = new long[(int) (batch * (length + t))];
            for (int r = 0; r < batch; r++) {
                if (length > 0) {
                    System.arraycopy(history, r * length, all, (int) (r * (length + t)), length);
                }
                System.arraycopy(add, (int) (r * t), all, (int) (r * (length + t) + length), (int) t);
            }
            history = all;
            h = model.hidden(Tensors.longs(all, batch, length + t), keyPadding, prompts(), null);
        }
        length += (int) t;
        return model.logits(h.narrow(1, h.size(1) - 1, 1)).squeeze(1);                  // [B, V]
    }

    @Override
    public int length() {
        return length;
    }

    @Override
    public void close() {
        if (cache != null) {
            cache.close();
        }
    }
}
