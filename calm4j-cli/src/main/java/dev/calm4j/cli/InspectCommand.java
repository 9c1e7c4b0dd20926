package dev.calm4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.io.Safetensors;
import dev.calm4j.io.WeightFiles;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.lm.llama.LlamaConfig;
import dev.calm4j.lm.llama.LlamaWeights;
import dev.calm4j.tokenize.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;

@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = "Print a model folder's resolved config, parameter count, stored dtype and memory.",
        footer = {"", "Examples:",
                "  calm inspect --model ../shared/models/stories260K",
                "  calm inspect --model ./my-llama --json"})
final class InspectCommand implements Callable<Integer> {

    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--model", required = true, paramLabel = "DIR", description = "Hugging Face model folder")
    Path model;

    @Option(names = "--json", description = "print one JSON object")
    boolean json;

    @Override
    public Integer call() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        ModelConfig config = LmFamilies.readConfig(model);
        LlamaConfig c = (LlamaConfig) config;
        Map<String, Long> dtypes = new TreeMap<>();
        long storedBytes = 0;
        long params = 0;
        try (WeightFiles files = WeightFiles.open(model)) {
            for (LlamaWeights.Entry e : LlamaWeights.spec(c)) {
                if (!files.contains(e.name())) {
                    throw new dev.calm4j.Calm4jException(model + ": missing tensor '" + e.name() + "'");
                }
                Safetensors.TensorInfo info = files.info(e.name());
                dtypes.merge(info.dtype().name(), info.numel(), Long::sum);
                storedBytes += info.byteLength();
                params += info.numel();
            }
        }
        boolean tokenizer = Tokenizer.exists(model);
        ObjectMapper m = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode o = m.createObjectNode();
        o.put("model", model.toString());
        o.set("config", resolved(c, m));
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
        out.printf("family          %s (%d layers, hidden %d, %d heads / %d kv heads, head_dim %d, ffn %d, vocab %d)%n",
                c.modelType(), c.numHiddenLayers(), c.hiddenSize(), c.numAttentionHeads(), c.numKeyValueHeads(),
                c.headDim(), c.intermediateSize(), c.vocabSize());
        out.printf("rope            theta %s, scaling %s%s%n", c.ropeTheta(), c.ropeScaling().type(),
                c.ropeScaling().type().equals("default") ? "" : " x" + c.ropeScaling().factor());
        out.printf("attention       %s%s%s%n", c.qkvBias() ? "q/k/v bias, " : "", c.oBias() ? "o bias, " : "",
                c.slidingWindow() > 0 ? "sliding window " + c.slidingWindow() : "full causal");
        out.printf("embeddings      %s%n", c.tieWordEmbeddings() ? "tied (lm_head = embed_tokens)" : "untied");
        out.printf("max positions   %d%n", c.maxPositionEmbeddings());
        out.printf("parameters      %,d%n", params);
        out.printf("stored as       %s, %s on disk (config says %s)%n", dtypes, human(storedBytes), c.dtype());
        out.printf("memory          %s at fp32 compute, %s at bf16%n", human(params * 4), human(params * 2));
        out.printf("tokenizer       %s%n", tokenizer ? "tokenizer.json" : "none (use --prompt-ids)");
        out.printf("resolved config%n%s%n", m.writeValueAsString(resolved(c, m)));
        return 0;
    }

    private static ObjectNode resolved(LlamaConfig c, ObjectMapper m) {
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
