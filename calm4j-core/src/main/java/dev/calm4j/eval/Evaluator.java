package dev.calm4j.eval;

import dev.calm4j.data.Batch;
import dev.calm4j.data.Batcher;
import dev.calm4j.data.Dataset;
import dev.calm4j.data.Example;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.Sampler;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.function.IntConsumer;

/** Greedy exact match and perplexity over a dataset. */
public final class Evaluator {
    private Evaluator() {}

    /** Exact-match result plus every prediction (in dataset order), for reports. */
    public record ExactMatch(Accuracy accuracy, List<long[]> predictions, List<Boolean> correct) {}

    /**
     * Greedy exact match: each example's prompt is decoded greedily (KV caches, batched), and the prediction is
     * correct when its first {@code len(completion)} tokens equal the completion exactly, stopping early at a stop
     * id (so when the data appends EOS, the model must also stop where the reference stops).
     */
    public static ExactMatch exactMatch(EvalModel m, Dataset data, int batchSize, Set<Integer> stopIds,
                                        IntConsumer progress) {
        List<long[]> preds = new ArrayList<>();
        List<Boolean> ok = new ArrayList<>();
        long correct = 0;
        List<Example> all = data.examples();
        for (int from = 0; from < all.size(); from += batchSize) {
            List<Example> rows = all.subList(from, Math.min(all.size(), from + batchSize));
            int maxNew = rows.stream().mapToInt(e -> e.completion().length).max().orElse(1);
            List<long[]> prompts = rows.stream().map(Example::prompt).toList();
            Generator.Result r = Generator.generate((b, max) -> m.open(rows, max), prompts, m.vocabSize(),
                    m.maxPositions(), new Generator.Options(maxNew, Sampler.greedy(), stopIds, false), null);
            for (int i = 0; i < rows.size(); i++) {
                long[] target = rows.get(i).completion();
                long[] gen = r.generated().get(i);
                long[] pred = Arrays.copyOf(gen, Math.min(gen.length, target.length));
                boolean hit = Arrays.equals(pred, target);
                preds.add(pred);
                ok.add(hit);
                correct += hit ? 1 : 0;
            }
            if (progress != null) {
                progress.accept(Math.min(all.size(), from + batchSize));
            }
        }
        return new ExactMatch(new Accuracy(correct, all.size()), preds, ok);
    }

    /** Mean negative log-likelihood per target token (nats) and its exp (perplexity). */
    public record Perplexity(double meanLoss, double perplexity, long tokens) {}

    public static Perplexity perplexity(EvalModel m, Dataset data, int batchSize) {
        double sum = 0;
        long n = 0;
        try (NoGradGuard ng = new NoGradGuard()) {
            for (Batch b : Batcher.sequential(data, batchSize)) {
                try (PointerScope scope = new PointerScope()) {
                    sum += m.lossSum(b).item_double();
                }
                n += b.targetCount();
            }
        }
        double mean = sum / Math.max(1, n);
        return new Perplexity(mean, Math.exp(mean), n);
    }
}
