# How much digit-space error m_B's code path tolerates, and how much a linear map from m_A makes. On held-out-key
# KV-MATH: (1) the oracle of codeinject.py with each place's code a noisy mixture of its 10 rows,
# sum_d q_d C[place, d] with q = onehot(digit) + LEVEL * N(0, I) (the noise of DigitAuxObjective.digitNoise);
# (2) a ridge map from m_A's layer-3 operator states onto the code (codeinject.py's fit), written back in digit
# space (least squares on the code's rows): the RMS of q - onehot per place, the argmax digit's accuracy, and m_B's
# exact answers with it injected.
# PLACES=h,t,u (environment) weights the noise per place (default 1,1,1). ZEROSUM=1 takes the mean out of each
# place's noise (the weights still sum to 1, as a ridge map's do when its intercept is not penalised).
# CENTER=1 fits the ridge map on centred states and codes (an unpenalised intercept).
# usage: mixnoise.py MODELS_DIR(m_A, m_B) RUN_DATA_DIR N LB LEVELS [N_FIT] [LAMBDA]
import os, sys
here = os.path.dirname(os.path.abspath(__file__))
models, data, n, lb = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
levels = [float(x) for x in sys.argv[5].split(",")]
nfit = sys.argv[6] if len(sys.argv) > 6 else '600'
lam = float(sys.argv[7]) if len(sys.argv) > 7 else 1e4
src = open(os.path.join(here, 'codeinject.py')).read().split('ok_or = 0')[0]
sys.argv = ['codeinject.py', models, data, '3', lb, str(n), nfit]
g = {'__file__': os.path.join(here, 'codeinject.py')}
exec(compile(src, 'codeinject.py', 'exec'), g)
import torch
C, G, tests = g['C'], g['G'], g['tests']
gen = torch.Generator().manual_seed(0)
PLACES = [float(x) for x in os.environ.get('PLACES', '1,1,1').split(',')]   # the noise's weight on hundreds, tens, units
ZEROSUM = os.environ.get('ZEROSUM', '0') == '1'
CENTER = os.environ.get('CENTER', '0') == '1'
def digits(v): return [v // 100 % 10, (v // 10) % 10, v % 10]
def mixed(vals, level):
    vecs = []
    for j, v in enumerate(vals):
        s = j if G > 1 else 0
        vec = torch.zeros(C.shape[1])
        for p, dg in enumerate(digits(v)):
            q = torch.zeros(10); q[dg] = 1
            e = level * PLACES[p] * torch.randn(10, generator=gen)
            if ZEROSUM: e = e - e.mean()
            q = q + e
            vec = vec + q @ C[30 * s + 10 * p: 30 * s + 10 * p + 10]
        vecs.append(vec)
    if G > 1: return [(None, None)], sum(vecs).unsqueeze(0)
    return None, torch.stack(vecs)
for level in levels:
    ok = 0
    for a, b, op, kv, kp, x in tests:
        ans = str(a['value'] + b['value'] if op == '+' else a['value'] - b['value'])
        _, vec = mixed([a['value'], b['value']], level)
        pos = [(kp[-1], None)] if G > 1 else kp
        ok += g['run'](g['tok'](kv), pos, vec) == ans
    print(f"true code, digit-space noise {level}: {ok}/{n}", flush=True)
X1, Y = g['X1'], g['Y']
if CENTER:
    # centred ridge: the intercept (last row of W) is the mean code minus the mean state's image, unpenalised
    mx, my = X1[:, :-1].mean(0), Y.mean(0)
    Xc = X1[:, :-1] - mx
    Wx = torch.linalg.solve(Xc.T @ Xc + lam * torch.eye(Xc.shape[1]), Xc.T @ (Y - my))
    W = torch.cat([Wx, (my - mx @ Wx).unsqueeze(0)], 0)
else:
    W = torch.linalg.solve(X1.T @ X1 + lam * torch.eye(X1.shape[1]), X1.T @ Y)
rows = C if G > 1 else C[:30]
sums = []
err = [[] for _ in range(3 * max(1, G))]; hit = [0] * (3 * max(1, G)); cnt = 0; ok = 0
for a, b, op, kv, kp, x in tests:
    xx = x if G == 1 else x.reshape(1, -1)
    pred = torch.cat([xx, torch.ones(len(xx), 1)], 1) @ W
    vals = [a['value'], b['value']]
    ans = str(a['value'] + b['value'] if op == '+' else a['value'] - b['value'])
    ok += g['run'](g['tok'](kv), kp if G == 1 else [(kp[-1], None)], pred) == ans
    every = True
    for r in range(len(pred)):
        q = torch.linalg.lstsq(rows.T, pred[r].unsqueeze(1)).solution.squeeze(1)   # pred ~ q @ rows
        for s in range(len(vals) if G > 1 else 1):
            v = vals[s] if G > 1 else vals[r]
            for p, dg in enumerate(digits(v)):
                qq = q[30 * s + 10 * p: 30 * s + 10 * p + 10]; sums.append(float(qq.sum()) - 1); oh = torch.zeros(10); oh[dg] = 1
                err[3 * s + p].append(float(((qq - oh) ** 2).mean().sqrt())); hit[3 * s + p] += int(qq.argmax()) == dg
                every = every and int(qq.argmax()) == dg
    cnt += every
print(f"ridge map (lambda {lam}) injected: {ok}/{n}; every digit of both operands its place's argmax: {cnt}/{n}")
print(f"ridge map: each place's weights sum to 1 + ({sum(sums) / len(sums):+.3f} mean, {(sum(x * x for x in sums) / len(sums)) ** 0.5:.3f} RMS)")
names = ['hundreds', 'tens', 'units']
for i in range(len(err)):
    m = len(err[i])
    print(f"ridge map (lambda {lam}), slot {i // 3} {names[i % 3]}: digit-space RMS error {sum(err[i]) / m:.3f}, argmax right {hit[i]}/{m}")
