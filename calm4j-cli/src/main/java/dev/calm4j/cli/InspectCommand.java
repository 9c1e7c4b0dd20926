package dev.calm4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.compose.BridgeCheckpoint;
import dev.calm4j.compose.CalmConfig;
import dev.calm4j.compose.Mode;
import dev.calm4j.io.Safetensors;
import dev.calm4j.io.WeightFiles;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.tokenize.Tokenizer;
import org.bytedeco.pytorch.global.torch.ScalarType;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;

@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = {"Print a model folder's resolved config, parameter count, stored dtype and memory (--model); "
                + "or a composition's plan (--anchor/--augment, or a bridge checkpoint with --bridges): every bridge's "
                + "augment layer -> anchor layer and parameters, and the bridges' total against the base models.",
                "A plan needs the configs only (no weights are read), so it is instant even for large models."},
        footer = {"", "Examples:",
                "  calm inspect --model " + Examples.STORIES,
                "  calm inspect --anchor " + Examples.M_B + " --augment " + Examples.M_A,
                "  calm inspect --anchor " + Examples.M_B + " --augment " + Examples.M_A + " --augment " + Examples.STORIES
                        + " --connections '0:3->1,1:4->5' --heads 4",
                Examples.DEMO_NOTE,
                Examples.DEMO,
                "  calm inspect --bridges " + Examples.BRIDGES + " --json",
                "  calm inspect --model " + Examples.M_A + " --json"})
final class InspectCommand implements Callable<Integer> {

    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--model", paramLabel = "DIR", description = "Hugging Face model folder")
    Path model;

    @Option(names = "--anchor", paramLabel = "DIR", description = "the anchor of a composition (excludes --model)")
    Path anchor;

    @Option(names = "--augment", paramLabel = "DIR", description = "an augmenting model; repeat for several")
    List<Path> augments;

    @Option(names = "--connections", paramLabel = "SPEC", description = "augment layer->anchor layer pairs, e.g. '3->5,7->11' or '0:3->5,1:2->9' (default: the paper's)")
    String connections;

    @Option(names = "--heads", paramLabel = "H", description = "cross-attention heads per bridge (default: the anchor's)")
    Integer heads;

    @Option(names = "--mode", paramLabel = "MODE", description = "same_sequence or separate_prompt (default same_sequence, or the checkpoint's)")
    String mode;

    @Option(names = "--bridges", paramLabel = "DIR", description = "a bridge checkpoint: inspect its recorded plan (--anchor/--augment override its base model paths)")
    Path bridges;

    @Option(names = "--json", description = "print one JSON object")
    boolean json;

    @Override
    public Integer call() throws Exception {
        boolean composition = anchor != null || bridges != null || (augments != null && !augments.isEmpty());
        if (model != null && composition) {
            throw new Calm4jException("--model and --anchor/--augment/--bridges exclude each other (--model inspects one "
                    + "model, the others a composition)");
        }
        if (model == null && !composition) {
            throw new Calm4jException("give --model DIR, or a composition: --anchor DIR --augment DIR, or --bridges DIR");
        }
        if (!composition && (connections != null || heads != null || mode != null)) {
            throw new Calm4jException("--connections, --heads and --mode describe a composition (give --anchor and --augment)");
        }
        return composition ? composition() : model();
    }

    private Integer model() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        ModelConfig config = LmFamilies.readConfig(model);
        Map<String, Long> dtypes = new TreeMap<>();
        long storedBytes = 0;
        long params = 0;
        try (WeightFiles files = WeightFiles.open(model)) {
            for (String name : LmFamilies.weightNames(config)) {
                if (!files.contains(name)) {
                    throw new dev.calm4j.Calm4jException(model + ": missing tensor '" + name + "'");
                }
                Safetensors.TensorInfo info = files.info(name);
                dtypes.merge(info.dtype().name(), info.numel(), Long::sum);
                storedBytes += info.byteLength();
                params += info.numel();
            }
        }
        validate(model);
        boolean tokenizer = Tokenizer.exists(model);
        ObjectMapper m = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode o = m.createObjectNode();
        o.put("model", model.toString());
        o.set("config", resolved(config, m));
        o.put("parameters", params);
        o.putPOJO("stored_dtypes", dtypes);
        o.put("stored_bytes", storedBytes);
        o.put("memory_fp32_bytes", params * 4);
        o.put("memory_bf16_bytes", params * 2);
        o.put("tokenizer", tokenizer ? model.resolve("tokenizer.json").toString() : null);
        if (json) {
            out.println(m.writeValueAsString(o));
            return 0;
        }
        out.printf("model           %s%n", model);
        if (config instanceof LlamaConfig c) {
            describeLlama(out, c);
        } else {
            out.printf("family          %s (%d layers, hidden %d, %d heads, vocab %d)%n", config.modelType(),
                    config.numHiddenLayers(), config.hiddenSize(), config.numAttentionHeads(), config.vocabSize());
        }
        out.printf("max positions   %d%n", config.maxPositionEmbeddings());
        out.printf("parameters      %,d%n", params);
        out.printf("stored as       %s, %s on disk (config says %s)%n", dtypes, human(storedBytes), config.dtype());
        out.printf("memory          %s at fp32 compute, %s at bf16%n", human(params * 4), human(params * 2));
        out.printf("tokenizer       %s%n", tokenizer ? "tokenizer.json" : "none (use --prompt-ids)");
        out.printf("resolved config%n%s%n", m.writeValueAsString(resolved(config, m)));
        return 0;
    }

    /** The Llama family's architecture, a line per part. */
    private static void describeLlama(PrintWriter out, LlamaConfig c) {
        out.printf("family          %s (%d layers, hidden %d, %d heads / %d kv heads, head_dim %d, ffn %d, vocab %d)%n",
                c.modelType(), c.numHiddenLayers(), c.hiddenSize(), c.numAttentionHeads(), c.numKeyValueHeads(),
                c.headDim(), c.intermediateSize(), c.vocabSize());
        out.printf("rope            theta %s, scaling %s%s%n", c.ropeTheta(), c.ropeScaling().type(),
                c.ropeScaling().type().equals("default") ? "" : " x" + c.ropeScaling().factor());
        out.printf("attention       %s%s%s%n", c.qkvBias() ? "q/k/v bias, " : "", c.oBias() ? "o bias, " : "",
                c.slidingWindow() > 0 ? "sliding window " + c.slidingWindow() : "full causal");
        out.printf("embeddings      %s%n", c.tieWordEmbeddings() ? "tied (lm_head = embed_tokens)" : "untied");
    }

    private Integer composition() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        List<Path> augs = augments == null ? List.of() : augments;
        CalmConfig calm = null;
        Path anchorDir = anchor;
        List<Path> augDirs = new ArrayList<>(augs);
        List<ModelConfig> augCfgs = new ArrayList<>();
        ModelConfig anchorCfg;
        String spec0 = connections;
        Integer h = heads;
        Mode m = mode == null ? null : Mode.parse(mode, "--mode");
        if (bridges != null) {
            calm = CalmConfig.read(bridges);
            if (!augs.isEmpty() && augs.size() != calm.augments().size()) {
                throw new Calm4jException(bridges.resolve(CalmConfig.FILE) + ": the bridges were trained with "
                        + calm.augments().size() + " augmenting model(s), " + augs.size() + " --augment given");
            }
            if (connections != null || heads != null || mode != null) {
                throw new Calm4jException("--connections, --heads and --mode come from the checkpoint with --bridges");
            }
            if (anchorDir == null) {
                anchorDir = bridges.resolve(calm.anchor().path()).normalize();
            }
            anchorCfg = configOf(anchorDir, calm.anchor(), anchor != null);
            for (int a = 0; a < calm.augments().size(); a++) {
                if (augs.isEmpty()) {
                    augDirs.add(bridges.resolve(calm.augments().get(a).path()).normalize());
                }
                augCfgs.add(configOf(augDirs.get(a), calm.augments().get(a), !augs.isEmpty()));
            }
            spec0 = String.join(",", calm.connections().stream()
                    .map(c -> c.augment() + ":" + c.augmentLayer() + "->" + c.anchorLayer()).toList());
            h = calm.heads();
            m = calm.mode();
        } else {
            if (anchorDir == null) {
                throw new Calm4jException("--augment needs --anchor DIR (or --bridges DIR)");
            }
            if (augs.isEmpty()) {
                throw new Calm4jException("a composition needs at least one --augment DIR");
            }
            anchorCfg = LmFamilies.readConfig(anchorDir);
            for (Path p : augs) {
                augCfgs.add(LmFamilies.readConfig(p));
            }
        }
        Compositions c = Compositions.resolve(anchorDir, anchorCfg, augDirs, augCfgs, spec0, h,
                m == null ? Mode.SAME_SEQUENCE : m);
        // What generate and eval would refuse, inspect refuses: every model and tokenizer loaded once, and a
        // checkpoint's bridges (plan, shapes, values, fingerprints) read as they would be.
        if (calm != null) {
            BridgeCheckpoint.load(bridges, anchor, augs.isEmpty() ? null : augs, false, ScalarType.Float).close();
        } else {
            validate(anchorDir);
            augDirs.forEach(InspectCommand::validate);
        }
        ObjectMapper om = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        if (json) {
            ObjectNode o = c.toJson(om);
            if (calm != null) {
                o.put("bridges_dir", bridges.toString());
                o.put("recency_bias", calm.recency());
                if (calm.extra() != null) {
                    o.set("training", calm.extra());
                }
            }
            out.println(om.writeValueAsString(o));
            return 0;
        }
        if (calm != null) {
            out.printf("checkpoint      %s (%s)%n", bridges, CalmConfig.FILE);
        }
        c.print(out);
        if (calm != null && calm.recency()) {
            out.println("  the bridges' cross-attention carries the recency bias (--recency-bias)");
        }
        if (calm != null && calm.extra() != null) {
            var x = calm.extra();
            StringBuilder sb = new StringBuilder();
            if (x.path("train_config").has("steps")) {
                sb.append(x.path("train_config").get("steps").asInt()).append(" steps");
            }
            if (x.has("final_train_loss")) {
                sb.append(sb.length() == 0 ? "" : ", ").append(String.format("train loss %.4f", x.get("final_train_loss").asDouble()));
            }
            if (x.has("final_eval_loss")) {
                sb.append(", ").append(String.format("eval loss %.4f", x.get("final_eval_loss").asDouble()));
            }
            if (x.has("train_source")) {
                sb.append(sb.length() == 0 ? "" : ", ").append("data ").append(x.get("train_source").asText());
            }
            if (sb.length() > 0) {
                out.printf("trained         %s%n", sb);
            }
        }
        return 0;
    }

    /** A base model's config: from its folder when there, else the copy recorded in calm_config.json. */
    /** Loads the model folder's weights and tokenizer as generate would, and drops them: the same refusals. */
    static void validate(Path dir) {
        LmFamilies.load(dir).close();
        if (Tokenizer.exists(dir)) {
            Tokenizer.load(dir).close();
        }
    }

    private ModelConfig configOf(Path dir, CalmConfig.ModelRef ref, boolean given) {
        if (given || Files.isRegularFile(dir.resolve("config.json")) || ref.config() == null) {
            return LmFamilies.readConfig(dir);
        }
        return LmFamilies.configFromJson(ref.config(), bridges.resolve(CalmConfig.FILE) + " (recorded config of " + dir + ")");
    }

    private static ObjectNode resolved(ModelConfig c, ObjectMapper m) {
        ObjectNode o = m.valueToTree(c);
        return o;
    }

    static String human(long bytes) {
        if (bytes < 1024) {
            return bytes + " B";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format("%.1f %s", v, units[u]);
    }
}
