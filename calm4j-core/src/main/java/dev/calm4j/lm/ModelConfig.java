package dev.calm4j.lm;

import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.List;

/** What every model family's config record answers, whatever else it holds. */
public interface ModelConfig {
    String modelType();

    int vocabSize();

    int hiddenSize();

    int numHiddenLayers();

    int numAttentionHeads();

    int maxPositionEmbeddings();

    int bosTokenId();

    List<Integer> eosTokenIds();

    /** The dtype the checkpoint is stored in, as HF names it. */
    String dtype();

    long parameterCount();

    /** The config as HF writes {@code config.json}. */
    ObjectNode toJson();
}
