# How many keys a linear map from m_A needs: ridge from m_A's layer-LA operator states (each key as first and as
# second operand) onto its one-hot digits (30), fitted on N keys and tested on the others (3 random splits), per
# lambda: held-out R^2, and how often the largest output is the right digit per place and for the whole value.
# usage: keycurve.py MODELS_DIR(m_A) RUN_DATA_DIR LA
import sys, json, random, torch
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from norms import load, tok
import make_calm_golden as cg
mdir, data, LA = sys.argv[1], sys.argv[2], int(sys.argv[3])
sA, WA = load(mdir + '/m_A'); WA = {k: torch.as_tensor(v).float() for k, v in WA.items()}
keys = [json.loads(l) for l in open(data + '/keys.jsonl')]
rnd = random.Random(0)
def oh(v):
    f = torch.zeros(30); d = [int(c) for c in f"{v:03d}"]
    for p in range(3): f[p * 10 + d[p]] = 1
    return f
S = {}
for k in keys:   # two states per key: as first operand (at the op after it) and as second (at '=')
    o2 = rnd.choice(keys); op = rnd.choice("+-")
    kv = f"{k['key']}{op}{o2['key']}="; o, _ = cg.llama_run(sA, WA, [tok(kv)], None, dtype=torch.float32)
    s1 = o[LA][0, len(k['key']) + 1]
    kv = f"{o2['key']}{op}{k['key']}="; o, _ = cg.llama_run(sA, WA, [tok(kv)], None, dtype=torch.float32)
    s2 = o[LA][0, len(kv)]
    S[k['key']] = (s1, s2, k['value'])
for nfit in [50, 100, 200, 300, 400]:
    for lam in [1.0, 10.0, 100.0]:
        accs = []; r2s = []
        for rep in range(3):
            ks = list(S); random.Random(rep).shuffle(ks); tr, te = ks[:nfit], ks[nfit:]
            def mat(ids):
                X = torch.stack([S[i][j] for i in ids for j in (0, 1)]); Y = torch.stack([oh(S[i][2]) for i in ids for j in (0, 1)])
                return torch.cat([X, torch.ones(len(X), 1)], 1), Y
            X, Y = mat(tr); Xt, Yt = mat(te)
            W = torch.linalg.solve(X.T @ X + lam * torch.eye(X.shape[1]), X.T @ Y)
            P = Xt @ W
            r2s.append(float(1 - ((P - Yt) ** 2).sum() / ((Yt - Yt.mean(0)) ** 2).sum()))
            pa = [(P[:, 10*p:10*p+10].argmax(1) == Yt[:, 10*p:10*p+10].argmax(1)).float() for p in range(3)]
            accs.append([float(a.mean()) for a in pa] + [float((pa[0] * pa[1] * pa[2]).mean())])
        a = torch.tensor(accs).mean(0)
        print(f"nfit {nfit} lam {lam}: R2 {sum(r2s)/3:.3f}  argmax H/T/U {a[0]:.3f} {a[1]:.3f} {a[2]:.3f} whole {a[3]:.3f}", flush=True)
