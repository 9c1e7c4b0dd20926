#!/usr/bin/env bash
# `calm serve` against real clients: the official openai Python client, and lm-evaluation-harness's
# local-completions on a loglikelihood task and a generate_until task defined in local files, whose scores must
# equal `calm eval`'s on the same data; then SIGTERM while a request streams (it must finish, the server must stop).
#
# Builds its own virtual environment (VENV, default calm4j-serve/target/venv-clients) from the local package index
# (PIP_INDEX, PIP_EXTRA_INDEX, PIP_WHEELS below) and fails loudly when that index is missing. lm-eval 0.4.13 is
# installed without its dependencies, then the ones local-completions needs. Run from anywhere:
#   bash calm4j-serve/scripts/real-clients.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
VENV="${VENV:-$repo/calm4j-serve/target/venv-clients}"
PIP_INDEX="${PIP_INDEX:-/opt/pypi/simple}"
PIP_EXTRA_INDEX="${PIP_EXTRA_INDEX:-/opt/pypi-more/simple}"
PIP_WHEELS="${PIP_WHEELS:-/opt/wheels}"
PORT="${PORT:-18931}"
KEY="real-clients-$$"

die() { echo "real-clients: FAILED: $*" >&2; exit 1; }

# 1. the clients' environment
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import openai, lm_eval' 2>/dev/null; then
  for d in "$PIP_INDEX" "$PIP_EXTRA_INDEX" "$PIP_WHEELS"; do
    [ -d "$d" ] || die "the local package index $d is missing (set PIP_INDEX, PIP_EXTRA_INDEX, PIP_WHEELS)"
  done
  echo "real-clients: building $VENV from the local index ..."
  python3 -m venv "$VENV"
  pip=("$VENV/bin/pip" install -q --index-url "file://$PIP_INDEX" --extra-index-url "file://$PIP_EXTRA_INDEX"
       --find-links "$PIP_WHEELS")
  "${pip[@]}" openai || die "pip could not install openai from the local index"
  "${pip[@]}" --no-deps lm-eval==0.4.13 || die "pip could not install lm-eval 0.4.13 from the local index"
  # lm-eval's dependencies that the index has (evaluate, pytablewriter, rouge-score, sqlitedict, word2number are
  # not there, and local-completions does not need them)
  "${pip[@]}" torch transformers datasets accelerate numexpr peft pybind11 sacrebleu scikit-learn zstandard dill \
      more_itertools requests aiohttp tenacity tqdm jinja2 || die "pip could not install lm-eval's dependencies"
fi
py="$VENV/bin/python"

# 2. the CLI, a model with a chat template, data
cd "$repo"
./calm --version >/dev/null || die "the CLI does not build"
work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then kill -TERM "$server"; wait "$server" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
model="$work/m_B"
mkdir "$model"
cp experiments/kv-arithmetic/models/m_B/{config.json,model.safetensors,tokenizer.json} "$model/"
cat > "$model/tokenizer_config.json" <<'JSON'
{"bos_token": "<s>", "eos_token": "</s>",
 "chat_template": "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}={% endif %}"}
JSON
"$py" - "$work/sums.jsonl" <<'PY'
import json, random, sys
random.seed(5)
with open(sys.argv[1], "w") as f:
    for i in range(24):
        a, b = random.randint(10, 500), random.randint(1, 99)
        p, c = (f"<s>{a}+{b}=", a + b) if i % 2 else (f"<s>{a}-{b}=", a - b)
        f.write(json.dumps({"prompt": p, "completion": str(c)}) + "\n")
PY
# calm eval's own numbers on the same data (the prompt carries BOS as text; nothing appended)
./calm eval --model "$model" --data "$work/sums.jsonl" --metric perplexity --no-bos --no-eos --json > "$work/ppl.json"
./calm eval --model "$model" --data "$work/sums.jsonl" --metric exact --no-bos --no-eos --json > "$work/exact.json"

# 3. the server
./calm serve --model "$model" --served-model-name m_B --port "$PORT" --api-key "$KEY" > "$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; die "the server did not start"; }
  sleep 0.5
done
base="http://127.0.0.1:$PORT"
passed=0

"$py" "$here/openai_client_check.py" "$base" "$KEY" && passed=$((passed + 1)) || die "openai client"
OPENAI_API_KEY="$KEY" HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 "$py" "$here/lm_eval_check.py" "$base" m_B \
    "$work/sums.jsonl" "$work/ppl.json" "$work/exact.json" "$work" > "$work/lm_eval.log" 2>&1 \
  || { tail -20 "$work/lm_eval.log"; die "lm-evaluation-harness"; }
grep '^lm-eval:' "$work/lm_eval.log"
passed=$((passed + 1))

# 4. SIGTERM while a request streams: it completes, a new one is refused, the server exits
curl -sN -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' "$base/v1/completions" \
  -d '{"prompt": "<s>1", "max_tokens": 60, "n": 16, "temperature": 0, "ignore_eos": true, "stream": true}' \
  > "$work/stream.txt" &
client=$!
for _ in $(seq 200); do [ -s "$work/stream.txt" ] && break; sleep 0.05; done
[ -s "$work/stream.txt" ] || die "the streamed request did not start"
kill -TERM "$server"
sleep 0.2
late="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$base/v1/models" || true)"
wait "$client" || die "the streamed request failed during the drain"
tail -c 200 "$work/stream.txt" | grep -q 'data: \[DONE\]' || die "the streamed request was cut by SIGTERM"
[ "$(grep -c '"finish_reason":"length"' "$work/stream.txt")" = 16 ] || die "not every streamed choice finished"
wait "$server" || true
kill -0 "$server" 2>/dev/null && die "the server still runs after SIGTERM"
case "$late" in 503|000) ;; *) die "a request during the drain got $late, not 503 (or a refused connection)";; esac
server=""
echo "SIGTERM: the streamed request finished (16 choices, [DONE]), a new request got ${late/000/a refused connection}, the server stopped"
passed=$((passed + 1))

echo "real-clients: $passed passed, 0 failed"
