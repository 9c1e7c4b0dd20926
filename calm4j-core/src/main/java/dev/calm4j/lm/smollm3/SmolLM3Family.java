package dev.calm4j.lm.smollm3;

import com.fasterxml.jackson.databind.JsonNode;
import dev.calm4j.io.WeightFiles;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamily;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.WeightSpec;
import dev.calm4j.lm.llama.LlamaWeights;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.List;
import java.util.Set;

/** SmolLM3 ({@code model_type} smollm3): Llama's weights, some layers without rotary (and optionally windowed). */
public final class SmolLM3Family implements LmFamily {
    @Override
    public Set<String> modelTypes() {
        return Set.of(SmolLM3Config.MODEL_TYPE);
    }

    @Override
    public ModelConfig readConfig(JsonNode root, String where) {
        return SmolLM3Config.fromJson(root, where);
    }

    @Override
    public CausalLm load(ModelConfig config, WeightFiles files, String where, ScalarType dtype) {
        SmolLM3Config c = (SmolLM3Config) config;
        return new SmolLM3Model(c, LlamaWeights.load(c.weightLayout(), files, where, dtype), dtype);
    }

    @Override
    public List<String> weightNames(ModelConfig config) {
        return LlamaWeights.spec(((SmolLM3Config) config).weightLayout()).stream().map(WeightSpec.Entry::name).toList();
    }

    @Override
    public CausalLm random(ModelConfig config, long seed, double std, ScalarType dtype) {
        SmolLM3Config c = (SmolLM3Config) config;
        return new SmolLM3Model(c, LlamaWeights.random(c.weightLayout(), seed, std, dtype), dtype);
    }
}
