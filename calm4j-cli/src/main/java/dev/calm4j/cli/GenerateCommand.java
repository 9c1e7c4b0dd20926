package dev.calm4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.Mode;
import dev.calm4j.generate.AlignedCalmSession;
import dev.calm4j.generate.CalmSession;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.LmSession;
import dev.calm4j.generate.Sampler;
import dev.calm4j.lm.CausalLm;
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
        description = {"Generate text (or token ids) from a Hugging Face model folder, with a KV cache; or from a "
                + "LoRA-adapted model (--lora), or a composition (--bridges: the anchor's and every augment's caches "
                + "plus every bridge's keys/values).",
                "With --bridges the base models default to the paths recorded in the checkpoint; --model/--augment "
                        + "override them. For separate_prompt checkpoints each augment reads --augment-prompt (one per "
                        + "augment), else the prompt itself."},
        footer = {"", "Examples:",
                "  calm generate --model " + Examples.STORIES + " --prompt-ids 1 --max-new-tokens 64 --greedy",
                "  calm generate --model " + Examples.STORIES + " --prompt-ids 1 --temperature 0.8 --top-p 0.95 --seed 7",
                "  calm generate --model " + Examples.M_B + " --prompt '250-41=' --prompt '3+481=' --add-bos --max-new-tokens 4 --json",
                Examples.DEMO_NOTE,
                Examples.DEMO,
                "  calm generate --model " + Examples.M_B + " --lora " + Examples.LORA + " --prompt " + Examples.HELD_OUT_PROMPT
                        + " --add-bos --max-new-tokens 4 --json",
                "  calm generate --model " + Examples.M_B + " --augment " + Examples.M_A + " --bridges " + Examples.BRIDGES
                        + " --prompt " + Examples.HELD_OUT_PROMPT + " --add-bos --max-new-tokens 4 --json",
                "  calm generate --bridges " + Examples.BRIDGES + " --prompt " + Examples.HELD_OUT_PROMPT + " --add-bos --max-new-tokens 4"})
final class GenerateCommand implements Callable<Integer> {

    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = {"--model", "--anchor"}, paramLabel = "DIR",
            description = "Hugging Face model folder (config.json, model.safetensors or sharded index, tokenizer.json); "
                    + "the anchor with --bridges (where it defaults to the recorded one)")
    Path model;

    @Option(names = "--augment", paramLabel = "DIR", description = "augmenting model folder (with --bridges; repeat in the checkpoint's order)")
    List<Path> augments;

    @Option(names = "--bridges", paramLabel = "DIR", description = "bridge checkpoint written by calm compose: generate from the composition")
    Path bridges;

    @Option(names = "--augment-prompt", paramLabel = "TEXT",
            description = "separate_prompt checkpoints: what augment i reads (repeat, one per augment; default: the prompt)")
    List<String> augmentPrompts;

    @Option(names = "--allow-mismatch", description = "load bridges onto base models whose weights differ from the ones they were trained on")
    boolean allowMismatch;

    @Option(names = "--lora", paramLabel = "DIR", description = "LoRA adapters (PEFT layout) to apply to the model")
    Path lora;

    @Option(names = "--add-bos", description = "prepend the model's BOS id to each prompt (and augment prompt) unless it "
            + "already starts with it, as the training data rules do")
    boolean addBos;

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

    @Option(names = "--dtype", defaultValue = "fp32", paramLabel = "fp32|bf16|bf16-mixed", description = "compute dtype; "
            + "bf16-mixed: bf16 weights and matmuls, float32 activations (Llama-family models) (default ${DEFAULT-VALUE})")
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
        computeDtype(dtype);                                   // a bad --dtype stops here, before any loading
        ModelSource src = ModelSource.resolve("--model", model, augments, bridges, lora, allowMismatch);
        Path modelDir = src.anchorDir();
        if (augmentPrompts != null && !augmentPrompts.isEmpty()) {
            if (src.mode() != Mode.SEPARATE_PROMPT) {
                throw new Calm4jException("--augment-prompt is for separate_prompt bridge checkpoints"
                        + (src.composed() ? "; " + bridges + " is " + src.mode().jsonName() : " (give --bridges DIR)"));
            }
            if (augmentPrompts.size() != src.calm().augments().size()) {
                throw new Calm4jException("--augment-prompt given " + augmentPrompts.size() + " time(s); the bridges have "
                        + src.calm().augments().size() + " augmenting model(s): give one per augment, or none to let "
                        + "every augment read the prompt");
            }
        }
        int bos = src.anchorConfig().bosTokenId();
        List<Tokenizer> augmentTokenizers = new ArrayList<>();
        try (ModelSource.Loaded loaded = src.load(allowMismatch, weightDtype(dtype), computeDtype(dtype))) {
            CausalLm lm = loaded.lm();
            Tokenizer tok = null;
            List<long[]> batch = new ArrayList<>();
            if (prompts.text != null) {
                tok = Tokenizer.load(modelDir);
                for (String p : prompts.text) {
                    batch.add(withBos(tok.encode(p), bos));
                }
            } else {
                batch.add(withBos(prompts.ids.stream().mapToLong(Long::longValue).toArray(), bos));
                if (Tokenizer.exists(modelDir)) {
                    tok = Tokenizer.load(modelDir);
                }
            }
            Generator.SessionFactory sessions = (b, max) -> LmSession.cached(lm, b, max);
            if (loaded.calm() != null) {
                CalmModel calm = loaded.calm().model();
                List<long[]> own = null;
                if (calm.mode() == Mode.SEPARATE_PROMPT && augmentPrompts != null && !augmentPrompts.isEmpty()) {
                    if (tok == null) {
                        throw new Calm4jException(modelDir.resolve("tokenizer.json")
                                + ": tokenizer missing, needed to encode --augment-prompt");
                    }
                    own = new ArrayList<>();
                    for (int a = 0; a < augmentPrompts.size(); a++) {
                        long[] ids = withBos(tok.encode(augmentPrompts.get(a)), bos);
                        if (ids.length == 0) {
                            throw new Calm4jException("--augment-prompt " + a + " is empty");
                        }
                        own.add(ids);
                    }
                }
                boolean ownTokenizers = false;
                for (int a = 0; a < calm.augments().size(); a++) {
                    ownTokenizers |= calm.ownTokens(a);
                }
                if (ownTokenizers && prompts.text == null) {
                    throw new Calm4jException("an augment of these bridges reads the text through its own tokenizer: "
                            + "give --prompt TEXT, not --prompt-ids");
                }
                List<Tokenizer> augToks = new ArrayList<>();
                for (int a = 0; a < calm.augments().size() && ownTokenizers; a++) {
                    augToks.add(calm.ownTokens(a) ? Tokenizer.load(loaded.calm().augmentDirs().get(a)) : null);
                }
                augmentTokenizers.addAll(augToks.stream().filter(java.util.Objects::nonNull).toList());
                if (ownTokenizers && calm.mode() == Mode.SEPARATE_PROMPT) {
                    // each augment reads its prompt (or the row's prompt) through its own tokenizer where it has one
                    Tokenizer anchorTok = tok;
                    List<long[][]> ap = CalmSession.augmentPromptsFromText(calm, prompts.text,
                            augmentPrompts == null || augmentPrompts.isEmpty() ? null : augmentPrompts, augToks,
                            text -> withBos(anchorTok.encode(text), bos));
                    sessions = (b, max) -> CalmSession.cached(calm, b, max, ap);
                } else if (ownTokenizers) {
                    // An augment reads the text through its own tokenizer: generation starts from the prompt texts,
                    // and every step the augment re-reads the grown text (AlignedCalmSession).
                    AlignedCalmSession.Start s = AlignedCalmSession.start(calm, tok, augToks, prompts.text);
                    batch.clear();
                    batch.addAll(s.prompts());
                    sessions = s.sessions();
                } else {
                    List<long[][]> ap = CalmSession.augmentPrompts(calm, batch, own);
                    sessions = (b, max) -> CalmSession.cached(calm, b, max, ap);
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
            Generator.Result r = Generator.generate(sessions, batch,
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
                if (src.composed() || lora != null) {
                    o.put("model", loaded.description());
                }
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
        } finally {
            augmentTokenizers.forEach(Tokenizer::close);
        }
        return 0;
    }

    /** With --add-bos, the ids with the model's BOS in front (unless already there or the model has none). */
    private long[] withBos(long[] ids, int bos) {
        return addBos ? Generator.withBos(ids, bos) : ids;
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
            default -> throw new Calm4jException("--dtype: expected fp32, bf16 or bf16-mixed, got '" + s + "'");
        };
    }

    /** What {@code --dtype} holds the frozen weights in: bf16 under bf16-mixed. */
    static ScalarType weightDtype(String s) {
        return s.equals(MIXED) ? ScalarType.BFloat16 : parseDtype(s);
    }

    /** What {@code --dtype} computes the activations in: float32 under bf16-mixed. */
    static ScalarType computeDtype(String s) {
        return s.equals(MIXED) ? ScalarType.Float : parseDtype(s);
    }

    /** bf16 weights and matmuls, float32 activations and residual stream (Llama-family models). */
    static final String MIXED = "bf16-mixed";

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
