package dev.calm4j.bench;

import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.Generator;
import org.bytedeco.pytorch.GeneratorOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch.ScalarType;

import java.util.Arrays;

import static org.bytedeco.pytorch.global.torch.randn;

/**
 * The machine's matmul peak in one dtype as this process sees it (same libtorch, same BLAS or oneDNN kernel, same
 * threads), measured like the peer's {@code peak_gemm.py}: for each size n, {@code warmup} untimed then
 * {@code repeats} timed {@code mm} of two n x n matrices; GFLOP/s = 2 n^3 / time; the peak is the best per-size median.
 * A run's utilisation is its GFLOP/s over the peak of the dtype its matmuls ran in.
 */
public final class GemmPeak {
    private GemmPeak() {}

    public static double measure(int[] sizes, int warmup, int repeats) {
        return measure(sizes, warmup, repeats, ScalarType.Float);
    }

    public static double measure(int[] sizes, int warmup, int repeats, ScalarType dtype) {
        double best = 0;
        Generator g = org.bytedeco.pytorch.global.torch.createCPUGenerator(0);
        for (int n : sizes) {
            try (PointerScope scope = new PointerScope()) {
                TensorOptions f32 = new TensorOptions(ScalarType.Float);
                Tensor a = randn(new long[] {n, n}, new GeneratorOptional(g), f32).to(dtype);
                Tensor b = randn(new long[] {n, n}, new GeneratorOptional(g), f32).to(dtype);
                double[] gflops = new double[repeats];
                for (int i = 0; i < warmup + repeats; i++) {
                    long t0 = System.nanoTime();
                    Tensor c = a.mm(b);
                    double s = (System.nanoTime() - t0) / 1e9;
                    c.close();
                    if (i >= warmup) {
                        gflops[i - warmup] = 2.0 * n * n * n / s / 1e9;
                    }
                }
                Arrays.sort(gflops);
                best = Math.max(best, median(gflops));
            }
        }
        return best;
    }

    static double median(double[] sorted) {
        int n = sorted.length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}
