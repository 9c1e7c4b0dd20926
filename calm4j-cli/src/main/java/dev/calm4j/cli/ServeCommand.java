package dev.calm4j.cli;

import dev.calm4j.Calm4jException;
import dev.calm4j.serve.OpenAiServer;
import dev.calm4j.serve.ServeConfig;
import dev.calm4j.serve.ServedModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Callable;

@Command(name = "serve", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Serve a model, a LoRA-adapted model (--lora) or a composition (--bridges) over HTTP with "
                + "OpenAI's API: /v1/completions, /v1/chat/completions (with the model's chat template), /v1/models, "
                + "/tokenize, /detokenize, /tokenizer_info, /health and /metrics (docs/serving.md).",
                "Models load as for calm generate. Requests run in one decode loop, each sequence with its own caches; "
                        + "SIGTERM (Ctrl-C) finishes the requests in flight and refuses new ones."},
        footer = {"", "Examples:",
                "  calm serve --model " + Examples.M_B + " --port 8080",
                "  calm serve --model " + Examples.M_B + " --api-key secret --max-batch 8 --max-queue 64",
                Examples.DEMO_NOTE,
                Examples.DEMO,
                "  calm serve --bridges " + Examples.BRIDGES,
                "  calm serve --model " + Examples.M_B + " --lora " + Examples.LORA + " --served-model-name kv-lora"})
final class ServeCommand implements Callable<Integer> {
    @Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = {"--model", "--anchor"}, paramLabel = "DIR",
            description = "Hugging Face model folder; the anchor with --bridges (where it defaults to the recorded one)")
    Path model;

    @Option(names = "--augment", paramLabel = "DIR", description = "augmenting model folder (with --bridges; repeat in the checkpoint's order)")
    List<Path> augments;

    @Option(names = "--bridges", paramLabel = "DIR", description = "bridge checkpoint written by calm compose: serve the composition")
    Path bridges;

    @Option(names = "--allow-mismatch", description = "load bridges onto base models whose weights differ from the ones they were trained on")
    boolean allowMismatch;

    @Option(names = "--lora", paramLabel = "DIR", description = "LoRA adapters (PEFT layout) to apply to the model")
    Path lora;

    @Option(names = "--dtype", defaultValue = "fp32", paramLabel = "fp32|bf16|bf16-mixed", description = "compute dtype; "
            + "bf16-mixed: bf16 weights and matmuls, float32 activations (Llama-family models) (default ${DEFAULT-VALUE})")
    String dtype;

    @Option(names = "--served-model-name", paramLabel = "NAME", description = "the model id clients send (default: the folder's name)")
    String name;

    @Option(names = "--host", defaultValue = "127.0.0.1", paramLabel = "ADDR", description = "address to listen on (default ${DEFAULT-VALUE})")
    String host;

    @Option(names = "--port", defaultValue = "8080", paramLabel = "PORT", description = "TCP port (default ${DEFAULT-VALUE}; 0: any free one)")
    int port;

    @Option(names = "--api-key", paramLabel = "KEY",
            description = "require 'Authorization: Bearer KEY' on every endpoint but /health (default: $CALM4J_API_KEY, else none)")
    String apiKey;

    @Option(names = "--max-batch", defaultValue = "16", paramLabel = "N", description = "sequences decoded together (default ${DEFAULT-VALUE}; 1: one at a time)")
    int maxBatch;

    @Option(names = "--max-queue", defaultValue = "256", paramLabel = "N", description = "sequences that may wait; past that, 503 (default ${DEFAULT-VALUE})")
    int maxQueue;

    @Option(names = "--max-body-bytes", defaultValue = "1048576", paramLabel = "N", description = "largest request body (default ${DEFAULT-VALUE})")
    int maxBody;

    @Option(names = "--max-tokens-limit", defaultValue = "4096", paramLabel = "N", description = "largest max_tokens a request may ask for (default ${DEFAULT-VALUE})")
    int maxTokens;

    @Option(names = "--max-n", defaultValue = "16", paramLabel = "N", description = "largest n (default ${DEFAULT-VALUE})")
    int maxN;

    @Option(names = "--max-prompts", defaultValue = "64", paramLabel = "N", description = "largest number of prompts in one request (default ${DEFAULT-VALUE})")
    int maxPrompts;

    @Option(names = "--max-logprobs", defaultValue = "20", paramLabel = "N", description = "largest logprobs / top_logprobs (default ${DEFAULT-VALUE})")
    int maxLogprobs;

    @Option(names = "--drain-seconds", defaultValue = "30", paramLabel = "S", description = "on SIGTERM, how long to wait for requests in flight (default ${DEFAULT-VALUE})")
    int drainSeconds;

    @Override
    public Integer call() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        String key = apiKey != null ? apiKey : System.getenv("CALM4J_API_KEY");
        ServeConfig cfg = new ServeConfig(host, port, key == null || key.isEmpty() ? null : key, maxBatch, maxQueue,
                maxBody, maxTokens, maxN, maxPrompts, maxLogprobs, drainSeconds);
        ModelSource src = ModelSource.resolve("--model", model, augments, bridges, lora, allowMismatch);
        String id = name != null ? name : (bridges != null ? bridges : lora != null ? lora : src.anchorDir())
                .toAbsolutePath().normalize().getFileName().toString();
        ModelSource.Loaded loaded = src.load(allowMismatch, GenerateCommand.weightDtype(dtype),
                GenerateCommand.computeDtype(dtype));
        ServedModel served;
        try {
            served = ServedModel.of(id, loaded.lm(), loaded.calm() == null ? null : loaded.calm().model(),
                    src.anchorDir(), loaded.description(), loaded);
        } catch (RuntimeException e) {
            loaded.close();
            throw e;
        }
        OpenAiServer server = new OpenAiServer(served, cfg);
        try {
            server.start();
        } catch (Exception e) {
            server.close();
            served.close();
            throw new Calm4jException("cannot listen on " + host + ":" + port + " (" + rootMessage(e) + ")");
        }
        out.println("serving " + loaded.description() + " as '" + id + "'");
        out.println("listening on http://" + host + ":" + server.port() + " (OpenAI API under /v1"
                + (cfg.apiKey() != null ? "; bearer token required" : "") + "); Ctrl-C or SIGTERM to stop");
        out.flush();
        Thread hook = new Thread(() -> {
            boolean clean = server.drain(Duration.ofSeconds(drainSeconds));
            System.err.println("calm serve: stopped" + (clean ? "" : " (requests still in flight after "
                    + drainSeconds + " s were cut)"));
        }, "calm-serve-drain");
        Runtime.getRuntime().addShutdownHook(hook);
        server.join();
        return 0;
    }

    private static String rootMessage(Throwable e) {
        while (e.getCause() != null) {
            e = e.getCause();
        }
        return e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
    }
}
