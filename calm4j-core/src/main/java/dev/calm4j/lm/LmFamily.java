package dev.calm4j.lm;

import com.fasterxml.jackson.databind.JsonNode;
import dev.calm4j.io.WeightFiles;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.List;
import java.util.Set;

/**
 * One model family: the {@code model_type} values of HF {@code config.json} it reads, its validating config record,
 * and its forward. Each family lives in its own package under {@code dev.calm4j.lm} and is listed once in
 * {@link LmFamilies}.
 */
public interface LmFamily {
    /** The {@code config.json} {@code model_type} values this family loads. */
    Set<String> modelTypes();

    /**
     * The validated config of a {@code config.json} whose {@code model_type} is one of {@link #modelTypes}.
     *
     * @param where names the file in an error message
     * @throws dev.calm4j.Calm4jException naming the field and what was expected
     */
    ModelConfig readConfig(JsonNode root, String where);

    /** The model, its weights read from {@code files} (converted once to {@code dtype}). */
    CausalLm load(ModelConfig config, WeightFiles files, String where, ScalarType dtype);

    /**
     * The model with its weights converted once to {@code weights} and its activations computed in {@code compute}:
     * the same as {@link #load(ModelConfig, WeightFiles, String, ScalarType)} when they agree; bf16 weights with
     * float32 activations ("bf16-mixed") where the family supports it, else refused.
     */
    default CausalLm load(ModelConfig config, WeightFiles files, String where, ScalarType weights, ScalarType compute) {
        if (weights.intern() == compute.intern()) {
            return load(config, files, where, compute);
        }
        throw new dev.calm4j.Calm4jException(where + ": bf16-mixed precision (bf16 weights, float32 activations) is "
                + "available for Llama-family models (llama, mistral, qwen2); this is a " + config.modelType()
                + " model: use bf16 or fp32");
    }

    /** Every tensor a checkpoint of {@code config} holds, under its HF name, in checkpoint order. */
    List<String> weightNames(ModelConfig config);

    /** A model with fresh random weights (normal with this std; norms at their identity), for pretraining. */
    CausalLm random(ModelConfig config, long seed, double std, ScalarType dtype);
}
