# How linear in the operand's digits is a model's state at the operator after it, block by block?
# Ridge from [one-hot hundreds, tens, units, length] to the state at the first operator, fitted on 80 % of the
# operands, R^2 on the other 20 %. A bridge's value path is linear in the augment's states, so the anchor's
# operator state can be written by a bridge that generalises across keys only where this is high on both sides.
# usage: digitlinear.py MODELS DATA   (MODELS holds m_A and m_B; DATA holds keys.jsonl)
import sys, json, random, torch
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from norms import load, tok, digit_feats
import make_calm_golden as cg
mdir, data = sys.argv[1], sys.argv[2]
keys = [json.loads(l) for l in open(data + '/keys.jsonl')]
rnd = random.Random(0)
feat = digit_feats
def states(name, texts, pos):
    s, W = load(mdir + '/' + name)
    W = {k: torch.as_tensor(v).float() for k, v in W.items()}
    out = []
    for t, p in zip(texts, pos):
        o, _ = cg.llama_run(s, W, [tok(t)], None, dtype=torch.float32)
        out.append(torch.stack([x[0, p] for x in o]))            # [layers, D]
    return torch.stack(out)                                       # [n, layers, D]
def r2(F, S, name):
    n = len(F); idx = list(range(n)); rnd.shuffle(idx); cut = int(0.8 * n)
    tr, te = idx[:cut], idx[cut:]
    F1 = torch.cat([F, torch.ones(n, 1)], 1)
    row = []
    for l in range(S.shape[1]):
        Y = S[:, l]
        A = F1[tr]; W = torch.linalg.solve(A.T @ A + 1.0 * torch.eye(A.shape[1]), A.T @ Y[tr])
        res = ((F1[te] @ W - Y[te]) ** 2).sum(); tot = ((Y[te] - Y[tr].mean(0)) ** 2).sum()
        row.append(f"{float(1 - res / tot):.3f}")
    print(f"{name}: held-out R^2 per block output 0..{S.shape[1]-1}: " + " ".join(row))
vals = list(range(1, 501))
others = [rnd.randint(1, 500) for _ in vals]
ops = [rnd.choice("+-") for _ in vals]
SB = states('m_B', [f"{v}{o}{w}=" for v, o, w in zip(vals, ops, others)], [len(str(v)) + 1 for v in vals])
r2(torch.stack([feat(v) for v in vals]), SB, "m_B, numbers")
ks = keys[:500]
other = [rnd.choice(keys)['key'] for _ in ks]
SA = states('m_A', [f"{k['key']}{o}{w}=" for k, o, w in zip(ks, ops, other)], [len(k['key']) + 1 for k in ks])
r2(torch.stack([feat(k['value']) for k in ks]), SA, "m_A, keys")
