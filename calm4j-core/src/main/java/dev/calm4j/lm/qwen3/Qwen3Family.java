package dev.calm4j.lm.qwen3;

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

/** Qwen3 ({@code model_type} qwen3): Llama with per-head q/k RMSNorm and per-layer sliding windows. */
public final class Qwen3Family implements LmFamily {
    @Override
    public Set<String> modelTypes() {
        return Set.of(Qwen3Config.MODEL_TYPE);
    }

    @Override
    public ModelConfig readConfig(JsonNode root, String where) {
        return Qwen3Config.fromJson(root, where);
    }

    @Override
    public CausalLm load(ModelConfig config, WeightFiles files, String where, ScalarType dtype) {
        Qwen3Config c = (Qwen3Config) config;
        return new Qwen3Model(c, Qwen3Weights.load(c, files, where, dtype), dtype);
    }

    @Override
    public List<String> weightNames(ModelConfig config) {
        return Qwen3Weights.spec((Qwen3Config) config).stream().map(WeightSpec.Entry::name).toList();
    }

    @Override
    public CausalLm random(ModelConfig config, long seed, double std, ScalarType dtype) {
        Qwen3Config c = (Qwen3Config) config;
        return new Qwen3Model(c, Qwen3Weights.random(c, seed, std, dtype), dtype);
    }
}
