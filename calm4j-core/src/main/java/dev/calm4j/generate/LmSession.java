package dev.calm4j.generate;

import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.KvCache;
import dev.calm4j.nn.Tensors;
import org.bytedeco.pytorch.Tensor;

/**
 * A session over one causal LM: with a KV cache (normal decoding) or by full recomputation of every position at
 * every step (the reference that cached decoding is tested against).
 */
public final class LmSession implements Session {
    private final CausalLm model;
    private final KvCache cache;       // null in recompute mode
    private long[] history;            // recompute mode: every id so far, row-major [B, length]
    private long batch;
    private int length;

    private LmSession(CausalLm model, KvCache cache) {
        this.model = model;
        this.cache = cache;
    }

    /** Create outside any PointerScope: the cache lives as long as the session. */
    public static LmSession cached(CausalLm model, long batch, int maxLength) {
        return new LmSession(model, model.newCache(batch, maxLength));
    }

    public static LmSession recompute(CausalLm model) {
        return new LmSession(model, null);
    }

    @Override
    public Tensor advance(Tensor ids, Tensor keyPadding) {
        long b = ids.size(0);
        long t = ids.size(1);
        Tensor h;
        if (cache != null) {
            h = model.hidden(ids, keyPadding, cache);                             // [B, t, D]
        } else {
            // Keep the ids in Java and rebuild [B, S] each step: no tensor has to outlive a caller's scope.
            long[] add = Tensors.toLongs(ids);
            long[] all = new long[(int) (b * (length + t))];
            for (int r = 0; r < b; r++) {
                if (length > 0) {
                    System.arraycopy(history, r * length, all, (int) (r * (length + t)), length);
                }
                System.arraycopy(add, (int) (r * t), all, (int) (r * (length + t) + length), (int) t);
            }
            history = all;
            batch = b;
            h = model.hidden(Tensors.longs(all, b, length + t), keyPadding, null);   // [B, S, D]
        }
        length += (int) t;
        return model.logits(h.narrow(1, h.size(1) - 1, 1)).squeeze(1);              // [B, V]
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
