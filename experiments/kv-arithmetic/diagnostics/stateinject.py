# Anchor side, with m_B's own operator states: which approximations of them still let m_B do the sum?
# On held-out-key KV-MATH text, m_B gets added after block LB, at the operator after each key:
#   oracle  - its own state there on the numeric text (what the twins were trained with)
#   lin100  - a ridge map from the operand's one-hot digits to that state, fitted on composition-key values only
#   lin500  - the same map fitted on every value 1..500
#   probe   - lin100 applied to the digits a linear softmax probe reads from m_A's layer-LA state (fitted on
#             composition keys): a clean-up no linear bridge can do
#   ridgeA  - a ridge map straight from m_A's layer-LA state (what a bridge's value path can be), lambda LAM
# usage: stateinject.py MODELS DATA LA LB N [LAM]
import sys, json, random, torch
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from norms import load, tok, ALPHA, digit_feats, greedy_added
import make_calm_golden as cg
mdir, data, LA, LB, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
lam = float(sys.argv[6]) if len(sys.argv) > 6 else 1e4
torch.manual_seed(0)
sA, WA = load(mdir + '/m_A'); sB, WB = load(mdir + '/m_B')
WA = {k: torch.as_tensor(v).float() for k, v in WA.items()}; WB = {k: torch.as_tensor(v).float() for k, v in WB.items()}
keys = [json.loads(l) for l in open(data + '/keys.jsonl')]
tr = [k for k in keys if k['composition_key']]; te = [k for k in keys if not k['composition_key']]
rnd = random.Random(0)
feat = digit_feats
def fromdig(d, ln): return digit_feats(None, d, ln)
def bstate(v, pos_first, other, op):
    t = f"{v}{op}{other}=" if pos_first else f"{other}{op}{v}="
    o, _ = cg.llama_run(sB, WB, [tok(t)], None, dtype=torch.float32)
    return o[LB][0, len(str(v)) + 1] if pos_first else o[LB][0, len(t)]
def astate(k, pos_first, other, op):
    t = f"{k}{op}{other}=" if pos_first else f"{other}{op}{k}="
    o, _ = cg.llama_run(sA, WA, [tok(t)], None, dtype=torch.float32)
    return o[LA][0, len(k) + 1] if pos_first else o[LA][0, len(t)]
def ridge(X, Y, l):
    X1 = torch.cat([X, torch.ones(len(X), 1)], 1)
    return torch.linalg.solve(X1.T @ X1 + l * torch.eye(X1.shape[1]), X1.T @ Y)
def apply(W, x): return torch.cat([x, torch.ones(1)]) @ W
# training pairs: operand in either slot, random partner and operator
def pairs(pool, m):
    out = []
    for _ in range(m):
        k = rnd.choice(pool); first = rnd.random() < 0.5; op = rnd.choice("+-"); o = rnd.choice(pool)
        out.append((k, first, o, op))
    return out
P = pairs(tr, 800)
FB = torch.stack([feat(k['value']) for k, *_ in P])
SB = torch.stack([bstate(k['value'], f, o['value'], op) for k, f, o, op in P])
SA = torch.stack([astate(k['key'], f, o['key'], op) for k, f, o, op in P])
W100 = ridge(FB, SB, 1.0)
Pall = [(v, rnd.random() < 0.5, rnd.randint(1, 500), rnd.choice("+-")) for v in range(1, 501) for _ in range(2)]
Wall = ridge(torch.stack([feat(v) for v, *_ in Pall]), torch.stack([bstate(*p) for p in Pall]), 1.0)
WA2B = ridge(SA, SB, lam)
# softmax probe per digit place on m_A's state (multinomial logistic regression, full batch)
dig = torch.tensor([[int(c) for c in f"{k['value']:03d}"] for k, *_ in P])
lens = torch.tensor([len(str(k['value'])) - 1 for k, *_ in P])
mu, sd = SA.mean(0), SA.std(0) + 1e-6
Z = (SA - mu) / sd
heads = [torch.zeros(SA.shape[1], m, requires_grad=True) for m in (10, 10, 10, 3)]
bias = [torch.zeros(m, requires_grad=True) for m in (10, 10, 10, 3)]
opt = torch.optim.Adam(heads + bias, lr=0.05)
tg = [dig[:, 0], dig[:, 1], dig[:, 2], lens]
for it in range(300):
    opt.zero_grad()
    loss = sum(torch.nn.functional.cross_entropy(Z @ h + b, t) for h, b, t in zip(heads, bias, tg)) + 1e-3 * sum((h ** 2).sum() for h in heads)
    loss.backward(); opt.step()
def probe(x):
    z = (x - mu) / sd
    with torch.no_grad():
        d = [int((z @ h + b).argmax()) for h, b in zip(heads[:3], bias[:3])]
        ln = int((z @ heads[3] + bias[3]).argmax()) + 1
    return fromdig(d, ln)
ok = {m: 0 for m in ("oracle", "lin100", "lin500", "probe", "ridgeA")}
pd_ok = 0
for i in range(n):
    a, b, op = rnd.choice(te), rnd.choice(te), rnd.choice("+-")
    kv = f"{a['key']}{op}{b['key']}="
    ans = str(a['value'] + b['value'] if op == '+' else a['value'] - b['value'])
    kp = [len(a['key']) + 1, len(kv)]
    oA, _ = cg.llama_run(sA, WA, [tok(kv)], None, dtype=torch.float32)
    xa = [oA[LA][0, p] for p in kp]
    num = f"{a['value']}{op}{b['value']}="
    oB, _ = cg.llama_run(sB, WB, [tok(num)], None, dtype=torch.float32)
    vals = [a['value'], b['value']]
    pf = [probe(x) for x in xa]
    pd_ok += sum(bool(torch.equal(p, feat(v))) for p, v in zip(pf, vals))
    inj = {"oracle": [oB[LB][0, len(str(a['value'])) + 1], oB[LB][0, len(num)]],
           "lin100": [apply(W100, feat(v)) for v in vals],
           "lin500": [apply(Wall, feat(v)) for v in vals],
           "probe": [apply(W100, f) for f in pf],
           "ridgeA": [apply(WA2B, x) for x in xa]}
    kid = tok(kv)
    for m, vecs in inj.items():
        ids = greedy_added(sB, WB, kid, LB, kp, vecs)
        got = "".join(ALPHA[t - 4] for t in ids[len(kid):])
        ok[m] += got == ans
print(f"held-out keys, n={n}: " + ", ".join(f"{m} {v}/{n}" for m, v in ok.items()) + f"; probe reads {pd_ok}/{2*n} operands whole")
