package dev.calm4j.experiment.language;

import dev.calm4j.tokenize.Tokenizer;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A translation pair read as prompt and completion must give every model the tokens it read the pair as in
 * pretraining: the prompt's tokens, then the completion's, equal the whole text's. A prompt that ended in a space
 * broke this (a lone "▁" at the prompt's end, and a second one starting the target), which cost m_A 0.16 bits per
 * character of the reference and steered every model's first generated token.
 */
class CorpusFormatTest {
    static final Corpus.Pair PAIR = new Corpus.Pair("Jas.1.1",
            "Jacobo, siervo de Dios y del Señor Jesucristo, á las doce tribus que están esparcidas, salud.",
            "James, a servant of God and of the Lord Jesus Christ, to the twelve tribes which are scattered abroad, greeting.");

    @ParameterizedTest
    @ValueSource(strings = {"m_A", "m_B"})
    void promptThenCompletionTokenizeAsTheWholePair(String model) {
        Path file = Path.of("models", model, "tokenizer.json");
        assertTrue(Files.isRegularFile(file), "the shipped tokenizer " + file.toAbsolutePath());
        Tokenizer tok = Tokenizer.load(file);
        assertEquals(Corpus.text(PAIR), Corpus.prompt(PAIR) + Corpus.completion(PAIR));
        assertEquals(PAIR.es() + " => " + PAIR.en(), Corpus.text(PAIR), "the text m_A was pretrained on");
        long[] prompt = tok.encode(Corpus.prompt(PAIR), false);
        long[] completion = tok.encode(Corpus.completion(PAIR), false);
        long[] joined = new long[prompt.length + completion.length];
        System.arraycopy(prompt, 0, joined, 0, prompt.length);
        System.arraycopy(completion, 0, joined, prompt.length, completion.length);
        assertArrayEquals(tok.encode(Corpus.text(PAIR), false), joined,
                () -> model + ": " + Arrays.toString(joined));
    }
}
