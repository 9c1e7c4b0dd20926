package dev.calm4j.lm.gpt2;

import com.fasterxml.jackson.databind.JsonNode;
import dev.calm4j.io.WeightFiles;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamily;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.WeightSpec;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.List;
import java.util.Set;

/** GPT-2 ({@code model_type "gpt2"}): GPT-2 and the checkpoints saved in its layout (e.g. DistilGPT2). */
public final class Gpt2Family implements LmFamily {
    @Override
    public Set<String> modelTypes() {
        return Set.of(Gpt2Config.MODEL_TYPE);
    }

    @Override
    public ModelConfig readConfig(JsonNode root, String where) {
        return Gpt2Config.fromJson(root, where);
    }

    @Override
    public CausalLm load(ModelConfig config, WeightFiles files, String where, ScalarType dtype) {
        Gpt2Config c = (Gpt2Config) config;
        return new Gpt2Model(c, Gpt2Weights.load(c, files, where, dtype), dtype);
    }

    @Override
    public List<String> weightNames(ModelConfig config) {
        return Gpt2Weights.spec((Gpt2Config) config).stream().map(WeightSpec.Entry::name).toList();
    }

    @Override
    public CausalLm random(ModelConfig config, long seed, double std, ScalarType dtype) {
        Gpt2Config c = (Gpt2Config) config;
        return new Gpt2Model(c, Gpt2Weights.random(c, seed, std, dtype), dtype);
    }
}
