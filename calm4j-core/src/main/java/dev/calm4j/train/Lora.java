package dev.calm4j.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.io.AtomicFiles;
import dev.calm4j.io.Safetensors;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.llama.LlamaModel;
import org.bytedeco.pytorch.Generator;
import org.bytedeco.pytorch.GeneratorOptional;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.bytedeco.pytorch.global.torch.rand;
import static org.bytedeco.pytorch.global.torch.zeros;

/**
 * LoRA adapters on a Llama-family model (the paper's parameter-matched baseline): for each targeted linear,
 * {@code W' = W + (alpha / r) B A} with {@code A [r, in]} (uniform +-1/sqrt(in)) and {@code B [out, r] = 0}, so the
 * adapted model starts as the base model. The forward is the base model's, over weights with W' substituted
 * ({@link LlamaModel#withWeights}); the base weights never change.
 *
 * <p>Saved as PEFT does ({@code adapter_model.safetensors} with {@code base_model.model.<module>.lora_A.weight} /
 * {@code lora_B.weight}, and {@code adapter_config.json}), so the adapters load in HF PEFT too.
 */
public final class Lora implements AutoCloseable {
    public static final List<String> MODULES = List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj");
    private static final ObjectMapper JSON = new ObjectMapper();

    private final List<String> targets;
    private final int rank;
    private final double alpha;
    private final Map<String, Tensor[]> adapters;   // HF weight name -> {A, B}

    private Lora(List<String> targets, int rank, double alpha, Map<String, Tensor[]> adapters) {
        this.targets = List.copyOf(targets);
        this.rank = rank;
        this.alpha = alpha;
        this.adapters = adapters;
    }

    private static String weightName(int layer, String module) {
        String group = module.endsWith("_proj") && (module.startsWith("q") || module.startsWith("k")
                || module.startsWith("v") || module.startsWith("o")) ? "self_attn" : "mlp";
        return "model.layers." + layer + "." + group + "." + module + ".weight";
    }

    private static void checkTargets(List<String> targets) {
        if (targets.isEmpty()) {
            throw new Calm4jException("LoRA targets is empty (choose from " + MODULES + ")");
        }
        for (String t : targets) {
            if (!MODULES.contains(t)) {
                throw new Calm4jException("LoRA targets: '" + t + "' is not one of " + MODULES);
            }
        }
    }

    /** Parameters of rank-1 adapters on every targeted linear of every layer. */
    public static long paramsPerRank(LlamaModel base, List<String> targets) {
        checkTargets(targets);
        long per = 0;
        for (int i = 0; i < base.numLayers(); i++) {
            for (String m : targets) {
                Tensor w = base.weights().named().get(weightName(i, m));
                per += w.size(0) + w.size(1);
            }
        }
        return per;
    }

    /** The rank whose parameter count is closest to {@code target} (at least 1): the paper's matched control. */
    public static int rankMatching(LlamaModel base, List<String> targets, long target) {
        return (int) Math.max(1, Math.round((double) target / paramsPerRank(base, targets)));
    }

    public static Lora init(LlamaModel base, List<String> targets, int rank, double alpha, long seed) {
        checkTargets(targets);
        if (rank <= 0) {
            throw new Calm4jException("--rank must be > 0, got " + rank);
        }
        Generator g = org.bytedeco.pytorch.global.torch.createCPUGenerator(seed);
        Map<String, Tensor[]> a = new LinkedHashMap<>();
        ScalarType dt = dev.calm4j.compose.Bridge.masterDtype(base.computeDtype());   // master weights (apply)
        for (int i = 0; i < base.numLayers(); i++) {
            for (String m : targets) {
                String name = weightName(i, m);
                Tensor w = base.weights().named().get(name);
                long in = w.size(1);
                double bound = 1 / Math.sqrt(in);
                Tensor A = rand(new long[] {rank, in}, new GeneratorOptional(g), new TensorOptions(ScalarType.Float))
                        .mul(new Scalar(2 * bound)).sub(new Scalar(bound)).to(dt);
                Tensor B = zeros(new long[] {w.size(0), rank}, new TensorOptions(dt));
                a.put(name, new Tensor[] {A, B});
            }
        }
        return new Lora(targets, rank, alpha, a);
    }

    /** The base model computing with {@code W + (alpha/r) B A} on every target (a view; closes nothing). */
    public LlamaModel apply(LlamaModel base) {
        Scalar scale = new Scalar(alpha / rank);
        Map<String, Tensor> merged = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor[]> e : adapters.entrySet()) {
            Tensor w = base.weights().named().get(e.getKey());
            // B A in float32 (the adapters are master weights), cast to the base's compute dtype: under bf16 compute
            // the gradient comes back through the cast in float32, and AdamW's small steps are not rounded away.
            // Under bf16-mixed (bf16 weights, float32 compute) W + s B A is formed and multiplied in float32, so
            // the adapter's small change is not rounded into W's bf16.
            ScalarType to = base.computeDtype();
            Tensor delta = e.getValue()[1].mm(e.getValue()[0]).mul(scale);
            Tensor wc = w.scalar_type().intern() == to.intern() ? w : w.to(to);
            merged.put(e.getKey(), wc.add(delta.scalar_type().intern() == to.intern() ? delta : delta.to(to)));
        }
        return base.withWeights(base.weights().withReplaced(merged));
    }

    /** Trainable tensors under PEFT's names. */
    public Map<String, Tensor> named() {
        Map<String, Tensor> m = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor[]> e : adapters.entrySet()) {
            String module = e.getKey().substring(0, e.getKey().length() - ".weight".length());
            m.put("base_model.model." + module + ".lora_A.weight", e.getValue()[0]);
            m.put("base_model.model." + module + ".lora_B.weight", e.getValue()[1]);
        }
        return m;
    }

    public long parameterCount() {
        return named().values().stream().mapToLong(Tensor::numel).sum();
    }

    public int rank() {
        return rank;
    }

    public List<String> targets() {
        return targets;
    }

    public void save(Path dir, Path baseDir, ObjectNode provenance) {
        Map<String, Tensor> t = new LinkedHashMap<>();
        named().forEach((k, v) -> t.put(k, v.detach()));
        Safetensors.write(dir.resolve("adapter_model.safetensors"), t, Map.of("format", "pt"));
        ObjectNode c = JSON.createObjectNode();
        c.put("peft_type", "LORA");
        c.put("task_type", "CAUSAL_LM");
        c.put("r", rank);
        c.put("lora_alpha", alpha);
        c.put("lora_dropout", 0.0);
        c.put("bias", "none");
        ArrayNode tm = c.putArray("target_modules");
        targets.forEach(tm::add);
        c.put("base_model_name_or_path", baseDir == null ? null : baseDir.toAbsolutePath().normalize().toString());
        c.put("parameters", parameterCount());
        if (provenance != null) {
            c.set("calm4j", provenance);
        }
        try {
            AtomicFiles.writeString(dir.resolve("adapter_config.json"), c.toPrettyString() + "\n");
        } catch (IOException e) {
            throw new Calm4jException(dir.resolve("adapter_config.json") + ": cannot write (" + e.getMessage() + ")");
        }
    }

    public static Lora load(Path dir, LlamaModel base) {
        Path cfg = dir.resolve("adapter_config.json");
        if (!Files.isRegularFile(cfg)) {
            throw new Calm4jException(cfg + ": missing (a LoRA folder holds adapter_config.json and adapter_model.safetensors)");
        }
        JsonNode c = dev.calm4j.io.StrictJson.read(cfg);
        if (!c.path("r").canConvertToInt() || c.path("r").asInt() <= 0 || !c.path("lora_alpha").isNumber()
                || !c.path("target_modules").isArray()) {
            throw new Calm4jException(cfg + ": needs fields 'r' (> 0), 'lora_alpha' and 'target_modules'");
        }
        List<String> targets = new ArrayList<>();
        c.get("target_modules").forEach(x -> targets.add(x.asText()));
        checkTargets(targets);
        int rank = c.get("r").asInt();
        Map<String, Tensor[]> a = new LinkedHashMap<>();
        Path file = dir.resolve("adapter_model.safetensors");
        try (Safetensors st = Safetensors.open(file)) {
            for (int i = 0; i < base.numLayers(); i++) {
                for (String m : targets) {
                    String name = weightName(i, m);
                    Tensor w = base.weights().named().get(name);
                    String module = name.substring(0, name.length() - ".weight".length());
                    String an = "base_model.model." + module + ".lora_A.weight";
                    String bn = "base_model.model." + module + ".lora_B.weight";
                    for (String n : new String[] {an, bn}) {
                        if (!st.contains(n)) {
                            throw new Calm4jException(file + ": missing tensor '" + n + "'");
                        }
                    }
                    long[] wantA = {rank, w.size(1)};
                    long[] wantB = {w.size(0), rank};
                    if (!Arrays.equals(st.info(an).shape(), wantA) || !Arrays.equals(st.info(bn).shape(), wantB)) {
                        throw new Calm4jException(file + ": adapter '" + module + "' has shapes "
                                + Arrays.toString(st.info(an).shape()) + "/" + Arrays.toString(st.info(bn).shape())
                                + ", this base model needs " + Arrays.toString(wantA) + "/" + Arrays.toString(wantB));
                    }
                    ScalarType master = dev.calm4j.compose.Bridge.masterDtype(base.computeDtype());     // (apply)
                    Tensor[] ab = {st.load(an, master), st.load(bn, master)};
                    dev.calm4j.nn.Finite.require(ab[0], file + ": tensor '" + an + "'");
                    dev.calm4j.nn.Finite.require(ab[1], file + ": tensor '" + bn + "'");
                    a.put(name, ab);
                }
            }
        }
        return new Lora(targets, rank, c.get("lora_alpha").asDouble(), a);
    }

    @Override
    public void close() {
        adapters.values().forEach(t -> {
            t[0].close();
            t[1].close();
        });
    }

}
