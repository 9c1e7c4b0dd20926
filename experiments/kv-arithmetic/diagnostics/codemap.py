# Linear map from m_A's layer-LA operator state to a fixed random digit code: does it generalise to held-out keys?
import sys, json, random, torch
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from norms import load, tok
import make_calm_golden as cg
mdir, data, LA = sys.argv[1], sys.argv[2], int(sys.argv[3])
sA, WA = load(mdir + '/m_A'); WA = {k: torch.as_tensor(v).float() for k, v in WA.items()}
keys = [json.loads(l) for l in open(data + '/keys.jsonl')]
tr = [k for k in keys if k['composition_key']]; te = [k for k in keys if not k['composition_key']]
torch.manual_seed(0); E = torch.randn(3, 10, 128)
def code(v): return E[0, v // 100] + E[1, (v // 10) % 10] + E[2, v % 10]
rnd = random.Random(0)
def rows(pool, n):
    X, Y, V = [], [], []
    for _ in range(n):
        a, b = rnd.choice(pool), rnd.choice(pool); op = rnd.choice("+-")
        kv = f"{a['key']}{op}{b['key']}="
        o, _ = cg.llama_run(sA, WA, [tok(kv)], None, dtype=torch.float32)
        for p, k in ((len(a['key']) + 1, a), (len(kv), b)):
            X.append(o[LA][0, p]); Y.append(code(k['value'])); V.append(k['value'])
    return torch.stack(X), torch.stack(Y), V
X, Y, _ = rows(tr, 1000); Xt, Yt, Vt = rows(te, 200)
X1 = torch.cat([X, torch.ones(len(X), 1)], 1); Xt1 = torch.cat([Xt, torch.ones(len(Xt), 1)], 1)
for lam in [float(x) for x in (sys.argv[4].split(",") if len(sys.argv) > 4 else ["1e-2", "1", "10", "100"])]:
    W = torch.linalg.solve(X1.T @ X1 + lam * torch.eye(129), X1.T @ Y)
    P = Xt1 @ W
    r2 = 1 - ((P - Yt) ** 2).sum() / ((Yt - Yt.mean(0)) ** 2).sum()
    # decode digits by least squares against the table, place by place (nearest in the code space)
    ok = 0
    allc = torch.stack([code(v) for v in range(1000)])
    near = torch.cdist(P, allc).argmin(1)
    ok = sum(int(near[i]) == Vt[i] for i in range(len(Vt)))
    print(f"lam {lam}: train R2 {float(1 - ((X1 @ W - Y) ** 2).sum() / ((Y - Y.mean(0)) ** 2).sum()):.3f} held-out R2 {float(r2):.3f} nearest-code value acc {ok}/{len(Vt)}")
