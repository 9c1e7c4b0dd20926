# Is it the bridges' attention or their value path? A bridge with ORACLE ATTENTION for an m_B trained with the gathered
# code (KvRecipe anchorTwinGather): at the '=' and every position after it, m_B's block-LB output gets
#   W [h_A(op1); h_A(op2)] + b
# where h_A(op_j) is m_A's layer-LA state at the operator after key j (the '=' for the last key). Only W and b train,
# by the LM loss on D_C's answers (KV-MATH over the composition keys; no example shows a key's value), as CALM's bridges
# do. Then greedy exact match on D_C itself, on held-out expressions and on held-out keys. If this generalises to
# held-out keys and the real bridges do not, the routing (attention) is what fails; if it does not, the value path
# trained by the LM loss is what fails, whatever the attention.
# usage: oraclebridge.py MODELS_DIR(m_A, m_B) RUN_DATA_DIR STEPS [LR] [WD] [N_EVAL]
import sys, json, random, torch, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from norms import load, tok, ALPHA, greedy_added
import make_calm_golden as cg
mdir, data, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
lr = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-3
wd = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
neval = int(sys.argv[6]) if len(sys.argv) > 6 else 200
LA, LB = int(os.environ.get('LA', '3')), int(os.environ.get('LB', '1'))
torch.manual_seed(0)
sA, WA = load(mdir + '/m_A'); sB, WB = load(mdir + '/m_B')
WA = {k: torch.as_tensor(v).float() for k, v in WA.items()}; WB = {k: torch.as_tensor(v).float() for k, v in WB.items()}
def rows(name):
    out = []
    for l in open(os.path.join(data, name)):
        r = json.loads(l)
        if r['prompt'][0].isalpha(): out.append((r['prompt'], r['completion']))
    return out
train, hexpr, hkeys = rows('composition_train.jsonl'), rows('kv_math_heldout_expr.jsonl')[:neval], rows('kv_math_heldout_keys.jsonl')[:neval]
def feats_all(prompts, chunk=256):
    """m_A's layer-LA states at the two operators of each prompt, concatenated [n, 2 D_A] (right-padded batches:
    causal, so the padding changes nothing before it)."""
    out = []
    for c in range(0, len(prompts), chunk):
        ps = prompts[c:c + chunk]; T = max(len(p) for p in ps) + 1
        ids = torch.zeros(len(ps), T, dtype=torch.long)
        for r, p in enumerate(ps): ids[r, :len(p) + 1] = torch.tensor(tok(p))
        o, _ = cg.llama_run(sA, WA, ids, None, dtype=torch.float32)
        for r, p in enumerate(ps):
            out.append(torch.cat([o[LA][r, i + 1] for i, ch in enumerate(p) if ch in '+-=']))
    return torch.stack(out)
with torch.no_grad():
    X = feats_all([p for p, _ in train])
D = WB['model.embed_tokens.weight'].shape[1]
W = torch.zeros(X.shape[1], D, requires_grad=True); b = torch.zeros(D, requires_grad=True)
opt = torch.optim.AdamW([W, b], lr=lr, weight_decay=wd)
def batch(idx):
    seqs = [tok(train[i][0]) + [4 + ALPHA.index(c) for c in train[i][1]] + [2] for i in idx]
    T = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), T, dtype=torch.long); lab = torch.full((len(seqs), T), -100); after = torch.zeros(len(seqs), T, 1)
    for r, (i, s) in enumerate(zip(idx, seqs)):
        ids[r, :len(s)] = torch.tensor(s); eq = len(tok(train[i][0])) - 1
        lab[r, eq:len(s) - 1] = torch.tensor(s[eq + 1:]); after[r, eq:len(s) - 1] = 1
    return ids, lab, after
for step in range(steps):
    idx = random.Random(step).sample(range(len(train)), 64)
    ids, lab, after = batch(idx)
    vec = X[idx] @ W + b                                                   # [B, D]
    def hook(j, h):
        return h + after * vec.unsqueeze(1) if j == LB else h
    _, lg = cg.llama_run(sB, WB, ids, hook, dtype=torch.float32)
    loss = torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), lab.reshape(-1), ignore_index=-100)
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 100 == 0 or step == steps - 1: print(f"step {step}: loss {loss.item():.4f}", flush=True)
def exact(rs):
    ok = 0
    with torch.no_grad():
        for p, ans in rs:
            vec = feats_all([p])[0] @ W + b
            eq = len(tok(p)) - 1                                            # the '=': the code from there on
            ids = greedy_added(sB, WB, tok(p), LB, [slice(eq, None)], [vec])
            ok += "".join(ALPHA[t - 4] for t in ids[len(tok(p)):]) == ans
    return ok
for name, rs in [("D_C (train)", train[:neval]), ("held-out expressions", hexpr), ("held-out keys", hkeys)]:
    print(f"{name}: {exact(rs)}/{len(rs)}", flush=True)
