package dev.calm4j.lm.phi3;

import com.fasterxml.jackson.databind.JsonNode;
import dev.calm4j.io.WeightFiles;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamily;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.WeightSpec;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.List;
import java.util.Set;

/** Phi-3 ({@code model_type "phi3"}): Phi-3, Phi-3.5 mini and Phi-4-mini checkpoints. */
public final class Phi3Family implements LmFamily {
    @Override
    public Set<String> modelTypes() {
        return Set.of(Phi3Config.MODEL_TYPE);
    }

    @Override
    public ModelConfig readConfig(JsonNode root, String where) {
        return Phi3Config.fromJson(root, where);
    }

    @Override
    public CausalLm load(ModelConfig config, WeightFiles files, String where, ScalarType dtype) {
        Phi3Config c = (Phi3Config) config;
        return new Phi3Model(c, Phi3Weights.load(c, files, where, dtype), dtype);
    }

    @Override
    public List<String> weightNames(ModelConfig config) {
        return Phi3Weights.spec((Phi3Config) config).stream().map(WeightSpec.Entry::name).toList();
    }

    @Override
    public CausalLm random(ModelConfig config, long seed, double std, ScalarType dtype) {
        Phi3Config c = (Phi3Config) config;
        return new Phi3Model(c, Phi3Weights.random(c, seed, std, dtype), dtype);
    }
}
