package dev.calm4j.train;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.nn.Tensors;
import org.bytedeco.pytorch.AdamW;
import org.bytedeco.pytorch.Tensor;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Fuzzes what --resume reads: {@code state.json} and {@code trainable.safetensors} of a checkpoint (the optimizer
 * state beside them is a valid one, so that inputs that pass every check reach libtorch's loader). Seeds:
 * {@code src/test/resources/dev/calm4j/train/CheckpointFuzzTestInputs/state/}.
 */
class CheckpointFuzzTest {
    static final Path OUT;
    static final Path OPTIMIZER;
    static final TrainConfig CFG = new TrainConfig(8, new TrainConfig.Batching(2, 1, 1),
            TrainConfig.Schedule.cosine(1e-3, 0, 0.1), TrainConfig.Optimizer.adamW(0.0), new TrainConfig.Intervals(1, 0, 0), 3);
    static final Map<String, Tensor> PARAMS = new LinkedHashMap<>();
    static final AdamW OPT;

    static {
        Torch.init();
        try {
            OUT = dev.calm4j.fuzz.Split.scratch("calm4j-fuzz-state");
            PARAMS.put("w", Tensors.floats(new float[] {1, 2, 3, 4, 5, 6}, 2, 3));
            PARAMS.put("b", Tensors.floats(new float[] {0.5f, -0.5f}, 2));
            PARAMS.values().forEach(t -> t.set_requires_grad(true));
            OPT = TrainLoop.optimizer(List.copyOf(PARAMS.values()), CFG);
            Checkpoint.save(OUT, 2, 4, CFG, PARAMS, OPT);
            OPTIMIZER = Files.copy(OUT.resolve("checkpoint/optimizer.pt"), OUT.resolve("optimizer.pt.valid"));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @FuzzTest(maxExecutions = 1_000_000, maxDuration = "3h")
    void state(byte[] data) throws IOException {
        byte[][] parts = dev.calm4j.fuzz.Split.two(data);
        String state = new String(parts[0], StandardCharsets.UTF_8);
        byte[] trainable = parts[1];
        Path ck = OUT.resolve(Checkpoint.DIR);
        Files.createDirectories(ck);
        Files.writeString(ck.resolve(Checkpoint.STATE), state, StandardCharsets.UTF_8);
        Files.write(ck.resolve(Checkpoint.TRAINABLE), trainable);
        Files.copy(OPTIMIZER, ck.resolve(Checkpoint.OPTIMIZER), StandardCopyOption.REPLACE_EXISTING);
        try {
            Checkpoint.readState(OUT);
            Checkpoint.load(OUT, CFG, PARAMS, OPT);
        } catch (Calm4jException expected) {
            // refused, naming the file and the field
        }
    }
}
