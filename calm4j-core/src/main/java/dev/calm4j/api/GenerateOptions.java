package dev.calm4j.api;

import dev.calm4j.Calm4jException;

import java.util.Arrays;
import java.util.List;
import java.util.Set;

/**
 * How to generate: how many tokens, greedy or sampled, where to stop. Immutable; start from {@link #greedy(int)} or
 * {@link #sampling(int, double, double, long)} and change parts with the {@code with...} methods.
 *
 * @param maxNewTokens at most this many new tokens per prompt (prompt plus these must fit in the model's context)
 * @param temperature  0 for greedy decoding (the most likely token every step, the lowest id on a tie), else the
 *                     sampling temperature
 * @param topK         sample among the {@code topK} most likely ids only (0 = all); ignored when greedy
 * @param topP         sample within the smallest set of ids whose probability reaches {@code topP} (1 = all);
 *                     ignored when greedy
 * @param seed         the sampling seed: the same seed gives the same text on every machine
 * @param stopStrings  a prompt's generation stops as soon as its text contains one of these; the returned text ends
 *                     before it (the returned ids include the tokens that formed it)
 * @param stopIds      a prompt's generation stops after one of these ids (included in the returned ids)
 * @param stopAtEos    also stop at the model's EOS ids ({@link ModelInfo#eosIds()})
 * @param addBos       prepend the model's BOS id to each prompt (and augment prompt) unless it starts with it, as
 *                     the data read by {@code readData} is shaped; turn off only for data read without BOS
 */
public record GenerateOptions(int maxNewTokens, double temperature, int topK, double topP, long seed,
                              List<String> stopStrings, Set<Integer> stopIds, boolean stopAtEos, boolean addBos) {

    /**
     * @throws Calm4jException when a value is out of range (the message names the field and what it must be)
     */
    public GenerateOptions {
        check(maxNewTokens >= 0, "maxNewTokens must be >= 0, got " + maxNewTokens);
        check(temperature >= 0 && Double.isFinite(temperature), "temperature must be >= 0 (0 = greedy), got "
                + temperature);
        check(topK >= 0, "topK must be >= 0 (0 = all ids), got " + topK);
        check(topP > 0 && topP <= 1, "topP must be in (0, 1], got " + topP);
        check(stopStrings != null && stopIds != null, "stopStrings and stopIds must not be null (use empty ones)");
        for (String s : stopStrings) {
            check(s != null && !s.isEmpty(), "stopStrings must not hold an empty string or null");
        }
        stopStrings = List.copyOf(stopStrings);
        stopIds = Set.copyOf(stopIds);
    }

    /** Greedy decoding of up to {@code maxNewTokens} tokens, stopping at EOS, prompts led by BOS. */
    public static GenerateOptions greedy(int maxNewTokens) {
        return new GenerateOptions(maxNewTokens, 0, 0, 1.0, 0, List.of(), Set.of(), true, true);
    }

    /** Sampling at {@code temperature} within the top-{@code topP} mass, seeded; stops at EOS, prompts led by BOS. */
    public static GenerateOptions sampling(int maxNewTokens, double temperature, double topP, long seed) {
        return new GenerateOptions(maxNewTokens, temperature, 0, topP, seed, List.of(), Set.of(), true, true);
    }

    /** True when decoding is greedy ({@code temperature} 0). */
    public boolean isGreedy() {
        return temperature == 0;
    }

    /** These options with another token limit. */
    public GenerateOptions withMaxNewTokens(int n) {
        return new GenerateOptions(n, temperature, topK, topP, seed, stopStrings, stopIds, stopAtEos, addBos);
    }

    /** These options sampling at {@code t} (0 = greedy). */
    public GenerateOptions withTemperature(double t) {
        return new GenerateOptions(maxNewTokens, t, topK, topP, seed, stopStrings, stopIds, stopAtEos, addBos);
    }

    /** These options sampling among the {@code k} most likely ids (0 = all). */
    public GenerateOptions withTopK(int k) {
        return new GenerateOptions(maxNewTokens, temperature, k, topP, seed, stopStrings, stopIds, stopAtEos, addBos);
    }

    /** These options sampling within the top-{@code p} probability mass. */
    public GenerateOptions withTopP(double p) {
        return new GenerateOptions(maxNewTokens, temperature, topK, p, seed, stopStrings, stopIds, stopAtEos, addBos);
    }

    /** These options with another sampling seed. */
    public GenerateOptions withSeed(long s) {
        return new GenerateOptions(maxNewTokens, temperature, topK, topP, s, stopStrings, stopIds, stopAtEos, addBos);
    }

    /** These options stopping at any of {@code strings} (replacing earlier stop strings). */
    public GenerateOptions withStop(String... strings) {
        return new GenerateOptions(maxNewTokens, temperature, topK, topP, seed, List.of(strings), stopIds, stopAtEos,
                addBos);
    }

    /** These options stopping after any of {@code ids} (replacing earlier stop ids). */
    public GenerateOptions withStopIds(int... ids) {
        return new GenerateOptions(maxNewTokens, temperature, topK, topP, seed, stopStrings,
                Set.copyOf(Arrays.stream(ids).boxed().toList()), stopAtEos, addBos);
    }

    /** These options stopping, or not, at the model's EOS ids. */
    public GenerateOptions withStopAtEos(boolean stop) {
        return new GenerateOptions(maxNewTokens, temperature, topK, topP, seed, stopStrings, stopIds, stop, addBos);
    }

    /** These options prepending, or not, the model's BOS id to prompts. */
    public GenerateOptions withAddBos(boolean add) {
        return new GenerateOptions(maxNewTokens, temperature, topK, topP, seed, stopStrings, stopIds, stopAtEos, add);
    }

    private static void check(boolean ok, String message) {
        if (!ok) {
            throw new Calm4jException("GenerateOptions: " + message);
        }
    }
}
