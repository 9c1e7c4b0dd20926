package dev.calm4j.lm;

import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.Map;

/**
 * A decoder-only causal language model, opened up so that composition can be written around it: the forward is
 * {@link #embed}, then {@link #layer} for i = 0..L-1 (each returns <em>the output of block i</em>, 0-based), then
 * {@link #logits}. {@link #forward} is exactly that loop.
 */
public interface CausalLm extends AutoCloseable {

    ModelConfig config();

    default int numLayers() {
        return config().numHiddenLayers();
    }

    default int hiddenSize() {
        return config().hiddenSize();
    }

    /** The dtype activations are computed in (weights are held in it too). */
    ScalarType computeDtype();

    /**
     * The attention geometry for {@code t} new positions after {@code past} cached ones.
     *
     * @param keyPadding boolean {@code [B, past+t]}, true = a real token, or null when no row is padded
     */
    AttentionContext context(long past, long t, Tensor keyPadding);

    /** {@code ids [B, T] (int64) -> [B, T, D]}. */
    Tensor embed(Tensor ids);

    /** Block {@code i}: {@code h [B, T, D] -> [B, T, D]}, appending to {@code cache} when it is not null. */
    Tensor layer(int i, Tensor h, AttentionContext ctx, KvCache.Layer cache);

    /** Final norm and output head: {@code [B, T, D] -> [B, T, V]}. */
    Tensor logits(Tensor h);

    /** A cache for {@code batch} rows of up to {@code maxLength} positions (create outside a PointerScope). */
    KvCache newCache(long batch, int maxLength);

    /** Every weight under its Hugging Face name, in checkpoint order. */
    Map<String, Tensor> namedWeights();

    /** Final hidden states for {@code ids [B, T]}: embed, every block. With a cache, positions continue after it. */
    default Tensor hidden(Tensor ids, Tensor keyPadding, KvCache cache) {
        long past = cache == null ? 0 : cache.length();
        AttentionContext ctx = context(past, ids.size(1), keyPadding);
        Tensor h = embed(ids);                                              // [B, T, D]
        for (int i = 0; i < numLayers(); i++) {
            h = layer(i, h, ctx, cache == null ? null : cache.layer(i));   // output of block i
        }
        return h;
    }

    /** Logits {@code [B, T, V]} for {@code ids [B, T]}; keyPadding and cache may be null. */
    default Tensor forward(Tensor ids, Tensor keyPadding, KvCache cache) {
        return logits(hidden(ids, keyPadding, cache));
    }

    default Tensor forward(Tensor ids) {
        return forward(ids, null, null);
    }

    @Override
    void close();
}
