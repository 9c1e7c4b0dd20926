package dev.calm4j.nn;

import org.bytedeco.javacpp.BoolPointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.LongPointer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch.ScalarType;

import static org.bytedeco.pytorch.global.torch.from_blob;

/** Copies between Java arrays and tensors, with the shape checked in Java first (a wrong size would crash the JVM). */
public final class Tensors {
    private Tensors() {}

    public static Tensor longs(long[] data, long... shape) {
        check(data.length, shape);
        try (LongPointer p = new LongPointer(data)) {
            return from_blob(p, shape, new TensorOptions(ScalarType.Long)).clone();
        }
    }

    public static Tensor floats(float[] data, long... shape) {
        check(data.length, shape);
        try (FloatPointer p = new FloatPointer(data)) {
            return from_blob(p, shape, new TensorOptions(ScalarType.Float)).clone();
        }
    }

    public static Tensor doubles(double[] data, long... shape) {
        check(data.length, shape);
        try (org.bytedeco.javacpp.DoublePointer p = new org.bytedeco.javacpp.DoublePointer(data)) {
            return from_blob(p, shape, new TensorOptions(ScalarType.Double)).clone();
        }
    }

    /** Raw bytes as a one-dimensional uint8 tensor. */
    public static Tensor bytes(byte[] data) {
        try (org.bytedeco.javacpp.BytePointer p = new org.bytedeco.javacpp.BytePointer(data)) {
            return from_blob(p, new long[] {data.length}, new TensorOptions(ScalarType.Byte)).clone();
        }
    }

    public static Tensor bools(boolean[] data, long... shape) {
        check(data.length, shape);
        try (BoolPointer p = new BoolPointer(data.length)) {
            for (int i = 0; i < data.length; i++) {
                p.put(i, data[i]);
            }
            return from_blob(p, shape, new TensorOptions(ScalarType.Bool)).clone();
        }
    }

    /** All values of a tensor of any float dtype, as float32, row-major. */
    public static float[] toFloats(Tensor t) {
        Tensor c = t.scalar_type().intern() == ScalarType.Float ? t.contiguous() : t.to(ScalarType.Float).contiguous();
        long n = c.numel();
        if (n > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("tensor too large to copy into a Java array: " + n);
        }
        float[] out = new float[(int) n];
        c.data_ptr_float().get(out);
        return out;
    }

    public static double[] toDoubles(Tensor t) {
        Tensor c = t.to(ScalarType.Double).contiguous();
        double[] out = new double[Math.toIntExact(c.numel())];
        c.data_ptr_double().get(out);
        return out;
    }

    /** A uint8 tensor's values. */
    public static byte[] toBytes(Tensor t) {
        Tensor c = t.contiguous();
        byte[] out = new byte[Math.toIntExact(c.numel())];
        c.data_ptr_byte().get(out);
        return out;
    }

    public static long[] toLongs(Tensor t) {
        Tensor c = t.scalar_type().intern() == ScalarType.Long ? t.contiguous() : t.to(ScalarType.Long).contiguous();
        long[] out = new long[(int) c.numel()];
        c.data_ptr_long().get(out);
        return out;
    }

    public static long[] shape(Tensor t) {
        return t.sizes().vec().get();
    }

    private static void check(int length, long[] shape) {
        long n = 1;
        for (long s : shape) {
            if (s < 0) {
                throw new IllegalArgumentException("negative dimension in shape");
            }
            n = Math.multiplyExact(n, s);
        }
        if (n != length) {
            throw new IllegalArgumentException("shape holds " + n + " values, array has " + length);
        }
    }
}
