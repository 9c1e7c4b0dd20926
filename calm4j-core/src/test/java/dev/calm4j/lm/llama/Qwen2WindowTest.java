package dev.calm4j.lm.llama;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Which Qwen2 layers slide, as transformers' Qwen2Config derives them: with use_sliding_window, layers
 * i >= max_window_layers (default 28); without it, none, whatever sliding_window says.
 */
class Qwen2WindowTest {
    private static ObjectNode qwen2(int layers) {
        ObjectNode c = new ObjectMapper().createObjectNode();
        c.put("model_type", "qwen2").put("vocab_size", 32).put("hidden_size", 16).put("intermediate_size", 32)
                .put("num_hidden_layers", layers).put("num_attention_heads", 2).put("num_key_value_heads", 2)
                .put("max_position_embeddings", 64).put("sliding_window", 4);
        return c;
    }

    @Test
    void slidingLayersFollowMaxWindowLayers() {
        assertEquals(0, LlamaConfig.fromJson(qwen2(2), "c").slidingWindow(), "use_sliding_window absent: none slide");
        assertEquals(0, LlamaConfig.fromJson(qwen2(2).put("use_sliding_window", true).put("max_window_layers", 2), "c")
                .slidingWindow(), "max_window_layers >= layers: none slide");
        assertEquals(0, LlamaConfig.fromJson(qwen2(2).put("use_sliding_window", true), "c").slidingWindow(),
                "the default max_window_layers (28) is above 2 layers: none slide");
        LlamaConfig all = LlamaConfig.fromJson(qwen2(2).put("use_sliding_window", true).put("max_window_layers", 0), "c");
        assertEquals(4, all.slidingWindow(), "max_window_layers 0: every layer slides");
        assertEquals(all, LlamaConfig.fromJson(all.toJson(), "written"), "written and read back the same");
        var e = assertThrows(Calm4jException.class, () -> LlamaConfig.fromJson(
                qwen2(3).put("use_sliding_window", true).put("max_window_layers", 1), "cfg.json"));
        assertTrue(e.getMessage().startsWith("cfg.json: field 'max_window_layers' is 1") && e.getMessage().contains("1..2"),
                e.getMessage());
    }
}
