package dev.calm4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.compose.Mode;
import dev.calm4j.data.DataRules;
import dev.calm4j.data.Dataset;
import dev.calm4j.data.Example;
import dev.calm4j.eval.Accuracy;
import dev.calm4j.eval.Evaluator;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.lm.ModelConfig;
import dev.calm4j.tokenize.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;

@Command(name = "eval", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Evaluate a model, a LoRA-adapted model (--lora) or a composition (--bridges) on a data file.",
                "exact: greedy decoding from each prompt must reproduce the completion exactly (and stop where it stops "
                        + "when EOS is appended); accuracy with a 95%% Wilson interval. perplexity: mean loss per "
                        + "target token and its exp.",
                "Use the same --no-eos/--no-bos as in training. With --bridges, the base models default to the paths "
                        + "recorded in the checkpoint; --anchor/--augment override them (their weights must match the "
                        + "recorded fingerprints unless --allow-mismatch)."},
        footer = {"", "Examples:",
                Examples.DEMO_NOTE,
                Examples.DEMO,
                "  calm eval --bridges " + Examples.BRIDGES + " --data " + Examples.HELD_OUT + " --metric exact",
                "  calm eval --anchor " + Examples.M_B + " --augment " + Examples.M_A + " --bridges " + Examples.BRIDGES
                        + " --data " + Examples.HELD_OUT + " --metric exact --show 5",
                "  calm eval --anchor " + Examples.M_B + " --data " + Examples.NUM_MATH + " --metric exact --json",
                "  calm eval --anchor " + Examples.M_B + " --data " + Examples.HELD_OUT + " --metric perplexity --json",
                "  calm eval --anchor " + Examples.M_B + " --lora " + Examples.LORA + " --data " + Examples.HELD_OUT
                        + " --metric exact --json"})
final class EvalCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = {"--anchor", "--model"}, paramLabel = "DIR",
            description = "the model (the anchor of a composition); optional with --bridges")
    Path anchor;

    @Option(names = "--augment", paramLabel = "DIR", description = "augmenting model folder (with --bridges; repeat in the checkpoint's order)")
    List<Path> augments;

    @Option(names = "--bridges", paramLabel = "DIR", description = "bridge checkpoint written by calm compose")
    Path bridges;

    @Option(names = "--allow-mismatch", description = "load bridges onto base models whose weights differ from the ones they were trained on")
    boolean allowMismatch;

    @Option(names = "--lora", paramLabel = "DIR", description = "LoRA adapters (PEFT layout) to apply to the model")
    Path lora;

    @Option(names = "--data", required = true, paramLabel = "FILE", description = "evaluation data (.jsonl prompt/completion for exact)")
    Path data;

    @Option(names = "--metric", defaultValue = "exact", paramLabel = "exact|perplexity", description = "what to measure (default ${DEFAULT-VALUE})")
    String metric;

    @Option(names = "--batch", defaultValue = "16", paramLabel = "N", description = "examples per forward (default ${DEFAULT-VALUE})")
    int batch;

    @Option(names = "--show", defaultValue = "0", paramLabel = "N",
            description = "also print the first N examples: prompt, expected and greedy prediction")
    int show;

    @Option(names = "--dtype", defaultValue = "fp32", paramLabel = "fp32|bf16|bf16-mixed", description = "compute dtype; "
            + "bf16-mixed: bf16 weights and matmuls, float32 activations (Llama-family models) (default ${DEFAULT-VALUE})")
    String dtype;

    @Option(names = "--json", description = "print one JSON object")
    boolean json;

    @Mixin
    DataOptions dataOptions;

    @Override
    public Integer call() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        if (!metric.equals("exact") && !metric.equals("perplexity")) {
            throw new Calm4jException("--metric: expected exact or perplexity, got '" + metric + "'");
        }
        if (batch < 1) {
            throw new Calm4jException("--batch must be > 0, got " + batch);
        }
        if (show < 0) {
            throw new Calm4jException("--show must be >= 0, got " + show);
        }
        GenerateCommand.computeDtype(dtype);                   // a bad --dtype stops here, before any loading
        ModelSource src = ModelSource.resolve("--anchor", anchor, augments, bridges, lora, allowMismatch);
        Dataset ds;
        Tokenizer tok = DataOptions.tokenizerOf(src.anchorDir());
        try {
            DataRules rules = dataOptions.rules(src.anchorConfig(), src.mode() == Mode.SEPARATE_PROMPT);
            ds = dataOptions.read(data, tok, rules, DataOptions.noTokenizerIn(src.anchorDir()));
            if (src.mode() == Mode.SEPARATE_PROMPT) {
                List<ModelConfig> augCfgs = new ArrayList<>();
                List<Path> dirs = src.effectiveAugments();
                for (int a = 0; a < dirs.size(); a++) {     // null: the augment reads through its own tokenizer
                    augCfgs.add(src.calm().augments().get(a).ownTokens() ? null : LmFamilies.readConfig(dirs.get(a)));
                }
                DataOptions.checkAugmentVocab(ds, augCfgs);
            }
            try (ModelSource.Loaded m = src.load(allowMismatch, GenerateCommand.weightDtype(dtype), GenerateCommand.computeDtype(dtype))) {
                Set<Integer> stop = new HashSet<>(src.anchorConfig().eosTokenIds());
                ObjectMapper om = new ObjectMapper();
                ObjectNode o = om.createObjectNode();
                o.put("metric", metric);
                List<long[]> preds = null;
                List<Boolean> hits = null;
                if (metric.equals("exact")) {
                    boolean progress = !json && System.console() != null;
                    Evaluator.ExactMatch em = Evaluator.exactMatch(m.evalModel(), ds, batch, stop, progress
                            ? k -> spec.commandLine().getErr().printf("\revaluated %d/%d", k, ds.size()).flush() : null);
                    if (progress) {
                        spec.commandLine().getErr().println();
                    }
                    Accuracy acc = em.accuracy();
                    double[] ci = acc.ci95();
                    o.put("accuracy", acc.value());
                    o.put("n", acc.n());
                    o.put("correct", acc.correct());
                    ArrayNode c = o.putArray("ci95");
                    c.add(ci[0]);
                    c.add(ci[1]);
                    preds = em.predictions();
                    hits = em.correct();
                } else {
                    Evaluator.Perplexity p = Evaluator.perplexity(m.evalModel(), ds, batch);
                    o.put("perplexity", p.perplexity());
                    o.put("mean_loss", p.meanLoss());
                    o.put("tokens", p.tokens());
                    if (show > 0) {
                        Dataset head = Dataset.of(ds.examples().subList(0, Math.min(show, ds.size())), ds.source());
                        Evaluator.ExactMatch em = Evaluator.exactMatch(m.evalModel(), head, batch, stop, null);
                        preds = em.predictions();
                        hits = em.correct();
                    }
                }
                o.put("model", m.description());
                o.put("data", ds.source());
                if (metric.equals("perplexity")) {
                    o.put("examples", ds.size());
                }
                int nShow = Math.min(show, ds.size());
                if (show > 0) {
                    ArrayNode arr = o.putArray("shown");
                    for (int i = 0; i < nShow; i++) {
                        Example e = ds.get(i);
                        ObjectNode x = arr.addObject();
                        x.put("line", e.line());
                        putText(x, "prompt", tok, e.prompt(), true);
                        putText(x, "expected", tok, e.completion(), false);
                        putText(x, "predicted", tok, preds.get(i), false);
                        x.put("correct", hits.get(i));
                    }
                }
                if (json) {
                    out.println(om.writeValueAsString(o));
                    return 0;
                }
                out.printf("model       %s%n", m.description());
                out.printf("data        %s%n", DataOptions.describe(ds));
                if (metric.equals("exact")) {
                    double[] ci = new double[] {o.get("ci95").get(0).asDouble(), o.get("ci95").get(1).asDouble()};
                    out.printf("exact match %.1f%% (%d/%d correct), 95%% CI %.1f%%-%.1f%%%n", 100 * o.get("accuracy").asDouble(),
                            o.get("correct").asLong(), o.get("n").asLong(), 100 * ci[0], 100 * ci[1]);
                } else {
                    out.printf("perplexity  %.4f (mean loss %.4f nats over %,d target tokens)%n",
                            o.get("perplexity").asDouble(), o.get("mean_loss").asDouble(), o.get("tokens").asLong());
                }
                for (int i = 0; i < nShow; i++) {
                    Example e = ds.get(i);
                    out.printf("%n[%s:%d] %s%n", ds.source(), e.line(), hits.get(i) ? "correct" : "WRONG");
                    out.printf("  prompt    %s%n", text(tok, e.prompt(), true));
                    out.printf("  expected  %s%n", text(tok, e.completion(), false));
                    out.printf("  predicted %s%n", text(tok, preds.get(i), false));
                }
            }
        } finally {
            if (tok != null) {
                tok.close();
            }
        }
        return 0;
    }

    private static void putText(ObjectNode x, String field, Tokenizer tok, long[] ids, boolean skipSpecial) {
        if (tok != null) {
            x.put(field, tok.decode(ids, skipSpecial));
        }
        ArrayNode a = x.putArray(field + "_ids");
        for (long id : ids) {
            a.add(id);
        }
    }

    /** Decoded and quoted (special tokens shown, except in prompts), or the ids without a tokenizer. */
    static String text(Tokenizer tok, long[] ids, boolean skipSpecial) {
        if (tok == null) {
            StringBuilder sb = new StringBuilder("[");
            for (int i = 0; i < ids.length; i++) {
                sb.append(i == 0 ? "" : ",").append(ids[i]);
            }
            return sb.append(']').toString();
        }
        String s = tok.decode(ids, skipSpecial);
        return "\"" + s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\"", "\\\"") + "\"";
    }
}
