package dev.calm4j.eval;

import dev.calm4j.compose.AugmentReader;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.Batch;
import dev.calm4j.data.Example;
import dev.calm4j.generate.AlignedCalmSession;
import dev.calm4j.generate.CalmSession;
import dev.calm4j.generate.LmSession;
import dev.calm4j.generate.Session;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.tokenize.Tokenizer;
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
        return of(calm, null, null);
    }

    /**
     * A composition whose augments may read the text through their own tokenizers ({@code readers}, per augment, null
     * for one that reads the anchor's ids; see {@link AugmentReader#prompts}); {@code anchorTokenizer} (may be null
     * when no augment has a reader) decodes generated text for them, which they re-read every step
     * ({@link AlignedCalmSession}).
     */
    static EvalModel of(CalmModel calm, List<AugmentReader> readers, Tokenizer anchorTokenizer) {
        boolean aligned = calm.mode() == Mode.SAME_SEQUENCE && readers != null
                && readers.stream().anyMatch(java.util.Objects::nonNull);
        return new EvalModel() {
            public int vocabSize() {
                return calm.anchor().config().vocabSize();
            }

            public int maxPositions() {
                return calm.anchor().config().maxPositionEmbeddings();
            }

            public Session open(List<Example> rows, int maxLength) {
                if (aligned) {
                    return aligned(rows, maxLength);
                }
                List<long[][]> prompts = null;
                if (calm.mode() == Mode.SEPARATE_PROMPT) {
                    long[][] p = new long[rows.size()][];
                    for (int r = 0; r < rows.size(); r++) {
                        p[r] = rows.get(r).augmentIds() != null ? rows.get(r).augmentIds() : rows.get(r).prompt();
                    }
                    prompts = new ArrayList<>();
                    for (int a = 0; a < calm.augments().size(); a++) {
                        AugmentReader reader = readers == null ? null : readers.get(a);
                        if (reader == null) {
                            prompts.add(p);
                            continue;
                        }
                        long[][] own = new long[rows.size()][];                 // its own tokens of the prompt text
                        for (int r = 0; r < rows.size(); r++) {
                            if (rows.get(r).augmentText() == null) {
                                throw new dev.calm4j.Calm4jException("augment " + a + " reads its prompt through its own "
                                        + "tokenizer: the data must be text, not token ids");
                            }
                            own[r] = reader.tokens(rows.get(r).augmentText()).ids();
                        }
                        prompts.add(own);
                    }
                }
                return CalmSession.cached(calm, rows.size(), maxLength, prompts);
            }

            public Tensor lossSum(Batch b) {
                return Losses.sum(calm.forward(Losses.inputs(b), null, AugmentReader.prompts(calm, b, readers), null), b);
            }

            /** A session over the examples' prompts as the anchor read them, the augments re-reading the text. */
            private Session aligned(List<Example> rows, int maxLength) {
                if (anchorTokenizer == null) {
                    throw new dev.calm4j.Calm4jException("generating across tokenizers needs the anchor's tokenizer.json");
                }
                List<String> texts = new ArrayList<>();
                List<Tokenizer.Tokens> prompts = new ArrayList<>();
                for (Example e : rows) {
                    if (e.text() == null) {
                        throw new dev.calm4j.Calm4jException("an augment reads the text through its own tokenizer: the "
                                + "data must be text, not token ids");
                    }
                    int n = e.promptLength();
                    int[] ends = java.util.Arrays.copyOf(e.text().ends(), n);
                    String text = e.text().value();
                    int end = ends[n - 1];
                    texts.add(text.substring(0, text.offsetByCodePoints(0, end)));     // the prompt's text
                    prompts.add(new Tokenizer.Tokens(e.prompt(), ends));
                }
                List<Tokenizer> augs = new ArrayList<>();
                for (AugmentReader r : readers) {
                    augs.add(r == null ? null : r.tokenizer());
                }
                return AlignedCalmSession.open(calm, anchorTokenizer, augs, texts, prompts).open(rows.size(), maxLength);
            }
        };
    }
}
