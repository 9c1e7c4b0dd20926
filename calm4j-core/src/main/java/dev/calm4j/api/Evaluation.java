package dev.calm4j.api;

import dev.calm4j.eval.Accuracy;

import java.util.List;

/**
 * A model's or a composition's score on a dataset.
 *
 * @param data         where the examples came from
 * @param examples     how many examples were scored
 * @param exactMatch   greedy exact match: decoding each prompt greedily must reproduce the completion exactly, and
 *                     stop where it stops when the data appends EOS; with its 95 % Wilson interval
 * @param meanLoss     mean cross-entropy per target token, in nats
 * @param perplexity   {@code exp(meanLoss)}
 * @param targetTokens the target tokens {@code meanLoss} averages over
 * @param predictions  each example's greedy prediction (as many ids as its completion at most), in dataset order
 */
public record Evaluation(String data, int examples, Accuracy exactMatch, double meanLoss, double perplexity,
                         long targetTokens, List<long[]> predictions) {

    public Evaluation {
        predictions = List.copyOf(predictions);
    }

    /** The share of examples reproduced exactly, in [0, 1]. */
    public double accuracy() {
        return exactMatch.value();
    }

    @Override
    public String toString() {
        return String.format("%s: exact match %s, perplexity %.4f (mean loss %.4f over %,d target tokens)", data,
                exactMatch, perplexity, meanLoss, targetTokens);
    }
}
