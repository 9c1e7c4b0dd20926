#!/usr/bin/env python3
"""Golden fixtures for the qwen3, olmo2 and smollm3 families, made by Hugging Face transformers itself.

Run by hand with a Python that has torch and transformers (no network needed):

    python3 tools/make_family_golden_qwen3_olmo2_smollm3.py

For every case below it builds a TINY random checkpoint with transformers' own config and model classes
(Qwen3Config + Qwen3ForCausalLM, Olmo2Config + Olmo2ForCausalLM, SmolLM3Config + SmolLM3ForCausalLM), saves it
with ``save_pretrained`` (safetensors) into ``calm4j-core/src/test/resources/golden/<case>/``, optionally rewrites
``config.json`` into the transformers 4.x layout (top-level ``rope_theta`` / ``rope_scaling``, ``torch_dtype``, no
``layer_types``), RELOADS the directory with ``from_pretrained`` (so the fixture pins what HF makes of the files as
committed) and writes ``golden.json``:

    input_ids      [B][T]          B = 2, T = 7, no padding, positions 0..T-1
    logits         [B][T][V]       float32 logits of HF's forward (eager attention), exact float32 repr
    hidden_1       [B][T][D]       output of block 1 (0-based), taken by a hook on model.layers[1]; equals
                                   HF's hidden_states[2]
    padded_ids     [B][T]          row 0 = input_ids[0]; row 1 = 2 pad ids (0) then input_ids[1][:T-2]
    padded_mask    [B][T]          1 = real token
    padded_logits  [B][T][V]       HF's forward with that attention_mask and the positions generate() gives
                                   left-padded rows (cumsum of the mask - 1, clamped at 0); compare real positions
    greedy_from    [3]             input_ids[0][:3]
    greedy_ids     [16]            16 new tokens, greedy (argmax), HF's KV-cached decoding (DynamicCache),
                                   no EOS stop; checked equal to greedy by full recomputation

Weights are set after construction so that logits vary a lot: every matrix N(0, 0.2^2), every norm weight
1 + 0.1 N(0, 1), every bias 0.1 N(0, 1) (seeded). BF16 cases round the weights to bfloat16 first and save them in
bfloat16; the reference runs in float32 on the rounded values (calm4j loads them into float32).

Checks before writing: the reloaded model gives the same logits as the one built in memory; cached and
recomputed greedy agree and every step's top-1/top-2 gap is >= 1e-3; KV-cached logits equal the full forward's
(< 1e-5); sliding windows and NoPE layers change the logits (so the fixture would catch their absence); the
padded row's real positions equal the unpadded row's (< 1e-5) where no window bites; each case directory is
< 200 KB.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys

import torch
import transformers
from transformers import (Olmo2Config, Olmo2ForCausalLM, Qwen3Config, Qwen3ForCausalLM, SmolLM3Config,
                          SmolLM3ForCausalLM)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "calm4j-core", "src", "test", "resources", "golden")
V = 96
B, T = 2, 7
GREEDY_FROM, GREEDY_NEW = 3, 16


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"CHECK FAILED: {msg}")


def common(**kw):
    base = dict(vocab_size=V, hidden_size=32, intermediate_size=64, max_position_embeddings=128,
                pad_token_id=0, bos_token_id=1, eos_token_id=2)
    base.update(kw)
    return base


# name -> (model class, config, bf16 storage, 4.x config layout, what the case exercises)
CASES = {
    "qwen3_gqa_window": (Qwen3ForCausalLM, lambda: Qwen3Config(**common(
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, tie_word_embeddings=False,
        use_sliding_window=True, sliding_window=4, max_window_layers=1)), False, False,
        "5.x config, GQA 4/2, head_dim 16 != 32/4, per-layer window (layer 0 full, layer 1 window 4), untied, F32"),
    "qwen3_tied_bias_bf16": (Qwen3ForCausalLM, lambda: Qwen3Config(**common(
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, head_dim=8, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=True,
        attention_bias=True, use_sliding_window=False, sliding_window=None, max_window_layers=28)), True, True,
        "4.x config, MHA, attention_bias (q, k, v, o), tied head, BF16"),
    "olmo2_gqa": (Olmo2ForCausalLM, lambda: Olmo2Config(**common(
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, intermediate_size=48,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, tie_word_embeddings=False)), False, False,
        "5.x config, GQA 4/2 (q_norm over 32, k_norm over 16), 3 layers, ffn 48, untied, F32"),
    "olmo2_tied_bias_bf16": (Olmo2ForCausalLM, lambda: Olmo2Config(**common(
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}, tie_word_embeddings=True,
        attention_bias=True)), True, True,
        "4.x config, MHA, attention_bias, linear rope x2, tied head, BF16"),
    "smollm3_nope": (SmolLM3ForCausalLM, lambda: SmolLM3Config(**common(
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 2e6}, no_rope_layer_interval=2,
        tie_word_embeddings=True)), False, False,
        "5.x config, GQA 4/2, layer 1 without rotary (no_rope_layers [1,0,1]), tied head, F32"),
    "smollm3_window_bias_bf16": (SmolLM3ForCausalLM, lambda: SmolLM3Config(**common(
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, no_rope_layer_interval=3,
        use_sliding_window=True, sliding_window=4, attention_bias=True, mlp_bias=True,
        tie_word_embeddings=False)), True, True,
        "4.x config (no_rope_layers derived from no_rope_layer_interval 3), MQA 4/1, window 4 on the NoPE layer 2, "
        "attention and MLP biases, untied, BF16"),
}


def randomize(model: torch.nn.Module, seed: int, bf16: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    seen = set()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            if bf16:
                p.copy_(p.to(torch.bfloat16).to(torch.float32))


def to_4x_layout(path: str) -> None:
    """Rewrites a 5.x config.json as transformers 4.x wrote it (what most checkpoints on the Hub still have)."""
    with open(path) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters")
    c["rope_theta"] = rp.pop("rope_theta")
    rtype = rp.pop("rope_type")
    c["rope_scaling"] = None if rtype == "default" else {"type": rtype, **rp}
    c["torch_dtype"] = c.pop("dtype")
    for k in ("layer_types", "no_rope_layers"):
        c.pop(k, None)
    c["transformers_version"] = "4.53.0"
    with open(path, "w") as f:
        f.write(json.dumps(c, indent=2, sort_keys=True) + "\n")


def positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@torch.no_grad()
def greedy(model, prompt: list, cached: bool):
    seq, gaps, past, last_full = list(prompt), [], None, None
    for _ in range(GREEDY_NEW):
        if cached:
            ids = torch.tensor([seq if past is None else seq[-1:]])
            out = model(input_ids=ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
        else:
            out = model(input_ids=torch.tensor([seq]))
        last = out.logits[0, -1]
        top = torch.topk(last, 2).values
        gaps.append(float(top[0] - top[1]))
        seq.append(int(torch.argmax(last)))      # first maximum
    return seq[len(prompt):], min(gaps)


def rows(x) -> str:
    return json.dumps(x.tolist() if torch.is_tensor(x) else x)


def nested(name: str, x: torch.Tensor) -> list:
    lines = [f'  "{name}": [']
    for b in range(x.shape[0]):
        lines.append("    [")
        for t in range(x.shape[1]):
            lines.append("      " + json.dumps([float(v) for v in x[b, t].tolist()])
                         + ("," if t + 1 < x.shape[1] else ""))
        lines.append("    ]" + ("," if b + 1 < x.shape[0] else ""))
    lines.append("  ],")
    return lines


def make(name: str, seed: int) -> None:
    cls, config_fn, bf16, four_x, what = CASES[name]
    torch.manual_seed(seed)
    config = config_fn()
    config._attn_implementation = "eager"
    model = cls(config).eval()
    randomize(model, seed, bf16)

    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    # a copy: .to(bfloat16) would also round the in-memory model's rotary inv_freq buffer
    (copy.deepcopy(model).to(torch.bfloat16) if bf16 else model).save_pretrained(d)
    if four_x:
        to_4x_layout(os.path.join(d, "config.json"))
    ref = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()

    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(3, V, (B, T), generator=g)
    with torch.no_grad():
        out = ref(input_ids=ids, output_hidden_states=True)
        logits = out.logits
        captured = {}
        h = ref.model.layers[1].register_forward_hook(lambda m, i, o: captured.setdefault("h1", o[0] if isinstance(o, tuple) else o))
        ref(input_ids=ids)
        h.remove()
        hidden_1 = captured["h1"]
        check(torch.equal(hidden_1, out.hidden_states[2]) or len(ref.model.layers) == 2,
              f"{name}: hook output != hidden_states[2]")
        check(torch.allclose(model(input_ids=ids).logits, logits, atol=1e-6, rtol=0),
              f"{name}: reloaded model differs from the one built")

        pad_ids = ids.clone()
        pad_ids[1, 2:] = ids[1, :T - 2]
        pad_ids[1, :2] = 0
        pad_mask = torch.ones(B, T, dtype=torch.long)
        pad_mask[1, :2] = 0
        padded = ref(input_ids=pad_ids, attention_mask=pad_mask, position_ids=positions(pad_mask)).logits
        check(torch.allclose(padded[0], logits[0], atol=1e-5, rtol=0), f"{name}: unpadded row changed by padding")
        window = getattr(ref.config, "sliding_window", None) if getattr(ref.config, "use_sliding_window", False) else None
        if window is None:
            check(torch.allclose(padded[1, 2:], logits[1, :T - 2], atol=1e-5, rtol=0),
                  f"{name}: left padding changed the real positions")

        # KV-cached prefill + one step == full forward
        pre = ref(input_ids=ids[:, :T - 1], use_cache=True)
        step = ref(input_ids=ids[:, T - 1:], past_key_values=pre.past_key_values, use_cache=True).logits
        check(torch.allclose(step[:, 0], logits[:, T - 1], atol=1e-5, rtol=0), f"{name}: cached step != full")

        # the family's special features must matter
        if window is not None:
            c2 = ref.config.__class__.from_dict({**ref.config.to_dict(), "use_sliding_window": False, "sliding_window": None,
                                                 "layer_types": None})
            c2._attn_implementation = "eager"
            m2 = cls(c2).eval()
            m2.load_state_dict(ref.state_dict())
            check(float((m2(input_ids=ids).logits - logits).abs().max()) > 1e-3, f"{name}: window does not matter")
        if hasattr(ref.config, "no_rope_layers"):
            check(0 in ref.config.no_rope_layers, f"{name}: no NoPE layer")
            c2 = ref.config.__class__.from_dict({**ref.config.to_dict(), "no_rope_layers": [1] * len(ref.model.layers)})
            c2._attn_implementation = "eager"
            m2 = cls(c2).eval()
            m2.load_state_dict(ref.state_dict())
            check(float((m2(input_ids=ids).logits - logits).abs().max()) > 1e-3, f"{name}: NoPE does not matter")

    prompt = ids[0, :GREEDY_FROM].tolist()
    cached, gap = greedy(ref, prompt, True)
    full, _ = greedy(ref, prompt, False)
    check(cached == full, f"{name}: cached greedy {cached} != recomputed {full}")
    check(gap >= 1e-3, f"{name}: greedy top-2 gap {gap} too small")

    lines = ["{", '  "input_ids": ' + rows(ids) + ","]
    lines += nested("logits", logits)
    lines += nested("hidden_1", hidden_1)
    lines.append('  "padded_ids": ' + rows(pad_ids) + ",")
    lines.append('  "padded_mask": ' + rows(pad_mask) + ",")
    lines += nested("padded_logits", padded)
    lines.append('  "greedy_from": ' + json.dumps(prompt) + ",")
    lines.append('  "greedy_ids": ' + json.dumps(cached))
    lines.append("}")
    with open(os.path.join(d, "golden.json"), "w") as f:
        f.write("\n".join(lines) + "\n")

    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    check(size < 200_000, f"{name}: {size} bytes >= 200 KB")
    print(f"{name}: {size // 1024} KB, greedy gap {gap:.4f}, files {sorted(os.listdir(d))} -- {what}")


def main() -> None:
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, python {sys.version.split()[0]}")
    for i, name in enumerate(CASES):
        make(name, 100 + i)


if __name__ == "__main__":
    main()
