package dev.calm4j.lm.olmo2;

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

/** OLMo 2 ({@code model_type} olmo2): norms on the sublayer outputs, q/k RMSNorm over the whole projection. */
public final class Olmo2Family implements LmFamily {
    @Override
    public Set<String> modelTypes() {
        return Set.of(Olmo2Config.MODEL_TYPE);
    }

    @Override
    public ModelConfig readConfig(JsonNode root, String where) {
        return Olmo2Config.fromJson(root, where);
    }

    @Override
    public CausalLm load(ModelConfig config, WeightFiles files, String where, ScalarType dtype) {
        Olmo2Config c = (Olmo2Config) config;
        return new Olmo2Model(c, Olmo2Weights.load(c, files, where, dtype), dtype);
    }

    @Override
    public List<String> weightNames(ModelConfig config) {
        return Olmo2Weights.spec((Olmo2Config) config).stream().map(WeightSpec.Entry::name).toList();
    }

    @Override
    public CausalLm random(ModelConfig config, long seed, double std, ScalarType dtype) {
        Olmo2Config c = (Olmo2Config) config;
        return new Olmo2Model(c, Olmo2Weights.random(c, seed, std, dtype), dtype);
    }
}
