package dev.calm4j;

/**
 * A user-facing error: bad input, a file that is not what it claims to be, a mismatched model.
 *
 * <p>The message is the whole story (it names the file, the field or line, and what was expected), so the CLI
 * prints it on one line without a stack trace. Programming errors stay ordinary runtime exceptions.
 */
public class Calm4jException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public Calm4jException(String message) {
        super(message);
    }

    public Calm4jException(String message, Throwable cause) {
        super(message, cause);
    }
}
