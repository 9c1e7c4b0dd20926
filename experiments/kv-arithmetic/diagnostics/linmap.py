# Can a linear map from m_A's layer-LA state at an operator to m_B's layer-LB state there (numeric text) stand in
# for the oracle? Fit on composition keys, test injection on held-out keys.
import sys, json, random, torch
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from norms import load, tok, ALPHA, greedy_added
import make_calm_golden as cg
mdir, data, LA, LB, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sA, WA = load(mdir + '/m_A'); sB, WB = load(mdir + '/m_B')
WA = {k: torch.as_tensor(v).float() for k, v in WA.items()}; WB = {k: torch.as_tensor(v).float() for k, v in WB.items()}
keys = [json.loads(l) for l in open(data + '/keys.jsonl')]
tr = [k for k in keys if k['composition_key']]; te = [k for k in keys if not k['composition_key']]
rnd = random.Random(0)
def expr(pool):
    a, b = rnd.choice(pool), rnd.choice(pool); op = rnd.choice("+-")
    return a, b, op
def feats(a, b, op):
    kv = f"{a['key']}{op}{b['key']}="; num = f"{a['value']}{op}{b['value']}="
    oa, _ = cg.llama_run(sA, WA, [tok(kv)], None, dtype=torch.float32)
    ob, _ = cg.llama_run(sB, WB, [tok(num)], None, dtype=torch.float32)
    kp = [len(a['key']) + 1, len(kv)]; np_ = [len(str(a['value'])) + 1, len(num)]
    return kv, num, torch.stack([oa[LA][0, p] for p in kp]), torch.stack([ob[LB][0, p] for p in np_]), kp
X, Y = [], []
for _ in range(int(sys.argv[6]) if len(sys.argv) > 6 else 1500):
    _, _, x, y, _ = feats(*expr(tr)); X.append(x); Y.append(y)
X = torch.cat(X); Y = torch.cat(Y)
X1 = torch.cat([X, torch.ones(len(X), 1)], 1)
lam = float(sys.argv[7]) if len(sys.argv) > 7 else 1e-2
Wm = torch.linalg.solve(X1.T @ X1 + lam * torch.eye(X1.shape[1]), X1.T @ Y)
print("train R2", float(1 - ((X1 @ Wm - Y) ** 2).sum() / ((Y - Y.mean(0)) ** 2).sum()))
ok_lin = ok_or = 0; r2n = r2d = 0
for i in range(n):
    a, b, op = expr(te)
    kv, num, x, y, kp = feats(a, b, op)
    pred = torch.cat([x, torch.ones(2, 1)], 1) @ Wm
    r2n += float(((pred - y) ** 2).sum()); r2d += float(((y - Y.mean(0)) ** 2).sum())
    ans = str(a['value'] + b['value'] if op == '+' else a['value'] - b['value'])
    kid = tok(kv)
    for inj, tag in ((pred, 'lin'), (y, 'or')):
        ids = greedy_added(sB, WB, kid, LB, kp, inj)
        got = "".join(ALPHA[t-4] for t in ids[len(kid):])
        if tag == 'lin': ok_lin += got == ans
        else: ok_or += got == ans
print(f"held-out keys: test R2 {1 - r2n / r2d:.3f}; oracle {ok_or}/{n}; linear map from m_A L{LA} {ok_lin}/{n}")
