package dev.calm4j.lm;

import dev.calm4j.Calm4jException;
import dev.calm4j.io.WeightFiles;
import dev.calm4j.nn.Finite;
import org.bytedeco.pytorch.Generator;
import org.bytedeco.pytorch.GeneratorOptional;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

import static org.bytedeco.pytorch.global.torch.ones;
import static org.bytedeco.pytorch.global.torch.randn;
import static org.bytedeco.pytorch.global.torch.zeros;

/**
 * What every family's weights share: the list of tensors a config implies (each family writes its own, under HF
 * names, as one literal list), loaded and checked against the files, or drawn at random for pretraining.
 */
public final class WeightSpec {
    private WeightSpec() {}

    /** How a tensor starts when drawn at random: normal matrices, norms at their identity, zero biases. */
    public enum Init { NORMAL, ONES, ZEROS }

    /** One tensor: its HF name, its shape, how it starts. */
    public record Entry(String name, long[] shape, Init init) {}

    /**
     * Every tensor of {@code spec} from {@code files}, converted once to {@code dtype}, in spec order. Each is checked
     * (present, shape) before any is read, and a problem is refused with the tensor's name. Tensors the spec does not
     * name are ignored, as HF does.
     */
    public static Map<String, Tensor> load(List<Entry> spec, WeightFiles files, String source, ScalarType dtype) {
        return load(spec, files, source, dtype, UnaryOperator.identity());
    }

    /** As above, each tensor read under {@code stored.apply(name)} (a family whose checkpoints spell names two ways). */
    public static Map<String, Tensor> load(List<Entry> spec, WeightFiles files, String source, ScalarType dtype,
                                           UnaryOperator<String> stored) {
        for (Entry e : spec) {
            String name = stored.apply(e.name());
            if (!files.contains(name)) {
                throw new Calm4jException(source + ": missing tensor '" + name + "' (expected shape "
                        + Arrays.toString(e.shape()) + " for this config.json)");
            }
            long[] found = files.info(name).shape();
            if (!Arrays.equals(found, e.shape())) {
                throw new Calm4jException(source + ": tensor '" + name + "' has shape "
                        + Arrays.toString(found) + ", config.json implies " + Arrays.toString(e.shape()));
            }
        }
        checkNoExtraLayers(spec, files, source, stored);
        Map<String, Tensor> t = new LinkedHashMap<>();
        try {
            for (Entry e : spec) {
                Tensor x = files.load(stored.apply(e.name()), dtype);
                t.put(e.name(), x);
                Finite.require(x, source + ": tensor '" + stored.apply(e.name()) + "'");
            }
        } catch (RuntimeException ex) {
            t.values().forEach(Tensor::close);
            throw ex;
        }
        dev.calm4j.Torch.trimNativeHeap();              // what converting a stored dtype freed
        return t;
    }

    /** Digits between dots (layer, expert, shard indices) replaced by '#': what a name is, whatever its index. */
    private static final Pattern INDEX = Pattern.compile("(?<=\\.)\\d+(?=\\.)");

    /**
     * Refuses a file holding more layers than the config: a tensor the spec does not name but whose name, indices
     * aside, is one the spec has (e.g. {@code model.layers.3.mlp.up_proj.weight} under {@code num_hidden_layers: 3})
     * means the config describes a smaller model than the file, and loading it would silently drop a layer. Other
     * extra tensors (old {@code rotary_emb.inv_freq} buffers) are ignored, as HF does.
     */
    static void checkNoExtraLayers(List<Entry> spec, WeightFiles files, String source, UnaryOperator<String> stored) {
        Set<String> names = new HashSet<>();
        Set<String> shapes = new HashSet<>();
        for (Entry e : spec) {
            String n = stored.apply(e.name());
            names.add(n);
            shapes.add(INDEX.matcher(n).replaceAll("#"));
        }
        for (String n : new TreeSet<>(files.names())) {
            if (!names.contains(n) && shapes.contains(INDEX.matcher(n).replaceAll("#"))) {
                throw new Calm4jException(source + ": tensor '" + n + "' is not part of the model config.json describes"
                        + " (the file holds more layers than its num_hidden_layers, or another layout)");
            }
        }
    }

    /** Fresh tensors for {@code spec}, seeded: normal(0, std), ones or zeros as each entry says, drawn in fp32. */
    public static Map<String, Tensor> random(List<Entry> spec, long seed, double std, ScalarType dtype) {
        Generator g = org.bytedeco.pytorch.global.torch.createCPUGenerator(seed);
        TensorOptions f32 = new TensorOptions(ScalarType.Float);
        Map<String, Tensor> t = new LinkedHashMap<>();
        for (Entry e : spec) {
            Tensor x = switch (e.init()) {
                case NORMAL -> {
                    Tensor n = randn(e.shape(), new GeneratorOptional(g), f32);
                    n.mul_(new Scalar(std));                // in place: no second copy of a large matrix
                    yield n;
                }
                case ONES -> ones(e.shape(), f32);
                case ZEROS -> zeros(e.shape(), f32);
            };
            if (dtype == ScalarType.Float) {
                t.put(e.name(), x);
            } else {
                t.put(e.name(), x.to(dtype));
                x.close();                                  // the fp32 draw, freed now rather than at a GC
            }
        }
        return t;
    }
}
