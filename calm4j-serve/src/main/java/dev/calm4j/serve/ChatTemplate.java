package dev.calm4j.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import dev.calm4j.Calm4jException;
import dev.calm4j.tokenize.Tokenizer;

import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A model's chat template: the Jinja text of {@code tokenizer_config.json}'s {@code chat_template}, rendered by
 * HubSpot's jinjava with the variables Hugging Face's {@code apply_chat_template} passes ({@code messages},
 * {@code add_generation_prompt}, {@code bos_token}, {@code eos_token}, and a {@code raise_exception} function).
 * Jinjava is Jinja, not Python: templates that call Python string methods (e.g. {@code .strip()}) fail to render
 * and the request gets a 400 saying so.
 */
public final class ChatTemplate {
    private final String template;
    private final String bosToken;
    private final String eosToken;
    private final Jinjava jinja;

    ChatTemplate(String template, String bosToken, String eosToken) {
        this.template = template;
        this.bosToken = bosToken;
        this.eosToken = eosToken;
        this.jinja = new Jinjava(JinjavaConfig.newBuilder().withFailOnUnknownTokens(false).build());
        jinja.getGlobalContext().registerFunction(new ELFunctionDefinition("", "raise_exception", ChatTemplate.class,
                "raiseException", String.class));
    }

    /** The Jinja text. */
    public String source() {
        return template;
    }

    /** Called by templates that refuse a conversation (e.g. roles that do not alternate). */
    public static String raiseException(String message) {
        throw new TemplateRefusal(message);
    }

    static final class TemplateRefusal extends RuntimeException {
        private static final long serialVersionUID = 1L;

        TemplateRefusal(String message) {
            super(message);
        }
    }

    /** The template of {@code dir/tokenizer_config.json}, or null when it has none. */
    static ChatTemplate read(Path dir, Tokenizer tok, int bos, List<Integer> eos) {
        JsonNode cfg = ServedModel.tokenizerConfig(dir);
        if (cfg == null || cfg.get("chat_template") == null || cfg.get("chat_template").isNull()) {
            return null;
        }
        JsonNode t = cfg.get("chat_template");
        String text;
        if (t.isTextual()) {
            text = t.asText();
        } else if (t.isArray()) {            // a list of named templates: the one called "default"
            text = null;
            for (JsonNode n : t) {
                if ("default".equals(n.path("name").asText())) {
                    text = n.path("template").asText();
                }
            }
            if (text == null) {
                throw new Calm4jException(dir.resolve("tokenizer_config.json") + ": chat_template lists no template "
                        + "named 'default'");
            }
        } else {
            throw new Calm4jException(dir.resolve("tokenizer_config.json") + ": chat_template must be a string or a "
                    + "list of {name, template}");
        }
        String bosText = special(cfg.get("bos_token"), bos < 0 ? null : tok.decode(new long[] {bos}, false));
        String eosText = special(cfg.get("eos_token"), eos.isEmpty() ? null : tok.decode(new long[] {eos.get(0)}, false));
        return new ChatTemplate(text, bosText, eosText);
    }

    /** A special token's text: a string, or an AddedToken object's "content", else what the tokenizer decodes. */
    private static String special(JsonNode n, String fallback) {
        if (n != null && n.isTextual()) {
            return n.asText();
        }
        if (n != null && n.isObject() && n.get("content") != null) {
            return n.get("content").asText();
        }
        return fallback == null ? "" : fallback;
    }

    /**
     * The prompt text for {@code messages} (each a map with "role" and "content"), ending with the assistant's
     * turn's opening.
     *
     * @throws ApiException 400 when the template refuses the messages or cannot be rendered
     */
    String render(List<Map<String, Object>> messages) {
        Map<String, Object> vars = new HashMap<>();
        vars.put("messages", messages);
        vars.put("add_generation_prompt", true);
        vars.put("bos_token", bosToken);
        vars.put("eos_token", eosToken);
        RenderResult r;
        try {
            r = jinja.renderForResult(template, vars);
        } catch (TemplateRefusal e) {
            throw ApiException.invalid("messages", "the chat template refused the messages: " + e.getMessage());
        } catch (RuntimeException e) {
            throw ApiException.invalid("messages", "the chat template could not be rendered: " + e.getMessage());
        }
        for (TemplateError e : r.getErrors()) {
            if (e.getSeverity() == TemplateError.ErrorType.FATAL) {
                Throwable cause = e.getException();
                while (cause != null && !(cause instanceof TemplateRefusal)) {
                    cause = cause.getCause();
                }
                if (cause != null) {
                    throw ApiException.invalid("messages", "the chat template refused the messages: " + cause.getMessage());
                }
                throw ApiException.invalid("messages", "the chat template could not be rendered: " + e.getMessage());
            }
        }
        return r.getOutput();
    }
}
