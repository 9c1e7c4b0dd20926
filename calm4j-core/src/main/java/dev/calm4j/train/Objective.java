package dev.calm4j.train;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.calm4j.data.Batch;
import org.bytedeco.pytorch.Tensor;

import java.nio.file.Path;
import java.util.Map;

/**
 * What the training loop trains: bridges of a composition, LoRA adapters of a model, or every weight of a model
 * being pretrained. The loop owns the optimizer, the schedule, clipping, accumulation, evaluation, checkpoints and
 * logs; an objective only says which tensors are trainable, what the loss is, and how to save itself.
 */
public interface Objective {

    /** The trainable tensors by name (the loop sets requires_grad on them; nothing else gets a gradient). */
    Map<String, Tensor> parameters();

    /** Sum of the per-token cross-entropy over the batch's target tokens (a scalar; with grad when enabled). */
    Tensor lossSum(Batch batch);

    /** Writes the trained result (e.g. a bridge checkpoint or an HF model folder) into {@code dir}, atomically. */
    void save(Path dir, ObjectNode provenance);

    /** One line for logs: what is trained and how many parameters. */
    String describe();
}
