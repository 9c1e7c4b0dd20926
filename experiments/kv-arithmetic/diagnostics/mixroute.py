# Does a bridge need to route each head to one operand? With m_B's gathered code, the target at '=' is
# c = code(v1, slot 0) + code(v2, slot 1). Ridge maps from m_A's layer-LA operator states, fitted on composition keys
# and scored (R^2 of c, and digits read back by least squares onto the code's rows) on held-out keys, for three inputs:
#   concat: [h(op1); h(=)]        (perfect routing: a head per operand)
#   mean:   (h(op1) + h(=)) / 2   (one head attending to both operators equally)
#   meanall: the mean over every position up to '=' (uniform attention, q = 0: a bridge at initialisation)
# usage: /usr/bin/python3 mixroute.py MODELS_DIR(m_A, m_B) RUN_DATA_DIR [N_FIT] [LAMBDA] [LA]
import sys, json, random, torch, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from norms import load, tok
from bridgeprobe_io import read_f32
import make_calm_golden as cg
mdir, data = sys.argv[1], sys.argv[2]
nfit = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
lam = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
LA = int(sys.argv[5]) if len(sys.argv) > 5 else 3
sA, WA = load(mdir + '/m_A'); WA = {k: torch.as_tensor(v).float() for k, v in WA.items()}
C = read_f32(mdir + '/m_B/operand_code.safetensors')['code']
def code(v, s): return C[30 * s + v // 100 % 10] + C[30 * s + 10 + (v // 10) % 10] + C[30 * s + 20 + v % 10]
keys = [json.loads(l) for l in open(data + '/keys.jsonl')]
tr = [k for k in keys if k['composition_key']]; te = [k for k in keys if not k['composition_key']]
rnd = random.Random(0)
def sample(pool, n):
    X = {'concat': [], 'mean': [], 'meanall': []}; Y = []; V = []
    for _ in range(n):
        a, b = rnd.choice(pool), rnd.choice(pool); op = rnd.choice("+-")
        kv = f"{a['key']}{op}{b['key']}="
        o, _ = cg.llama_run(sA, WA, [tok(kv)], None, dtype=torch.float32)
        h = o[LA][0]; p1, p2 = len(a['key']) + 1, len(kv)
        X['concat'].append(torch.cat([h[p1], h[p2]])); X['mean'].append((h[p1] + h[p2]) / 2); X['meanall'].append(h[:p2 + 1].mean(0))
        Y.append(code(a['value'], 0) + code(b['value'], 1)); V.append((a['value'], b['value']))
    return {k: torch.stack(v) for k, v in X.items()}, torch.stack(Y), V
Xtr, Ytr, _ = sample(tr, nfit); Xte, Yte, Vte = sample(te, 300)
Cp = torch.linalg.pinv(C.T)
for name in ['concat', 'mean', 'meanall']:
    A = torch.cat([Xtr[name], torch.ones(len(Ytr), 1)], 1)
    W = torch.linalg.solve(A.T @ A + lam * torch.eye(A.shape[1]), A.T @ Ytr)
    P = torch.cat([Xte[name], torch.ones(len(Yte), 1)], 1) @ W
    r2 = 1 - ((P - Yte) ** 2).sum() / ((Yte - Yte.mean(0)) ** 2).sum()
    al = (P @ Cp.T).view(-1, 2, 3, 10).argmax(-1)
    tru = torch.tensor([[[x // 100 % 10, x // 10 % 10, x % 10] for x in v] for v in Vte])
    print(f"{name:8s} held-out keys: R^2 {float(r2):.3f}, digits read {100 * float((al == tru).float().mean()):.1f}%, all six {100 * float((al == tru).all(-1).all(-1).float().mean()):.1f}%")
