package dev.calm4j.serve;

import com.fasterxml.jackson.databind.JsonNode;
import dev.calm4j.Torch;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.Supplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What bounds the server: the API key, the queue (503 + Retry-After), clients that go away, and draining on SIGTERM. */
class ServerLimitsTest {
    static final Path M_B = ServerTest.MODELS.resolve("m_B");
    /** 60 tokens from a 2-token prompt: fills m_B's 64 positions; with ignore_eos the length is fixed. */
    static final Map<String, Object> LONG = Map.of("prompt", "<s>1", "max_tokens", 60, "temperature", 0, "ignore_eos", true);

    @BeforeAll
    static void init() {
        Torch.init();
    }

    static OpenAiServer start(ServeConfig cfg) throws Exception {
        CausalLm lm = LmFamilies.load(M_B, ScalarType.Float);
        OpenAiServer s = new OpenAiServer(ServedModel.of("m_B", lm, null, M_B, "model m_B", lm), cfg);
        s.start();
        return s;
    }

    static long metric(Http h, String name) {
        for (String line : h.get("/metrics").body().split("\n")) {
            if (line.startsWith(name + " ")) {
                return (long) Double.parseDouble(line.substring(name.length() + 1));
            }
        }
        throw new AssertionError("no metric " + name);
    }

    static void await(Supplier<Boolean> condition, String what) throws InterruptedException {
        long end = System.nanoTime() + 20_000_000_000L;
        while (!condition.get()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(10);
        }
    }

    @Test
    void theApiKeyGuardsEverythingButHealth() throws Exception {
        try (OpenAiServer s = start(ServeConfig.defaults("127.0.0.1", 0).withApiKey("s3cret"))) {
            Http none = new Http(s.port(), null);
            Http wrong = new Http(s.port(), "nope");
            Http right = new Http(s.port(), "s3cret");
            assertEquals(200, none.get("/health").status());
            for (String path : List.of("/v1/models", "/metrics", "/tokenizer_info")) {
                assertEquals("invalid_api_key", ServerTest.error(none.get(path), 401).get("code").asText(), path);
                ServerTest.error(wrong.get(path), 401);
                assertEquals(200, right.get(path).status(), path);
            }
            ServerTest.error(none.post("/v1/completions", Map.of("prompt", "a")), 401);
            ServerTest.error(none.post("/tokenize", Map.of("prompt", "a")), 401);
            assertEquals(200, right.post("/v1/completions", Map.of("prompt", "<s>1+1=", "max_tokens", 2)).status());
        }
    }

    @Test
    void aFullQueueAnswers503WithRetryAfter() throws Exception {
        try (OpenAiServer s = start(ServeConfig.defaults("127.0.0.1", 0).withQueue(1, 2))) {
            Http h = new Http(s.port(), null);
            ExecutorService pool = Executors.newFixedThreadPool(10);
            try {
                List<Future<Http.Reply>> f = new ArrayList<>();
                for (int i = 0; i < 10; i++) {
                    f.add(pool.submit(() -> h.post("/v1/completions", LONG)));
                }
                int ok = 0;
                int busy = 0;
                for (Future<Http.Reply> r : f) {
                    Http.Reply reply = r.get();
                    if (reply.status() == 200) {
                        ok++;
                        assertEquals(60, reply.json().get("usage").get("completion_tokens").asInt());
                    } else {
                        assertEquals("queue_full", ServerTest.error(reply, 503).get("code").asText());
                        assertEquals("1", reply.raw().headers().firstValue("retry-after").orElse(null));
                        busy++;
                    }
                }
                assertTrue(ok >= 3 && busy >= 1, ok + " answered, " + busy + " refused");
                assertEquals(busy, metric(h, "calm_rejected_total"));
                assertEquals(0, metric(h, "calm_queue_depth"));
            } finally {
                pool.shutdownNow();
            }
        }
    }

    /** Sends a completions request on a raw socket, reads {@code readBytes} of the answer, and hangs up. */
    static void hangUp(int port, Map<String, Object> body, int readBytes) throws Exception {
        byte[] json = Http.JSON.writeValueAsBytes(body);
        try (Socket socket = new Socket("127.0.0.1", port)) {
            OutputStream out = socket.getOutputStream();
            out.write(("POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    + "Content-Length: " + json.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            out.write(json);
            out.flush();
            InputStream in = socket.getInputStream();
            for (int i = 0; i < readBytes; i++) {
                if (in.read() < 0) {
                    break;
                }
            }
            socket.setSoLinger(true, 0);       // a reset, as a killed client leaves
        }
    }

    @Test
    void aClientThatGoesAwayIsCancelled() throws Exception {
        // n up to 64: a plain request of 64 x 60 tokens runs well past the heartbeat's start on any machine
        try (OpenAiServer s = start(new ServeConfig("127.0.0.1", 0, null, 1, 64, 1 << 20, 4096, 64, 64, 20, 30))) {
            Http h = new Http(s.port(), null);
            Map<String, Object> stream = new java.util.HashMap<>(LONG);
            stream.put("stream", true);
            stream.put("n", 4);
            // streaming: the first event arrives, the client hangs up, the next write fails, the sequences stop
            hangUp(s.port(), stream, 200);
            await(() -> metric(h, "calm_cancelled_total") >= 1, "the streamed request's cancellation");
            await(() -> metric(h, "calm_active_sequences") == 0 && metric(h, "calm_queue_depth") == 0, "an idle loop");
            assertTrue(metric(h, "calm_generated_tokens_total") < 4 * 60, "not every token was generated");
            // not streaming: the hang-up is noticed at a heartbeat (the request runs past HEARTBEAT_AFTER)
            long before = metric(h, "calm_cancelled_total");
            long t0 = System.nanoTime();
            Map<String, Object> whole = new java.util.HashMap<>(LONG);
            whole.put("n", 64);
            hangUp(s.port(), whole, 0);
            await(() -> metric(h, "calm_cancelled_total") > before, "the plain request's cancellation");
            System.out.printf("cancelled after %.1f s%n", (System.nanoTime() - t0) / 1e9);
            assertTrue(metric(h, "calm_generated_tokens_total") < 64 * 60, "not every token was generated");
            await(() -> metric(h, "calm_active_sequences") == 0 && metric(h, "calm_queue_depth") == 0, "an idle loop");
            assertEquals(200, h.post("/v1/completions", Map.of("prompt", "<s>1+1=", "max_tokens", 2)).status());
        }
    }

    @Test
    void aQueuedStreamHearsCommentsAndThenItsAnswer() throws Exception {
        try (OpenAiServer s = start(new ServeConfig("127.0.0.1", 0, null, 1, 64, 1 << 20, 4096, 64, 64, 20, 30))) {
            Http h = new Http(s.port(), null);
            Map<String, Object> ahead = new java.util.HashMap<>(LONG);
            ahead.put("n", 32);
            CompletableFuture<Http.Reply> first = CompletableFuture.supplyAsync(() -> h.post("/v1/completions", ahead));
            await(() -> metric(h, "calm_active_sequences") > 0, "the first request to start");
            Map<String, Object> stream = new java.util.HashMap<>(LONG);
            stream.put("stream", true);
            Http.Reply r = h.post("/v1/completions", stream);
            assertTrue(r.body().startsWith(": waiting\n\n"), "a queued stream hears comments while it waits");
            List<String> events = r.events();
            assertEquals("[DONE]", events.get(events.size() - 1));
            assertEquals(200, first.get().status());
        }
    }

    @Test
    void drainingFinishesWhatIsInFlightAndRefusesNewWork() throws Exception {
        OpenAiServer s = start(ServeConfig.defaults("127.0.0.1", 0).withQueue(4, 16));
        Http h = new Http(s.port(), null);
        Map<String, Object> big = new java.util.HashMap<>(LONG);
        big.put("n", 8);
        CompletableFuture<Http.Reply> inFlight = CompletableFuture.supplyAsync(() -> h.post("/v1/completions", big));
        await(() -> metric(h, "calm_active_sequences") > 0, "the request to start");
        CompletableFuture<Boolean> drained = CompletableFuture.supplyAsync(() -> s.drain(Duration.ofSeconds(60)));
        await(() -> h.get("/health").body().contains("draining"), "draining");
        JsonNode refused = ServerTest.error(h.post("/v1/completions", Map.of("prompt", "a")), 503);
        assertEquals("shutting_down", refused.get("code").asText());
        Http.Reply r = inFlight.get();
        assertEquals(200, r.status(), r.body());
        assertEquals(8 * 60, r.json().get("usage").get("completion_tokens").asInt());
        assertTrue(drained.get(), "every in-flight request finished before the server stopped");
    }
}
