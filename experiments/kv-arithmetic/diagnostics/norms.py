# Shared helpers of the KV diagnostics. make_golden.py and make_calm_golden.py live in the repository's tools/:
# run every diagnostic from the repository root with PYTHONPATH=tools (README.md).
import sys, json, torch, numpy as np
import os; sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import make_golden as mg, make_calm_golden as cg
ALPHA = "abcdefghijklmnopqrstuvwxyz0123456789+-="
def tok(s): return [1] + [4 + ALPHA.index(c) for c in s]   # specials: pad,bos,eos? check
def load(d):
    c = json.load(open(d + '/config.json'))
    s = {"heads": c["num_attention_heads"], "kv_heads": c["num_key_value_heads"], "head_dim": c.get("head_dim") or c["hidden_size"]//c["num_attention_heads"],
         "layers": c["num_hidden_layers"], "eps": c["rms_norm_eps"], "theta": c.get("rope_theta", 10000.0), "rope_type": "default", "rope": None}
    W = mg.read_safetensors(d + '/model.safetensors')
    if "lm_head.weight" not in W: W["lm_head.weight"] = W["model.embed_tokens.weight"]
    return s, W
def digit_feats(v, d=None, ln=None):
    """One-hot hundreds, tens, units (30) and length (3) of a value 1..999, or of given digits d and length ln."""
    f = torch.zeros(33)
    d = d if d is not None else [int(c) for c in f"{v:03d}"]
    for p in range(3): f[p * 10 + d[p]] = 1
    f[30 + (ln if ln is not None else len(str(v))) - 1] = 1
    return f
def greedy_added(s, W, ids, layer, positions, vecs, maxn=6):
    """Greedy continuation of ids by a model (cg.llama_run) with vecs[r] added to block layer's output at positions[r] (an index, or a slice such as slice(eq, None): every position from eq on)."""
    import make_calm_golden as cg
    def hook(j, h):
        if j == layer:
            h = h.clone()
            for r, p in enumerate(positions): h[0, p] = h[0, p] + vecs[r]
        return h
    ids = list(ids)
    for _ in range(maxn):
        _, lg = cg.llama_run(s, W, [ids], hook, dtype=torch.float32)
        nxt = int(lg[0, -1].argmax())
        if nxt == 2: break
        ids.append(nxt)
    return ids
if __name__ == "__main__":
    for d in sys.argv[1:]:
        s, W = load(d)
        for p in ["abc+de=", "123+45="]:
            outs, _ = cg.llama_run(s, W, [tok(p)], dtype=torch.float32)
            print(d, p, [" ".join(f"{float(o[0,t].norm()/o.shape[-1]**0.5):.1f}" for t in range(len(p)+1)) for o in outs])
