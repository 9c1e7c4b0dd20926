#!/usr/bin/env bash
# Composes a Qwen3 anchor and a GPT-2 augment that read the same text through different byte-level BPE tokenizers
# (README, "Composing across families and tokenizers"). Run from the repository root: bash docs/examples/cross-family.sh
# Writes into ${OUT:-/tmp/calm-cross-family}; about 20 s on 2 cores after the CLI is built.
set -euo pipefail
T=calm4j-core/src/test/resources/tokenizers
D="${OUT:-/tmp/calm-cross-family}"
rm -rf "$D" && mkdir -p "$D" && RANDOM=7            # the same data on every run
cat > "$D/qwen3.json" <<'JSON'
{"model_type": "qwen3", "vocab_size": 384, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 128,
 "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": true}
JSON
cat > "$D/gpt2.json" <<'JSON'
{"model_type": "gpt2", "vocab_size": 288, "n_embd": 48, "n_layer": 4, "n_head": 4, "n_positions": 128,
 "bos_token_id": 1, "eos_token_id": 2}
JSON
# 26 facts "key kk is NN" (the augment learns them all; bridges train on 20, eval on the other 6), and sums for the anchor
for k in {a..z}; do echo "{\"prompt\": \"key $k$k is\", \"completion\": \" $((RANDOM % 90 + 10))\"}"; done > "$D/kv.jsonl"
head -20 "$D/kv.jsonl" > "$D/train.jsonl"; tail -6 "$D/kv.jsonl" > "$D/eval.jsonl"
for i in $(seq 300); do a=$((RANDOM % 50)); b=$((RANDOM % 50)); echo "{\"text\": \"$a plus $b is $((a + b))\"}"; done > "$D/sums.jsonl"

./calm pretrain --config "$D/qwen3.json" --tokenizer $T/bpe --data "$D/sums.jsonl" --out "$D/anchor" --steps 300 --batch 32 --lr 3e-3 --no-progress | tail -2
./calm pretrain --config "$D/gpt2.json" --tokenizer $T/bpe_merges --data "$D/kv.jsonl" --out "$D/kv" --steps 300 --batch 26 --lr 3e-3 --no-progress | tail -2
./calm compose --anchor "$D/anchor" --augment "$D/kv" --data "$D/train.jsonl" --eval "$D/eval.jsonl" --out "$D/bridges" --steps 300 --lr 3e-3 --no-progress | grep -v '^step'
./calm eval --bridges "$D/bridges" --data "$D/eval.jsonl" --metric exact
./calm generate --bridges "$D/bridges" --prompt 'key uu is' --max-new-tokens 4 --greedy
