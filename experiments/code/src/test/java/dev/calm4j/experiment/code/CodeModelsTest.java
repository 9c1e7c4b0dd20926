package dev.calm4j.experiment.code;

import dev.calm4j.Calm4jException;
import dev.calm4j.train.TrainListener;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The shipped code models are checked against the recipe and the anchor they were made from. */
class CodeModelsTest {
    @Test
    void modelsOfAnotherRecipeOrAnchorAreRefused(@TempDir Path tmp) throws Exception {
        Path anchor = Files.createDirectories(tmp.resolve("m_B"));
        Files.write(anchor.resolve("model.safetensors"), new byte[] {1, 2, 3});
        Path dir = tmp.resolve("models");
        CodeModels m = new CodeModels(CodeRecipe.defaults(), dir, anchor, new PrintStream(PrintStream.nullOutputStream()),
                (name, messages) -> TrainListener.NONE);
        Calm4jException none = assertThrows(Calm4jException.class, () -> m.ensure(null, false));
        assertTrue(none.getMessage().contains("no code models") && none.getMessage().contains("--retrain"), none.getMessage());

        for (Path p : new Path[] {m.augment(), m.skyline()}) {
            Files.createDirectories(p);
            Files.write(p.resolve("model.safetensors"), new byte[] {0});
        }
        Files.writeString(dir.resolve(CodeModels.STAMP), m.stamp());
        assertDoesNotThrow(() -> m.ensure(null, false));

        Files.write(anchor.resolve("model.safetensors"), new byte[] {1, 2, 4});     // a retrained anchor
        Calm4jException other = assertThrows(Calm4jException.class, () -> m.ensure(null, false));
        assertTrue(other.getMessage().contains("another recipe or anchor"), other.getMessage());

        Files.delete(anchor.resolve("model.safetensors"));
        Calm4jException noAnchor = assertThrows(Calm4jException.class, () -> m.ensure(null, false));
        assertTrue(noAnchor.getMessage().contains("no anchor"), noAnchor.getMessage());
    }
}
