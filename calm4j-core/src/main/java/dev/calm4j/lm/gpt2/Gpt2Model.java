package dev.calm4j.lm.gpt2;

import dev.calm4j.Calm4jException;
import dev.calm4j.lm.AttentionContext;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.KvCache;
import dev.calm4j.nn.Ops;
import dev.calm4j.nn.Scoped;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.ScalarTypeOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.Map;

import static org.bytedeco.pytorch.global.torch.arange;
import static org.bytedeco.pytorch.global.torch.embedding;
import static org.bytedeco.pytorch.global.torch.relu;

/**
 * The GPT-2 decoder (HF {@code GPT2LMHeadModel}): learned absolute positions, LayerNorm with bias, GELU MLP.
 *
 * <pre>
 *   h = wte(ids)                                                        [B, T, D]
 *   for each block i:  (block 0 first adds wpe(positions))
 *                      q | k | v = c_attn(ln_1(h));  h = h + c_proj(attn(q, k, v))
 *                      h = h + mlp.c_proj(act(mlp.c_fc(ln_2(h))))               -> "layer i" = this h
 *   logits = head(ln_f(h))                        head = wte when tied  [B, T, V]
 * </pre>
 *
 * <p>Why the position embedding is added as block 0 begins rather than in {@link #embed}: a token's position depends
 * on the call's geometry (the positions already cached, and with left padding the real tokens before it), which
 * only the {@link AttentionContext} knows, and {@code embed} sees only the ids. Every caller feeds {@code embed}'s
 * output to block 0 alone, so the sum is the same and {@code layer(0)} returns exactly HF's block-0 output; only
 * {@code embed} itself is the token embedding without the position one.
 */
public final class Gpt2Model implements CausalLm {
    private final Gpt2Config config;
    private final Gpt2Weights weights;
    private final ScalarType dtype;

    public Gpt2Model(Gpt2Config config, Gpt2Weights weights, ScalarType dtype) {
        this.config = config;
        this.weights = weights;
        this.dtype = dtype;
    }

    @Override
    public Gpt2Config config() {
        return config;
    }

    public Gpt2Weights weights() {
        return weights;
    }

    @Override
    public ScalarType computeDtype() {
        return dtype;
    }

    @Override
    public Map<String, Tensor> namedWeights() {
        return weights.named();
    }

    /**
     * Causal (and padding) masks as Llama's; no rotary tables (cos and sin are null). Refuses a call whose positions
     * run past {@code n_positions}: the position table has no row for them.
     */
    @Override
    public AttentionContext context(long past, long t, Tensor keyPadding) {
        long last = past + t - 1;                                        // the highest position of the call
        if (keyPadding != null) {                                        // left-padded rows: real tokens before - 1
            last = keyPadding.to(ScalarType.Long).sum(new long[] {1}, false, new ScalarTypeOptional()).max().item_long() - 1;
        }
        if (last >= config.maxPositionEmbeddings()) {
            throw new Calm4jException("sequence position " + last + " exceeds GPT-2's n_positions ("
                    + config.maxPositionEmbeddings() + " learned positions, 0.." + (config.maxPositionEmbeddings() - 1) + ")");
        }
        Tensor mask = null;
        boolean causal = false;
        if (keyPadding != null || (t > 1 && past > 0)) {
            mask = AttentionContext.buildMask(past, t, keyPadding, 0);
        } else if (t > 1) {
            causal = true;                                               // plain causal, the kernel's fast path
        }
        return new AttentionContext(past, t, mask, causal, null, null);
    }

    /**
     * Positions {@code [B|1, T]} of the call's tokens: {@code past..past+T-1}, or, when a mask is given, the keys
     * each query sees minus one. A query sees exactly the real tokens up to itself (and itself), so that count - 1
     * is its position as HF generate numbers left-padded rows ({@code cumsum(attention_mask) - 1}); a padding query
     * gets the count of real tokens before it, where HF puts 1, which changes nothing: no real token attends to it.
     */
    private static Tensor positions(AttentionContext ctx) {
        long t = ctx.length();
        if (ctx.mask() == null) {
            return arange(new Scalar(ctx.past()), new Scalar(ctx.past() + t), new TensorOptions(ScalarType.Long)).view(1, t);
        }
        Tensor seen = ctx.mask().sum(new long[] {-1}, false, new ScalarTypeOptional(ScalarType.Long));   // [B|1, 1, T]
        return seen.sub(new Scalar(1)).view(ctx.mask().size(0), t);
    }

    @Override
    public Tensor embed(Tensor ids) {
        return embedding(weights.wte(), ids);                                           // [B, T, D]
    }

    @Override
    public Tensor layer(int i, Tensor h, AttentionContext ctx, KvCache.Layer cache) {
        return Scoped.keep(() -> block(i, h, ctx, cache));           // intermediates freed when the block returns
    }

    private Tensor block(int i, Tensor h, AttentionContext ctx, KvCache.Layer cache) {
        Gpt2Weights.Block w = weights.block(i);
        double eps = config.layerNormEpsilon();
        int heads = config.numAttentionHeads();
        long d = config.hiddenSize();
        if (i == 0) {
            h = h.add(embedding(weights.wpe(), positions(ctx)));                        // [B, T, D]
        }
        if (cache != null && cache.length() != ctx.past()) {
            throw new IllegalStateException("layer " + i + ": cache holds " + cache.length()
                    + " positions but the context says " + ctx.past());
        }

        Tensor x = Ops.layerNorm(h, w.ln1(), w.ln1Bias(), eps);                          // [B, T, D]
        Tensor qkv = conv1d(x, w.attn(), w.attnBias());                                 // [B, T, 3D]: q | k | v
        Tensor q = Ops.splitHeads(qkv.narrow(-1, 0, d), heads);                         // [B, H, T, hd]
        Tensor k = Ops.splitHeads(qkv.narrow(-1, d, d), heads);
        Tensor v = Ops.splitHeads(qkv.narrow(-1, 2 * d, d), heads);
        if (cache != null) {
            Tensor[] kv = cache.append(k, v);                                            // [B, H, past+T, hd]
            k = kv[0];
            v = kv[1];
        }
        Tensor a = Ops.attention(q, k, v, ctx.mask(), ctx.causal(), false, config.attentionScale(i));   // [B, H, T, hd]
        h = h.add(conv1d(Ops.mergeHeads(a), w.attnProj(), w.attnProjBias()));           // [B, T, D]

        x = Ops.layerNorm(h, w.ln2(), w.ln2Bias(), eps);
        Tensor f = conv1d(x, w.fc(), w.fcBias());                                       // [B, T, F]
        f = config.activation().equals("relu") ? relu(f) : Ops.gelu(f, config.geluTanh());
        return h.add(conv1d(f, w.mlpProj(), w.mlpProjBias()));                          // [B, T, D]
    }

    /**
     * HF's {@code Conv1D}: {@code x W + b} with {@code W} stored {@code [in, out]}. {@code W.t()} is a view (the
     * kernels read the stored layout, no copy), taken per call so that gradients reach the stored tensor.
     */
    private static Tensor conv1d(Tensor x, Tensor w, Tensor b) {
        return Ops.linear(x, w.t(), b);
    }

    @Override
    public Tensor logits(Tensor h) {
        return Scoped.keep(() -> Ops.linear(Ops.layerNorm(h, weights.lnF(), weights.lnFBias(), config.layerNormEpsilon()),
                weights.lmHead(), null));                                                  // [B, T, V]
    }

    @Override
    public KvCache newCache(long batch, int maxLength) {
        return new KvCache(config.numHiddenLayers(), batch, config.numAttentionHeads(), maxLength, config.headDim(), dtype);
    }

    @Override
    public void close() {
        weights.close();
    }
}
