import sys, random, torch
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from norms import load, tok, ALPHA
import make_calm_golden as cg
d = sys.argv[1]; L = int(sys.argv[2]); n = int(sys.argv[3]) if len(sys.argv) > 3 else 100
s, W = load(d)
W = {k: torch.as_tensor(v).float() for k, v in W.items()}
rnd = random.Random(0)
MODE = sys.argv[4] if len(sys.argv) > 4 else "replace"
MEAN = [0, 0]
if MODE == "center":
    acc = [[], []]
    r2 = random.Random(5)
    for _ in range(200):
        k1 = "".join(r2.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r2.randint(2, 6)))
        k2 = "".join(r2.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r2.randint(2, 6)))
        op = r2.choice("+-"); kv = f"{k1}{op}{k2}="
        o, _ = cg.llama_run(s, {k: v for k, v in W.items()}, [tok(kv)], None, dtype=torch.float32)
        acc[0].append(o[L][0, len(k1) + 1]); acc[1].append(o[L][0, len(kv)])
    MEAN = [torch.stack(a).mean(0) for a in acc]
def run(ids, hook=None):
    outs, logits = cg.llama_run(s, W, [ids], hook, dtype=torch.float32)
    return outs, logits
def greedy(prompt_ids, hook=None, maxn=6):
    ids = list(prompt_ids)
    for _ in range(maxn):
        _, lg = run(ids, hook)
        nxt = int(lg[0, -1].argmax())
        if nxt == 2: break
        ids.append(nxt)
    return "".join(ALPHA[i-4] if i >= 4 else "?" for i in ids[len(prompt_ids):])
ok_num = ok_patch = ok_none = 0
for i in range(n):
    v1, v2 = rnd.randint(1, 500), rnd.randint(1, 500); op = rnd.choice("+-")
    k1 = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 6)))
    k2 = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 6)))
    num = f"{v1}{op}{v2}="; kv = f"{k1}{op}{k2}="; ans = str(v1 + v2 if op == "+" else v1 - v2)
    nid, kid = tok(num), tok(kv)
    nouts, _ = run(nid)
    src = {len(str(v1)) + 1: len(k1) + 1, len(num): len(kv)}   # numeric pos -> kv pos (the two operators)
    def hook(j, x):
        if j == L:
            x = x.clone()
            for sp, dp in src.items():
                if MODE == "replace": x[0, dp] = nouts[L][0, sp]
                elif MODE == "add": x[0, dp] = x[0, dp] + nouts[L][0, sp]
                else: x[0, dp] = x[0, dp] + nouts[L][0, sp] - MEAN[x[0, dp - 0].shape[0] and (0 if dp == len(k1) + 1 else 1)]
        return x
    ok_num += greedy(nid) == ans
    ok_patch += greedy(kid, hook) == ans
    ok_none += greedy(kid) == ans
print(f"{d} L={L}: numeric {ok_num}/{n}, keys+patched operators {ok_patch}/{n}, keys unpatched {ok_none}/{n}")
