package dev.calm4j.experiment.language;

import dev.calm4j.lm.llama.LlamaConfig;

import java.util.List;

/**
 * How the language experiment's base models are made: the split of the text and each model's tokenizer, shape and
 * pretraining. The shipped models were trained with {@link #defaults()}; {@code models/language_recipe.json} records
 * the recipe beside them, and a run refuses models made with another one.
 *
 * @param split which text is held out
 * @param augment m_A: a small model of the Spanish side and the training books' verse pairs ("spanish => english"),
 *     its own subword tokenizer; it translates, weakly (the paper's PaLM2-XXS further trained on low-resource data)
 * @param anchor m_B: a larger English model (KJV, World English Bible, State of the Union), its own tokenizer; it
 *     has never seen Spanish
 * @param skyline m_B further pretrained on m_A's data, the paper's skyline (its further-trained anchor)
 * @param seed every draw of the base models' data and weights
 */
public record LanguageRecipe(Split split, Model augment, Model anchor, Continue skyline, long seed) {

    /**
     * @param testBooks OSIS ids of whole books no model ever trains on, either side
     * @param speechStride every {@code speechStride}-th address, from {@code speechOffset}, is held out
     * @param chunkChars running text is cut into pieces of at most this many characters
     */
    public record Split(List<String> testBooks, int speechStride, int speechOffset, int chunkChars) {
        public Split {
            testBooks = List.copyOf(testBooks);
            if (testBooks.isEmpty() || speechStride < 2 || speechOffset < 0 || speechOffset >= speechStride
                    || chunkChars < 32) {
                throw new IllegalArgumentException("split: test books, speech stride >= 2, 0 <= offset < stride and "
                        + "chunk chars >= 32 expected, got " + this);
            }
        }
    }

    /**
     * One base model.
     *
     * @param vocab subword vocabulary size of its tokenizer (trained on its own data)
     * @param steps pretraining steps of {@code batch} rows, peak rate {@code lr}, cosine to 5 % after 5 % warmup
     */
    public record Model(int vocab, int hidden, int intermediate, int layers, int heads, int maxPositions, int steps,
                        int batch, double lr, double weightDecay) {
        public Model {
            if (vocab < 300 || hidden < 8 || intermediate < 8 || layers < 1 || heads < 1 || hidden % heads != 0
                    || maxPositions < 16 || steps < 1 || batch < 1 || !(lr > 0) || !(weightDecay >= 0)) {
                throw new IllegalArgumentException("model: sizes, steps, batch, lr > 0 expected (hidden a multiple of "
                        + "heads, vocab >= 300), got " + this);
            }
        }

        public LlamaConfig config(int vocabSize) {
            return LlamaConfig.llama(vocabSize, hidden, intermediate, layers, heads, heads, maxPositions);
        }
    }

    /** Further pretraining of a model: steps, batch and peak rate. */
    public record Continue(int steps, int batch, double lr) {
        public Continue {
            if (steps < 1 || batch < 1 || !(lr > 0)) {
                throw new IllegalArgumentException("skyline: steps, batch >= 1 and lr > 0 expected, got " + this);
            }
        }
    }

    /** The shipped models' recipe. */
    public static LanguageRecipe defaults() {
        return new LanguageRecipe(
                new Split(List.of("Eph", "Phil", "Jas", "1Pet"), 20, 10, 400),
                new Model(2000, 128, 352, 4, 4, 320, 1500, 32, 3e-3, 0.1),
                new Model(3000, 256, 704, 6, 8, 320, 1000, 32, 2e-3, 0.1),
                new Continue(300, 32, 1e-3),
                20261207L);
    }
}
