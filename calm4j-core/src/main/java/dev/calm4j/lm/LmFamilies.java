package dev.calm4j.lm;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.calm4j.Calm4jException;
import dev.calm4j.io.AtomicFiles;
import dev.calm4j.io.Safetensors;
import dev.calm4j.io.WeightFiles;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.llama.LlamaModel;
import dev.calm4j.lm.llama.LlamaWeights;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * Hugging Face checkpoint directories ({@code config.json} + {@code model.safetensors} or a sharded index), keyed
 * on {@code model_type}: the one place that knows which family reads which config.
 */
public final class LmFamilies {
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private LmFamilies() {}

    /** model_type values calm4j can load. */
    public static Set<String> supported() {
        return LlamaConfig.MODEL_TYPES;
    }

    /** Reads and validates {@code dir/config.json}. */
    public static ModelConfig readConfig(Path dir) {
        Path file = dir.resolve("config.json");
        if (!Files.isDirectory(dir)) {
            throw new Calm4jException(dir + ": not a directory (expected a Hugging Face model folder with config.json)");
        }
        if (!Files.isRegularFile(file)) {
            throw new Calm4jException(file + ": missing (a Hugging Face model folder needs config.json)");
        }
        JsonNode root;
        try {
            root = JSON.readTree(file.toFile());
        } catch (IOException e) {
            String m = e.getMessage() == null ? "unreadable" : e.getMessage().split("\n")[0];
            throw new Calm4jException(file + ": not valid JSON (" + m + ")");
        }
        if (root == null || !root.isObject()) {
            throw new Calm4jException(file + ": expected a JSON object");
        }
        JsonNode type = root.get("model_type");
        if (type == null || !type.isTextual()) {
            throw new Calm4jException(file + ": field 'model_type' is missing (expected one of " + supported() + ")");
        }
        if (!supported().contains(type.asText())) {
            throw new Calm4jException(file + ": field 'model_type' is '" + type.asText()
                    + "', which calm4j cannot load (supported: " + supported() + ")");
        }
        return LlamaConfig.fromJson(root, file.toString());
    }

    /**
     * Loads a checkpoint, computing in {@code dtype} (Float by default; BFloat16 as an option). Weights stored in
     * another dtype are converted once, at load.
     */
    public static CausalLm load(Path dir, ScalarType dtype) {
        if (dtype != ScalarType.Float && dtype != ScalarType.BFloat16) {
            throw new IllegalArgumentException("compute dtype must be Float or BFloat16");
        }
        ModelConfig config = readConfig(dir);
        try (WeightFiles files = WeightFiles.open(dir)) {
            LlamaConfig c = (LlamaConfig) config;
            return new LlamaModel(c, LlamaWeights.load(c, files, dir.toString(), dtype), dtype);
        }
    }

    public static CausalLm load(Path dir) {
        return load(dir, ScalarType.Float);
    }

    /**
     * Writes {@code config.json} and {@code model.safetensors} (each atomically: temp file, then rename) in the
     * model's current dtype.
     */
    public static void save(CausalLm model, Path dir) {
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new Calm4jException(dir + ": cannot create directory (" + e.getMessage() + ")");
        }
        Map<String, Tensor> weights = new LinkedHashMap<>(model.namedWeights());
        Safetensors.write(dir.resolve("model.safetensors"), weights, Map.of("format", "pt"));
        var json = model.config().toJson();
        String dtype = switch (model.computeDtype()) {
            case BFloat16 -> "bfloat16";
            case Half -> "float16";
            default -> "float32";
        };
        json.put("torch_dtype", dtype);
        try {
            AtomicFiles.writeString(dir.resolve("config.json"), JSON.writeValueAsString(json) + "\n");
        } catch (IOException e) {
            throw new Calm4jException(dir.resolve("config.json") + ": cannot write (" + e.getMessage() + ")");
        }
    }
}
