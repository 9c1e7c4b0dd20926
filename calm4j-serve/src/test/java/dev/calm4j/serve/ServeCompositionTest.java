package dev.calm4j.serve;

import com.fasterxml.jackson.databind.JsonNode;
import dev.calm4j.Torch;
import dev.calm4j.api.Composition;
import dev.calm4j.api.LanguageModel;
import dev.calm4j.compose.BridgeCheckpoint;
import dev.calm4j.compose.CalmModel;
import dev.calm4j.compose.Mode;
import dev.calm4j.generate.CalmSession;
import dev.calm4j.generate.Generator;
import dev.calm4j.generate.Sampler;
import dev.calm4j.nn.Tensors;
import dev.calm4j.train.TrainConfig;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A composition served: the key-value experiment's m_B (anchor) and m_A (augment) through freshly trained bridges,
 * in both augment modes. Greedy outputs equal the library's cached composed generation, alone and under concurrency
 * (every sequence keeps its own anchor, augment and bridge caches), and echoed log-probabilities equal the composed
 * forward.
 */
class ServeCompositionTest {
    @TempDir
    Path tmp;

    private Path bridges(Mode mode) throws Exception {
        Path data = tmp.resolve("train.jsonl");
        StringBuilder rows = new StringBuilder();
        String[] keys = {"ab", "cd", "ef", "gh", "ij", "kl", "mn", "op"};
        for (int i = 0; i < keys.length; i++) {
            rows.append("{\"prompt\": \"").append(keys[i]).append("=\", \"completion\": \"").append(10 + 7 * i).append("\"}\n");
        }
        Files.writeString(data, rows);
        Path out = tmp.resolve("bridges-" + mode.jsonName());
        try (LanguageModel anchor = LanguageModel.load(ServerTest.MODELS.resolve("m_B"));
             LanguageModel augment = LanguageModel.load(ServerTest.MODELS.resolve("m_A"));
             Composition calm = Composition.of(anchor, List.of(augment), Composition.Spec.defaults().withMode(mode)
                     .withConnections("1->1,3->3").withQueryInit(0.1).withSeed(3))) {
            calm.train(data, TrainConfig.defaults(4, 4, 2e-2, 0), out, null);
        }
        return out;
    }

    @Test
    void composedServingEqualsComposedGeneration() throws Exception {
        Torch.init();
        for (Mode mode : List.of(Mode.SAME_SEQUENCE, Mode.SEPARATE_PROMPT)) {
            Path dir = bridges(mode);
            BridgeCheckpoint.Loaded served = BridgeCheckpoint.load(dir, null, null, false, ScalarType.Float);
            BridgeCheckpoint.Loaded reference = BridgeCheckpoint.load(dir, null, null, false, ScalarType.Float);
            CalmModel ref = reference.model();
            try (OpenAiServer server = new OpenAiServer(ServedModel.of("calm", served.model().anchor(), served.model(),
                    served.anchorDir(), "a composition", served), ServeConfig.defaults("127.0.0.1", 0).withQueue(4, 64))) {
                server.start();
                Http http = new Http(server.port(), null);
                JsonNode card = http.get("/v1/models").json().get("data").get(0).get("metadata").get("composition");
                assertEquals(mode.jsonName(), card.get("mode").asText());
                assertEquals("1->1,3->3", card.get("connections").asText());

                List<long[]> prompts = new ArrayList<>();
                List<JsonNode> alone = new ArrayList<>();
                for (String p : List.of("<s>ab=", "<s>kl=", "<s>op=", "<s>cd=", "<s>250-41=", "<s>zz=")) {
                    long[] ids = ServerTest.ids(http.post("/tokenize", Map.of("prompt", p)).json().get("tokens"));
                    prompts.add(ids);
                    Generator.Result want = Generator.generate((b, m) -> CalmSession.cached(ref, b, m,
                                    CalmSession.augmentPrompts(ref, List.of(ids), null)), List.of(ids), 43, 64,
                            new Generator.Options(6, Sampler.greedy(), Set.of(2), false), null);
                    JsonNode r = http.post("/v1/completions", Map.of("prompt", ids, "max_tokens", 6, "temperature", 0,
                            "logprobs", 1)).json();
                    long[] gen = want.generated().get(0);
                    assertEquals(gen.length, r.get("usage").get("completion_tokens").asInt(), p);
                    String text = http.post("/detokenize", Map.of("tokens", gen)).json().get("prompt").asText()
                            .replace("</s>", "");
                    assertEquals(text, r.get("choices").get(0).get("text").asText(), mode + " " + p);
                    alone.add(r.get("choices").get(0));
                }
                ExecutorService pool = Executors.newFixedThreadPool(prompts.size());
                try {
                    List<Future<JsonNode>> f = new ArrayList<>();
                    for (long[] ids : prompts) {
                        f.add(pool.submit(() -> http.post("/v1/completions", Map.of("prompt", ids, "max_tokens", 6,
                                "temperature", 0, "logprobs", 1)).json().get("choices").get(0)));
                    }
                    for (int i = 0; i < prompts.size(); i++) {
                        ServerTest.sameAnswer(alone.get(i), f.get(i).get(), mode + ": prompt " + i + " served among others");
                    }
                } finally {
                    pool.shutdownNow();
                }

                // echo + logprobs: the composed forward's log-probabilities of the prompt
                long[] p = prompts.get(4);
                JsonNode lp = http.post("/v1/completions", Map.of("prompt", p, "max_tokens", 0, "echo", true,
                        "logprobs", 1)).json().get("choices").get(0).get("logprobs").get("token_logprobs");
                float[] logp;
                try (PointerScope s = new PointerScope(); NoGradGuard g = new NoGradGuard()) {
                    List<CalmModel.AugmentPrompt> ap = null;
                    if (mode == Mode.SEPARATE_PROMPT) {
                        boolean[] real = new boolean[p.length];
                        java.util.Arrays.fill(real, true);
                        ap = List.of(new CalmModel.AugmentPrompt(Tensors.longs(p, 1, p.length), Tensors.bools(real, 1, p.length)));
                    }
                    logp = Tensors.toFloats(ref.forward(Tensors.longs(p, 1, p.length), null, ap, null).select(0, 0).log_softmax(1));
                }
                for (int i = 1; i < p.length; i++) {
                    assertEquals(logp[(i - 1) * 43 + (int) p[i]], lp.get(i).asDouble(), 1e-4, mode + " position " + i);
                }
                // the bridges matter: the composition's log-probabilities are not the anchor's alone
                JsonNode anchorAlone;
                try (OpenAiServer plain = new OpenAiServer(ServedModel.of("m_B", ref.anchor(), null, served.anchorDir(),
                        "anchor", null), ServeConfig.defaults("127.0.0.1", 0))) {
                    plain.start();
                    anchorAlone = new Http(plain.port(), null).post("/v1/completions", Map.of("prompt", p, "max_tokens", 0,
                            "echo", true, "logprobs", 1)).json().get("choices").get(0).get("logprobs").get("token_logprobs");
                }
                assertNotEquals(anchorAlone.toString(), lp.toString());
                assertTrue(Math.abs(anchorAlone.get(3).asDouble() - lp.get(3).asDouble()) > 1e-6
                        || Math.abs(anchorAlone.get(5).asDouble() - lp.get(5).asDouble()) > 1e-6);
            } finally {
                reference.close();
            }
        }
    }
}
