package dev.calm4j.cli;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code calm serve}'s user mistakes: one line, exit code 2, before anything listens. */
class CliServeTest {
    private static void userError(CliTest.Run r, String contains) {
        assertEquals(2, r.code(), r.out() + r.err());
        assertTrue(r.err().startsWith("calm: error: ") && r.err().contains(contains), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
    }

    private static String repo(String path) {
        return java.nio.file.Path.of(System.getProperty("calm4j.repo", "..")).resolve(path).toString();
    }

    @Test
    void mistakesAreOneLine() {
        userError(CliTest.calm("serve", "--model", repo(Examples.STORIES), "--port", "0"), "tokenizer missing");
        userError(CliTest.calm("serve", "--model", repo(Examples.M_B), "--max-batch", "0"), "--max-batch must be > 0");
        userError(CliTest.calm("serve", "--model", repo(Examples.M_B), "--port", "70000"), "--port must be in [0, 65535]");
        userError(CliTest.calm("serve", "--model", repo(Examples.M_B), "--max-logprobs", "21"), "--max-logprobs");
        userError(CliTest.calm("serve", "--augment", repo(Examples.M_A)), "--augment needs --bridges");
        userError(CliTest.calm("serve", "--model", repo(Examples.M_B), "--bridges", "nope", "--lora", "nope"), "exclude each other");
    }
}
