package dev.calm4j.api;

import dev.calm4j.lm.ModelConfig;

import java.util.List;

/**
 * The basics of a model's {@code config.json}.
 *
 * @param modelType      the Hugging Face {@code model_type} (llama, mistral, qwen2)
 * @param layers         decoder blocks; "layer i" in a connection is the output of block i, 0-based
 * @param hiddenSize     width of the residual stream
 * @param attentionHeads query heads (a composition's bridges default to the anchor's)
 * @param vocabSize      token ids lie in {@code [0, vocabSize)}
 * @param maxPositions   the context length: prompt plus generated tokens, or an example, must fit in it
 * @param bosId          the beginning-of-sequence id, or -1 when the model has none
 * @param eosIds         the end-of-sequence ids (generation stops at them by default); may be empty
 * @param parameters     weights in the model
 */
public record ModelInfo(String modelType, int layers, int hiddenSize, int attentionHeads, int vocabSize,
                        int maxPositions, int bosId, List<Integer> eosIds, long parameters) {

    public ModelInfo {
        eosIds = List.copyOf(eosIds);
    }

    static ModelInfo of(ModelConfig c) {
        return new ModelInfo(c.modelType(), c.numHiddenLayers(), c.hiddenSize(), c.numAttentionHeads(), c.vocabSize(),
                c.maxPositionEmbeddings(), c.bosTokenId(), c.eosTokenIds(), c.parameterCount());
    }

    @Override
    public String toString() {
        return String.format("%s, %d layers, hidden %d, %d heads, vocab %d, context %d, %,d parameters", modelType,
                layers, hiddenSize, attentionHeads, vocabSize, maxPositions, parameters);
    }
}
