package dev.calm4j.experiment.language;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.eval.ChrF;

import java.util.ArrayList;
import java.util.List;

/**
 * One row of the results: its translations of the test verses (one list per seed), their chrF (corpus level over
 * every seed's translations pooled, with a bootstrap interval over verses), each seed's chrF, and the likelihoods.
 *
 * @param bitsPerChar the reference English's bits per character given the Spanish (null for floors)
 * @param englishBits held-out English's bits per character under the anchor as composed (null where not measured)
 */
record Row(String name, List<List<String>> hyps, dev.calm4j.eval.Score chrf, List<Double> perSeed, List<Long> seeds,
           Double bitsPerChar, Double englishBits) {
    static final int BOOTSTRAP = 1000;

    static Row of(String name, List<List<String>> hyps, List<String> refs, Double bits, Double english) {
        List<String> h = new ArrayList<>();
        List<String> r = new ArrayList<>();
        List<Double> perSeed = new ArrayList<>();
        for (List<String> one : hyps) {
            h.addAll(one);
            r.addAll(refs);
            perSeed.add(ChrF.corpus(one, refs));
        }
        return new Row(name, hyps, ChrF.corpus(h, r, BOOTSTRAP, 1), perSeed, new ArrayList<>(), bits, english);
    }

    ObjectNode toJson() {
        ObjectNode o = LanguageExperiment.JSON.createObjectNode();
        o.put("chrf", chrf.value());
        o.putArray("ci95").add(chrf.ci95()[0]).add(chrf.ci95()[1]);
        o.put("n", chrf.n());
        o.putArray("per_seed").addAll(perSeed.stream().map(v -> LanguageExperiment.JSON.getNodeFactory().numberNode(v)).toList());
        if (bitsPerChar != null) {
            o.put("reference_bits_per_char", bitsPerChar);
        }
        if (englishBits != null) {
            o.put("heldout_english_bits_per_char", englishBits);
        }
        return o;
    }
}
