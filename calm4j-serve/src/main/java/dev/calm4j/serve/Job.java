package dev.calm4j.serve;

import dev.calm4j.tokenize.Tokenizer;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * One request's sequences (its choices) and what they produced. The scheduler's worker fills each {@link Choice};
 * the request's HTTP thread waits for the end ({@link #await}) or reads {@link Event}s as they come (streaming).
 */
final class Job {
    final List<Choice> choices = new ArrayList<>();
    private final CountDownLatch done;
    private final BlockingQueue<Event> events;      // null unless streaming

    /** A piece of one choice's output: new text, the logprob entries that came with it, and the end if reached. */
    record Event(int index, String text, List<LogprobEntry> logprobs, String finishReason, RuntimeException failure) {}

    /** One token's log-probability entry (OpenAI's completions "logprobs" arrays, one element each). */
    record LogprobEntry(String token, Float logprob, Map<String, Float> top, int offset) {}

    Job(int choices, boolean streaming) {
        this.done = new CountDownLatch(choices);
        this.events = streaming ? new LinkedBlockingQueue<>() : null;
    }

    /** Waits until every choice finished; false on time-out. */
    boolean await(long millis) throws InterruptedException {
        return done.await(millis, TimeUnit.MILLISECONDS);
    }

    /** The next streaming event, or null after {@code millis}. */
    Event next(long millis) throws InterruptedException {
        return events.poll(millis, TimeUnit.MILLISECONDS);
    }

    boolean finished() {
        return done.getCount() == 0;
    }

    void cancel() {
        for (Choice c : choices) {
            if (c.task != null) {
                c.task.cancel();
            }
        }
    }

    /** Tokenizer calls from the HTTP threads and the worker, serialised. */
    static final class Text {
        private final Tokenizer tok;

        Text(Tokenizer tok) {
            this.tok = tok;
        }

        synchronized String decode(long[] ids) {
            return tok.decode(ids, true);
        }

        /** Special tokens included: the echo of a token-id prompt shows every token. */
        synchronized String decodeAll(long[] ids) {
            return tok.decode(ids, false);
        }

        synchronized String piece(long id) {
            return tok.decode(new long[] {id}, false);
        }

        synchronized long[] encode(String text, boolean special) {
            return tok.encode(text, special);
        }
    }

    /** One sequence of the request: its prompt, its stop rules and what it produced. */
    final class Choice implements Scheduler.Listener {
        final int index;
        final long[] prompt;
        private final String prefix;            // the echoed prompt text, or ""
        private final List<String> stops;
        private final Set<Integer> eos;
        private final Text text;
        private final boolean logprobs;
        Scheduler.Task task;

        private final List<Long> ids = new ArrayList<>();   // generated ids that carry text (EOS left out)
        private int generated;
        private String completion = "";
        private int sent;                         // characters of prefix + completion already streamed
        private final List<LogprobEntry> entries = new ArrayList<>();
        private int entriesSent;
        private int offset;
        private String finishReason;
        private RuntimeException failure;

        Choice(int index, long[] prompt, String echoText, List<String> stops, Set<Integer> eos, Text text,
               boolean logprobs) {
            this.index = index;
            this.prompt = prompt;
            this.prefix = echoText == null ? "" : echoText;
            this.stops = stops;
            this.eos = eos;
            this.text = text;
            this.logprobs = logprobs;
        }

        @Override
        public void prompt(float[] tokenLogprobs, long[][] topIds, float[][] topLogprobs) {
            for (int i = 0; i < prompt.length; i++) {
                String piece = text.piece(prompt[i]);
                entries.add(new LogprobEntry(piece, i == 0 ? null : tokenLogprobs[i - 1],
                        i == 0 ? null : tops(topIds[i - 1], topLogprobs[i - 1]), offset));
                offset += piece.length();
            }
        }

        private Map<String, Float> tops(long[] ids, float[] lps) {
            Map<String, Float> m = new LinkedHashMap<>();
            for (int i = 0; i < ids.length; i++) {
                m.putIfAbsent(text.piece(ids[i]), lps[i]);
            }
            return m;
        }

        @Override
        public boolean token(long id, float logprob, long[] topIds, float[] topLogprobs) {
            generated++;
            if (logprobs) {
                String piece = text.piece(id);
                entries.add(new LogprobEntry(piece, logprob, tops(topIds, topLogprobs), offset));
                offset += piece.length();
            }
            if (eos.contains((int) id)) {
                return false;
            }
            ids.add(id);
            completion = text.decode(ids.stream().mapToLong(Long::longValue).toArray());
            int hit = stopAt(completion);
            if (hit >= 0) {
                completion = completion.substring(0, hit);
                return true;
            }
            emit(null, false);
            return false;
        }

        /** Where the first stop string starts in {@code s}, or -1. */
        private int stopAt(String s) {
            int best = -1;
            for (String stop : stops) {
                int i = s.indexOf(stop);
                if (i >= 0 && (best < 0 || i < best)) {
                    best = i;
                }
            }
            return best;
        }

        /**
         * Streams what is safe to show: not a tail that may still become a stop string, nor an unfinished character
         * (a byte-level piece decodes to U+FFFD until its character is complete). At the end, everything.
         */
        private void emit(String finish, boolean all) {
            if (events == null) {
                return;
            }
            String full = prefix + completion;
            int end = full.length();
            if (!all) {
                if (full.endsWith("\uFFFD")) {
                    end = full.length() - 1;
                }
                for (String stop : stops) {
                    for (int k = Math.min(stop.length() - 1, completion.length()); k > 0; k--) {
                        if (full.startsWith(stop.substring(0, k), full.length() - k)) {
                            end = Math.min(end, full.length() - k);
                            break;
                        }
                    }
                }
            }
            end = Math.max(end, sent);
            String delta = full.substring(Math.min(sent, full.length()), Math.min(end, full.length()));
            List<LogprobEntry> lp = List.copyOf(entries.subList(entriesSent, entries.size()));
            if (delta.isEmpty() && lp.isEmpty() && finish == null && failure == null) {
                return;
            }
            sent = Math.max(sent, end);
            entriesSent = entries.size();
            events.add(new Event(index, delta, lp, finish, failure));
        }

        @Override
        public void finished(String reason, RuntimeException failure) {
            this.finishReason = reason;
            this.failure = failure;
            emit(reason == null ? "error" : reason, true);
            done.countDown();
        }

        String text() {
            return prefix + completion;
        }

        int completionTokens() {
            return generated;
        }

        String finishReason() {
            return finishReason;
        }

        RuntimeException failure() {
            return failure;
        }

        List<LogprobEntry> logprobEntries() {
            return entries;
        }

        boolean wantsLogprobs() {
            return logprobs;
        }
    }
}
