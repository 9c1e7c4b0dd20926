package dev.calm4j.experiment.code;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.eval.ChrF;
import dev.calm4j.eval.ExactMatch;
import dev.calm4j.eval.Score;
import dev.calm4j.eval.SmoothBleu;

import java.util.ArrayList;
import java.util.List;

/**
 * One row of the results: its summaries of the test methods and its next lines (one list per seed), scored over
 * every seed's outputs pooled with bootstrap intervals over examples, and its likelihoods averaged over seeds.
 *
 * @param summaryBits the reference summary's bits per character given the method (null for floors)
 * @param codeBits bits per character of the held-out projects' code (null where not measured)
 * @param englishBits held-out English's bits per character under the anchor as composed (null where not measured)
 */
record CodeRow(String name, List<List<String>> summaries, List<List<String>> nextLines, Score bleu, Score chrf,
               Score exactMatch, List<Double> bleuPerSeed, List<Double> chrfPerSeed, List<Long> seeds,
               Double summaryBits, Double codeBits, Double englishBits) {
    static final int BOOTSTRAP = 1000;

    /**
     * @param nextLines null for a row that writes no next lines (a floor)
     * @param lineRefs the target lines as this row's writer can spell them ({@link CodeExperiment#spellable})
     */
    static CodeRow of(String name, List<List<String>> summaries, List<String> refs, List<List<String>> nextLines,
                      List<String> lineRefs, Double summaryBits, Double codeBits, Double englishBits) {
        List<String> h = new ArrayList<>();
        List<String> r = new ArrayList<>();
        List<Double> bleu = new ArrayList<>();
        List<Double> chrf = new ArrayList<>();
        for (List<String> one : summaries) {
            h.addAll(one);
            r.addAll(refs);
            bleu.add(SmoothBleu.corpus(one, refs));
            chrf.add(ChrF.corpus(one, refs));
        }
        Score em = null;
        if (nextLines != null) {
            List<String> lh = new ArrayList<>();
            List<String> lr = new ArrayList<>();
            for (List<String> one : nextLines) {
                for (int i = 0; i < one.size(); i++) {
                    // The line written first; a row that cannot write a newline has no line end, and is judged by
                    // whether what it wrote begins with the line.
                    lh.add(CodeExperiment.beginsWith(one.get(i), lineRefs.get(i)) ? lineRefs.get(i) : one.get(i));
                    lr.add(lineRefs.get(i));
                }
            }
            em = ExactMatch.corpus(lh, lr, BOOTSTRAP, 1);
        }
        return new CodeRow(name, summaries, nextLines, SmoothBleu.corpus(h, r, BOOTSTRAP, 1), ChrF.corpus(h, r, BOOTSTRAP, 1),
                em, bleu, chrf, new ArrayList<>(), summaryBits, codeBits, englishBits);
    }

    ObjectNode toJson() {
        ObjectNode o = CodeModels.JSON.createObjectNode();
        put(o, "smoothed_bleu4", bleu);
        put(o, "chrf", chrf);
        if (exactMatch != null) {
            put(o, "next_line_exact_match", exactMatch);
        }
        var f = CodeModels.JSON.getNodeFactory();
        o.putArray("bleu_per_seed").addAll(bleuPerSeed.stream().map(f::numberNode).toList());
        o.putArray("chrf_per_seed").addAll(chrfPerSeed.stream().map(f::numberNode).toList());
        o.putArray("seeds").addAll(seeds.stream().map(f::numberNode).toList());
        if (summaryBits != null) {
            o.put("summary_bits_per_char", summaryBits);
        }
        if (codeBits != null) {
            o.put("code_bits_per_char", codeBits);
        }
        if (englishBits != null) {
            o.put("heldout_english_bits_per_char", englishBits);
        }
        return o;
    }

    private static void put(ObjectNode o, String name, Score s) {
        ObjectNode n = o.putObject(name);
        n.put("value", s.value());
        n.putArray("ci95").add(s.ci95()[0]).add(s.ci95()[1]);
        n.put("n", s.n());
    }
}
