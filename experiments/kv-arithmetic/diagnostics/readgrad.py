# How informative is m_B's LM-loss gradient for a bridge that has not yet learnt the code? On held-out-key KV-MATH
# prompts, add lam * c (c = the true gathered code, code(v1, 0) + code(v2, 1)) to m_B's block-LB output at '=' and
# every position after it (where the bridges write), and report, per lam: greedy exact match (teacher-forced: every
# answer digit argmax-correct), the answer's loss, and the cosine between -dLoss/d(added vector) and the way to the true
# code, c - lam * c. A reader whose gradient at lam ~ 0 points at the code lets bridges trained by the LM loss find it.
# usage: /usr/bin/python3 readgrad.py MODELS_DIR(m_B) RUN_DATA_DIR [N] [LB]
import sys, json, torch, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from norms import load, tok, ALPHA
from bridgeprobe_io import read_f32
import make_calm_golden as cg
mdir, data = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 100
LB = int(sys.argv[4]) if len(sys.argv) > 4 else 1
sB, WB = load(mdir + '/m_B'); WB = {k: torch.as_tensor(v).float() for k, v in WB.items()}
C = read_f32(mdir + '/m_B/operand_code.safetensors')['code']
def code(v, s): return C[30 * s + v // 100 % 10] + C[30 * s + 10 + (v // 10) % 10] + C[30 * s + 20 + v % 10]
keys = {k['key']: k['value'] for k in map(json.loads, open(data + '/keys.jsonl'))}
rows = [json.loads(l) for l in open(data + '/kv_math_heldout_keys.jsonl')][:n]
for lam in [0.0, 0.25, 0.5, 0.75, 1.0]:
    ok = 0; tot = 0.0; cos = 0.0
    for r in rows:
        pr, ans = r['prompt'], r['completion']
        k1, k2 = pr[:-1].replace('-', '+').split('+')
        c = code(keys[k1], 0) + code(keys[k2], 1)
        ids = tok(pr) + [4 + ALPHA.index(ch) for ch in ans] + [2]
        eq = len(pr)
        vec = (lam * c).clone().requires_grad_(True)
        def hook(j, h):
            if j != LB: return h
            mask = torch.zeros(1, h.shape[1], 1); mask[0, eq:] = 1
            return h + mask * vec
        _, lg = cg.llama_run(sB, WB, [ids], hook, dtype=torch.float32)
        tgt = torch.tensor(ids[eq + 1:]); pred = lg[0, eq:len(ids) - 1]
        loss = torch.nn.functional.cross_entropy(pred, tgt, reduction='sum')
        loss.backward()
        ok += int((pred.argmax(-1) == tgt).all()); tot += float(loss)
        way = c - lam * c
        if way.norm() > 0:
            cos += float(torch.dot(-vec.grad, way) / (vec.grad.norm() * way.norm() + 1e-12))
    print(f"lam {lam:.2f}: teacher-forced exact {100 * ok / len(rows):.0f}%, answer loss {tot / len(rows):.3f}, cos(-grad, c - lam c) {cos / len(rows):.3f}")
