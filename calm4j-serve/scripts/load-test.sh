#!/usr/bin/env bash
# The load test of `calm serve` on loopback, as in the README's table: 1, 4, 16 and 64 concurrent clients (a bounded
# number of requests each level), with the decode loop interleaving up to 16 sequences (--max-batch 16) and one at a
# time (--max-batch 1); then 64 clients against a queue of 8, which must answer clean 503s and nothing else.
#   bash calm4j-serve/scripts/load-test.sh [MODEL_DIR]        (default: the key-value experiment's m_B)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
model="${1:-$repo/experiments/kv-arithmetic/models/m_B}"
PORT="${PORT:-18932}"
MAX_TOKENS="${MAX_TOKENS:-32}"
cd "$repo"
./calm --version >/dev/null
server=""
trap '[ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true' EXIT

run() {   # label, serve flags, then client levels as CLIENTS:REQUESTS
  local label="$1" flags="$2"
  shift 2
  ./calm serve --model "$model" --port "$PORT" $flags > /dev/null 2>&1 &
  server=$!
  for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.5; done
  python3 "$here/load_test.py" "http://127.0.0.1:$PORT" 1 4 "$MAX_TOKENS" "$server" > /dev/null   # warm-up
  for level in "$@"; do
    echo "$label $(python3 "$here/load_test.py" "http://127.0.0.1:$PORT" "${level%%:*}" "${level##*:}" "$MAX_TOKENS" "$server")"
  done
  kill -TERM "$server"
  wait "$server" || true
  server=""
}

run "max-batch=16" "--max-batch 16" 1:16 4:32 16:64 64:128
run "max-batch=1" "--max-batch 1" 1:16 4:32 16:64 64:128
run "max-queue=8" "--max-batch 16 --max-queue 8" 64:128
