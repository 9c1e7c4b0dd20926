package dev.calm4j.lm;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.calm4j.Calm4jException;
import dev.calm4j.io.AtomicFiles;
import dev.calm4j.io.Safetensors;
import dev.calm4j.io.StrictJson;
import dev.calm4j.io.WeightFiles;
import dev.calm4j.lm.gemma.GemmaFamily;
import dev.calm4j.lm.gpt2.Gpt2Family;
import dev.calm4j.lm.llama.LlamaFamily;
import dev.calm4j.lm.olmo2.Olmo2Family;
import dev.calm4j.lm.phi3.Phi3Family;
import dev.calm4j.lm.qwen3.Qwen3Family;
import dev.calm4j.lm.smollm3.SmolLM3Family;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * Hugging Face checkpoint directories ({@code config.json} + {@code model.safetensors} or a sharded index), keyed
 * on {@code model_type}: the one place that knows which family reads which config.
 */
public final class LmFamilies {
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    /** Every family calm4j loads, each in its own package. */
    private static final List<LmFamily> FAMILIES = List.of(new LlamaFamily(), new Qwen3Family(), new Olmo2Family(),
            new SmolLM3Family(), new GemmaFamily(), new Phi3Family(), new Gpt2Family());

    private LmFamilies() {}

    /** model_type values calm4j can load, sorted. */
    public static Set<String> supported() {
        Set<String> all = new TreeSet<>();
        FAMILIES.forEach(f -> all.addAll(f.modelTypes()));
        return all;
    }

    /** The family that reads {@code modelType}. */
    static LmFamily family(String modelType, String where) {
        for (LmFamily f : FAMILIES) {
            if (f.modelTypes().contains(modelType)) {
                return f;
            }
        }
        throw new Calm4jException(where + ": field 'model_type' is '" + modelType
                + "', which calm4j cannot load (supported: " + supported() + ")");
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
        return readConfigFile(file);
    }

    /** Reads and validates a {@code config.json} file by itself (for {@code calm init}, {@code calm bench}). */
    public static ModelConfig readConfigFile(Path file) {
        StrictJson.requireRegularFile(file, "a Hugging Face config.json");
        JsonNode root = StrictJson.read(file);
        if (!root.isObject()) {
            throw new Calm4jException(file + ": expected a JSON object");
        }
        JsonNode type = root.get("model_type");
        if (type == null || !type.isTextual()) {
            throw new Calm4jException(file + ": field 'model_type' is missing (expected one of " + supported() + ")");
        }
        return family(type.asText(), file.toString()).readConfig(root, file.toString());
    }

    /** A config from its JSON (a copy recorded elsewhere, e.g. in a bridge checkpoint); {@code where} names it. */
    public static ModelConfig configFromJson(JsonNode root, String where) {
        JsonNode type = root == null ? null : root.get("model_type");
        if (type == null || !type.isTextual()) {
            throw new Calm4jException(where + ": field 'model_type' is missing (expected one of " + supported() + ")");
        }
        return family(type.asText(), where).readConfig(root, where);
    }

    /** Every tensor a checkpoint of {@code config} holds, under its HF name. */
    public static List<String> weightNames(ModelConfig config) {
        return family(config.modelType(), "config").weightNames(config);
    }

    /** A model of {@code config}'s family with fresh random weights (normal with this std), for pretraining. */
    public static CausalLm random(ModelConfig config, long seed, double std, ScalarType dtype) {
        return family(config.modelType(), "config").random(config, seed, std, dtype);
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
            return family(config.modelType(), dir.toString()).load(config, files, dir.toString(), dtype);
        }
    }

    /**
     * As {@link #load(Path, ScalarType)} with the weights in {@code weights} and the activations in {@code compute}:
     * {@code (BFloat16, Float)} is bf16-mixed (Llama-family models; others are refused with a clear error).
     */
    public static CausalLm load(Path dir, ScalarType weights, ScalarType compute) {
        if (weights.intern() == compute.intern()) {
            return load(dir, compute);
        }
        if (weights.intern() != ScalarType.BFloat16 || compute.intern() != ScalarType.Float) {
            throw new IllegalArgumentException("mixed precision is bf16 weights with float32 activations");
        }
        ModelConfig config = readConfig(dir);
        try (WeightFiles files = WeightFiles.open(dir)) {
            return family(config.modelType(), dir.toString()).load(config, files, dir.toString(), weights, compute);
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
