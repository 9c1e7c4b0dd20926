package dev.calm4j.eval;

import dev.calm4j.compose.AugmentReader;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.Batch;
import dev.calm4j.data.Example;
import dev.calm4j.generate.CalmSession;
import dev.calm4j.generate.LmSession;
import dev.calm4j.generate.Session;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.train.Losses;
import org.bytedeco.pytorch.Tensor;

import java.util.ArrayList;
import java.util.List;

/** Anything that can be scored: one model, a composition, a LoRA-adapted model. */
public interface EvalModel {
    int vocabSize();

    int maxPositions();

    /** A decoding session for these examples (separate-prompt compositions read their augment prompts from them). */
    Session open(List<Example> rows, int maxLength);

    /** Summed cross-entropy over the batch's targets. */
    Tensor lossSum(Batch b);

    static EvalModel of(CausalLm lm) {
        return new EvalModel() {
            public int vocabSize() {
                return lm.config().vocabSize();
            }

            public int maxPositions() {
                return lm.config().maxPositionEmbeddings();
            }

            public Session open(List<Example> rows, int maxLength) {
                return LmSession.cached(lm, rows.size(), maxLength);
            }

            public Tensor lossSum(Batch b) {
                return Losses.sum(lm.forward(Losses.inputs(b)), b);
            }
        };
    }

    static EvalModel of(CalmModel calm) {
        return of(calm, null);
    }

    /**
     * A composition whose augments may read the text through their own tokenizers ({@code readers}, per augment, null
     * for one that reads the anchor's ids; see {@link AugmentReader#prompts}).
     */
    static EvalModel of(CalmModel calm, List<AugmentReader> readers) {
        return new EvalModel() {
            public int vocabSize() {
                return calm.anchor().config().vocabSize();
            }

            public int maxPositions() {
                return calm.anchor().config().maxPositionEmbeddings();
            }

            public Session open(List<Example> rows, int maxLength) {
                List<long[][]> prompts = null;
                if (calm.mode() == Mode.SEPARATE_PROMPT) {
                    long[][] p = new long[rows.size()][];
                    for (int r = 0; r < rows.size(); r++) {
                        p[r] = rows.get(r).augmentIds() != null ? rows.get(r).augmentIds() : rows.get(r).prompt();
                    }
                    prompts = new ArrayList<>();
                    for (int a = 0; a < calm.augments().size(); a++) {
                        prompts.add(p);
                    }
                }
                return CalmSession.cached(calm, rows.size(), maxLength, prompts);
            }

            public Tensor lossSum(Batch b) {
                return Losses.sum(calm.forward(Losses.inputs(b), null, AugmentReader.prompts(calm, b, readers), null), b);
            }
        };
    }
}
