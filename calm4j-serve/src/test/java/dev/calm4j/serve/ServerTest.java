package dev.calm4j.serve;

import com.fasterxml.jackson.databind.JsonNode;
import dev.calm4j.Torch;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.LmSession;
import dev.calm4j.generate.Sampler;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import dev.calm4j.nn.Tensors;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The server end to end over HTTP on an ephemeral port, serving the key-value experiment's shipped anchor (m_B: a
 * character tokenizer, 64 positions) with a chat template added: every endpoint, its answers checked against the
 * model run directly, and its refusals.
 */
class ServerTest {
    static final Path MODELS = Path.of(System.getProperty("calm4j.repo", "..")).resolve("experiments/kv-arithmetic/models");
    static final String TEMPLATE = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('the first message must "
            + "be the user\\'s') }}{% endif %}{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
            + "{% if add_generation_prompt %}={% endif %}";

    static Path dir;
    static OpenAiServer server;
    static Http http;
    static CausalLm reference;      // a second copy of the weights, run directly

    @BeforeAll
    static void start() throws Exception {
        Torch.init();
        dir = Files.createTempDirectory("calm-serve-test");
        for (String f : List.of("config.json", "model.safetensors", "tokenizer.json")) {
            Files.copy(MODELS.resolve("m_B").resolve(f), dir.resolve(f));
        }
        Files.writeString(dir.resolve("tokenizer_config.json"),
                Http.JSON.writeValueAsString(Map.of("chat_template", TEMPLATE, "bos_token", "<s>", "eos_token", "</s>")));
        CausalLm lm = LmFamilies.load(dir, ScalarType.Float);
        ServedModel model = ServedModel.of("m_B", lm, null, dir, "model m_B", lm);
        server = new OpenAiServer(model, ServeConfig.defaults("127.0.0.1", 0).withQueue(4, 64));
        server.start();
        http = new Http(server.port(), null);
        reference = LmFamilies.load(dir, ScalarType.Float);
    }

    @AfterAll
    static void stop() {
        server.close();
        reference.close();
    }

    /** Greedy ids of the model run directly (the library's generator with a KV cache), EOS stopping. */
    static long[] greedy(long[] prompt, int max) {
        Generator.Result r = Generator.generate((b, m) -> LmSession.cached(reference, b, m), List.of(prompt), 43, 64,
                new Generator.Options(max, Sampler.greedy(), Set.of(2), false), null);
        return r.generated().get(0);
    }

    static long[] ids(JsonNode a) {
        long[] out = new long[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.get(i).asLong();
        }
        return out;
    }

    static long[] tokenize(String text) {
        return ids(http.post("/tokenize", Map.of("prompt", text)).json().get("tokens"));
    }

    static String detokenize(long[] ids) {
        return http.post("/detokenize", Map.of("tokens", ids)).json().get("prompt").asText();
    }

    @Test
    void healthModelsAndTokenizer() {
        assertEquals("ok", http.get("/health").json().get("status").asText());
        JsonNode models = http.get("/v1/models").json();
        JsonNode m = models.get("data").get(0);
        assertEquals("m_B", m.get("id").asText());
        assertEquals("model", m.get("object").asText());
        assertEquals("calm4j", m.get("owned_by").asText());
        assertEquals(64, m.get("metadata").get("context_length").asInt());
        assertEquals(43, m.get("metadata").get("vocab_size").asInt());
        assertTrue(m.get("metadata").get("parameters").asLong() > 1_000_000);
        assertEquals(200, http.get("/v1/models/m_B").status());
        assertEquals(404, http.get("/v1/models/other").status());

        long[] ids = tokenize("<s>12+3=");
        assertArrayEquals(new long[] {1, 31, 32, 40, 33, 42}, ids);
        assertEquals("<s>12+3=", detokenize(ids));
        JsonNode info = http.get("/tokenizer_info").json();
        assertEquals("</s>", info.get("eos_token").asText());
        assertEquals("<s>", info.get("bos_token").asText());
        assertEquals(TEMPLATE, info.get("chat_template").asText());
    }

    @Test
    void greedyCompletionsEqualTheModelRunDirectly() {
        long[] prompt = tokenize("<s>250-41=");
        long[] want = greedy(prompt, 8);
        String wantText = detokenize(want).replace("</s>", "");
        // a string prompt and the same prompt as token ids
        JsonNode a = http.post("/v1/completions", Map.of("prompt", "<s>250-41=", "max_tokens", 8, "temperature", 0)).json();
        JsonNode b = http.post("/v1/completions", Map.of("prompt", prompt, "max_tokens", 8, "temperature", 0)).json();
        assertEquals(wantText, a.get("choices").get(0).get("text").asText(), a.toString());
        assertEquals(wantText, b.get("choices").get(0).get("text").asText());
        assertEquals("text_completion", a.get("object").asText());
        assertEquals(prompt.length, a.get("usage").get("prompt_tokens").asInt());
        assertEquals(want.length, a.get("usage").get("completion_tokens").asInt());
        assertEquals(want[want.length - 1] == 2 ? "stop" : "length", a.get("choices").get(0).get("finish_reason").asText());

        // several prompts (strings and id lists), choices indexed in request order
        List<String> texts = List.of("<s>3+4=", "<s>99-9=", "<s>1+1=");
        JsonNode many = http.post("/v1/completions", Map.of("prompt", texts, "max_tokens", 5, "temperature", 0)).json();
        List<long[]> idPrompts = texts.stream().map(ServerTest::tokenize).toList();
        JsonNode manyIds = http.post("/v1/completions", Map.of("prompt", idPrompts, "max_tokens", 5, "temperature", 0)).json();
        for (int i = 0; i < texts.size(); i++) {
            String w = detokenize(greedy(idPrompts.get(i), 5)).replace("</s>", "");
            assertEquals(i, many.get("choices").get(i).get("index").asInt());
            assertEquals(w, many.get("choices").get(i).get("text").asText(), "prompt " + i);
            assertEquals(w, manyIds.get("choices").get(i).get("text").asText(), "prompt " + i);
        }
    }

    @Test
    void echoLogprobsEqualTheDirectForward() {
        long[] prompt = tokenize("<s>250-41=209");
        JsonNode r = http.post("/v1/completions", Map.of("prompt", prompt, "max_tokens", 1, "temperature", 0,
                "echo", true, "logprobs", 3)).json();
        JsonNode lp = r.get("choices").get(0).get("logprobs");
        float[] logp;
        try (PointerScope s = new PointerScope(); NoGradGuard g = new NoGradGuard()) {
            Tensor logits = reference.forward(Tensors.longs(prompt, 1, prompt.length)).select(0, 0);
            logp = Tensors.toFloats(logits.log_softmax(1));
        }
        int v = 43;
        assertEquals(prompt.length + 1, lp.get("tokens").size());
        assertTrue(lp.get("token_logprobs").get(0).isNull(), "the first prompt token has no log-probability");
        assertTrue(lp.get("top_logprobs").get(0).isNull());
        double sum = 0;
        for (int i = 1; i < prompt.length; i++) {
            double want = logp[(i - 1) * v + (int) prompt[i]];
            assertEquals(want, lp.get("token_logprobs").get(i).asDouble(), 1e-4, "position " + i);
            sum += want;
            JsonNode top = lp.get("top_logprobs").get(i);
            assertEquals(3, top.size());
            double best = Double.NEGATIVE_INFINITY;
            for (int t = 0; t < v; t++) {
                best = Math.max(best, logp[(i - 1) * v + t]);
            }
            double maxTop = Double.NEGATIVE_INFINITY;
            for (JsonNode x : top) {
                maxTop = Math.max(maxTop, x.asDouble());
            }
            assertEquals(best, maxTop, 1e-4);
        }
        assertTrue(sum < 0);
        // the generated token: its log-probability under the last position, and greedy means it is the top one
        int g = (int) greedy(prompt, 1)[0];
        double wantLast = logp[(prompt.length - 1) * v + g];
        assertEquals(wantLast, lp.get("token_logprobs").get(prompt.length).asDouble(), 1e-4);
        // text offsets: cumulative piece lengths over the echoed text
        assertEquals(0, lp.get("text_offset").get(0).asInt());
        assertEquals(3, lp.get("text_offset").get(1).asInt(), "after '<s>'");
        assertTrue(r.get("choices").get(0).get("text").asText().startsWith("<s>250-41=209"));

        // max_tokens 0 with echo: the prompt's log-probabilities only
        JsonNode zero = http.post("/v1/completions", Map.of("prompt", prompt, "max_tokens", 0, "echo", true,
                "logprobs", 1)).json();
        JsonNode zl = zero.get("choices").get(0).get("logprobs");
        assertEquals(prompt.length, zl.get("tokens").size());
        assertEquals(lp.get("token_logprobs").get(5).asDouble(), zl.get("token_logprobs").get(5).asDouble(), 0);
        assertEquals(0, zero.get("usage").get("completion_tokens").asInt());
        assertEquals(400, http.post("/v1/completions", Map.of("prompt", prompt, "max_tokens", 0)).status());
    }

    @Test
    void generatedLogprobsAreTheModelsDistribution() {
        long[] prompt = tokenize("<s>7+8=");
        JsonNode r = http.post("/v1/completions", Map.of("prompt", prompt, "max_tokens", 3, "temperature", 0,
                "logprobs", 2)).json();
        JsonNode lp = r.get("choices").get(0).get("logprobs");
        long[] gen = greedy(prompt, 3);
        long[] all = new long[prompt.length + gen.length];
        System.arraycopy(prompt, 0, all, 0, prompt.length);
        System.arraycopy(gen, 0, all, prompt.length, gen.length);
        float[] logp;
        try (PointerScope s = new PointerScope(); NoGradGuard g = new NoGradGuard()) {
            logp = Tensors.toFloats(reference.forward(Tensors.longs(all, 1, all.length)).select(0, 0).log_softmax(1));
        }
        assertEquals(gen.length, lp.get("token_logprobs").size());
        for (int i = 0; i < gen.length; i++) {
            int pos = prompt.length - 1 + i;
            assertEquals(logp[pos * 43 + (int) gen[i]], lp.get("token_logprobs").get(i).asDouble(), 1e-4, "token " + i);
            assertEquals(2, lp.get("top_logprobs").get(i).size());
        }
    }

    @Test
    void stopSeedAndN() {
        long[] prompt = tokenize("<s>123+456=");
        String full = detokenize(greedy(prompt, 6)).replace("</s>", "");
        assertTrue(full.length() >= 2, full);
        String stop = full.substring(1, 2);
        JsonNode r = http.post("/v1/completions", Map.of("prompt", prompt, "max_tokens", 6, "temperature", 0,
                "stop", List.of(stop))).json().get("choices").get(0);
        assertEquals(full.substring(0, full.indexOf(stop)), r.get("text").asText());
        assertEquals("stop", r.get("finish_reason").asText());

        Map<String, Object> sampled = Map.of("prompt", "<s>ab", "max_tokens", 12, "temperature", 1.5, "top_p", 0.95,
                "top_k", 30, "seed", 7, "n", 3);
        JsonNode s1 = http.post("/v1/completions", sampled).json().get("choices");
        JsonNode s2 = http.post("/v1/completions", sampled).json().get("choices");
        assertEquals(3, s1.size());
        for (int i = 0; i < 3; i++) {
            assertEquals(i, s1.get(i).get("index").asInt());
            assertEquals(s1.get(i).get("text"), s2.get(i).get("text"), "a seed reproduces choice " + i);
        }
        assertFalse(s1.get(0).get("text").equals(s1.get(1).get("text")) && s1.get(1).get("text").equals(s1.get(2).get("text")),
                "the n choices sample differently: " + s1);
    }

    @Test
    void streamingJoinsToTheSameText() throws Exception {
        for (Object prompt : List.<Object>of("<s>250-41=", tokenize("<s>3+4="))) {
            Map<String, Object> req = Map.of("prompt", prompt, "max_tokens", 10, "temperature", 0, "n", 2,
                    "logprobs", 1);
            JsonNode whole = http.post("/v1/completions", req).json();
            Map<String, Object> streamed = new java.util.HashMap<>(req);
            streamed.put("stream", true);
            streamed.put("stream_options", Map.of("include_usage", true));
            Http.Reply r = http.post("/v1/completions", streamed);
            assertEquals(200, r.status());
            assertTrue(r.raw().headers().firstValue("content-type").orElse("").startsWith("text/event-stream"));
            List<String> events = r.events();
            assertEquals("[DONE]", events.get(events.size() - 1));
            StringBuilder[] text = {new StringBuilder(), new StringBuilder()};
            String[] finish = new String[2];
            int tokens = 0;
            JsonNode usage = null;
            for (String e : events.subList(0, events.size() - 1)) {
                JsonNode c = Http.JSON.readTree(e);
                if (c.get("choices").isEmpty()) {
                    usage = c.get("usage");
                    continue;
                }
                JsonNode ch = c.get("choices").get(0);
                int i = ch.get("index").asInt();
                text[i].append(ch.get("text").asText());
                tokens += ch.get("logprobs").get("tokens").size();
                if (!ch.get("finish_reason").isNull()) {
                    finish[i] = ch.get("finish_reason").asText();
                }
            }
            for (int i = 0; i < 2; i++) {
                assertEquals(whole.get("choices").get(i).get("text").asText(), text[i].toString());
                assertEquals(whole.get("choices").get(i).get("finish_reason").asText(), finish[i]);
            }
            assertEquals(whole.get("usage"), usage);
            assertEquals(whole.get("usage").get("completion_tokens").asInt(), tokens);
        }
    }

    @Test
    void chatWithTheTemplate() throws Exception {
        List<Map<String, String>> messages = List.of(Map.of("role", "user", "content", "12+3"));
        JsonNode r = http.post("/v1/chat/completions", Map.of("messages", messages, "max_tokens", 6,
                "temperature", 0)).json();
        // the template renders "<s>12+3="
        String want = detokenize(greedy(tokenize("<s>12+3="), 6)).replace("</s>", "");
        assertEquals("chat.completion", r.get("object").asText());
        assertEquals("assistant", r.get("choices").get(0).get("message").get("role").asText());
        assertEquals(want, r.get("choices").get(0).get("message").get("content").asText());
        assertEquals(6, r.get("usage").get("prompt_tokens").asInt());

        Http.Reply s = http.post("/v1/chat/completions", Map.of("messages", messages, "max_tokens", 6,
                "temperature", 0, "stream", true));
        StringBuilder joined = new StringBuilder();
        List<String> ev = s.events();
        assertEquals("[DONE]", ev.get(ev.size() - 1));
        assertEquals("assistant", Http.JSON.readTree(ev.get(0)).get("choices").get(0).get("delta").get("role").asText());
        for (String e : ev.subList(0, ev.size() - 1)) {
            JsonNode d = Http.JSON.readTree(e).get("choices").get(0).get("delta");
            if (d.has("content")) {
                joined.append(d.get("content").asText());
            }
        }
        assertEquals(want, joined.toString());

        JsonNode lp = http.post("/v1/chat/completions", Map.of("messages", messages, "max_tokens", 2,
                "temperature", 0, "logprobs", true, "top_logprobs", 2)).json().get("choices").get(0).get("logprobs");
        assertEquals(2, lp.get("content").size(), lp.toString());
        assertEquals(2, lp.get("content").get(0).get("top_logprobs").size());
        assertEquals(400, http.post("/v1/chat/completions", Map.of("messages", List.of())).status());
        JsonNode refused = error(http.post("/v1/chat/completions", Map.of("messages", List.of(Map.of("role", "assistant",
                "content", "1")))), 400);
        assertTrue(refused.get("message").asText().contains("the first message must be the user's"), refused.toString());
    }

    @Test
    void concurrentRequestsGetWhatEachGetsAlone() throws Exception {
        List<String> prompts = List.of("<s>1+2=", "<s>250-41=", "<s>77+7=", "<s>5-3=", "<s>100+1=", "<s>9+9=",
                "<s>42-4=", "<s>31+13=");
        List<JsonNode> alone = new ArrayList<>();
        for (String p : prompts) {
            alone.add(http.post("/v1/completions", Map.of("prompt", p, "max_tokens", 12, "temperature", 0, "logprobs", 1))
                    .json());
        }
        long forwards = ServerLimitsTest.metric(http, "calm_forwards_total");
        long rows = ServerLimitsTest.metric(http, "calm_forward_rows_total");
        ExecutorService pool = Executors.newFixedThreadPool(prompts.size());
        try {
            for (int round = 0; round < 2; round++) {
                List<Future<JsonNode>> f = new ArrayList<>();
                for (String p : prompts) {
                    f.add(pool.submit(() -> http.post("/v1/completions", Map.of("prompt", p, "max_tokens", 12,
                            "temperature", 0, "logprobs", 1)).json()));
                }
                for (int i = 0; i < prompts.size(); i++) {
                    sameAnswer(alone.get(i), f.get(i).get(), "prompt " + i + " served among others");
                }
            }
        } finally {
            pool.shutdownNow();
        }
        long batched = ServerLimitsTest.metric(http, "calm_forward_rows_total") - rows;
        long ran = ServerLimitsTest.metric(http, "calm_forwards_total") - forwards;
        assertTrue(batched > ran, "concurrent requests shared forwards: " + batched + " rows in " + ran + " forwards");
        String metrics = http.get("/metrics").body();
        assertTrue(metrics.contains("calm_requests_total{endpoint=\"/v1/completions\",status=\"200\"}"), metrics);
        assertTrue(metrics.contains("calm_request_duration_seconds_bucket{endpoint=\"/v1/completions\",le=\"+Inf\"}"));
        assertTrue(metrics.contains("calm_queue_depth 0"));
        assertTrue(metrics.contains("calm_generated_tokens_total "));
        assertTrue(metrics.contains("calm_time_to_first_token_seconds_count "));
    }

    /**
     * The same answer: texts, tokens, finish reasons and usage equal; log-probabilities equal to 1e-4 (a row decoded
     * in a cohort with padding differs from the row alone by float rounding only).
     */
    static void sameAnswer(JsonNode want, JsonNode got, String what) {
        if (want.has("usage")) {
            assertEquals(want.get("usage"), got.get("usage"), what);
        }
        JsonNode wc = want.has("choices") ? want.get("choices") : Http.JSON.createArrayNode().add(want);
        JsonNode gc = got.has("choices") ? got.get("choices") : Http.JSON.createArrayNode().add(got);
        assertEquals(wc.size(), gc.size(), what);
        for (int c = 0; c < wc.size(); c++) {
            JsonNode w = wc.get(c);
            JsonNode g = gc.get(c);
            for (String f : List.of("index", "text", "finish_reason")) {
                assertEquals(w.get(f), g.get(f), what + ": " + f);
            }
            if (w.get("logprobs").isNull()) {
                assertTrue(g.get("logprobs").isNull(), what);
                continue;
            }
            assertEquals(w.get("logprobs").get("tokens"), g.get("logprobs").get("tokens"), what + ": tokens");
            JsonNode wl = w.get("logprobs").get("token_logprobs");
            JsonNode gl = g.get("logprobs").get("token_logprobs");
            for (int i = 0; i < wl.size(); i++) {
                assertEquals(wl.get(i).asDouble(), gl.get(i).asDouble(), 1e-4, what + ": token_logprobs " + i);
            }
        }
    }

    /** The error body, checked for OpenAI's shape. */
    static JsonNode error(Http.Reply r, int status) {
        assertEquals(status, r.status(), r.body());
        JsonNode e = r.json().get("error");
        assertTrue(e.get("message").isTextual() && e.has("type") && e.has("param") && e.has("code"), r.body());
        assertFalse(r.body().contains("at dev.calm4j") || r.body().contains("Exception"), r.body());
        return e;
    }

    @Test
    void refusalsInOpenAisShape() {
        error(http.post("/v1/completions", "{not json"), 400);
        error(http.post("/v1/completions", "[1,2]"), 400);
        assertEquals("prompt", error(http.post("/v1/completions", Map.of("max_tokens", 3)), 400).get("param").asText());
        assertEquals("model_not_found", error(http.post("/v1/completions", Map.of("model", "gpt-4", "prompt", "a")), 404)
                .get("code").asText());
        assertEquals("context_length_exceeded", error(http.post("/v1/completions",
                Map.of("prompt", "a".repeat(65), "max_tokens", 1)), 400).get("code").asText());
        assertEquals("max_tokens", error(http.post("/v1/completions",
                Map.of("prompt", "a".repeat(60), "max_tokens", 10)), 400).get("param").asText());
        assertEquals("logprobs", error(http.post("/v1/completions", Map.of("prompt", "a", "logprobs", 21)), 400)
                .get("param").asText());
        assertEquals("n", error(http.post("/v1/completions", Map.of("prompt", "a", "n", 17)), 400).get("param").asText());
        assertEquals("prompt", error(http.post("/v1/completions", Map.of("prompt", List.of(1, 43))), 400).get("param").asText());
        error(http.post("/v1/completions", Map.of("prompt", "a", "temperature", -1)), 400);
        error(http.post("/v1/completions", Map.of("prompt", "a", "frequency_penalty", 0.5)), 400);
        error(http.post("/v1/completions", "{\"prompt\": \"" + "a".repeat(1 << 20) + "\"}"), 413);
        error(http.get("/v1/completions"), 405);
        error(http.get("/nothing"), 404);
        // the server keeps answering
        assertEquals(200, http.post("/v1/completions", Map.of("prompt", "<s>1+1=", "max_tokens", 2)).status());
    }

    @Test
    void aModelWithoutAChatTemplateSays400() throws Exception {
        Path plain = MODELS.resolve("m_A");
        CausalLm lm = LmFamilies.load(plain, ScalarType.Float);
        try (OpenAiServer s = new OpenAiServer(ServedModel.of("m_A", lm, null, plain, "model m_A", lm),
                ServeConfig.defaults("127.0.0.1", 0))) {
            s.start();
            Http h = new Http(s.port(), null);
            JsonNode e = error(h.post("/v1/chat/completions", Map.of("messages", List.of(Map.of("role", "user",
                    "content", "hi")))), 400);
            assertTrue(e.get("message").asText().contains("no chat template"), e.toString());
            assertNull(h.get("/tokenizer_info").json().get("chat_template").textValue());
            assertEquals(200, h.post("/v1/completions", Map.of("prompt", "<s>ab=", "max_tokens", 2)).status());
        }
        assertNotEquals(0, server.port());
    }
}
