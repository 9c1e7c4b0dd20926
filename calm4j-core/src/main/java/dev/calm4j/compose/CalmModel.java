package dev.calm4j.compose;

import dev.calm4j.Calm4jException;
import dev.calm4j.lm.AttentionContext;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.KvCache;
import org.bytedeco.pytorch.Generator;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A frozen anchor composed with one or more frozen augmenting models through trainable {@link Bridge}s.
 *
 * <p>The forward, written out ({@link #hidden}): every augment runs under no-grad up to its deepest connected block
 * and each bridge turns its augment layer's states into keys and values; then the anchor runs block by block, and
 * after block j every bridge into layer j adds its cross-attention to the stream, which becomes the input of block
 * j+1. Gradients reach the bridges through the anchor's frozen upper blocks. Only the bridges hold trainable tensors;
 * the base models' weights are never touched.
 */
public final class CalmModel implements AutoCloseable {
    private final CausalLm anchor;
    private final List<CausalLm> augments;
    private final CompositionPlan plan;
    private final List<Bridge> bridges;
    private final Mode mode;
    private final int heads;
    private final List<List<Integer>> bridgesAfter;   // anchor layer j -> bridge indices, in plan order
    private final int lowestBridged;                  // the plan's lowest anchor layer
    private final boolean[] ownTokens;                // augment a reads the text through its own tokenizer

    public CalmModel(CausalLm anchor, List<CausalLm> augments, CompositionPlan plan, List<Bridge> bridges, Mode mode,
                     int heads) {
        this(anchor, augments, plan, bridges, mode, heads, new boolean[augments.size()]);
    }

    /**
     * @param ownTokens per augment, whether it reads the text through its own tokenizer ({@link TextAlignment}; in
     *     SAME_SEQUENCE mode its forward then needs its {@link AugmentPrompt}) instead of the anchor's ids
     */
    public CalmModel(CausalLm anchor, List<CausalLm> augments, CompositionPlan plan, List<Bridge> bridges, Mode mode,
                     int heads, boolean[] ownTokens) {
        if (ownTokens.length != augments.size()) {
            throw new IllegalArgumentException(ownTokens.length + " own-tokenizer flags for " + augments.size() + " augments");
        }
        plan.check(anchor.config(), augments.stream().map(CausalLm::config).toList(), null, heads, mode, ownTokens);
        this.ownTokens = ownTokens.clone();
        if (bridges.size() != plan.size()) {
            throw new IllegalArgumentException(bridges.size() + " bridges for " + plan.size() + " connections");
        }
        this.anchor = anchor;
        this.augments = List.copyOf(augments);
        this.plan = plan;
        this.bridges = List.copyOf(bridges);
        this.mode = mode;
        this.heads = heads;
        this.bridgesAfter = new ArrayList<>();
        for (int j = 0; j < anchor.numLayers(); j++) {
            bridgesAfter.add(new ArrayList<>());
        }
        for (int k = 0; k < plan.size(); k++) {
            bridgesAfter.get(plan.get(k).anchorLayer()).add(k);
        }
        this.lowestBridged = plan.lowestAnchorLayer();
        if (bridges.stream().map(Bridge::recency).distinct().count() > 1) {
            throw new IllegalArgumentException("bridges with and without the recency bias in one composition");
        }
    }

    /** Whether the bridges' cross-attention carries the recency bias ({@link Bridge#recency()}). */
    public boolean recency() {
        return bridges.get(0).recency();
    }

    /** Fresh bridges (W_O = 0: the composition starts as exactly the anchor), seeded; queries start at zero. */
    public static CalmModel create(CausalLm anchor, List<CausalLm> augments, CompositionPlan plan, Mode mode,
                                   int heads, long seed) {
        return create(anchor, augments, plan, mode, heads, 0, seed);
    }

    /**
     * Fresh bridges, seeded, with each bridge's query weights drawn at {@code queryInit} times {@code nn.Linear}'s
     * scale ({@link Bridge#init(int, int, int, double, Generator, ScalarType)}; 0 = zeros). W_O = 0 either way.
     */
    public static CalmModel create(CausalLm anchor, List<CausalLm> augments, CompositionPlan plan, Mode mode,
                                   int heads, double queryInit, long seed) {
        return create(anchor, augments, plan, mode, heads, queryInit, seed, new boolean[augments.size()]);
    }

    /** As above, with the augments that read the text through their own tokenizers ({@code ownTokens}). */
    public static CalmModel create(CausalLm anchor, List<CausalLm> augments, CompositionPlan plan, Mode mode,
                                   int heads, double queryInit, long seed, boolean[] ownTokens) {
        return create(anchor, augments, plan, mode, heads, queryInit, false, seed, ownTokens);
    }

    /** As above, with every bridge's cross-attention carrying the recency bias or not ({@link Bridge#recency()}). */
    public static CalmModel create(CausalLm anchor, List<CausalLm> augments, CompositionPlan plan, Mode mode,
                                   int heads, double queryInit, boolean recency, long seed, boolean[] ownTokens) {
        plan.check(anchor.config(), augments.stream().map(CausalLm::config).toList(), null, heads, mode, ownTokens);
        Generator g = org.bytedeco.pytorch.global.torch.createCPUGenerator(seed);
        List<Bridge> bridges = new ArrayList<>();
        for (Connection c : plan.connections()) {
            // float32 master weights whatever the models compute in (Bridge#as): trained and saved in float32
            bridges.add(Bridge.init(augments.get(c.augment()).hiddenSize(), anchor.hiddenSize(), heads, queryInit,
                    recency, g, Bridge.masterDtype(anchor.computeDtype())));
        }
        return new CalmModel(anchor, augments, plan, bridges, mode, heads, ownTokens);
    }

    /**
     * What an augment reads when not the anchor's ids: right-padded ids {@code [B, S]} and which are real (null = all).
     * In SEPARATE_PROMPT mode, its own prompt, which every anchor position sees whole. In SAME_SEQUENCE mode, the same
     * text as the anchor cut by the augment's own tokenizer, with the {@code cross} mask of
     * {@link TextAlignment#crossMask} saying which of its tokens each anchor token may see (null otherwise). While
     * decoding with a cache, {@code ids} are only the tokens after those the augment's cache holds ({@code [B, S_new]},
     * right-padded), and {@code real} ({@code [B, held+S_new]}) and {@code cross} ({@code [B, 1, T, held+S_new]})
     * cover the held ones too.
     */
    public record AugmentPrompt(Tensor ids, Tensor real, Bridge.CrossMask cross) {
        public AugmentPrompt(Tensor ids, Tensor real) {
            this(ids, real, null);
        }
    }

    /**
     * Anchor hidden states {@code [B, T, D_B]} of the composition for anchor ids {@code [B, T]}.
     *
     * @param keyPadding boolean {@code [B, past+T]} (true = real token) or null when no row is padded
     * @param prompts per augment, what it reads in SEPARATE_PROMPT mode; in SAME_SEQUENCE mode null, or per augment
     *     null (it reads the anchor's ids: a shared tokenizer) or its own tokenization of the text ({@link AugmentPrompt})
     * @param cache every model's and bridge's cache for incremental decoding, or null
     */
    public Tensor hidden(Tensor ids, Tensor keyPadding, List<AugmentPrompt> prompts, CalmCache cache) {
        return hidden(ids, keyPadding, prompts, cache, null);
    }

    /**
     * The states of a batch that no bridge influences, computed by the caller: the models are frozen, so a trainer may
     * compute each row's once ({@link dev.calm4j.train.FrozenStateCache}).
     *
     * @param augments per augment, its connected layers' states {@code [B, T_a, D_a]} by layer (what
     *     {@link CalmModel#augmentStates} returns for the same input; null for an augment without connections)
     * @param anchorBelow the anchor's output of block {@link #lowestBridgedLayer()} {@code [B, T, D_B]}, before any
     *     bridge adds to it (what {@link CalmModel#anchorBelow(Tensor, Tensor)} returns), or null to run the anchor from its embedding
     */
    public record Given(List<Map<Integer, Tensor>> augments, Tensor anchorBelow) {}

    /**
     * As {@link #hidden(Tensor, Tensor, List, CalmCache)}, with the frozen models' bridge-independent states given
     * instead of computed here (only without a decoding cache), or null to compute everything.
     */
    public Tensor hidden(Tensor ids, Tensor keyPadding, List<AugmentPrompt> prompts, CalmCache cache, Given given) {
        long past = cache == null ? 0 : cache.anchor().length();
        long t = ids.size(1);
        if (mode == Mode.SEPARATE_PROMPT && (prompts == null || prompts.size() != augments.size())) {
            throw new IllegalArgumentException("separate_prompt mode needs one prompt per augmenting model");
        }
        if (given != null) {
            checkGiven(given, ids, prompts, cache);
        }

        // 1. Every bridge's keys and values, from its augment's layer states.
        Tensor[][] kv = new Tensor[plan.size()][];
        Bridge.CrossMask[] cross = new Bridge.CrossMask[augments.size()];
        for (int a = 0; a < augments.size(); a++) {
            if (plan.deepestAugmentLayer(a) < 0) {
                continue;
            }
            AugmentPrompt own = mode == Mode.SAME_SEQUENCE && prompts != null ? prompts.get(a) : null;
            if (own == null && mode == Mode.SAME_SEQUENCE && ownTokens[a]) {
                throw new IllegalArgumentException("augment " + a + " reads the text through its own tokenizer: give its "
                        + "tokens and cross mask (AugmentPrompt)");
            }
            if (own != null) {
                // The same text through the augment's own tokenizer: its tokens, and which of them each anchor token
                // may see (by where their spans end in the text).
                if (cache == null) {
                    Map<Integer, Tensor> states = given != null ? given.augments().get(a) : augmentStates(a, own.ids(), own.real(), null);
                    for (int k = 0; k < plan.size(); k++) {
                        if (plan.get(k).augment() == a) {
                            kv[k] = bridges.get(k).keysValues(states.get(plan.get(k).augmentLayer()));   // [B, H, S, hd]
                        }
                    }
                } else {
                    // Decoding: own.ids() are the tokens after those the augment's cache holds (the caller dropped
                    // the ones that re-tokenizing the grown text changed, truncate()), and the cross mask covers
                    // every held and new one.
                    int held = cache.augment(a).length();
                    int fresh = (int) own.ids().size(1);
                    checkOwnDecoding(a, own, cache, held, fresh, ids.size(0), t);
                    Map<Integer, Tensor> states = null;
                    if (fresh > 0) {
                        // How many tokens a growing text gives is not known in advance: room is made as they come.
                        for (int i = 0; i <= plan.deepestAugmentLayer(a); i++) {    // deeper blocks never run
                            cache.augment(a).layer(i).reserve(held + fresh);
                        }
                        states = augmentStates(a, own.ids(), own.real(), cache.augment(a));
                    }
                    for (int k = 0; k < plan.size(); k++) {
                        if (plan.get(k).augment() != a) {
                            continue;
                        }
                        KvCache.Layer bridgeCache = cache.bridges().layer(k);
                        if (fresh == 0) {
                            kv[k] = bridgeCache.held();             // the text gave it no new token: nothing to add
                        } else {
                            Tensor[] add = bridges.get(k).keysValues(states.get(plan.get(k).augmentLayer()));
                            bridgeCache.reserve(held + fresh);
                            kv[k] = bridgeCache.append(add[0], add[1]);                              // [B, H, S, hd]
                        }
                    }
                }
                cross[a] = own.cross();
            } else if (mode == Mode.SAME_SEQUENCE) {
                Map<Integer, Tensor> states = given != null ? given.augments().get(a)
                        : augmentStates(a, ids, keyPadding, cache == null ? null : cache.augment(a));
                for (int k = 0; k < plan.size(); k++) {
                    if (plan.get(k).augment() == a) {
                        kv[k] = bridges.get(k).keysValues(states.get(plan.get(k).augmentLayer()));   // [B, H, T, hd]
                        if (cache != null) {
                            kv[k] = cache.bridges().layer(k).append(kv[k][0], kv[k][1]);           // [B, H, past+T, hd]
                        }
                    }
                }
                cross[a] = sameSequenceMask(past, t, keyPadding);
            } else {
                AugmentPrompt p = prompts.get(a);
                boolean reuse = cache != null && cache.bridges().layer(firstBridgeOf(a)).length() > 0;
                Map<Integer, Tensor> states = reuse ? null : given != null ? given.augments().get(a) : augmentStates(a, p.ids(), null, null);
                for (int k = 0; k < plan.size(); k++) {
                    if (plan.get(k).augment() != a) {
                        continue;
                    }
                    if (reuse) {
                        kv[k] = cache.bridges().layer(k).held();                                  // computed once
                    } else {
                        kv[k] = bridges.get(k).keysValues(states.get(plan.get(k).augmentLayer()));   // [B, H, S, hd]
                        if (cache != null) {
                            kv[k] = cache.bridges().layer(k).append(kv[k][0], kv[k][1]);
                        }
                    }
                }
                // Right-padded augment: causal self-attention keeps real positions clean; the cross mask drops pads.
                cross[a] = p.real() == null ? Bridge.CrossMask.NONE
                        : new Bridge.CrossMask(p.real().view(p.real().size(0), 1, 1, p.real().size(1)), false);
            }
        }

        // 2. The anchor, block by block; after block j, every bridge into layer j adds its cross-attention.
        AttentionContext ctx = anchor.context(past, t, keyPadding);
        boolean below = given != null && given.anchorBelow() != null;
        Tensor h = below ? given.anchorBelow() : anchor.embed(ids);                             // [B, T, D_B]
        for (int j = 0; j < anchor.numLayers(); j++) {
            if (!below || j > lowestBridged) {                                                  // given: blocks 0..lowest ran
                h = anchor.layer(j, h, ctx, cache == null ? null : cache.anchor().layer(j));   // output of block j
            }
            for (int k : bridgesAfter.get(j)) {
                h = bridges.get(k).apply(h, kv[k][0], kv[k][1], cross[plan.get(k).augment()]);   // input of block j+1
            }
        }
        return h;
    }

    /** The lowest anchor layer a bridge writes after: blocks 0..it run as in the anchor alone. */
    public int lowestBridgedLayer() {
        return lowestBridged;
    }

    /**
     * The anchor's output of block {@link #lowestBridgedLayer()} {@code [B, T, D_B]} for ids {@code [B, T]}, computed
     * without gradient: no bridge changes it.
     */
    public Tensor anchorBelow(Tensor ids, Tensor keyPadding) {
        try (NoGradGuard ng = new NoGradGuard()) {
            AttentionContext ctx = anchor.context(0, ids.size(1), keyPadding);
            Tensor h = anchor.embed(ids);
            for (int j = 0; j <= lowestBridged; j++) {
                h = anchor.layer(j, h, ctx, null);
            }
            return h;
        }
    }

    /** Logits {@code [B, T, V]} of the composition (the anchor's head). */
    public Tensor forward(Tensor ids, Tensor keyPadding, List<AugmentPrompt> prompts, CalmCache cache) {
        return anchor.logits(hidden(ids, keyPadding, prompts, cache));
    }

    /** As {@link #forward(Tensor, Tensor, List, CalmCache)}, with the frozen states given (see {@link #hidden}). */
    public Tensor forwardGiven(Tensor ids, Tensor keyPadding, List<AugmentPrompt> prompts, Given given) {
        return anchor.logits(hidden(ids, keyPadding, prompts, null, given));
    }

    /**
     * An own-token augment's decoding input, checked in Java (a wrong shape would reach libtorch's kernels): its cache
     * and its bridges' hold the same positions, and the cross mask and real-token mask cover held and new ones.
     */
    private void checkOwnDecoding(int a, AugmentPrompt own, CalmCache cache, int held, int fresh, long batch, long t) {
        for (int k = 0; k < plan.size(); k++) {
            if (plan.get(k).augment() == a && cache.bridges().layer(k).length() != held) {
                throw new IllegalStateException("augment " + a + ": its cache holds " + held + " tokens but bridge " + k
                        + " holds " + cache.bridges().layer(k).length() + " (truncate both: CalmModel.truncate)");
            }
        }
        if (held + fresh == 0) {
            throw new IllegalArgumentException("augment " + a + ": no token to read (the text gave none)");
        }
        if (own.ids().size(0) != batch) {
            throw new IllegalArgumentException("augment " + a + ": " + own.ids().size(0) + " rows for a batch of " + batch);
        }
        Tensor m = own.cross() == null ? null : own.cross().mask();
        if (m == null || m.dim() != 4 || m.size(2) != t || m.size(3) != held + fresh) {
            throw new IllegalArgumentException("augment " + a + ": while decoding, the cross mask must be [B, 1, " + t
                    + ", " + (held + fresh) + "] (each new anchor token over every held and new augment token), got "
                    + (m == null ? "none" : java.util.Arrays.toString(m.sizes().vec().get())));
        }
        if (own.real() != null && (own.real().dim() != 2 || own.real().size(1) != held + fresh)) {
            throw new IllegalArgumentException("augment " + a + ": while decoding, its real-token mask must be [B, "
                    + (held + fresh) + "] (held and new tokens), got " + java.util.Arrays.toString(own.real().sizes().vec().get()));
        }
    }

    /**
     * Drops the newest positions of a decoding cache so that decoding resumes from an earlier point: an own-token
     * augment whose re-tokenized text changed at its tail re-reads it from there, and anchor positions that must see
     * other augment tokens than before are recomputed ({@link dev.calm4j.generate.AlignedCalmSession}).
     *
     * @param anchorLength anchor positions to keep; an augment that reads the anchor's ids keeps as many, and so do
     *     its bridges (in {@code separate_prompt} mode the bridges keep their prompt's keys and values)
     * @param augmentLengths per augment, how many tokens an augment that reads its own tokens keeps (its bridges too);
     *     other entries are ignored; may be null when no augment reads its own tokens
     * @throws IllegalArgumentException when a length is negative or more than the cache holds
     */
    public void truncate(CalmCache cache, int anchorLength, int[] augmentLengths) {
        boolean anyOwn = false;
        for (int a = 0; a < augments.size(); a++) {
            anyOwn |= mode == Mode.SAME_SEQUENCE && ownTokens[a];
        }
        if (anyOwn && (augmentLengths == null || augmentLengths.length != augments.size())) {
            throw new IllegalArgumentException("truncate: give one length per augment ("
                    + augments.size() + "), got " + (augmentLengths == null ? "none" : augmentLengths.length));
        }
        cache.anchor().truncate(anchorLength);
        if (mode != Mode.SAME_SEQUENCE) {
            return;
        }
        for (int a = 0; a < augments.size(); a++) {
            int keep = ownTokens[a] ? augmentLengths[a] : anchorLength;
            for (int i = 0; i <= plan.deepestAugmentLayer(a); i++) {      // deeper blocks never run, hold nothing
                cache.augment(a).layer(i).truncate(keep);
            }
            for (int k = 0; k < plan.size(); k++) {
                if (plan.get(k).augment() == a) {
                    cache.bridges().layer(k).truncate(keep);
                }
            }
        }
    }

    /** Shapes of caller-given states, checked in Java: a wrong one would reach libtorch's kernels. */
    private void checkGiven(Given given, Tensor ids, List<AugmentPrompt> prompts, CalmCache cache) {
        if (cache != null) {
            throw new IllegalArgumentException("frozen states can be given only without a decoding cache");
        }
        if (given.augments() == null || given.augments().size() != augments.size()) {
            throw new IllegalArgumentException("augment states for " + (given.augments() == null ? 0 : given.augments().size())
                    + " augments, expected " + augments.size());
        }
        for (int k = 0; k < plan.size(); k++) {
            int a = plan.get(k).augment();
            int layer = plan.get(k).augmentLayer();
            Tensor s = given.augments().get(a) == null ? null : given.augments().get(a).get(layer);
            if (s == null) {
                throw new IllegalArgumentException("augment " + a + ": no states given for layer " + layer);
            }
            boolean own = prompts != null && prompts.get(a) != null;
            long t = own ? prompts.get(a).ids().size(1) : ids.size(1);
            checkShape(s, "augment " + a + " layer " + layer, ids.size(0), t, augments.get(a).hiddenSize());
        }
        if (given.anchorBelow() != null) {
            checkShape(given.anchorBelow(), "anchor block " + lowestBridgedLayer(), ids.size(0), ids.size(1), anchor.hiddenSize());
        }
    }

    private static void checkShape(Tensor s, String what, long... want) {
        long[] got = s.sizes().vec().get();
        if (!java.util.Arrays.equals(want, got)) {
            throw new IllegalArgumentException(what + ": states of shape " + java.util.Arrays.toString(got)
                    + ", expected " + java.util.Arrays.toString(want));
        }
    }

    public Tensor logits(Tensor h) {
        return anchor.logits(h);
    }

    /**
     * Augment {@code a}'s connected layers' outputs {@code [B, T, D_a]} by layer, for its input ids {@code [B, T]}
     * (right-padded, or {@code keyPadding} saying which are real), computed without gradient.
     */
    public Map<Integer, Tensor> augmentStates(int a, Tensor ids, Tensor keyPadding) {
        if (a < 0 || a >= augments.size()) {
            throw new IllegalArgumentException("augment " + a + ": expected 0.." + (augments.size() - 1));
        }
        return augmentStates(a, ids, keyPadding, null);
    }

    /** The connected augment layers' outputs, computed without gradient and without running deeper blocks. */
    private Map<Integer, Tensor> augmentStates(int a, Tensor ids, Tensor keyPadding, KvCache cache) {
        CausalLm m = augments.get(a);
        int deepest = plan.deepestAugmentLayer(a);
        Map<Integer, Tensor> out = new HashMap<>();
        try (NoGradGuard ng = new NoGradGuard()) {
            long past = cache == null ? 0 : cache.length();
            AttentionContext ctx = m.context(past, ids.size(1), keyPadding);
            Tensor h = m.embed(ids);
            for (int i = 0; i <= deepest; i++) {
                h = m.layer(i, h, ctx, cache == null ? null : cache.layer(i));
                out.put(i, h);
            }
        }
        return out;
    }

    /**
     * Same-sequence cross mask: anchor position {@code past+q} sees augment positions {@code <= past+q} that are real
     * tokens (the self-attention rule without any sliding window).
     */
    private static Bridge.CrossMask sameSequenceMask(long past, long t, Tensor keyPadding) {
        if (keyPadding == null && past == 0 && t > 1) {
            return new Bridge.CrossMask(null, true);
        }
        if (keyPadding == null && t == 1) {
            return Bridge.CrossMask.NONE;                    // one new query sees every cached position
        }
        return new Bridge.CrossMask(AttentionContext.buildMask(past, t, keyPadding, 0), false);
    }

    private int firstBridgeOf(int a) {
        for (int k = 0; k < plan.size(); k++) {
            if (plan.get(k).augment() == a) {
                return k;
            }
        }
        throw new IllegalStateException();
    }

    /** A cache for {@code batch} rows and up to {@code maxLength} anchor positions (create outside a PointerScope). */
    public CalmCache newCache(long batch, int maxLength, int[] promptLengths) {
        List<KvCache> aug = new ArrayList<>();
        for (int a = 0; a < augments.size(); a++) {
            int len = mode == Mode.SAME_SEQUENCE ? maxLength : 1;     // separate prompts run once, without a cache
            aug.add(augments.get(a).newCache(batch, Math.max(1, len)));
        }
        // One "layer" per bridge: its keys/values over augment positions.
        int bridgeLen = maxLength;
        if (mode == Mode.SEPARATE_PROMPT) {
            bridgeLen = 1;
            for (int l : promptLengths) {
                bridgeLen = Math.max(bridgeLen, l);
            }
        }
        KvCache bridgeCache = new KvCache(plan.size(), batch, heads, bridgeLen, anchor.hiddenSize() / heads,
                anchor.computeDtype());
        return new CalmCache(anchor.newCache(batch, maxLength), aug, bridgeCache);
    }

    /** Bridge tensors under their checkpoint names {@code bridges.{k}.proj.weight} …, k in plan order. */
    public Map<String, Tensor> bridgeTensors() {
        Map<String, Tensor> m = new LinkedHashMap<>();
        for (int k = 0; k < bridges.size(); k++) {
            for (Map.Entry<String, Tensor> e : bridges.get(k).named().entrySet()) {
                m.put("bridges." + k + "." + e.getKey(), e.getValue());
            }
        }
        return m;
    }

    public long bridgeParameterCount() {
        return bridges.stream().mapToLong(Bridge::parameterCount).sum();
    }

    public CausalLm anchor() {
        return anchor;
    }

    public List<CausalLm> augments() {
        return augments;
    }

    public CompositionPlan plan() {
        return plan;
    }

    public List<Bridge> bridges() {
        return bridges;
    }

    public Mode mode() {
        return mode;
    }

    public int heads() {
        return heads;
    }

    /** Whether augment {@code a} reads the text through its own tokenizer instead of the anchor's ids. */
    public boolean ownTokens(int a) {
        return ownTokens[a];
    }

    public ScalarType computeDtype() {
        return anchor.computeDtype();
    }

    /** Frees the bridges only; the base models belong to whoever loaded them. */
    @Override
    public void close() {
        bridges.forEach(Bridge::close);
    }

    /** Both models' KV caches and every bridge's keys/values; never shared between models. */
    public record CalmCache(KvCache anchor, List<KvCache> augments, KvCache bridges) implements AutoCloseable {
        public KvCache augment(int a) {
            return augments.get(a);
        }

        @Override
        public void close() {
            anchor.close();
            augments.forEach(KvCache::close);
            bridges.close();
        }
    }
}
