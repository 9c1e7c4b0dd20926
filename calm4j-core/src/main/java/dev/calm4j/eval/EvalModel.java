package dev.calm4j.eval;

import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.Batch;
import dev.calm4j.data.Example;
import dev.calm4j.generate.CalmSession;
import dev.calm4j.generate.LmSession;
import dev.calm4j.generate.Session;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.train.Losses;
import dev.calm4j.nn.Tensors;
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
                List<CalmModel.AugmentPrompt> prompts = null;
                if (calm.mode() == Mode.SEPARATE_PROMPT) {
                    CalmModel.AugmentPrompt p = new CalmModel.AugmentPrompt(
                            Tensors.longs(b.augmentIds(), b.rows(), b.augmentLength()),
                            Tensors.bools(b.augmentReal(), b.rows(), b.augmentLength()));
                    prompts = new ArrayList<>();
                    for (int a = 0; a < calm.augments().size(); a++) {
                        prompts.add(p);
                    }
                }
                return Losses.sum(calm.forward(Losses.inputs(b), null, prompts, null), b);
            }
        };
    }
}
