# The ceiling of a linear bridge with perfect attention, for an m_B trained with the learned operand code
# (KvRecipe anchorTwinCode; a gathered code, anchorTwinGather, is fitted from both operators at once): fit a ridge map from m_A's layer-LA state at each operator (KV text) to m_B's code of
# that operand's value, on composition keys; then, on held-out keys, add the mapped code (and, as the oracle, the
# true code) to m_B's layer-LB output at the operators and decode greedily.
# usage: codeinject.py MODELS_DIR(m_A, m_B) RUN_DATA_DIR LA LB N_TEST [N_FIT] [LAMBDAS]
import sys, json, random, torch
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from norms import load, tok, ALPHA
import make_calm_golden as cg
mdir, data, LA, LB, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
nfit = int(sys.argv[6]) if len(sys.argv) > 6 else 1000
lams = [float(x) for x in (sys.argv[7].split(",") if len(sys.argv) > 7 else ["1", "100", "1e4"])]
sA, WA = load(mdir + '/m_A'); sB, WB = load(mdir + '/m_B')
WA = {k: torch.as_tensor(v).float() for k, v in WA.items()}; WB = {k: torch.as_tensor(v).float() for k, v in WB.items()}
def read_code(path):   # one F32 tensor named "code"; its metadata is descriptive, so not make_golden's reader
    import struct, numpy as np
    raw = open(path, 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]; h = json.loads(raw[8:8 + n])['code']
    assert h['dtype'] == 'F32', h
    b, e = h['data_offsets']
    return torch.from_numpy(np.frombuffer(raw[8 + n + b:8 + n + e], dtype='<f4').copy()).view(*h['shape'])
C = read_code(mdir + '/m_B/operand_code.safetensors')
G = C.shape[0] // 30          # 1: a code at the operator after each operand; 2+: a gathered code, slot j's own 30 rows, all at '='
def code(v, s=0): return C[30 * s + v // 100 % 10] + C[30 * s + 10 + (v // 10) % 10] + C[30 * s + 20 + v % 10]
def oracle(vals, kp):
    """(positions, vectors) that m_B's twins were trained to get for these operand values."""
    if G == 1: return kp, torch.stack([code(v) for v in vals])
    return [(kp[-1], None)], sum(code(v, j) for j, v in enumerate(vals)).unsqueeze(0)   # at '=' and every position after
def target(vals):      # what a linear bridge's value path has to produce, one row per m_A operator state it reads
    return oracle(vals, [0, 0])[1]
keys = [json.loads(l) for l in open(data + '/keys.jsonl')]
tr = [k for k in keys if k['composition_key']]; te = [k for k in keys if not k['composition_key']]
rnd = random.Random(0)
def sample(pool):
    a, b = rnd.choice(pool), rnd.choice(pool); op = rnd.choice("+-")
    kv = f"{a['key']}{op}{b['key']}="
    o, _ = cg.llama_run(sA, WA, [tok(kv)], None, dtype=torch.float32)
    kp = [len(a['key']) + 1, len(kv)]
    return a, b, op, kv, kp, torch.stack([o[LA][0, p] for p in kp])
X, Y = [], []
for _ in range(nfit):
    a, b, op, kv, kp, x = sample(tr); X.append(x if G == 1 else x.reshape(1, -1)); Y.append(target([a['value'], b['value']]))
X = torch.cat(X); Y = torch.cat(Y); X1 = torch.cat([X, torch.ones(len(X), 1)], 1)
tests = [sample(te) for _ in range(n)]
def run(kid, kp, inj):
    def hook(j, h):
        if j == LB:
            h = h.clone()
            for r, p in enumerate(kp):
                if isinstance(p, tuple): h[0, p[0]:] = h[0, p[0]:] + inj[r]     # a gathered code: '=' and after it
                else: h[0, p] = h[0, p] + inj[r]
        return h
    ids = list(kid)
    for _ in range(6):
        _, lg = cg.llama_run(sB, WB, [ids], hook, dtype=torch.float32)
        nxt = int(lg[0, -1].argmax())
        if nxt == 2: break
        ids.append(nxt)
    return "".join(ALPHA[t - 4] for t in ids[len(kid):])
ok_or = 0
for a, b, op, kv, kp, x in tests:
    ans = str(a['value'] + b['value'] if op == '+' else a['value'] - b['value'])
    ok_or += run(tok(kv), *oracle([a['value'], b['value']], kp)) == ans
print(f"oracle (true code at the operators, layer {LB}): {ok_or}/{n}")
for lam in lams:
    W = torch.linalg.solve(X1.T @ X1 + lam * torch.eye(X1.shape[1]), X1.T @ Y)
    ok = 0; num = den = 0.0
    for a, b, op, kv, kp, x in tests:
        y = target([a['value'], b['value']]); xx = x if G == 1 else x.reshape(1, -1)
        pred = torch.cat([xx, torch.ones(len(xx), 1)], 1) @ W
        num += float(((pred - y) ** 2).sum()); den += float(((y - Y.mean(0)) ** 2).sum())
        ans = str(a['value'] + b['value'] if op == '+' else a['value'] - b['value'])
        ok += run(tok(kv), kp if G == 1 else [(kp[-1], None)], pred) == ans
    print(f"lambda {lam}: held-out R2 {1 - num / den:.3f}; linear map from m_A L{LA}: {ok}/{n}")
