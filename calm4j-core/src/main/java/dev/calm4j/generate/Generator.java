package dev.calm4j.generate;

import dev.calm4j.Calm4jException;
import dev.calm4j.nn.Tensors;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * Autoregressive generation for a batch of prompts of any lengths. Shorter prompts are left-padded (so every row's
 * next token sits in the last column) and the padding is masked out of attention and of rotary positions, so a
 * row's output does not depend on the other rows.
 */
public final class Generator {
    private Generator() {}

    /**
     * @param maxNewTokens stop a row after this many new tokens
     * @param stopIds a row stops after emitting one of these (included in its output); empty = never
     * @param keepLogits record every step's logits (tests compare them); costs B x V floats per step
     */
    public record Options(int maxNewTokens, Sampler sampler, Set<Integer> stopIds, boolean keepLogits) {
        public Options {
            if (maxNewTokens < 0) {
                throw new Calm4jException("--max-new-tokens must be >= 0, got " + maxNewTokens);
            }
            stopIds = Set.copyOf(stopIds);
        }
    }

    /**
     * @param generated new ids per row (EOS included when it stopped a row)
     * @param stepLogits per step, [B][V] (only with keepLogits)
     * @param prefillSeconds time of the first forward over the prompts (the prompt pass and the first new token)
     * @param decodeSeconds time of every later step
     */
    public record Result(List<long[]> generated, List<float[][]> stepLogits, double prefillSeconds,
                         double decodeSeconds, int promptTokens, int decodeSteps) {
        public int newTokens() {
            return generated.stream().mapToInt(g -> g.length).sum();
        }
    }

    /** Called for each new token, as soon as it is chosen (streaming). */
    public interface Listener {
        void onToken(int row, long id);
    }

    public interface SessionFactory {
        Session open(long batch, int maxLength);
    }

    /** Decides, after each new token, whether a row is finished (e.g. its text now holds a stop string). */
    public interface StopRule {
        /** @param generated the row's new ids so far, the latest last */
        boolean stop(int row, long[] generated);
    }

    /**
     * {@code ids} with {@code bos} in front, unless they already start with it or {@code bos} is negative (the model
     * has none): a prompt as the data rules shape it ({@link dev.calm4j.data.DataRules#bosId()}).
     */
    public static long[] withBos(long[] ids, int bos) {
        if (bos < 0 || (ids.length > 0 && ids[0] == bos)) {
            return ids;
        }
        long[] out = new long[ids.length + 1];
        out[0] = bos;
        System.arraycopy(ids, 0, out, 1, ids.length);
        return out;
    }

    public static Result generate(SessionFactory factory, List<long[]> prompts, int vocabSize, int maxPositions,
                                  Options opt, Listener listener) {
        return generate(factory, prompts, vocabSize, maxPositions, opt, listener, null);
    }

    /** As {@link #generate(SessionFactory, List, int, int, Options, Listener)}, a row also stopping where {@code stop} says. */
    public static Result generate(SessionFactory factory, List<long[]> prompts, int vocabSize, int maxPositions,
                                  Options opt, Listener listener, StopRule stop) {
        int b = prompts.size();
        if (b == 0) {
            throw new Calm4jException("no prompt given");
        }
        int longest = 0;
        int total = 0;
        for (int r = 0; r < b; r++) {
            long[] p = prompts.get(r);
            if (p.length == 0) {
                throw new Calm4jException("prompt " + r + " is empty (give at least one token, e.g. BOS)");
            }
            for (long id : p) {
                if (id < 0 || id >= vocabSize) {
                    throw new Calm4jException("prompt " + r + ": token id " + id + " is outside the vocabulary [0, "
                            + vocabSize + ")");
                }
            }
            longest = Math.max(longest, p.length);
            total += p.length;
        }
        int maxLength = longest + Math.max(opt.maxNewTokens(), 1);
        if (maxLength > maxPositions) {
            throw new Calm4jException("prompt (" + longest + " tokens) + max new tokens (" + opt.maxNewTokens()
                    + ") exceeds the model's max_position_embeddings (" + maxPositions + ")");
        }
        boolean padded = prompts.stream().anyMatch(p -> p.length != prompts.get(0).length);

        // Left-pad: row r's prompt ends in the last column. Pad id 0 is never seen (masked).
        long[] ids = new long[b * longest];
        List<Boolean> realCols = new ArrayList<>();
        boolean[][] real = new boolean[b][maxLength];
        for (int r = 0; r < b; r++) {
            long[] p = prompts.get(r);
            int off = longest - p.length;
            System.arraycopy(p, 0, ids, r * longest + off, p.length);
            for (int c = off; c < longest; c++) {
                real[r][c] = true;
            }
        }
        List<long[]> out = new ArrayList<>();
        List<List<Long>> rows = new ArrayList<>();
        for (int r = 0; r < b; r++) {
            rows.add(new ArrayList<>());
        }
        boolean[] done = new boolean[b];
        List<float[][]> logitsLog = new ArrayList<>();
        double prefill = 0;
        double decode = 0;
        int steps = 0;
        if (opt.maxNewTokens() == 0) {
            for (int r = 0; r < b; r++) {
                out.add(new long[0]);
            }
            return new Result(out, logitsLog, 0, 0, total, 0);
        }
        try (Session session = factory.open(b, maxLength); NoGradGuard ng = new NoGradGuard()) {
            long[] step = ids;
            int stepLen = longest;
            int length = 0;
            while (true) {
                long t0 = System.nanoTime();
                float[] flat;
                try (PointerScope scope = new PointerScope()) {
                    Tensor input = Tensors.longs(step, b, stepLen);
                    Tensor pad = null;
                    if (padded) {
                        boolean[] m = new boolean[b * (length + stepLen)];
                        for (int r = 0; r < b; r++) {
                            for (int c = 0; c < length + stepLen; c++) {
                                m[r * (length + stepLen) + c] = real[r][c];
                            }
                        }
                        pad = Tensors.bools(m, b, length + stepLen);
                    }
                    flat = Tensors.toFloats(session.advance(input, pad));       // [B * V]
                }
                double secs = (System.nanoTime() - t0) / 1e9;
                if (steps == 0) {
                    // once, on the prompt's logits: what is finite there stays finite for the next tokens unless
                    // the weights overflow, and checking every step would cost a pass over B x V per token
                    for (float x : flat) {
                        if (!Float.isFinite(x)) {
                            throw new dev.calm4j.Calm4jException("the logits for the prompt hold NaN or infinite "
                                    + "values: the model or its bridges compute garbage (non-finite weights, or an "
                                    + "overflow in --dtype bf16); nothing was generated");
                        }
                    }
                    prefill = secs;
                } else {
                    decode += secs;
                }
                length += stepLen;
                float[][] perRow = new float[b][];
                long[] next = new long[b];
                for (int r = 0; r < b; r++) {
                    float[] row = new float[vocabSize];
                    System.arraycopy(flat, r * vocabSize, row, 0, vocabSize);
                    perRow[r] = row;
                    if (done[r]) {
                        continue;                                  // fed as padding: nothing after its end is read
                    }
                    int id = opt.sampler().next(row);
                    next[r] = id;
                    rows.get(r).add((long) id);
                    if (listener != null) {
                        listener.onToken(r, id);
                    }
                    if (opt.stopIds().contains(id) || rows.get(r).size() >= opt.maxNewTokens() || (stop != null
                            && stop.stop(r, rows.get(r).stream().mapToLong(Long::longValue).toArray()))
                            || !session.fits(r, id)) {
                        done[r] = true;
                    }
                }
                if (opt.keepLogits()) {
                    logitsLog.add(perRow);
                }
                steps++;
                boolean all = true;
                for (boolean d : done) {
                    all &= d;
                }
                if (all) {
                    break;
                }
                // A finished row's last token is not fed: its column is padding, so the row's context stops there
                // (an aligned session's text stops growing) and the other rows are computed as before.
                for (int r = 0; r < b; r++) {
                    real[r][length] = !done[r];
                    padded |= done[r];
                }
                step = next;
                stepLen = 1;
            }
        }
        for (List<Long> r : rows) {
            out.add(r.stream().mapToLong(Long::longValue).toArray());
        }
        return new Result(out, logitsLog, prefill, decode, total, steps - 1);
    }
}
