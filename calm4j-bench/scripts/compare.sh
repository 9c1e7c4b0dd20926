#!/usr/bin/env bash
# calm4j next to PyTorch eager on the same composed model: `calm bench` and the peer calm_torch.py (vendored beside
# this script), on the b1 configs in calm4j-bench/configs (anchor d 512 x 8 layers, augment d 256 x 4 layers,
# connections 1->3,3->7, batch 8, sequence 256, 2 threads), RUNS times each per mode, interleaved so that drift
# hits every contestant alike. Prints the medians, the ratios and the performance targets as Markdown tables
# (summarize.py).
#
#   calm4j-bench/scripts/compare.sh                   # every mode, every Python with torch it finds
#   PEER_PYTHONS="/usr/bin/python3 ~/venvs/torch/bin/python" MODES="calm-train" calm4j-bench/scripts/compare.sh
#
# Environment (all optional):
#   PEER_PYTHONS   Python interpreters that have PyTorch (default: /usr/bin/python3 and python3 on PATH, those
#                  that import torch)
#   MODES          default "calm-train calm-forward anchor-full-ft calm-decode"
#   RUNS (3)  STEPS (10)  WARMUP (3)  THREADS (2, the peers' --threads)  CALM4J_THREADS (calm4j's defaults)
#   DECODE_BATCH (1)
#   BF16           1/0: also time bf16 in calm-train: calm4j's bf16 and bf16-mixed compute modes, each peer's
#                  --dtype bf16 and --dtype autocast-bf16 (default: 1 where the CPU has avx512_bf16 or amx_bf16)
#   BENCH_DIR      a folder holding another calm_torch.py, peak_gemm.py and configs/ (default: calm_torch.py and
#                  peak_gemm.py beside this script, the configs in calm4j-bench/configs)
#   BENCH_LOCK     a file to flock around every single run (a shared machine's CPU lock), e.g. /tmp/cpu.lock
#   OUT            directory for the raw JSON lines (default: a new temporary directory)
#   MAX_OTHER      repeat a run when other processes used more than this share of the machine (0.10)
#   APPEND=1       add to OUT's results instead of starting afresh (a long comparison run in several sittings)
#
# It installs nothing. Where something is missing it says what to install and stops.
set -euo pipefail
scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"   # calm4j-bench/scripts
here="$(cd "$scripts/../.." && pwd)"                        # the repository root (./calm, calm4j-cli/target)
if [ -n "${BENCH_DIR:-}" ]; then
  bench_dir="$BENCH_DIR"; config_dir="$BENCH_DIR/configs"
else
  bench_dir="$scripts"; config_dir="$(cd "$scripts/../configs" && pwd)"
fi
runs="${RUNS:-3}"
steps="${STEPS:-10}"
warmup="${WARMUP:-3}"
threads="${THREADS:-2}"
decode_batch="${DECODE_BATCH:-1}"
# bf16 compute pays only where the cores multiply bf16 natively (AVX512_BF16 or AMX); elsewhere libtorch emulates
# it at a tenth of the fp32 speed, and three runs of it would take most of an hour.
if [ -z "${BF16:-}" ]; then
  if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null; then bf16=1; else
    bf16=0; echo "compare.sh: this CPU has no native bf16 (avx512_bf16/amx_bf16): skipping calm4j's bf16 runs (BF16=1 forces them)" >&2
  fi
else bf16="$BF16"; fi
modes="${MODES:-calm-train calm-forward anchor-full-ft calm-decode}"
lock="${BENCH_LOCK:-}"
out="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/calm4j-compare.XXXXXX")}"
anchor="$config_dir/anchor-b1.json"
augment="$config_dir/augment-b1.json"
connections="1->3,3->7"

die() { echo "compare.sh: $*" >&2; exit 2; }

# ---- what is needed, checked before anything runs -------------------------------------------------------------
for f in "$bench_dir/calm_torch.py" "$anchor" "$augment"; do
  [ -f "$f" ] || die "$f is missing (set BENCH_DIR to the folder holding calm_torch.py and configs/)"
done
command -v java >/dev/null || die "java is not on PATH (install a JDK 17, e.g. apt-get install openjdk-17-jdk-headless)"
command -v mvn >/dev/null || [ -f "$here/calm4j-cli/target/calm4j-cli.jar" ] \
  || die "mvn is not on PATH and calm4j-cli/target/calm4j-cli.jar is not built (apt-get install maven)"
command -v python3 >/dev/null || die "python3 is not on PATH (apt-get install python3)"
if [ -n "$lock" ]; then
  command -v flock >/dev/null || die "BENCH_LOCK is set but flock is missing (apt-get install util-linux)"
fi

if [ -z "${PEER_PYTHONS:-}" ]; then
  PEER_PYTHONS=""
  for p in /usr/bin/python3 "$(command -v python3 || true)"; do
    [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import torch' 2>/dev/null || continue
    real="$(readlink -f "$p")"
    case " $PEER_PYTHONS " in *" $real "*) ;; *) PEER_PYTHONS="$PEER_PYTHONS $real" ;; esac
  done
fi
peers=()
for p in $PEER_PYTHONS; do
  p="${p/#\~/$HOME}"
  "$p" -c 'import torch' 2>/dev/null || die "$p cannot import torch"
  peers+=("$p")
done
if [ "${#peers[@]}" -eq 0 ]; then
  die "no Python with PyTorch found. Either Debian's build (torch 1.13):
    apt-get install python3-torch libopenblas0-pthread    # the second replaces the slow reference BLAS
or a CPU build of torch 2.x in a virtual environment:
    python3 -m venv --system-site-packages ~/venvs/torch && ~/venvs/torch/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
and pass it: PEER_PYTHONS=\"/usr/bin/python3 ~/venvs/torch/bin/python\" calm4j-bench/scripts/compare.sh"
fi
for p in "${peers[@]}"; do
  blas="$("$p" -c 'import torch, os
libs = {l.split()[-1] for l in open("/proc/self/maps") if "blas" in l.lower() and "/" in l}
print(",".join(sorted(os.path.realpath(x) for x in libs)) or "-")' 2>/dev/null || echo "?")"
  case "$blas" in
    */blas/libblas.so*) echo "compare.sh: warning: $p loads the reference BLAS ($blas), far slower than a tuned one;" \
      "apt-get install libopenblas0-pthread gives it OpenBLAS" >&2 ;;
  esac
done

# ---- build once, outside the timing ---------------------------------------------------------------------------
"$here/calm" --version >/dev/null 2>&1 || "$here/calm" --help >/dev/null

run_locked() {
  if [ -n "$lock" ]; then flock "$lock" "$@"; else "$@"; fi
}

# One run: appends one JSON line, tagged with who ran it, to $out/results.jsonl. A run during which other processes
# used more than MAX_OTHER (0.10) of the machine is repeated, up to twice; summarize.py leaves out any that stays so.
run_one() {  # impl label, then the command
  local impl="$1"; shift
  local line other try
  for try in 1 2 3; do
    if ! line="$(run_locked "$@" 2>"$out/last.err" | tail -n 1)"; then
      echo "compare.sh: run failed: $*" >&2; cat "$out/last.err" >&2; exit 1
    fi
    other="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get("other_cpu_frac", 0))' "$line")"
    python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "$other" "${MAX_OTHER:-0.10}" && break
    echo "compare.sh: other processes used $other of the machine during that run ($impl); running it again" >&2
  done
  python3 -c 'import json, sys; d = json.loads(sys.argv[2]); d["impl"] = sys.argv[1]; print(json.dumps(d))' \
    "$impl" "$line" >> "$out/results.jsonl"
}

calm4j_args() {  # mode [dtype]
  local mode="$1" dtype="${2:-fp32}"
  # calm4j's own thread defaults (both cores: OpenBLAS 2 threads; libtorch 2 for training and forward, 1 for
  # decode, as measured); CALM4J_THREADS=N forces --threads N.
  local a=(--anchor "$anchor" --connections "$connections" --mode "$mode" --dtype "$dtype" --json)
  [ -z "${CALM4J_THREADS:-}" ] || a+=(--threads "$CALM4J_THREADS")
  [ "$mode" = anchor-full-ft ] || a+=(--augment "$augment")
  if [ "$mode" = calm-decode ]; then
    a+=(--batch "$decode_batch" --prompt 128 --new-tokens 128 --warmup 1 --no-gemm-peak)
  else
    a+=(--batch 8 --seq 256 --steps "$steps" --warmup "$warmup")
    # The GEMM peak (in the run's dtype) is measured once per run of calm-train, in the same process.
    [ "$mode" = calm-train ] || a+=(--no-gemm-peak)
  fi
  printf '%s\n' "${a[@]}"
}

peer_args() {  # mode [dtype]
  local mode="$1" dtype="${2:-fp32}"
  local a=(--anchor "$anchor" --augment "$augment" --connections "$connections" --threads "$threads" --mode "$mode" --json)
  [ "$dtype" = fp32 ] || a+=(--dtype "$dtype")
  if [ "$mode" = calm-decode ]; then
    a+=(--batch "$decode_batch" --prompt 128 --new-tokens 128 --warmup 1)
  else
    a+=(--batch 8 --seq 256 --steps "$steps" --warmup "$warmup")
  fi
  printf '%s\n' "${a[@]}"
}

mkdir -p "$out"
[ "${APPEND:-0}" = 1 ] || : > "$out/results.jsonl"
echo "compare.sh: $runs runs x modes [$modes], calm4j vs ${peers[*]}; raw results in $out/results.jsonl" >&2
for r in $(seq 1 "$runs"); do
  for mode in $modes; do
    echo "compare.sh: run $r/$runs, $mode" >&2
    mapfile -t a < <(calm4j_args "$mode")
    run_one "calm4j fp32" "$here/calm" bench "${a[@]}"
    if [ "$bf16" = 1 ] && [ "$mode" = calm-train ]; then
      mapfile -t a < <(calm4j_args "$mode" bf16)
      run_one "calm4j bf16" "$here/calm" bench "${a[@]}"
      mapfile -t a < <(calm4j_args "$mode" bf16-mixed)      # bf16 matmuls, float32 activations: autocast's scheme
      run_one "calm4j bf16-mixed" "$here/calm" bench "${a[@]}"
    fi
    for p in "${peers[@]}"; do
      mapfile -t a < <(peer_args "$mode")
      ver="$("$p" -c 'import torch; print(torch.__version__.split("+")[0])')"
      run_one "torch $ver" "$p" "$bench_dir/calm_torch.py" "${a[@]}"
      if [ "$bf16" = 1 ] && [ "$mode" = calm-train ]; then
        for d in bf16 autocast-bf16; do
          mapfile -t a < <(peer_args "$mode" "$d")
          run_one "torch $ver $d" "$p" "$bench_dir/calm_torch.py" "${a[@]}"
        done
      fi
    done
  done
  for p in "${peers[@]}"; do   # each peer's own fp32 mm peak, for the utilisation of its figures
    ver="$("$p" -c 'import torch; print(torch.__version__.split("+")[0])')"
    run_one "torch $ver" "$p" "$bench_dir/peak_gemm.py" --threads "$threads" --json
  done
done

python3 "$scripts/summarize.py" "$out/results.jsonl"
