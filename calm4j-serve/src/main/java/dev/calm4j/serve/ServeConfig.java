package dev.calm4j.serve;

import dev.calm4j.Calm4jException;

/**
 * How the server listens and what it accepts.
 *
 * @param host address to bind (127.0.0.1 by default: loopback only)
 * @param port TCP port; 0 picks a free one (tests)
 * @param apiKey bearer token every endpoint but /health requires, or null for none
 * @param maxActive sequences decoded together in the loop (1: one at a time)
 * @param maxWaiting sequences that may wait to start; past that a request gets 503 with Retry-After
 * @param maxBodyBytes largest request body accepted (413 past it)
 * @param maxTokens largest {@code max_tokens} a request may ask for
 * @param maxN largest {@code n} (choices per prompt)
 * @param maxPrompts largest number of prompts in one completions request
 * @param maxLogprobs largest {@code logprobs} / {@code top_logprobs}
 * @param drainSeconds how long SIGTERM waits for in-flight requests before closing
 */
public record ServeConfig(String host, int port, String apiKey, int maxActive, int maxWaiting, int maxBodyBytes,
                          int maxTokens, int maxN, int maxPrompts, int maxLogprobs, int drainSeconds) {
    public ServeConfig {
        if (host == null || host.isBlank()) {
            throw new Calm4jException("--host must not be empty");
        }
        if (port < 0 || port > 65535) {
            throw new Calm4jException("--port must be in [0, 65535], got " + port);
        }
        if (apiKey != null && apiKey.isBlank()) {
            throw new Calm4jException("--api-key must not be blank");
        }
        positive("--max-batch", maxActive);
        positive("--max-queue", maxWaiting);
        positive("--max-body-bytes", maxBodyBytes);
        positive("--max-tokens-limit", maxTokens);
        positive("--max-n", maxN);
        positive("--max-prompts", maxPrompts);
        if (maxLogprobs < 0 || maxLogprobs > 20) {
            throw new Calm4jException("--max-logprobs must be in [0, 20], got " + maxLogprobs);
        }
        if (drainSeconds < 0) {
            throw new Calm4jException("--drain-seconds must be >= 0, got " + drainSeconds);
        }
    }

    private static void positive(String flag, int v) {
        if (v <= 0) {
            throw new Calm4jException(flag + " must be > 0, got " + v);
        }
    }

    /** The defaults of {@code calm serve} on {@code host:port}. */
    public static ServeConfig defaults(String host, int port) {
        return new ServeConfig(host, port, null, 16, 256, 1 << 20, 4096, 16, 64, 20, 30);
    }

    public ServeConfig withApiKey(String key) {
        return new ServeConfig(host, port, key, maxActive, maxWaiting, maxBodyBytes, maxTokens, maxN, maxPrompts,
                maxLogprobs, drainSeconds);
    }

    public ServeConfig withQueue(int active, int waiting) {
        return new ServeConfig(host, port, apiKey, active, waiting, maxBodyBytes, maxTokens, maxN, maxPrompts,
                maxLogprobs, drainSeconds);
    }
}
