package dev.calm4j.data;

/**
 * Token ids of one field of a record, with the field's name for messages.
 *
 * @param tokenized true when the ids came from the tokenizer (an out-of-vocabulary id then means the tokenizer and
 *                  the model disagree, not that the data is wrong)
 * @param text      the field's text when it was tokenized, else null
 * @param ends      with {@code text}, where each token ends in it ({@link dev.calm4j.tokenize.Tokenizer.Tokens})
 */
record Part(String field, long[] ids, boolean tokenized, String text, int[] ends) {
    Part(String field, long[] ids, boolean tokenized) {
        this(field, ids, tokenized, null, null);
    }
}
