package dev.calm4j.data;

/**
 * Token ids of one field of a record, with the field's name for messages.
 *
 * @param tokenized true when the ids came from the tokenizer (an out-of-vocabulary id then means the tokenizer and
 *                  the model disagree, not that the data is wrong)
 */
record Part(String field, long[] ids, boolean tokenized) {}
