package dev.calm4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.LmSession;
import dev.calm4j.generate.Sampler;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.tokenize.Tokenizer;
import org.bytedeco.pytorch.global.torch.ScalarType;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;

@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Generate text (or token ids) from a Hugging Face model folder, with a KV cache.",
        footer = {"", "Examples:",
                "  calm generate --model ../shared/models/stories260K --prompt-ids 1 --max-new-tokens 64 --greedy",
                "  calm generate --model ./my-llama --prompt 'Once upon a time' --temperature 0.8 --top-p 0.95 --seed 7",
                "  calm generate --model ./my-llama --prompt 'a' --prompt 'bb' --max-new-tokens 16 --json"})
final class GenerateCommand implements Callable<Integer> {

    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = "--model", required = true, paramLabel = "DIR",
            description = "Hugging Face model folder (config.json, model.safetensors or sharded index, tokenizer.json)")
    Path model;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Prompts prompts;

    static final class Prompts {
        @Option(names = "--prompt", paramLabel = "TEXT", description = "prompt text (repeat for a batch); needs tokenizer.json")
        List<String> text;

        @Option(names = "--prompt-ids", paramLabel = "IDS", split = ",", description = "prompt as comma-separated token ids")
        List<Long> ids;
    }

    @Option(names = "--max-new-tokens", defaultValue = "64", paramLabel = "N", description = "tokens to generate per prompt (default ${DEFAULT-VALUE})")
    int maxNewTokens;

    @Option(names = "--greedy", description = "pick the most likely token every step (the default unless --temperature is given)")
    boolean greedy;

    @Option(names = "--temperature", paramLabel = "T", description = "sample with this temperature (> 0)")
    Double temperature;

    @Option(names = "--top-p", defaultValue = "1.0", paramLabel = "P", description = "nucleus sampling mass (default ${DEFAULT-VALUE})")
    double topP;

    @Option(names = "--top-k", defaultValue = "0", paramLabel = "K", description = "sample among the K most likely ids (0 = all)")
    int topK;

    @Option(names = "--seed", defaultValue = "0", paramLabel = "S", description = "sampling seed (default ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--ignore-eos", description = "do not stop at the model's EOS token")
    boolean ignoreEos;

    @Option(names = "--dtype", defaultValue = "fp32", paramLabel = "fp32|bf16", description = "compute dtype (default ${DEFAULT-VALUE})")
    String dtype;

    @Option(names = "--json", description = "print one JSON object instead of streaming text")
    boolean json;

    @Override
    public Integer call() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        if (greedy && temperature != null) {
            throw new Calm4jException("--greedy and --temperature exclude each other");
        }
        Sampler sampler = temperature == null || temperature == 0 ? Sampler.greedy() : sampler();
        ScalarType compute = parseDtype(dtype);
        try (CausalLm lm = LmFamilies.load(model, compute)) {
            Tokenizer tok = null;
            List<long[]> batch = new ArrayList<>();
            if (prompts.text != null) {
                tok = Tokenizer.load(model);
                for (String p : prompts.text) {
                    batch.add(tok.encode(p));
                }
            } else {
                batch.add(prompts.ids.stream().mapToLong(Long::longValue).toArray());
                if (Tokenizer.exists(model)) {
                    tok = Tokenizer.load(model);
                }
            }
            Set<Integer> stop = ignoreEos ? Set.of() : new HashSet<>(lm.config().eosTokenIds());
            Generator.Options opt = new Generator.Options(maxNewTokens, sampler, stop, false);
            final Tokenizer tokenizer = tok;
            boolean stream = !json && batch.size() == 1;
            StreamPrinter printer = stream ? new StreamPrinter(out, tokenizer) : null;
            if (stream && tokenizer != null) {
                out.print(tokenizer.decode(batch.get(0)));
                out.flush();
            }
            Generator.Result r = Generator.generate((b, max) -> LmSession.cached(lm, b, max), batch,
                    lm.config().vocabSize(), lm.config().maxPositionEmbeddings(), opt,
                    printer == null ? null : (row, id) -> printer.add(id));
            double seconds = r.prefillSeconds() + r.decodeSeconds();
            double tps = seconds > 0 ? r.newTokens() / seconds : 0;
            if (json) {
                ObjectMapper m = new ObjectMapper();
                ObjectNode o = m.createObjectNode();
                if (batch.size() == 1) {
                    fill(o, batch.get(0), r.generated().get(0), tokenizer);
                } else {
                    ArrayNode rows = o.putArray("rows");
                    for (int i = 0; i < batch.size(); i++) {
                        fill(rows.addObject(), batch.get(i), r.generated().get(i), tokenizer);
                    }
                }
                o.put("tokens_per_s", round(tps));
                o.put("prefill_tokens_per_s", round(r.prefillSeconds() > 0 ? r.promptTokens() / r.prefillSeconds() : 0));
                o.put("decode_tokens_per_s", round(r.decodeSeconds() > 0 ? r.decodeSteps() * batch.size() / r.decodeSeconds() : 0));
                o.put("sampler", sampler.isGreedy() ? "greedy" : "temperature=" + temperature + ",top_p=" + topP + ",top_k=" + topK + ",seed=" + seed);
                o.put("dtype", dtype);
                out.println(m.writeValueAsString(o));
            } else if (stream) {
                out.println();
                spec.commandLine().getErr().printf("[%d tokens, %.1f tokens/s]%n", r.newTokens(), tps);
            } else {
                for (int i = 0; i < batch.size(); i++) {
                    long[] g = r.generated().get(i);
                    out.println("[" + i + "] " + (tokenizer != null ? tokenizer.decode(batch.get(i)) + tokenizer.decode(g) : ids(g)));
                }
            }
            if (tokenizer != null) {
                tokenizer.close();
            }
        }
        return 0;
    }

    private Sampler sampler() {
        if (temperature < 0) {
            throw new Calm4jException("--temperature must be >= 0, got " + temperature);
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new Calm4jException("--top-p must be in (0, 1], got " + topP);
        }
        if (topK < 0) {
            throw new Calm4jException("--top-k must be >= 0, got " + topK);
        }
        return Sampler.sample(temperature, topK, topP, seed);
    }

    static ScalarType parseDtype(String s) {
        return switch (s) {
            case "fp32", "float32" -> ScalarType.Float;
            case "bf16", "bfloat16" -> ScalarType.BFloat16;
            default -> throw new Calm4jException("--dtype: expected fp32 or bf16, got '" + s + "'");
        };
    }

    private static void fill(ObjectNode o, long[] prompt, long[] gen, Tokenizer tok) {
        ArrayNode p = o.putArray("prompt_ids");
        for (long id : prompt) {
            p.add(id);
        }
        ArrayNode g = o.putArray("generated_ids");
        for (long id : gen) {
            g.add(id);
        }
        if (tok != null) {
            o.put("text", tok.decode(gen));
        } else {
            o.putNull("text");
        }
    }

    private static String ids(long[] g) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < g.length; i++) {
            sb.append(i == 0 ? "" : ",").append(g[i]);
        }
        return sb.toString();
    }

    private static double round(double x) {
        return Math.round(x * 10) / 10.0;
    }

    /** Streams generated text: re-decodes the whole continuation and prints what is new (handles multi-byte pieces). */
    private static final class StreamPrinter {
        private final PrintWriter out;
        private final Tokenizer tok;
        private final List<Long> ids = new ArrayList<>();
        private String printed = "";

        StreamPrinter(PrintWriter out, Tokenizer tok) {
            this.out = out;
            this.tok = tok;
        }

        void add(long id) {
            ids.add(id);
            if (tok == null) {
                out.print((ids.size() == 1 ? "" : ",") + id);
            } else {
                String text = tok.decode(ids.stream().mapToLong(Long::longValue).toArray());
                if (text.startsWith(printed) && !text.endsWith("\uFFFD")) {
                    out.print(text.substring(printed.length()));
                    printed = text;
                }
            }
            out.flush();
        }
    }
}
