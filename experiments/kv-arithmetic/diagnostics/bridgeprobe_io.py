import json, torch


def read_f32(path):
    """Every F32 tensor of a safetensors file (calm4j's own files carry descriptive metadata, which make_golden's
    reader refuses)."""
    import struct, numpy as np
    raw = open(path, 'rb').read(); k = struct.unpack('<Q', raw[:8])[0]; hdr = json.loads(raw[8:8 + k])
    hdr.pop('__metadata__', None)
    out = {}
    for name, h in hdr.items():
        assert h['dtype'] == 'F32', (path, name, h['dtype'])
        b, e = h['data_offsets']
        out[name] = torch.from_numpy(np.frombuffer(raw[8 + k + b:8 + k + e], dtype='<f4').copy()).view(*h['shape'])
    return out
