# Can a small causal transformer learn exact sums from operand *codes* at all, when nothing else competes?
# A d128 x L pre-norm GPT is trained from scratch on "A+B=result" sums of values 1..500 (+ and -), MSB first.
# mode digits: the operands are written as digits (NUM-MATH).
# mode code:   each operand is one placeholder token, and a learned linear code of both operands' digits (one table per
#              operand slot, C[30 j + 10 place + digit]) is added to the residual stream after block AT at the '=' and
#              every position after it (the gathered twins of KvRecipe.anchorTwinGather, without a digit path).
# POS abs (default): learned absolute positions, one placeholder per operand, so every row has the same layout.
# POS rope: rotary positions (as m_B has) and 2-6 placeholders per operand (as m_B's twins have letters), so the answer's
#           place has to be found relative to the '='.
# Prints held-out exact / units accuracy as training goes.  usage: codetoy.py MODE STEPS [LAYERS] [AT] [SEED] [POS]
import sys, random, torch, torch.nn as nn, torch.nn.functional as F
mode, steps = sys.argv[1], int(sys.argv[2])
L = int(sys.argv[3]) if len(sys.argv) > 3 else 6
AT = int(sys.argv[4]) if len(sys.argv) > 4 else 1
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0
rope = len(sys.argv) > 6 and sys.argv[6] == 'rope'
torch.manual_seed(seed); rnd = random.Random(seed)
VOC = "0123456789+-=XE"; PAD = len(VOC); D, H = 128, 8; T = 24 if rope else 16
def enc(s): return [VOC.index(c) for c in s]
def sample():
    a, b, op = rnd.randint(1, 500), rnd.randint(1, 500), rnd.choice("+-")
    r = a + b if op == '+' else a - b
    x = lambda: "X" * (rnd.randint(2, 6) if rope else 1)
    p = f"{a}{op}{b}=" if mode == 'digits' else f"{x()}{op}{x()}="
    return a, b, p, str(r) + "E"
def rot(x):                                   # rotary positions, half-split as in HF Llama
    t, hd = x.shape[2], x.shape[3]
    f = 1.0 / 10000 ** (torch.arange(0, hd, 2).float() / hd)
    a = torch.outer(torch.arange(t).float(), f); cos, sin = torch.cat([a.cos(), a.cos()], -1), torch.cat([a.sin(), a.sin()], -1)
    x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin
class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.n1 = nn.RMSNorm(D); s.n2 = nn.RMSNorm(D); s.qkv = nn.Linear(D, 3 * D, bias=False)
        s.o = nn.Linear(D, D, bias=False); s.up = nn.Linear(D, 3 * D, bias=False); s.gate = nn.Linear(D, 3 * D, bias=False); s.down = nn.Linear(3 * D, D, bias=False)
    def forward(s, x):
        B, t, _ = x.shape
        q, k, v = s.qkv(s.n1(x)).view(B, t, 3, H, D // H).permute(2, 0, 3, 1, 4)
        if rope:
            q, k = rot(q), rot(k)
        x = x + s.o(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, t, D))
        y = s.n2(x); return x + s.down(F.silu(s.gate(y)) * s.up(y))
class GPT(nn.Module):
    def __init__(s):
        super().__init__(); s.emb = nn.Embedding(PAD + 1, D); s.pos = nn.Embedding(T, D); s.blocks = nn.ModuleList(Block() for _ in range(L))
        s.norm = nn.RMSNorm(D); s.head = nn.Linear(D, PAD + 1, bias=False); s.code = nn.Parameter(torch.randn(60, D) * 0.02)
    def forward(s, ids, codes_at, vals):
        x = s.emb(ids) + (0 if rope else s.pos(torch.arange(ids.shape[1])))
        for i, b in enumerate(s.blocks):
            x = b(x)
            if i == AT and mode == 'code':
                c = sum(s.code[30 * j + torch.tensor([0, 10, 20]) + torch.stack([vals[:, j] // 100 % 10, vals[:, j] // 10 % 10, vals[:, j] % 10], 1)].sum(1) for j in range(2))
                x = x + codes_at.unsqueeze(-1) * c.unsqueeze(1)
        return s.head(s.norm(x))
def batch(n):
    rows = [sample() for _ in range(n)]
    ids = torch.full((n, T), PAD); tgt = torch.full((n, T), -100); at = torch.zeros(n, T); vals = torch.tensor([[a, b] for a, b, _, _ in rows])
    for i, (a, b, p, ans) in enumerate(rows):
        s = enc(p + ans); ids[i, :len(s)] = torch.tensor(s)
        tgt[i, len(p) - 1:len(s) - 1] = torch.tensor(s[len(p):]); at[i, len(p) - 1:len(s)] = 1
    return ids, tgt, at, vals, rows
m = GPT(); opt = torch.optim.AdamW(m.parameters(), lr=3e-3, betas=(0.9, 0.98), weight_decay=0.1)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.05)
def evaluate(n=400):
    ids, tgt, at, vals, rows = batch(n); ok = units = 0
    with torch.no_grad():
        cur = [enc(p) for _, _, p, _ in rows]
        for _ in range(6):
            x = torch.full((n, T), PAD)
            for i, c in enumerate(cur): x[i, :len(c)] = torch.tensor(c[:T])
            a2 = torch.zeros(n, T)
            for i, (_, _, p, _) in enumerate(rows): a2[i, len(p) - 1:] = 1
            lg = m(x, a2, vals)
            for i, c in enumerate(cur):
                if c[-1] != VOC.index('E') and len(c) < T: c.append(int(lg[i, len(c) - 1].argmax()))
    for (a, b, p, ans), c in zip(rows, cur):
        got = "".join(VOC[t] for t in c[len(enc(p)):]).rstrip('E')
        ok += got == ans[:-1]; units += len(got) > 0 and got[-1] == ans[-2]
    return ok / n, units / n
for step in range(1, steps + 1):
    ids, tgt, at, vals, _ = batch(256)
    loss = F.cross_entropy(m(ids, at, vals).view(-1, PAD + 1), tgt.view(-1), ignore_index=-100)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); sched.step()
    if step % (steps // 5) == 0:
        e, u = evaluate(); print(f"{mode}{' rope' if rope else ''} L{L} step {step}: loss {loss.item():.3f}, exact {100*e:.1f} %, units {100*u:.1f} %", flush=True)
