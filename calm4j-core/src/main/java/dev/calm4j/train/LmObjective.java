package dev.calm4j.train;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.Calm4jException;
import dev.calm4j.data.Batch;
import dev.calm4j.lm.CausalLm;
import dev.calm4j.lm.LmFamilies;
import org.bytedeco.pytorch.Tensor;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;

/** Trains every weight of a causal LM (pretraining small models from scratch); saves an HF model folder. */
public final class LmObjective implements Objective {
    private final CausalLm model;
    private final Path tokenizer;   // copied next to the weights, may be null

    public LmObjective(CausalLm model, Path tokenizer) {
        this.model = model;
        this.tokenizer = tokenizer;
    }

    @Override
    public Map<String, Tensor> parameters() {
        return model.namedWeights();
    }

    @Override
    public Tensor lossSum(Batch b) {
        return Losses.sum(model.hidden(Losses.inputs(b), null, null), model::logits, b);   // head where labelled
    }

    @Override
    public void save(Path dir, ObjectNode provenance) {
        LmFamilies.save(model, dir);
        if (tokenizer != null) {
            try {
                Path tmp = dir.resolve(".tokenizer.json.tmp");
                Files.copy(tokenizer, tmp, StandardCopyOption.REPLACE_EXISTING);
                Files.move(tmp, dir.resolve("tokenizer.json"), StandardCopyOption.REPLACE_EXISTING,
                        StandardCopyOption.ATOMIC_MOVE);
            } catch (IOException e) {
                throw new Calm4jException(dir.resolve("tokenizer.json") + ": cannot write (" + e.getMessage() + ")");
            }
        }
    }

    @Override
    public String describe() {
        return String.format("%s LM, every weight (%,d parameters)", model.config().modelType(),
                model.namedWeights().values().stream().mapToLong(Tensor::numel).sum());
    }
}
