#!/usr/bin/env bash
# Data-parallel overhead on one machine, the b1 configs (anchor d 512 x 8 layers, augment d 256 x 4, connections
# 1->3,3->7, sequence 256): `calm compose` as 1 process of global batch 8 (libtorch 1 thread, OpenBLAS one thread per
# core) against `--nproc 2` of batch 4 each (OpenBLAS 1 thread each), runs interleaved, medians. Step time is taken
# from metrics.jsonl after WARM steps; the all-reduce figures are rank 0's (bytes of gradients per step, and the time
# it spent packing, sending and waiting for the slower rank). Random weights and random token ids; every row is seen
# once, so the frozen-state cache never serves a row (the costliest case: every step runs the frozen models).
# Environment: RUNS (3), STEPS (12), WARM (2), OUT (a temporary folder, removed unless given).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
calm="$here/calm"
runs="${RUNS:-3}" steps="${STEPS:-12}" warm="${WARM:-2}"
if [ -n "${OUT:-}" ]; then work="$OUT"; mkdir -p "$work"; else work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT; fi

[ -d "$work/anchor" ] || "$calm" init --config "$here/calm4j-bench/configs/anchor-b1.json" --out "$work/anchor" --seed 1 >/dev/null
[ -d "$work/augment" ] || "$calm" init --config "$here/calm4j-bench/configs/augment-b1.json" --out "$work/augment" --seed 2 >/dev/null
python3 - "$work/train.jsonl" "$(( 8 * (steps + 1) ))" <<'EOF'
import json, random, sys
r = random.Random(7)
with open(sys.argv[1], "w") as f:
    for _ in range(int(sys.argv[2])):
        f.write(json.dumps({"ids": [1] + [r.randrange(4, 4096) for _ in range(256)]}) + "\n")
EOF

common=(compose --anchor "$work/anchor" --augment "$work/augment" --connections '1->3,3->7' --data "$work/train.jsonl"
  --steps "$steps" --log-every 1 --no-progress --overwrite --seed 1)
step_ms() {   # mean step time after the warm-up steps, from a run's metrics.jsonl
  python3 - "$1/metrics.jsonl" "$warm" "$steps" <<'EOF'
import json, sys
e = {m["step"]: m["elapsed_s"] for m in map(json.loads, open(sys.argv[1])) if "elapsed_s" in m}
w, s = int(sys.argv[2]), int(sys.argv[3])
print("%.0f" % (1e3 * (e[s] - e[w]) / (s - w)))
EOF
}
one=() two=() red=()
for i in $(seq "$runs"); do
  "$calm" "${common[@]}" --batch 8 --out "$work/one" >"$work/one.log" 2>&1 || { cat "$work/one.log"; exit 1; }
  one+=("$(step_ms "$work/one")")
  "$calm" "${common[@]}" --batch 4 --nproc 2 --out "$work/two" >"$work/two.log" 2>&1 || { cat "$work/two.log"; exit 1; }
  two+=("$(step_ms "$work/two")")
  red+=("$(grep -m1 '^all-reduce' "$work/two.log" | sed 's/^all-reduce *//')")
  echo "run $i: 1 process ${one[-1]} ms/step, 2 ranks ${two[-1]} ms/step; all-reduce ${red[-1]}"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m1=$(median "${one[@]}") m2=$(median "${two[@]}")
echo
echo "| b1 compose, global batch 8 x 256 | step (ms, median of $runs) |"
echo "|---|---|"
echo "| 1 process, libtorch 1 thread + OpenBLAS 2 | $m1 |"
echo "| 2 ranks (--nproc 2), batch 4 each, OpenBLAS 1 thread each | $m2 |"
echo
awk -v a="$m1" -v b="$m2" 'BEGIN {printf "2 ranks / 1 process: %.2f x the step time\n", b / a}'
