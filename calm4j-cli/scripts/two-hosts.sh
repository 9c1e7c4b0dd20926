#!/usr/bin/env bash
# Data-parallel bridge training across two "hosts": two network namespaces on this machine joined by a veth pair
# (10.231.0.1/30 and 10.231.0.2/30, a private test range), one calm process in each, meeting over TCP as two machines
# would (MASTER_ADDR is rank 0's namespace address; each rank's gloo binds to its own). The bridges they train must
# equal one process's with their global batch (to 1e-5). Everything it creates is removed on exit, also on failure.
# Needs root and iproute2 (ip netns); elsewhere it says so and exits 0. Bounded: each run has a 300 s limit.
# Usage: calm4j-cli/scripts/two-hosts.sh            (from anywhere; builds the CLI first when needed)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
calm="$here/calm"

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! ip netns list >/dev/null 2>&1; then
  echo "two-hosts: skipped (needs root and ip netns)"
  exit 0
fi

tag="c4j$$"
ns0="$tag-h0" ns1="$tag-h1"
work="$(mktemp -d)"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  ip netns del "$ns0" 2>/dev/null || true       # takes its end of the veth pair, and so the pair, with it
  ip netns del "$ns1" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$calm" --version >/dev/null                      # builds the CLI outside the namespaces if it is stale
ip netns add "$ns0"
ip netns add "$ns1"
ip link add "$tag-a" type veth peer name "$tag-b"
ip link set "$tag-a" netns "$ns0"
ip link set "$tag-b" netns "$ns1"
ip -n "$ns0" addr add 10.231.0.1/30 dev "$tag-a"
ip -n "$ns1" addr add 10.231.0.2/30 dev "$tag-b"
for n in "$ns0" "$ns1"; do ip -n "$n" link set lo up; done
ip -n "$ns0" link set "$tag-a" up
ip -n "$ns1" link set "$tag-b" up

# Two small models and some data (the anchor reads characters; the augment is a random model of another width).
alphabet="abcdefghijklmnopqrstuvwxyz0123456789="
for m in anchor:64:128:1 augment:32:64:2; do
  IFS=: read -r name hidden inter seed <<<"$m"
  cat >"$work/$name.json" <<EOF
{"model_type": "llama", "vocab_size": 48, "hidden_size": $hidden, "intermediate_size": $inter, "num_hidden_layers": 4,
 "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32, "bos_token_id": 1,
 "eos_token_id": 2, "tie_word_embeddings": true}
EOF
  "$calm" init --config "$work/$name.json" --out "$work/$name" --seed "$seed" --std 0.2 --char-alphabet "$alphabet" >/dev/null
done
python3 - "$work/train.jsonl" <<'EOF'
import json, random, sys
r = random.Random(3)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        k = "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(1, 6)))
        f.write(json.dumps({"prompt": k + "=", "completion": str(r.randint(0, 99999))}) + "\n")
EOF

common=(compose --anchor "$work/anchor" --augment "$work/augment" --data "$work/train.jsonl" --steps 20 --lr 3e-3
  --seed 5 --log-every 5 --no-progress)
# each "host" has its own output folder; only rank 0 writes into its own
dist=(--world-size 2 --master-addr 10.231.0.1 --master-port 29531 --dist-timeout 60 --batch 4)
t0=$(date +%s)
ip netns exec "$ns0" timeout 300 "$calm" "${common[@]}" "${dist[@]}" --world-rank 0 --out "$work/host0" \
  >"$work/rank0.log" 2>&1 &
pids+=($!)
ip netns exec "$ns1" timeout 300 "$calm" "${common[@]}" "${dist[@]}" --world-rank 1 --out "$work/host1" \
  >"$work/rank1.log" 2>&1 &
pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
pids=()
if [ "$status" != 0 ]; then
  echo "two-hosts: a rank failed (exit $status)"; echo "--- rank 0"; cat "$work/rank0.log"; echo "--- rank 1"
  cat "$work/rank1.log"; exit 1
fi
echo "two-hosts: 2 ranks in 2 network namespaces trained in $(( $(date +%s) - t0 )) s"
grep -E '^(training|step 20/20)' "$work/rank0.log" | sed 's/^/  rank 0: /'
[ ! -e "$work/host1/bridges.safetensors" ] || { echo "two-hosts: rank 1 wrote its folder"; exit 1; }

"$calm" "${common[@]}" --batch 8 --out "$work/one" >"$work/one.log" 2>&1 || { cat "$work/one.log"; exit 1; }
python3 - "$work/one/bridges.safetensors" "$work/host0/bridges.safetensors" <<'EOF'
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    d = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k != "__metadata__":
            s, e = v["data_offsets"]
            out[k] = struct.unpack("<%df" % ((e - s) // 4), d[s:e])
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys(), (a.keys(), b.keys())
diff = max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))
print("two-hosts: bridges against one process of the global batch: max abs difference %.3g (%d tensors)" % (diff, len(a)))
sys.exit(0 if diff <= 1e-5 else 1)
EOF
