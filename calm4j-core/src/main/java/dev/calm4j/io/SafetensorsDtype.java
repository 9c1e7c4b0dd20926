package dev.calm4j.io;

import java.util.Arrays;
import java.util.Optional;
import java.util.stream.Collectors;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * The safetensors element types calm4j reads and writes, with their size in bytes and their libtorch
 * {@link ScalarType}. The enum constant names are exactly the strings used in a safetensors header.
 *
 * <p>Other safetensors dtypes (U16, U32, U64, F8_*) are rejected on purpose: no HF checkpoint we load uses them and
 * libtorch support for the unsigned ones is partial.
 */
public enum SafetensorsDtype {
    F32(4, ScalarType.Float),
    F16(2, ScalarType.Half),
    BF16(2, ScalarType.BFloat16),
    F64(8, ScalarType.Double),
    I64(8, ScalarType.Long),
    I32(4, ScalarType.Int),
    I16(2, ScalarType.Short),
    I8(1, ScalarType.Char),
    U8(1, ScalarType.Byte),
    BOOL(1, ScalarType.Bool);

    private final int byteSize;
    private final ScalarType scalarType;

    SafetensorsDtype(int byteSize, ScalarType scalarType) {
        this.byteSize = byteSize;
        this.scalarType = scalarType;
    }

    /** Bytes per element. */
    public int byteSize() {
        return byteSize;
    }

    /** The libtorch type a tensor of this dtype is loaded as. */
    public ScalarType scalarType() {
        return scalarType;
    }

    /** The string written in a safetensors header ("F32", "BF16", ...). */
    public String headerName() {
        return name();
    }

    /** Parses a header dtype string; empty if it is not one calm4j supports. Case-sensitive, as in the format. */
    public static Optional<SafetensorsDtype> fromHeader(String s) {
        for (SafetensorsDtype d : values()) {
            if (d.name().equals(s)) {
                return Optional.of(d);
            }
        }
        return Optional.empty();
    }

    /**
     * The dtype that stores a libtorch type; empty for types safetensors (or calm4j) cannot store.
     *
     * <p>Trap: JavaCPP returns a <em>new</em> enum object from native calls ({@code t.scalar_type()} is never
     * {@code ==} to {@code ScalarType.Float}, and enum {@code equals} is identity), so compare after
     * {@link ScalarType#intern()}.
     */
    public static Optional<SafetensorsDtype> fromScalarType(ScalarType t) {
        ScalarType canonical = t.intern();
        for (SafetensorsDtype d : values()) {
            if (d.scalarType == canonical) {
                return Optional.of(d);
            }
        }
        return Optional.empty();
    }

    /** "F32, F16, ..." for error messages. */
    public static String supportedList() {
        return Arrays.stream(values()).map(Enum::name).collect(Collectors.joining(", "));
    }
}
