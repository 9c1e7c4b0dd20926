# Per-digit view of the anchor check: on held-out-key KV-MATH, add m_B's operand code of the true values at the
# operators after block LB (the oracle of codeinject.py) and count exact answers, answers within 10,
# and the hundreds/tens/units digits right; beside it, m_B on the same sums written as digits (NUM-MATH).
# usage: oracledigits.py MODELS_DIR(m_A, m_B) RUN_DATA_DIR [N] [LB]
import os, sys
here = os.path.dirname(os.path.abspath(__file__))
models, data = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
lb = sys.argv[4] if len(sys.argv) > 4 else '1'
# codeinject.py's loading, sampling and injection, without its ridge fits (N_FIT 10 keeps the unused fit cheap)
src = open(os.path.join(here, 'codeinject.py')).read().split('ok_or = 0')[0]
sys.argv = ['codeinject.py', models, data, '3', lb, str(n), '10']
g = {'__file__': os.path.join(here, 'codeinject.py')}
exec(compile(src, 'codeinject.py', 'exec'), g)
import torch
res = {'true code injected': [0] * 5, 'digits (NUM-MATH)': [0] * 5}
for a, b, op, kv, kp, x in g['tests'][:n]:
    ans = a['value'] + b['value'] if op == '+' else a['value'] - b['value']
    outs = {'true code injected': g['run'](g['tok'](kv), *g['oracle']([a['value'], b['value']], kp)),
            'digits (NUM-MATH)': g['run'](g['tok'](f"{a['value']}{op}{b['value']}="), [], None)}
    for k, o in outs.items():
        try:
            v = int(o)
        except ValueError:
            continue
        r = res[k]
        r[0] += v == ans
        r[1] += abs(v - ans) <= 10
        w, t = str(abs(ans)).zfill(3), str(abs(v)).zfill(3)
        r[2] += w[-3] == t[-3]; r[3] += w[-2] == t[-2]; r[4] += w[-1] == t[-1]
for k, r in res.items():
    print(f"{k}: exact {r[0]}/{n}, within 10 {r[1]}/{n}, hundreds {r[2]}/{n}, tens {r[3]}/{n}, units {r[4]}/{n}")
