package dev.calm4j.experiment.code;

import dev.calm4j.experiment.language.LanguageRecipe;

/**
 * How the code experiment's own models are made. The anchor is the language experiment's English m_B, unchanged;
 * this recipe makes m_A, a small code model, and the skyline, m_B further pretrained on the same code.
 * {@code models/code_recipe.json} records the recipe (and the anchor's weights' digest) beside them, and a run
 * refuses models made with another one.
 *
 * @param chunkChars the training projects' files (flat, {@link CodeText}) are cut at line ends into pieces of at
 *     most this many characters, one pretraining row each
 * @param augment m_A: its own subword tokenizer on the training files, then pretraining from random weights on all
 *     of their text, Javadoc included (the comments beside the code are what links code to English for it)
 * @param skyline m_B further pretrained on the same pieces, through its own tokenizer
 * @param seed every draw of the models' data and weights
 */
public record CodeRecipe(int chunkChars, LanguageRecipe.Model augment, LanguageRecipe.Continue skyline, long seed) {
    public CodeRecipe {
        if (chunkChars < 64 || augment == null || skyline == null) {
            throw new IllegalArgumentException("code recipe: chunk chars >= 64, an augment and a skyline expected");
        }
    }

    /** The shipped models' recipe. */
    public static CodeRecipe defaults() {
        return new CodeRecipe(800,
                new LanguageRecipe.Model(2000, 128, 352, 4, 4, 512, 1000, 32, 3e-3, 0.1),
                new LanguageRecipe.Continue(200, 32, 1e-3),
                20261208L);
    }
}
