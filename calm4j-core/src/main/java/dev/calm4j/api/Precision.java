package dev.calm4j.api;

import org.bytedeco.pytorch.global.torch.ScalarType;

/** The dtype a model computes in (its weights are converted to it once, when loaded). */
public enum Precision {
    /** 32-bit floats: the reference, and what the tests and the paper-scale runs use. */
    FP32,
    /** bfloat16: half the memory, faster matmuls on CPUs that have bf16 instructions, less exact. */
    BF16;

    ScalarType scalarType() {
        return this == FP32 ? ScalarType.Float : ScalarType.BFloat16;
    }
}
