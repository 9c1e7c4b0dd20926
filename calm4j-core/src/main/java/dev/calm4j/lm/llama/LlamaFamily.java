package dev.calm4j.lm.llama;

import com.fasterxml.jackson.databind.JsonNode;
import dev.calm4j.io.WeightFiles;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamily;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.WeightSpec;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.List;
import java.util.Set;

/** Llama and the families that share its forward: Mistral (sliding window) and Qwen2 (q/k/v biases). */
public final class LlamaFamily implements LmFamily {
    @Override
    public Set<String> modelTypes() {
        return LlamaConfig.MODEL_TYPES;
    }

    @Override
    public ModelConfig readConfig(JsonNode root, String where) {
        return LlamaConfig.fromJson(root, where);
    }

    @Override
    public CausalLm load(ModelConfig config, WeightFiles files, String where, ScalarType dtype) {
        LlamaConfig c = (LlamaConfig) config;
        return new LlamaModel(c, LlamaWeights.load(c, files, where, dtype), dtype);
    }

    @Override
    public CausalLm load(ModelConfig config, WeightFiles files, String where, ScalarType weights, ScalarType compute) {
        LlamaConfig c = (LlamaConfig) config;
        return new LlamaModel(c, LlamaWeights.load(c, files, where, weights), compute);   // bf16-mixed when they differ
    }

    @Override
    public List<String> weightNames(ModelConfig config) {
        return LlamaWeights.spec((LlamaConfig) config).stream().map(WeightSpec.Entry::name).toList();
    }

    @Override
    public CausalLm random(ModelConfig config, long seed, double std, ScalarType dtype) {
        LlamaConfig c = (LlamaConfig) config;
        return new LlamaModel(c, LlamaWeights.random(c, seed, std, dtype), dtype);
    }
}
