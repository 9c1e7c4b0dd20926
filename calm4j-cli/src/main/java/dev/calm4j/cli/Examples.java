package dev.calm4j.cli;

/**
 * What the help texts' examples run on, so that each runs from the repository root of a clone: models committed in
 * the repository, and the run directory that {@link #DEMO} writes (the key-value task's data sets, CALM bridges and
 * LoRA adapters). CliHelpTest parses every example and checks that each path it reads exists or is written by an
 * earlier example of the same help text.
 */
final class Examples {
    private Examples() {}

    /** A real pretrained tiny Llama (llama2.c's stories260K, no tokenizer: prompts are token ids). */
    static final String STORIES = "calm4j-core/src/test/resources/stories260K";
    /** The key-value experiment's augmenting model: it knows the keys' values ({@code xtyqh=} -> 42). */
    static final String M_A = "experiments/kv-arithmetic/models/m_A";
    /** The key-value experiment's anchor: it adds and subtracts numbers ({@code 250-41=} -> 209). */
    static final String M_B = "experiments/kv-arithmetic/models/m_B";

    static final String RUN = "runs/kv-quick";
    static final String DEMO_NOTE = "  # the key-value task's data, bridges and LoRA adapters, into " + RUN + ":";
    static final String DEMO = "  calm demo --quick --out " + RUN;
    /** What {@link #DEMO} writes. */
    static final String TRAIN = RUN + "/data/composition_train.jsonl";
    static final String HELD_OUT = RUN + "/data/kv_math_heldout_keys.jsonl";
    static final String NUM_MATH = RUN + "/data/num_math.jsonl";
    static final String BRIDGES = RUN + "/seed-1/calm";
    static final String LORA = RUN + "/seed-1/lora";
    /** A KV-MATH prompt over keys the bridges did not train on (the answer is 196; m_B alone cannot know it). */
    static final String HELD_OUT_PROMPT = "'hnkl-zji='";
}
