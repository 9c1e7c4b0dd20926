package dev.calm4j.serve;

import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Chat templates as models ship them, rendered by jinjava as Hugging Face's apply_chat_template renders them. */
class ChatTemplateTest {
    static final List<Map<String, Object>> CHAT = List.of(
            Map.of("role", "system", "content", "Be brief."),
            Map.of("role", "user", "content", "Hi"),
            Map.of("role", "assistant", "content", "Hello."),
            Map.of("role", "user", "content", "2+2?"));

    @Test
    void chatMl() {
        // Qwen2's template (ChatML), as in its tokenizer_config.json
        String t = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                + "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
                + "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
        String want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                + "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n";
        assertEquals(want, new ChatTemplate(t, "", "<|im_end|>").render(CHAT));
        assertTrue(new ChatTemplate(t, "", "").render(CHAT.subList(1, 2)).startsWith("<|im_start|>system\nYou are a helpful"));
    }

    @Test
    void llamaStyleWithRaiseException() {
        // Llama 2's template shape: a system prompt folded into the first user turn, alternation enforced
        String t = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
                + "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
                + "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
                + "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
                + "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
                + "{% if loop.index0 == 0 and system_message != false %}"
                + "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
                + "{% else %}{% set content = message['content'] %}{% endif %}"
                + "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content | trim + ' [/INST]' }}"
                + "{% elif message['role'] == 'assistant' %}{{ ' ' + content | trim + ' ' + eos_token }}{% endif %}{% endfor %}";
        ChatTemplate c = new ChatTemplate(t, "<s>", "</s>");
        assertEquals("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] 2+2? [/INST]", c.render(CHAT));
        ApiException e = assertThrows(ApiException.class, () -> c.render(List.of(Map.of("role", "user", "content", "a"),
                Map.of("role", "user", "content", "b"))));
        assertEquals(400, e.status());
        assertTrue(e.getMessage().contains("Conversation roles must alternate"), e.getMessage());
    }
}
