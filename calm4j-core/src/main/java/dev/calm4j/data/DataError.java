package dev.calm4j.data;

/**
 * A problem with one record of a data file, described without its location. The reader that knows the file and line
 * turns it into a {@link dev.calm4j.Calm4jException} of the form {@code file:line: message}, so the rule code does not
 * have to carry locations around.
 */
final class DataError extends RuntimeException {
    private static final long serialVersionUID = 1L;

    DataError(String message) {
        super(message, null, false, false);
    }
}
