package dev.calm4j.serve;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.generate.Sampler;
import org.eclipse.jetty.http.HttpHeader;
import org.eclipse.jetty.io.Content;
import org.eclipse.jetty.server.Handler;
import org.eclipse.jetty.server.Request;
import org.eclipse.jetty.server.Response;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.util.Callback;
import org.eclipse.jetty.util.thread.QueuedThreadPool;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The OpenAI-compatible HTTP front ({@code docs/serving.md} lists the endpoints and limits). Built on Jetty 12's core
 * handlers: each request is handled on a pool thread that parses it, hands its sequences to the {@link Scheduler}
 * and writes the answer (all at once, or as server-sent events while tokens come).
 */
public final class OpenAiServer implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** How long a non-streamed answer may take before its headers go out and heartbeats start. */
    static final Duration HEARTBEAT_AFTER = Duration.ofSeconds(2);

    private final ServedModel model;
    private final ServeConfig config;
    private final Scheduler scheduler;
    private final Metrics metrics;
    private final Job.Text text;
    private final Server server;
    private final ServerConnector connector;
    private final AtomicInteger inFlight = new AtomicInteger();
    private final AtomicBoolean draining = new AtomicBoolean();
    private final long created = System.currentTimeMillis() / 1000;

    public OpenAiServer(ServedModel model, ServeConfig config) {
        this.model = model;
        this.config = config;
        this.scheduler = new Scheduler(model, config.maxActive(), config.maxWaiting());
        this.metrics = new Metrics(scheduler::waitingCount, scheduler::activeCount);
        this.text = new Job.Text(model.tokenizer());
        // Every waiting request holds a pool thread (handlers block): room for the whole queue, plus the rest.
        QueuedThreadPool pool = new QueuedThreadPool(config.maxWaiting() + config.maxActive() + 32, 8);
        pool.setName("calm-serve-http");
        pool.setDaemon(true);
        this.server = new Server(pool);
        this.connector = new ServerConnector(server);
        connector.setHost(config.host());
        connector.setPort(config.port());
        server.addConnector(connector);
        server.setHandler(new Handler.Abstract() {
            @Override
            public boolean handle(Request request, Response response, Callback callback) {
                dispatch(request, response, callback);
                return true;
            }
        });
    }

    /** Binds and starts answering. */
    public void start() throws Exception {
        scheduler.start(metrics);
        server.start();
    }

    /** The bound port (the chosen one when the config asked for 0). */
    public int port() {
        return connector.getLocalPort();
    }

    /** Blocks until the server stops. */
    public void join() throws InterruptedException {
        server.join();
    }

    /**
     * Refuses new requests (503), waits up to {@code timeout} for those in flight to finish, then stops. What
     * {@code calm serve} does on SIGTERM.
     *
     * @return true when every in-flight request finished in time
     */
    public boolean drain(Duration timeout) {
        draining.set(true);
        long end = System.nanoTime() + timeout.toNanos();
        while (inFlight.get() > 0 && System.nanoTime() < end) {
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        boolean clean = inFlight.get() == 0;
        close();
        return clean;
    }

    @Override
    public void close() {
        draining.set(true);
        try {
            server.stop();
        } catch (Exception e) {
            // stopping is best effort: the process is going away
        }
        scheduler.close();
    }

    // ---------------------------------------------------------------- routing

    private void dispatch(Request request, Response response, Callback callback) {
        long t0 = System.nanoTime();
        String path = Request.getPathInContext(request);
        String method = request.getMethod();
        String endpoint = endpointName(path);
        int status;
        boolean counted = !path.equals("/health") && !path.equals("/metrics");
        if (counted) {
            inFlight.incrementAndGet();
        }
        try {
            status = route(method, path, request, response, callback);
        } catch (ApiException e) {
            status = e.status();
            error(response, callback, e);
        } catch (RuntimeException e) {
            // Never a stack trace to the client: one line for the operator, a generic message for the caller.
            System.err.println("calm serve: " + method + " " + path + " failed: " + e);
            status = 500;
            error(response, callback, new ApiException(500, "server_error", null, null, "internal error"));
        } finally {
            if (counted) {
                inFlight.decrementAndGet();
            }
        }
        metrics.request(endpoint, status, (System.nanoTime() - t0) / 1e9);
    }

    private static String endpointName(String path) {
        return switch (path) {
            case "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions", "/tokenize",
                 "/detokenize", "/tokenizer_info" -> path;
            default -> path.startsWith("/v1/models/") ? "/v1/models/{id}" : "other";
        };
    }

    private int route(String method, String path, Request request, Response response, Callback callback) {
        if (path.equals("/health")) {
            requireMethod(method, "GET");
            return write(response, callback, 200, JSON.createObjectNode().put("status", draining.get() ? "draining" : "ok"));
        }
        authorize(request);
        if (path.equals("/metrics")) {            // answered while draining too: the drain is worth watching
            requireMethod(method, "GET");
            response.setStatus(200);
            response.getHeaders().put(HttpHeader.CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
            Content.Sink.write(response, true, metrics.render(), callback);
            return 200;
        }
        if (draining.get()) {
            response.getHeaders().put(HttpHeader.RETRY_AFTER, "5");
            throw new ApiException(503, "server_error", null, "shutting_down", "the server is shutting down");
        }
        switch (path) {
            case "/v1/models" -> {
                requireMethod(method, "GET");
                ObjectNode o = JSON.createObjectNode().put("object", "list");
                o.putArray("data").add(modelCard());
                return write(response, callback, 200, o);
            }
            case "/tokenizer_info" -> {
                requireMethod(method, "GET");
                return write(response, callback, 200, tokenizerInfo());
            }
            case "/tokenize" -> {
                requireMethod(method, "POST");
                return write(response, callback, 200, tokenize(body(request)));
            }
            case "/detokenize" -> {
                requireMethod(method, "POST");
                return write(response, callback, 200, detokenize(body(request)));
            }
            case "/v1/completions" -> {
                requireMethod(method, "POST");
                return completions(body(request), request, response, callback, false);
            }
            case "/v1/chat/completions" -> {
                requireMethod(method, "POST");
                return completions(body(request), request, response, callback, true);
            }
            default -> {
                if (path.startsWith("/v1/models/")) {
                    requireMethod(method, "GET");
                    String id = path.substring("/v1/models/".length());
                    if (!id.equals(model.id())) {
                        throw new ApiException(404, "invalid_request_error", "model", "model_not_found",
                                "the model '" + id + "' does not exist; this server serves '" + model.id() + "'");
                    }
                    return write(response, callback, 200, modelCard());
                }
                throw new ApiException(404, "invalid_request_error", null, "not_found", "no such endpoint: " + path);
            }
        }
    }

    private static void requireMethod(String method, String allowed) {
        if (!method.equals(allowed)) {
            throw new ApiException(405, "invalid_request_error", null, "method_not_allowed",
                    method + " is not allowed here; use " + allowed);
        }
    }

    private void authorize(Request request) {
        if (config.apiKey() == null) {
            return;
        }
        String h = request.getHeaders().get(HttpHeader.AUTHORIZATION);
        String want = "Bearer " + config.apiKey();
        if (h == null || !MessageDigest.isEqual(h.trim().getBytes(StandardCharsets.UTF_8), want.getBytes(StandardCharsets.UTF_8))) {
            throw new ApiException(401, "invalid_request_error", null, "invalid_api_key",
                    h == null ? "missing API key: send the header 'Authorization: Bearer <key>'" : "incorrect API key");
        }
    }

    /** The request body as JSON, within the size limit. */
    private JsonNode body(Request request) {
        long declared = request.getLength();
        byte[] buf;
        try (InputStream in = Content.Source.asInputStream(request)) {
            if (declared > config.maxBodyBytes()) {
                drain(in);
                throw tooLarge();
            }
            buf = in.readNBytes(config.maxBodyBytes() + 1);
            if (buf.length > config.maxBodyBytes()) {
                drain(in);
                throw tooLarge();
            }
        } catch (IOException e) {
            throw ApiException.invalid(null, "could not read the request body");
        }
        try {
            JsonNode n = JSON.readTree(buf);
            if (n == null || !n.isObject()) {
                throw ApiException.invalid(null, "the request body must be a JSON object");
            }
            return n;
        } catch (IOException e) {
            String m = e instanceof JsonProcessingException j ? j.getOriginalMessage() : "unreadable";
            throw ApiException.invalid(null, "the request body is not valid JSON: " + m);
        }
    }

    /**
     * Reads and drops what is left of a refused body, up to {@link #DRAIN_BYTES}. Why: a server that answers 413 and
     * closes while the client is still sending makes the client's write fail before it reads the answer (it sees
     * a reset connection, not the 413). Beyond the bound the connection is closed after the answer all the same.
     */
    private static void drain(InputStream in) throws IOException {
        byte[] sink = new byte[64 << 10];
        long left = DRAIN_BYTES;
        int n;
        while (left > 0 && (n = in.read(sink, 0, (int) Math.min(sink.length, left))) > 0) {
            left -= n;
        }
    }

    /** The most of a refused body that is read (and dropped) before answering 413. */
    static final long DRAIN_BYTES = 16L << 20;

    private ApiException tooLarge() {
        return new ApiException(413, "invalid_request_error", null, "request_too_large",
                "the request body is larger than " + config.maxBodyBytes() + " bytes");
    }

    private static int write(Response response, Callback callback, int status, JsonNode body) {
        if (!response.isCommitted()) {
            response.setStatus(status);
            response.getHeaders().put(HttpHeader.CONTENT_TYPE, "application/json");
        }
        Content.Sink.write(response, true, body.toString(), callback);
        return status;
    }

    private static void error(Response response, Callback callback, ApiException e) {
        ObjectNode o = JSON.createObjectNode();
        ObjectNode err = o.putObject("error");
        err.put("message", e.getMessage());
        err.put("type", e.type());
        err.put("param", e.param());
        err.put("code", e.code());
        if (response.isCommitted()) {
            Content.Sink.write(response, true, o.toString(), callback);
            return;
        }
        write(response, callback, e.status(), o);
    }

    // ---------------------------------------------------------------- models and tokenizer

    private ObjectNode modelCard() {
        ObjectNode m = JSON.createObjectNode();
        m.put("id", model.id());
        m.put("object", "model");
        m.put("created", created);
        m.put("owned_by", "calm4j");
        m.put("max_model_len", model.contextLength());
        m.set("metadata", JSON.valueToTree(model.metadata()));
        return m;
    }

    private ObjectNode tokenizerInfo() {
        ObjectNode o = JSON.createObjectNode();
        o.put("tokenizer_class", "PreTrainedTokenizerFast");
        o.put("model_max_length", model.contextLength());
        o.put("vocab_size", model.vocabSize());
        o.put("bos_token", model.bosText());
        o.put("eos_token", model.eosText());
        o.putNull("pad_token");
        o.put("chat_template", model.chat() == null ? null : model.chat().source());
        return o;
    }

    private ObjectNode tokenize(JsonNode body) {
        long[] ids;
        if (body.has("messages")) {
            ids = text.encode(chatPrompt(body.get("messages")), false);
        } else {
            JsonNode p = body.get("prompt");
            if (p == null || !p.isTextual()) {
                throw ApiException.invalid("prompt", "'prompt' must be a string (or give 'messages')");
            }
            boolean special = !body.has("add_special_tokens") || bool(body, "add_special_tokens", true);
            ids = text.encode(p.asText(), special);
        }
        ObjectNode o = JSON.createObjectNode();
        o.put("count", ids.length);
        o.put("max_model_len", model.contextLength());
        ArrayNode a = o.putArray("tokens");
        for (long id : ids) {
            a.add(id);
        }
        return o;
    }

    private ObjectNode detokenize(JsonNode body) {
        JsonNode t = body.get("tokens");
        if (t == null || !t.isArray()) {
            throw ApiException.invalid("tokens", "'tokens' must be a list of token ids");
        }
        long[] ids = ids(t, "tokens");
        String s;
        synchronized (text) {
            s = model.tokenizer().decode(ids, false);
        }
        return JSON.createObjectNode().put("prompt", s);
    }

    private long[] ids(JsonNode list, String param) {
        long[] ids = new long[list.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode n = list.get(i);
            if (!n.canConvertToLong() || !n.isIntegralNumber()) {
                throw ApiException.invalid(param, "'" + param + "' must hold integer token ids");
            }
            long v = n.asLong();
            if (v < 0 || v >= model.vocabSize()) {
                throw ApiException.invalid(param, "token id " + v + " is outside the vocabulary [0, "
                        + model.vocabSize() + ")");
            }
            ids[i] = v;
        }
        return ids;
    }

    // ---------------------------------------------------------------- completions

    /** A prompt as ids, with the text echo shows. */
    private record Prompt(long[] ids, String text) {}

    private String chatPrompt(JsonNode messages) {
        if (model.chat() == null) {
            throw ApiException.invalid("messages", "this model has no chat template (tokenizer_config.json's "
                    + "chat_template); use /v1/completions with a prompt");
        }
        if (messages == null || !messages.isArray() || messages.isEmpty()) {
            throw ApiException.invalid("messages", "'messages' must be a non-empty list of {role, content}");
        }
        List<Map<String, Object>> list = new ArrayList<>();
        for (JsonNode m : messages) {
            if (!m.isObject() || !m.path("role").isTextual()) {
                throw ApiException.invalid("messages", "each message needs a 'role' string and 'content'");
            }
            JsonNode c = m.get("content");
            String content;
            if (c == null || c.isNull()) {
                content = "";
            } else if (c.isTextual()) {
                content = c.asText();
            } else if (c.isArray()) {               // content parts: only text is understood
                StringBuilder sb = new StringBuilder();
                for (JsonNode part : c) {
                    if (!"text".equals(part.path("type").asText()) || !part.path("text").isTextual()) {
                        throw ApiException.invalid("messages", "only text content parts are supported");
                    }
                    sb.append(part.get("text").asText());
                }
                content = sb.toString();
            } else {
                throw ApiException.invalid("messages", "a message's 'content' must be a string or a list of text parts");
            }
            Map<String, Object> msg = new HashMap<>();
            msg.put("role", m.get("role").asText());
            msg.put("content", content);
            list.add(msg);
        }
        return model.chat().render(list);
    }

    private List<Prompt> prompts(JsonNode p) {
        if (p == null || p.isNull()) {
            throw ApiException.invalid("prompt", "'prompt' is required");
        }
        List<Prompt> out = new ArrayList<>();
        if (p.isTextual()) {
            out.add(textPrompt(p.asText()));
        } else if (p.isArray() && !p.isEmpty()) {
            if (p.get(0).isIntegralNumber()) {
                out.add(idPrompt(p));
            } else {
                for (JsonNode e : p) {
                    if (e.isTextual()) {
                        out.add(textPrompt(e.asText()));
                    } else if (e.isArray()) {
                        out.add(idPrompt(e));
                    } else {
                        throw ApiException.invalid("prompt", "'prompt' must be a string, a list of strings, a list of "
                                + "token ids or a list of token-id lists");
                    }
                }
            }
        } else {
            throw ApiException.invalid("prompt", "'prompt' must be a string, a list of strings, a list of token ids or "
                    + "a list of token-id lists (not empty)");
        }
        if (out.size() > config.maxPrompts()) {
            throw ApiException.invalid("prompt", out.size() + " prompts in one request; at most " + config.maxPrompts());
        }
        return out;
    }

    private Prompt textPrompt(String s) {
        return new Prompt(text.encode(s, true), s);
    }

    private Prompt idPrompt(JsonNode list) {
        long[] ids = ids(list, "prompt");
        return new Prompt(ids, null);
    }

    private int completions(JsonNode body, Request request, Response response, Callback callback, boolean chat) {
        JsonNode modelName = body.get("model");
        if (modelName != null && !modelName.isNull() && !modelName.asText().equals(model.id())) {
            throw new ApiException(404, "invalid_request_error", "model", "model_not_found", "the model '"
                    + modelName.asText() + "' does not exist; this server serves '" + model.id() + "'");
        }
        unsupported(body);
        List<Prompt> prompts;
        if (chat) {
            if (body.has("prompt")) {
                throw ApiException.invalid("prompt", "chat completions take 'messages', not 'prompt'");
            }
            prompts = List.of(new Prompt(text.encode(chatPrompt(body.get("messages")), false), null));
        } else {
            prompts = prompts(body.get("prompt"));
        }
        boolean echo = !chat && bool(body, "echo", false);
        Integer logprobs;
        if (chat) {
            boolean lp = bool(body, "logprobs", false);
            Integer top = optInt(body, "top_logprobs", 0, config.maxLogprobs());
            if (top != null && !lp) {
                throw ApiException.invalid("top_logprobs", "'top_logprobs' needs 'logprobs': true");
            }
            logprobs = lp ? (top == null ? 0 : top) : null;
        } else {
            logprobs = optInt(body, "logprobs", 0, config.maxLogprobs());
        }
        Integer nGiven = optInt(body, "n", 1, config.maxN());
        int n = nGiven == null ? 1 : nGiven;
        JsonNode bestOf = body.get("best_of");
        if (bestOf != null && !bestOf.isNull() && bestOf.asInt() != n) {
            throw ApiException.invalid("best_of", "'best_of' other than n is not supported");
        }
        String maxName = chat && body.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        Integer maxTokens = optInt(body, maxName, 0, config.maxTokens());
        int ctx = model.contextLength();
        for (Prompt p : prompts) {
            if (p.ids().length == 0) {
                throw ApiException.invalid(chat ? "messages" : "prompt", "the prompt is empty (give at least one token)");
            }
            model.checkPrompt(p.ids());
            if (p.ids().length > ctx) {
                throw new ApiException(400, "invalid_request_error", chat ? "messages" : "prompt", "context_length_exceeded",
                        "this model's maximum context length is " + ctx + " tokens; the prompt has " + p.ids().length);
            }
        }
        int longest = prompts.stream().mapToInt(p -> p.ids().length).max().orElse(0);
        int max;
        if (maxTokens == null) {
            // OpenAI's defaults (16 for completions, as many as fit for chat), within the context and the limit.
            max = Math.min(config.maxTokens(), chat ? ctx - longest : Math.min(16, ctx - longest));
        } else {
            max = maxTokens;
            if (longest + max > ctx) {
                throw new ApiException(400, "invalid_request_error", maxName, "context_length_exceeded",
                        "this model's maximum context length is " + ctx + " tokens; the prompt (" + longest + ") plus "
                                + maxName + " (" + max + ") exceeds it");
            }
        }
        if (max == 0 && !echo) {
            throw ApiException.invalid(maxName, "'" + maxName + "' 0 generates nothing: allowed with 'echo' only");
        }
        double temperature = optDouble(body, "temperature", 1.0, 0, 2);
        double topP = optDouble(body, "top_p", 1.0, 0, 1);
        if (topP == 0) {
            throw ApiException.invalid("top_p", "'top_p' must be in (0, 1]");
        }
        int topK = body.has("top_k") && !body.get("top_k").isNull() ? intValue(body, "top_k") : 0;
        if (topK < -1) {
            throw ApiException.invalid("top_k", "'top_k' must be >= 0 (0 or -1: all)");
        }
        topK = Math.max(topK, 0);
        Long seed = body.has("seed") && !body.get("seed").isNull() ? longValue(body, "seed") : null;
        List<String> stops = stops(body.get("stop"));
        boolean ignoreEos = bool(body, "ignore_eos", false);       // vLLM's extension: fixed-length outputs
        boolean stream = bool(body, "stream", false);
        boolean includeUsage = stream && body.path("stream_options").path("include_usage").asBoolean(false);
        int sequences = prompts.size() * n;
        if (sequences > config.maxWaiting()) {
            throw ApiException.invalid("n", sequences + " sequences in one request; at most " + config.maxWaiting());
        }

        long base = seed != null ? seed : ThreadLocalRandom.current().nextLong();
        Job job = new Job(sequences, stream);
        List<Scheduler.Task> tasks = new ArrayList<>();
        for (int pi = 0; pi < prompts.size(); pi++) {
            Prompt p = prompts.get(pi);
            String echoText = echo ? (p.text() != null ? p.text() : text.decodeAll(p.ids())) : null;
            for (int k = 0; k < n; k++) {
                int index = pi * n + k;
                // choice i of a seeded request samples with seed + i: reproducible, and the n choices differ
                Sampler sampler = temperature == 0 ? Sampler.greedy() : Sampler.sample(temperature, topK, topP, base + index);
                Job.Choice c = job.new Choice(index, p.ids(), echoText, stops, ignoreEos ? Set.of() : model.eosIds(), text,
                        logprobs != null);
                Scheduler.Spec spec = new Scheduler.Spec(p.ids(), max, sampler, ignoreEos ? Set.of() : model.eosIds(),
                        logprobs == null ? -1 : logprobs, echo && logprobs != null);
                c.task = new Scheduler.Task(spec, c);
                job.choices.add(c);
                tasks.add(c.task);
            }
        }
        if (!scheduler.submit(tasks)) {
            metrics.rejected();
            response.getHeaders().put(HttpHeader.RETRY_AFTER, "1");
            throw new ApiException(503, "server_error", null, "queue_full", "the server is busy ("
                    + scheduler.waitingCount() + " sequences waiting); retry later");
        }
        int promptTokens = prompts.stream().mapToInt(p -> p.ids().length).sum();
        String id = (chat ? "chatcmpl-" : "cmpl-") + UUID.randomUUID().toString().replace("-", "");
        long createdAt = System.currentTimeMillis() / 1000;
        AtomicBoolean gone = new AtomicBoolean();
        request.addFailureListener(t -> {
            gone.set(true);
            job.cancel();
        });
        try {
            if (stream) {
                return stream(job, chat, id, createdAt, promptTokens, includeUsage, response, callback, gone);
            }
            long started = System.nanoTime();
            long lastBeat = 0;
            while (!job.await(100)) {
                if (gone.get()) {
                    job.cancel();
                }
                // A client that hangs up is only noticed by writing to it. A long answer therefore starts at
                // HEARTBEAT_AFTER: its 200 and headers, then a space (insignificant JSON whitespace) every second
                // until the body; a failed write cancels the sequences.
                long now = System.nanoTime();
                if (now - started > HEARTBEAT_AFTER.toNanos() && now - lastBeat > 1_000_000_000L) {
                    if (!response.isCommitted()) {
                        response.setStatus(200);
                        response.getHeaders().put(HttpHeader.CONTENT_TYPE, "application/json");
                    }
                    lastBeat = now;
                    try {
                        Content.Sink.write(response, false, ByteBuffer.wrap(new byte[] {' '}));
                    } catch (IOException e) {
                        job.cancel();
                        callback.failed(e);
                        return 499;
                    }
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            job.cancel();
            throw new ApiException(503, "server_error", null, "shutting_down", "the server is shutting down");
        }
        failIfFailed(job);         // after heartbeats the status was sent: error() puts the error in the body
        ObjectNode o = JSON.createObjectNode();
        o.put("id", id);
        o.put("object", chat ? "chat.completion" : "text_completion");
        o.put("created", createdAt);
        o.put("model", model.id());
        ArrayNode choices = o.putArray("choices");
        int completionTokens = 0;
        for (Job.Choice c : job.choices) {
            ObjectNode ch = choices.addObject();
            ch.put("index", c.index);
            if (chat) {
                ch.putObject("message").put("role", "assistant").put("content", c.text());
                ch.set("logprobs", c.wantsLogprobs() ? chatLogprobs(c.logprobEntries()) : null);
            } else {
                ch.put("text", c.text());
                ch.set("logprobs", c.wantsLogprobs() ? logprobs(c.logprobEntries()) : null);
            }
            ch.put("finish_reason", c.finishReason());
            completionTokens += c.completionTokens();
        }
        o.set("usage", usage(promptTokens, completionTokens));
        return write(response, callback, 200, o);
    }

    private static void failIfFailed(Job job) {
        for (Job.Choice c : job.choices) {
            if (c.failure() != null) {
                if (c.failure() instanceof ApiException a) {
                    throw a;
                }
                throw c.failure();
            }
        }
    }

    private int stream(Job job, boolean chat, String id, long createdAt, int promptTokens, boolean includeUsage,
                       Response response, Callback callback, AtomicBoolean gone) throws InterruptedException {
        response.setStatus(200);
        response.getHeaders().put(HttpHeader.CONTENT_TYPE, "text/event-stream; charset=utf-8");
        response.getHeaders().put(HttpHeader.CACHE_CONTROL, "no-cache");
        try {
            if (chat) {        // OpenAI opens a chat stream with the role, per choice
                for (Job.Choice c : job.choices) {
                    ObjectNode chunk = chunk(id, createdAt, true, includeUsage);
                    ObjectNode ch = chunk.withArray("choices").addObject();
                    ch.put("index", c.index);
                    ch.putObject("delta").put("role", "assistant").put("content", "");
                    ch.putNull("logprobs");
                    ch.putNull("finish_reason");
                    sse(response, chunk.toString());
                }
            }
            int open = job.choices.size();
            int completionTokens = 0;
            long lastWrite = System.nanoTime();
            while (open > 0) {
                Job.Event e = job.next(100);
                if (gone.get()) {
                    job.cancel();
                }
                if (e == null) {
                    // Waiting (queued, or a long prompt pass): an SSE comment each second keeps the connection
                    // from idling out and finds a client that went away. Clients skip comment lines.
                    if (System.nanoTime() - lastWrite > 1_000_000_000L) {
                        Content.Sink.write(response, false, ByteBuffer.wrap(": waiting\n\n".getBytes(StandardCharsets.UTF_8)));
                        lastWrite = System.nanoTime();
                    }
                    continue;
                }
                lastWrite = System.nanoTime();
                if (e.failure() != null) {
                    // Headers are sent: the error goes in the stream, in OpenAI's shape, and the stream ends.
                    ApiException a = e.failure() instanceof ApiException x ? x
                            : new ApiException(500, "server_error", null, null, "internal error");
                    if (!(e.failure() instanceof ApiException)) {
                        System.err.println("calm serve: a stream failed: " + e.failure());
                    }
                    ObjectNode err = JSON.createObjectNode();
                    err.putObject("error").put("message", a.getMessage()).put("type", a.type()).put("param", a.param())
                            .put("code", a.code());
                    sse(response, err.toString());
                    job.cancel();
                    sse(response, "[DONE]");
                    Content.Sink.write(response, true, "", callback);
                    return 200;
                }
                ObjectNode chunk = chunk(id, createdAt, chat, includeUsage);
                ObjectNode ch = chunk.withArray("choices").addObject();
                ch.put("index", e.index());
                if (chat) {
                    ObjectNode d = ch.putObject("delta");
                    if (!e.text().isEmpty() || e.finishReason() == null) {
                        d.put("content", e.text());
                    }
                    ch.set("logprobs", job.choices.get(e.index()).wantsLogprobs() ? chatLogprobs(e.logprobs()) : null);
                } else {
                    ch.put("text", e.text());
                    ch.set("logprobs", job.choices.get(e.index()).wantsLogprobs() ? logprobs(e.logprobs()) : null);
                }
                ch.put("finish_reason", e.finishReason());
                if (e.finishReason() != null) {
                    open--;
                    completionTokens += job.choices.get(e.index()).completionTokens();
                }
                sse(response, chunk.toString());
            }
            if (includeUsage) {
                ObjectNode u = chunk(id, createdAt, chat, false);
                u.putArray("choices");
                u.set("usage", usage(promptTokens, completionTokens));
                sse(response, u.toString());
            }
            sse(response, "[DONE]");
            Content.Sink.write(response, true, "", callback);
        } catch (IOException e) {
            // The client went away mid-stream: stop its sequences.
            job.cancel();
            callback.failed(e);
            return 499;
        }
        return 200;
    }

    private ObjectNode chunk(String id, long createdAt, boolean chat, boolean usageNull) {
        ObjectNode o = JSON.createObjectNode();
        o.put("id", id);
        o.put("object", chat ? "chat.completion.chunk" : "text_completion");
        o.put("created", createdAt);
        o.put("model", model.id());
        o.putArray("choices");
        if (usageNull) {
            o.putNull("usage");
        }
        return o;
    }

    private static void sse(Response response, String data) throws IOException {
        Content.Sink.write(response, false, ByteBuffer.wrap(("data: " + data + "\n\n").getBytes(StandardCharsets.UTF_8)));
    }

    private static ObjectNode usage(int prompt, int completion) {
        ObjectNode u = JSON.createObjectNode();
        u.put("prompt_tokens", prompt);
        u.put("completion_tokens", completion);
        u.put("total_tokens", prompt + completion);
        return u;
    }

    /** OpenAI's completions logprobs: four parallel lists. */
    private static ObjectNode logprobs(List<Job.LogprobEntry> entries) {
        ObjectNode o = JSON.createObjectNode();
        ArrayNode tokens = o.putArray("tokens");
        ArrayNode lps = o.putArray("token_logprobs");
        ArrayNode tops = o.putArray("top_logprobs");
        ArrayNode offsets = o.putArray("text_offset");
        for (Job.LogprobEntry e : entries) {
            tokens.add(e.token());
            if (e.logprob() == null) {
                lps.addNull();
                tops.addNull();
            } else {
                lps.add(e.logprob());
                ObjectNode t = tops.addObject();
                e.top().forEach(t::put);
            }
            offsets.add(e.offset());
        }
        return o;
    }

    /** OpenAI's chat logprobs: {"content": [{token, logprob, bytes, top_logprobs: [...]}]}. */
    private static ObjectNode chatLogprobs(List<Job.LogprobEntry> entries) {
        ObjectNode o = JSON.createObjectNode();
        ArrayNode content = o.putArray("content");
        for (Job.LogprobEntry e : entries) {
            ObjectNode c = content.addObject();
            c.put("token", e.token());
            c.put("logprob", e.logprob());
            c.set("bytes", bytes(e.token()));
            ArrayNode tops = c.putArray("top_logprobs");
            e.top().forEach((tok, lp) -> tops.addObject().put("token", tok).put("logprob", lp).set("bytes", bytes(tok)));
        }
        return o;
    }

    private static ArrayNode bytes(String s) {
        ArrayNode a = JSON.createArrayNode();
        for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
            a.add(b & 0xff);
        }
        return a;
    }

    // ---------------------------------------------------------------- parameters

    /** Fields whose effect this server does not implement: refused unless they ask for nothing. */
    private static void unsupported(JsonNode body) {
        for (String f : List.of("presence_penalty", "frequency_penalty")) {
            JsonNode v = body.get(f);
            if (v != null && !v.isNull() && v.asDouble() != 0) {
                throw ApiException.invalid(f, "'" + f + "' is not supported (only 0)");
            }
        }
        JsonNode bias = body.get("logit_bias");
        if (bias != null && !bias.isNull() && !bias.isEmpty()) {
            throw ApiException.invalid("logit_bias", "'logit_bias' is not supported");
        }
        JsonNode suffix = body.get("suffix");
        if (suffix != null && !suffix.isNull() && !suffix.asText().isEmpty()) {
            throw ApiException.invalid("suffix", "'suffix' is not supported");
        }
        JsonNode tools = body.get("tools");
        if (tools != null && !tools.isNull() && !tools.isEmpty()) {
            throw ApiException.invalid("tools", "'tools' is not supported");
        }
    }

    private static List<String> stops(JsonNode s) {
        List<String> out = new ArrayList<>();
        if (s == null || s.isNull()) {
            return out;
        }
        if (s.isTextual()) {
            out.add(s.asText());
        } else if (s.isArray()) {
            for (JsonNode e : s) {
                if (!e.isTextual()) {
                    throw ApiException.invalid("stop", "'stop' must be a string or a list of strings");
                }
                out.add(e.asText());
            }
        } else {
            throw ApiException.invalid("stop", "'stop' must be a string or a list of strings");
        }
        if (out.size() > 16) {
            throw ApiException.invalid("stop", "at most 16 stop strings");
        }
        out.removeIf(String::isEmpty);
        return out;
    }

    private static boolean bool(JsonNode body, String f, boolean dflt) {
        JsonNode v = body.get(f);
        if (v == null || v.isNull()) {
            return dflt;
        }
        if (!v.isBoolean()) {
            throw ApiException.invalid(f, "'" + f + "' must be true or false");
        }
        return v.asBoolean();
    }

    private static int intValue(JsonNode body, String f) {
        JsonNode v = body.get(f);
        if (!v.isIntegralNumber() || !v.canConvertToInt()) {
            throw ApiException.invalid(f, "'" + f + "' must be an integer");
        }
        return v.asInt();
    }

    private static long longValue(JsonNode body, String f) {
        JsonNode v = body.get(f);
        if (!v.isIntegralNumber() || !v.canConvertToLong()) {
            throw ApiException.invalid(f, "'" + f + "' must be an integer");
        }
        return v.asLong();
    }

    private static Integer optInt(JsonNode body, String f, int min, int max) {
        JsonNode v = body.get(f);
        if (v == null || v.isNull()) {
            return null;
        }
        int i = intValue(body, f);
        if (i < min || i > max) {
            throw ApiException.invalid(f, "'" + f + "' must be in [" + min + ", " + max + "], got " + i);
        }
        return i;
    }

    private static double optDouble(JsonNode body, String f, double dflt, double min, double max) {
        JsonNode v = body.get(f);
        if (v == null || v.isNull()) {
            return dflt;
        }
        if (!v.isNumber()) {
            throw ApiException.invalid(f, "'" + f + "' must be a number");
        }
        double d = v.asDouble();
        if (!(d >= min && d <= max)) {
            throw ApiException.invalid(f, "'" + f + "' must be in [" + min + ", " + max + "], got " + d);
        }
        return d;
    }
}
