package dev.calm4j.compose;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.calm4j.Calm4jException;
import dev.calm4j.Torch;
import dev.calm4j.io.Safetensors;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Fuzzes a bridge checkpoint's own files: {@code calm_config.json} and the {@code bridges.safetensors} header with
 * the plan it records, read and checked against each other as loading does before any base model is touched.
 * An input is the config, {@link dev.calm4j.fuzz.Split#SEPARATOR}, then the weights file. Seeds: {@code src/test/resources/dev/calm4j/compose/BridgeCheckpointFuzzTestInputs/checkpoint/}.
 */
class BridgeCheckpointFuzzTest {
    static final Path DIR;

    static {
        try {
            DIR = dev.calm4j.fuzz.Split.scratch("calm4j-fuzz-bridges");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        Torch.init();
    }

    @FuzzTest(maxExecutions = 1_000_000, maxDuration = "3h")
    void checkpoint(byte[] data) throws IOException {
        byte[][] parts = dev.calm4j.fuzz.Split.two(data);
        String config = new String(parts[0], StandardCharsets.UTF_8);
        byte[] weights = parts[1];
        Files.writeString(DIR.resolve(CalmConfig.FILE), config, StandardCharsets.UTF_8);
        Files.write(DIR.resolve(BridgeCheckpoint.WEIGHTS), weights);
        try {
            CalmConfig cfg = CalmConfig.read(DIR);
            CompositionPlan plan = new CompositionPlan(cfg.connections());
            plan.size();
            cfg.toJsonString();
            try (Safetensors st = Safetensors.open(DIR.resolve(BridgeCheckpoint.WEIGHTS))) {
                BridgeCheckpoint.checkPlan(st, cfg, DIR);
            }
        } catch (Calm4jException expected) {
            // refused with a message
        }
    }
}
