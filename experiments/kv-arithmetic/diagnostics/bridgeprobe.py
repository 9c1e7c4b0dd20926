# What did trained bridges learn? For a trained CALM run (bridge 3->1 into an m_B trained with the gathered operand
# code), on held-in-key (D_C-style, unseen expressions) and held-out-key KV-MATH prompts, at the '=' position:
#  - routing: each head's attention mass on operand 1's operator, on the '=' (operand 2's operator), on the keys'
#    letters and on BOS;
#  - value path: the bridge's added vector delta against the code m_B was trained to read, c = code(v1, 0) + code(v2, 1):
#    cosine, |delta| / |c|, and the digits read back from delta by least squares onto the code's 60 rows (argmax per
#    slot and place) -- the fraction of the 6 digits right, and of prompts with all 6 right.
# Tells whether a bridge that fails on held-out keys routes wrongly. The digits read back by least squares are a weak
# measure of the value path: a bridge at 94.5 % on held-out keys adds a vector at cosine 0.77 to the code whose digits
# read back this way are only ~30 % right (m_B reads more than the code's span), so use the attention columns.
# usage: /usr/bin/python3 bridgeprobe.py MODELS_DIR(m_A, m_B) RUN_DATA_DIR BRIDGES.safetensors HEADS [N]
import sys, json, random, torch, math
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from norms import load, tok
import make_golden as mg, make_calm_golden as cg

from bridgeprobe_io import read_f32

mdir, data, bpath, heads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
n = int(sys.argv[5]) if len(sys.argv) > 5 else 200
sA, WA = load(mdir + '/m_A'); sB, WB = load(mdir + '/m_B')
WA = {k: torch.as_tensor(v).float() for k, v in WA.items()}; WB = {k: torch.as_tensor(v).float() for k, v in WB.items()}
Wb = read_f32(bpath)
C = read_f32(mdir + '/m_B/operand_code.safetensors')['code']                      # [60, D_B]: slot s, place p, digit d at 30s+10p+d
assert C.shape[0] == 60, "expects a gathered two-operand code"
def code(v, s): return C[30 * s + v // 100 % 10] + C[30 * s + 10 + (v // 10) % 10] + C[30 * s + 20 + v % 10]
keys = {k['key']: k['value'] for k in map(json.loads, open(data + '/keys.jsonl'))}
def rows(name):
    return [json.loads(l)['prompt'] for l in open(os.path.join(data, name)) if json.loads(l)['prompt'][0].isalpha()][:n]
p = "bridges.0."
hd = WB['model.embed_tokens.weight'].shape[1] // heads
Cp = torch.linalg.pinv(C.T)                                                  # delta [D] -> coefficients [60]

def analyse(prompts):
    att = torch.zeros(heads, 4); cos = []; ratio = []; dig = 0; whole = 0
    for pr in prompts:
        k1, rest = (pr.split('+') if '+' in pr else pr.split('-'))
        k2 = rest[:-1]
        v = [keys[k1], keys[k2]]
        ids = [tok(pr)]
        oa, _ = cg.llama_run(sA, WA, ids, None, dtype=torch.float32)
        ob, _ = cg.llama_run(sB, WB, ids, None, dtype=torch.float32)
        ha, hb = oa[3][0], ob[1][0]                                         # [T, D]
        eq = len(pr); op1 = len(k1) + 1
        P = mg.linear(ha, Wb[p + "proj.weight"], Wb[p + "proj.bias"])
        K = mg.linear(P, Wb[p + "k.weight"]).view(-1, heads, hd).transpose(0, 1)     # [H, S, hd]
        V = mg.linear(P, Wb[p + "v.weight"]).view(-1, heads, hd).transpose(0, 1)
        Q = mg.linear(hb[eq], Wb[p + "q.weight"]).view(heads, hd)                     # [H, hd]
        a = torch.softmax((K[:, :eq + 1] @ Q.unsqueeze(-1)).squeeze(-1) / math.sqrt(hd), -1)   # [H, eq+1]
        att[:, 0] += a[:, op1]; att[:, 1] += a[:, eq]; att[:, 3] += a[:, 0]
        att[:, 2] += a.sum(-1) - a[:, op1] - a[:, eq] - a[:, 0]
        delta = mg.linear((a.unsqueeze(-1) * V[:, :eq + 1]).sum(1).reshape(-1), Wb[p + "o.weight"])
        c = code(v[0], 0) + code(v[1], 1)
        cos.append(float(torch.dot(delta, c) / (delta.norm() * c.norm() + 1e-9))); ratio.append(float(delta.norm() / c.norm()))
        alpha = (Cp @ delta).view(2, 3, 10).argmax(-1)
        truth = torch.tensor([[x // 100 % 10, x // 10 % 10, x % 10] for x in v])
        dig += int((alpha == truth).sum()); whole += int((alpha == truth).all())
    m = len(prompts)
    print(f"  n={m}: cos(delta, code) {sum(cos)/m:.3f}, |delta|/|code| {sum(ratio)/m:.2f}, digits read {100*dig/(6*m):.1f}%, all six {100*whole/m:.1f}%")
    print("  attention at '=' per head (op1 operator / '=' / key letters / BOS): " +
          ", ".join("h%d %.2f/%.2f/%.2f/%.2f" % (h, *(att[h] / m).tolist()) for h in range(heads)))

print("held-in keys (held-out expressions):"); analyse(rows('kv_math_heldout_expr.jsonl'))
print("held-out keys:"); analyse(rows('kv_math_heldout_keys.jsonl'))
