package dev.calm4j.train;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.data.Batch;
import dev.calm4j.lm.llama.LlamaModel;
import org.bytedeco.pytorch.Tensor;

import java.nio.file.Path;
import java.util.Map;

/** Trains LoRA adapters on a frozen model (the paper's parameter-matched control for CALM). */
public final class LoraObjective implements Objective {
    private final LlamaModel base;
    private final Path baseDir;
    private final Lora lora;

    public LoraObjective(LlamaModel base, Path baseDir, Lora lora) {
        this.base = base;
        this.baseDir = baseDir;
        this.lora = lora;
    }

    @Override
    public Map<String, Tensor> parameters() {
        return lora.named();
    }

    @Override
    public Tensor lossSum(Batch b) {
        dev.calm4j.lm.CausalLm adapted = lora.apply(base);
        return Losses.sum(adapted.hidden(Losses.inputs(b), null, null), adapted::logits, b);   // head where labelled
    }

    @Override
    public void save(Path dir, ObjectNode provenance) {
        lora.save(dir, baseDir, provenance);
    }

    @Override
    public String describe() {
        return String.format("LoRA r=%d on %s (%,d parameters)", lora.rank(), lora.targets(), lora.parameterCount());
    }
}
