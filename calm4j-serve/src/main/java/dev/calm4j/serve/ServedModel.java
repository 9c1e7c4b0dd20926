package dev.calm4j.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.calm4j.Calm4jException;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.Mode;
import dev.calm4j.generate.CalmSession;
import dev.calm4j.generate.LmSession;
import dev.calm4j.generate.Session;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.KvCache;
import dev.calm4j.nn.Tensors;
import dev.calm4j.tokenize.Tokenizer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * What the server runs: one loaded model, LoRA-adapted model or composition, its tokenizer and chat template.
 * Loading stays with the caller (the CLI's {@code --model/--bridges/--lora} resolution); this only opens
 * per-sequence states over what was loaded, calling the same forward methods as the library's sessions
 * ({@code LmSession}, {@code CalmSession}), so a served sequence computes what {@code calm generate} computes.
 *
 * <p>Every method that touches tensors must run on the scheduler's one worker thread.
 */
public final class ServedModel implements AutoCloseable {
    private final String id;
    private final CausalLm lm;           // the model, its LoRA view, or a composition's anchor
    private final CalmModel calm;        // null unless a composition
    private final Tokenizer tokenizer;
    private final ChatTemplate chat;     // null: the model has no chat template
    private final Map<String, Object> metadata;
    private final AutoCloseable owner;
    private final String bosText;
    private final String eosText;

    private ServedModel(String id, CausalLm lm, CalmModel calm, Tokenizer tokenizer, ChatTemplate chat,
                        Map<String, Object> metadata, AutoCloseable owner) {
        int bos = lm.config().bosTokenId();
        List<Integer> eos = lm.config().eosTokenIds();
        this.bosText = bos < 0 ? null : tokenizer.decode(new long[] {bos}, false);
        this.eosText = eos.isEmpty() ? null : tokenizer.decode(new long[] {eos.get(0)}, false);
        this.id = id;
        this.lm = lm;
        this.calm = calm;
        this.tokenizer = tokenizer;
        this.chat = chat;
        this.metadata = metadata;
        this.owner = owner;
    }

    /**
     * @param id the model name clients send ({@code "model"}) and {@code /v1/models} lists
     * @param lm the loaded model (or its LoRA-adapted view); with {@code calm}, the composition's anchor
     * @param calm the composition, or null
     * @param tokenizerDir the folder whose {@code tokenizer.json} (required) and {@code tokenizer_config.json}
     *     (optional: the chat template) are read
     * @param description one line saying what was loaded (listed in the model's metadata)
     * @param owner closed with this (what the caller loaded), or null
     */
    public static ServedModel of(String id, CausalLm lm, CalmModel calm, Path tokenizerDir, String description,
                                 AutoCloseable owner) {
        if (calm != null) {
            for (int a = 0; a < calm.augments().size(); a++) {
                if (calm.ownTokens(a)) {
                    throw new Calm4jException("augment " + a + " reads the text through its own tokenizer: serving such "
                            + "a composition is not supported (it re-reads the whole text every step); use calm "
                            + "generate or calm eval for it");
                }
            }
        }
        if (!Tokenizer.exists(tokenizerDir)) {
            throw new Calm4jException(tokenizerDir.resolve("tokenizer.json") + ": tokenizer missing; serving needs one "
                    + "(responses carry text)");
        }
        Tokenizer tok = Tokenizer.load(tokenizerDir);
        ChatTemplate chat;
        try {
            chat = ChatTemplate.read(tokenizerDir, tok, lm.config().bosTokenId(), lm.config().eosTokenIds());
        } catch (RuntimeException e) {
            tok.close();
            throw e;
        }
        Map<String, Object> meta = new LinkedHashMap<>();
        meta.put("context_length", lm.config().maxPositionEmbeddings());
        meta.put("vocab_size", lm.config().vocabSize());
        meta.put("model_type", lm.config().modelType());
        meta.put("parameters", parameters(lm) + (calm == null ? 0 : calm.bridgeParameterCount()
                + calm.augments().stream().mapToLong(ServedModel::parameters).sum()));
        meta.put("description", description);
        meta.put("chat_template", chat != null);
        if (calm != null) {
            Map<String, Object> plan = new LinkedHashMap<>();
            plan.put("mode", calm.mode().jsonName());
            plan.put("connections", calm.plan().spec());
            plan.put("heads", calm.heads());
            plan.put("augments", calm.augments().size());
            plan.put("bridge_parameters", calm.bridgeParameterCount());
            meta.put("composition", plan);
        }
        return new ServedModel(id, lm, calm, tok, chat, meta, owner);
    }

    private static long parameters(CausalLm m) {
        return m.config().parameterCount();
    }

    public String id() {
        return id;
    }

    public Map<String, Object> metadata() {
        return metadata;
    }

    public int vocabSize() {
        return lm.config().vocabSize();
    }

    public int contextLength() {
        return lm.config().maxPositionEmbeddings();
    }

    public Set<Integer> eosIds() {
        return Set.copyOf(lm.config().eosTokenIds());
    }

    public int bosId() {
        return lm.config().bosTokenId();
    }

    /** The BOS token's text, or null when the model has none. */
    public String bosText() {
        return bosText;
    }

    /** The (first) EOS token's text, or null when the model has none. */
    public String eosText() {
        return eosText;
    }

    public Tokenizer tokenizer() {
        return tokenizer;
    }

    /** The chat template, or null when the model has none. */
    public ChatTemplate chat() {
        return chat;
    }

    /**
     * Refuses a prompt the model cannot read: in a separate_prompt composition every augment reads the prompt, so its
     * ids must lie in every augment's vocabulary too (the anchor's is checked with the request).
     */
    void checkPrompt(long[] prompt) {
        if (calm == null || calm.mode() != Mode.SEPARATE_PROMPT) {
            return;
        }
        for (int a = 0; a < calm.augments().size(); a++) {
            int v = calm.augments().get(a).config().vocabSize();
            for (long t : prompt) {
                if (t >= v) {
                    throw ApiException.invalid("prompt", "token id " + t + " is outside augment " + a
                            + "'s vocabulary [0, " + v + ")");
                }
            }
        }
    }

    /**
     * A new sequence's state: its own caches (the model's, or the anchor's, every augment's and every bridge's).
     *
     * @param prompt the prompt ids (a separate_prompt composition's augments read them, as {@code calm generate}'s
     *     default)
     * @param maxLength positions to hold: prompt plus new tokens
     */
    Sequence open(long[] prompt, int maxLength) {
        if (calm == null) {
            return new LmSequence(lm.newCache(1, maxLength));
        }
        int[] promptLengths = calm.mode() == Mode.SEPARATE_PROMPT
                ? calm.augments().stream().mapToInt(a -> prompt.length).toArray() : new int[0];
        return new CalmSequence(calm.newCache(1, maxLength, promptLengths), prompt.clone());
    }

    /**
     * A session over {@code prompts.size()} rows decoded together, as {@code calm generate} opens one for a batch of
     * prompts (the library's {@code LmSession} / {@code CalmSession}; a separate_prompt composition's augments read
     * each row's prompt). The caller left-pads the prompts and passes the key-padding mask.
     */
    Session openBatch(List<long[]> prompts, int maxLength) {
        if (calm == null) {
            return LmSession.cached(lm, prompts.size(), maxLength);
        }
        return CalmSession.cached(calm, prompts.size(), maxLength, CalmSession.augmentPrompts(calm, prompts, null));
    }

    /** One sequence's caches; {@link #advance} appends ids and returns the logits of every new position. */
    abstract static class Sequence implements AutoCloseable {
        /** @return logits {@code [t, V]} (float) for the new positions */
        abstract Tensor advance(long[] ids, boolean allPositions);

        @Override
        public abstract void close();
    }

    private final class LmSequence extends Sequence {
        private final KvCache cache;

        LmSequence(KvCache cache) {
            this.cache = cache;
        }

        @Override
        Tensor advance(long[] ids, boolean allPositions) {
            Tensor h = lm.hidden(Tensors.longs(ids, 1, ids.length), null, cache);          // as LmSession does
            if (!allPositions) {
                h = h.narrow(1, h.size(1) - 1, 1);
            }
            return lm.logits(h).select(0, 0).to(ScalarType.Float);
        }

        @Override
        public void close() {
            cache.close();
        }
    }

    private final class CalmSequence extends Sequence {
        private final CalmModel.CalmCache cache;
        private final long[] prompt;

        CalmSequence(CalmModel.CalmCache cache, long[] prompt) {
            this.cache = cache;
            this.prompt = prompt;
        }

        @Override
        Tensor advance(long[] ids, boolean allPositions) {
            List<CalmModel.AugmentPrompt> prompts = null;
            if (calm.mode() == Mode.SEPARATE_PROMPT) {
                prompts = new ArrayList<>();
                boolean[] real = new boolean[prompt.length];
                java.util.Arrays.fill(real, true);
                for (int a = 0; a < calm.augments().size(); a++) {
                    prompts.add(new CalmModel.AugmentPrompt(Tensors.longs(prompt, 1, prompt.length),
                            Tensors.bools(real, 1, prompt.length)));
                }
            }
            Tensor h = calm.hidden(Tensors.longs(ids, 1, ids.length), null, prompts, cache);   // as CalmSession does
            if (!allPositions) {
                h = h.narrow(1, h.size(1) - 1, 1);
            }
            return calm.logits(h).select(0, 0).to(ScalarType.Float);
        }

        @Override
        public void close() {
            cache.close();
        }
    }

    /** {@code dir/tokenizer_config.json}, or null when there is none. */
    static JsonNode tokenizerConfig(Path dir) {
        Path f = dir.resolve("tokenizer_config.json");
        if (!Files.isRegularFile(f)) {
            return null;
        }
        try {
            return new ObjectMapper().readTree(f.toFile());
        } catch (IOException e) {
            throw new Calm4jException(f + ": not valid JSON (" + e.getMessage().split("\n")[0] + ")");
        }
    }

    @Override
    public void close() {
        tokenizer.close();
        if (owner != null) {
            try {
                owner.close();
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }
    }
}
