package dev.calm4j.lm.gemma;

import com.fasterxml.jackson.databind.JsonNode;
import dev.calm4j.io.WeightFiles;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamily;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.WeightSpec;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.List;
import java.util.Set;

/**
 * Gemma 2 ({@code gemma2}) and Gemma 3 text ({@code gemma3_text}): one forward ({@link GemmaModel}), one weight list
 * ({@link GemmaWeights}), a config record each ({@link Gemma2Config}, {@link Gemma3TextConfig}).
 */
public final class GemmaFamily implements LmFamily {
    @Override
    public Set<String> modelTypes() {
        return Set.of(Gemma2Config.MODEL_TYPE, Gemma3TextConfig.MODEL_TYPE);
    }

    @Override
    public ModelConfig readConfig(JsonNode root, String where) {
        JsonNode type = root.get("model_type");
        return type != null && type.asText().equals(Gemma3TextConfig.MODEL_TYPE)
                ? Gemma3TextConfig.fromJson(root, where) : Gemma2Config.fromJson(root, where);
    }

    @Override
    public CausalLm load(ModelConfig config, WeightFiles files, String where, ScalarType dtype) {
        GemmaConfig c = (GemmaConfig) config;
        return new GemmaModel(c, GemmaWeights.load(c, files, where, dtype), dtype);
    }

    @Override
    public List<String> weightNames(ModelConfig config) {
        return GemmaWeights.spec((GemmaConfig) config).stream().map(WeightSpec.Entry::name).toList();
    }

    @Override
    public CausalLm random(ModelConfig config, long seed, double std, ScalarType dtype) {
        GemmaConfig c = (GemmaConfig) config;
        return new GemmaModel(c, GemmaWeights.random(c, seed, std, dtype), dtype);
    }
}
