package dev.calm4j.io;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.pytorch.Tensor;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

/**
 * A model's identity, so bridges trained on one base model are not silently loaded onto another.
 *
 * <p>SHA-256 over every tensor of the checkpoint, in sorted name order: the UTF-8 name, 0x00, the dtype as the
 * safetensors header spells it, 0x00, the shape as decimals joined by commas, 0x00, then the raw little-endian bytes
 * as stored. Sharding, header order and metadata do not change it; any changed weight does. (tools/make_calm_golden.py
 * computes the same value in Python.)
 */
public final class ModelFingerprint {
    private ModelFingerprint() {}

    public static String of(Path modelDir) {
        try (WeightFiles files = WeightFiles.open(modelDir)) {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            List<String> names = new ArrayList<>(files.names());
            names.sort(null);
            for (String name : names) {
                Safetensors.TensorInfo info = files.info(name);
                md.update(name.getBytes(StandardCharsets.UTF_8));
                md.update((byte) 0);
                md.update(info.dtype().headerName().getBytes(StandardCharsets.US_ASCII));
                md.update((byte) 0);
                StringBuilder shape = new StringBuilder();
                for (long s : info.shape()) {
                    shape.append(shape.length() == 0 ? "" : ",").append(s);
                }
                md.update(shape.toString().getBytes(StandardCharsets.US_ASCII));
                md.update((byte) 0);
                if (info.byteLength() > 0) {
                    Tensor t = files.load(name, info.dtype().scalarType());
                    try {
                        BytePointer p = new BytePointer(t.data_ptr());
                        p.capacity(info.byteLength());
                        md.update(p.asByteBuffer());
                    } finally {
                        t.close();
                    }
                }
            }
            return "sha256:" + HexFormat.of().formatHex(md.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
