#!/usr/bin/python3
"""Generate golden test fixtures for calm4j (tiny Hugging Face Llama-family causal LMs).

Run from anywhere with an interpreter that has PyTorch and NumPy (here Debian's
/usr/bin/python3 with python3-torch; no `transformers` needed):

    /usr/bin/python3 tools/make_golden.py           # writes calm4j-core/src/test/resources/golden/<case>/

Every case directory gets

* ``config.json``        -- laid out as HF transformers' ``save_pretrained`` writes it
                            (``json.dumps(d, indent=2, sort_keys=True) + "\\n"``);
* ``model.safetensors``  -- written by the small writer below (no ``safetensors`` package);
* ``golden.json``        -- ``input_ids`` [B][T], ``logits`` [B][T][V], ``greedy_from`` [3],
                            ``greedy_ids`` [16].

The reference forward is an independent re-implementation of HF ``*ForCausalLM.forward``
(eager attention, no padding, position_ids = 0..T-1) for llama / mistral / qwen2, evaluated in
float64 from the weights *as stored* (BF16/F16 values upcast exactly).  Logits are rounded
to float32 at the end and written as the shortest ``repr`` of that (exactly representable)
double, so ``Float.parseFloat`` and ``Double.parseDouble`` both read the float32 value exactly.

A second, deliberately different implementation (plain NumPy loops: RoPE on explicit
(i, i + d/2) pairs, per-head KV index ``h // group``, explicit window test, stable softmax)
checks the first one on every case; the script refuses to write fixtures if they disagree.

Semantic decisions (what the Java side must match)
--------------------------------------------------

* head_dim: ``config["head_dim"]`` when present and not null, else hidden_size // heads
  (HF: ``getattr(config, "head_dim", None) or hidden_size // num_attention_heads``).
  q_proj is [heads*head_dim, hidden], k/v_proj [kv_heads*head_dim, hidden],
  o_proj [hidden, heads*head_dim]; the attention scale is head_dim ** -0.5.
* GQA: query head h reads kv head h // (heads // kv_heads) (HF ``repeat_kv`` ==
  ``repeat_interleave`` along the head axis).
* RoPE (rotate_half convention): inv_freq[i] = 1 / theta ** (2i / head_dim), i < head_dim/2;
  angle(pos, i) = pos * inv_freq[i]; emb = cat(freqs, freqs);
  q' = q * cos + rotate_half(q) * sin with rotate_half(x) = cat(-x[d/2:], x[:d/2]).
  - rope parameters: transformers-5 ``rope_parameters`` {rope_type, rope_theta, ...} or
    transformers-4 top-level ``rope_theta`` (default 10000) + ``rope_scaling`` (null, or a dict
    whose type is under ``rope_type`` or, legacy, ``type``).
  - "linear": inv_freq / factor (== positions / factor).
  - "llama3" (HF ``_compute_llama3_parameters``): with old = original_max_position_embeddings,
    low_wl = old / low_freq_factor, high_wl = old / high_freq_factor, wl = 2*pi / inv_freq:
        wl <  high_wl            -> inv_freq                      (high frequency, unchanged)
        wl >  low_wl             -> inv_freq / factor             (low frequency)
        otherwise (medium)       -> (1 - s) * inv_freq / factor + s * inv_freq,
                                    s = (old / wl - low_freq_factor) / (high_freq_factor - low_freq_factor)
    (both comparisons are strict, so wl exactly equal to high_wl or low_wl counts as "medium").
    In the llama_gqa_tied_bf16 fixture (head_dim 8, theta 5e5, old 16): inv_freq[0] = 1
    (wl = 2*pi, between 4 and 16) is MEDIUM and gets smoothed, the other three are LOW and are
    divided by 8; no frequency is in the high band.
  - the attention_factor of linear / llama3 is 1.0 (cos/sin are not rescaled).
* Sliding window (mistral): query at position i attends keys j with
      i - sliding_window < j <= i,
  i.e. at most ``sliding_window`` keys including itself.  This is what current transformers
  does for eager/sdpa/flex: ``masking_utils.sliding_window_overlay`` is
  ``kv_idx > q_idx - sliding_window`` AND-ed with ``causal_mask_function`` (kv_idx <= q_idx),
  and MistralModel uses ``create_sliding_window_causal_mask`` whenever
  ``config.sliding_window is not None``.  (It also matches the older eager path: see
  transformers issue #29623, where the eager mask of window 2048 keeps at most 2048 keys;
  the flash-attention path once passed ``window_size=(sliding_window, sliding_window)``, one
  key too many, issue #39408; it now passes ``sliding_window - 1`` on the left, which with
  causal=True is the same band as above.)  ``sliding_window: null`` means full
  causal attention.  The window is applied in every layer, for the prompt and during greedy
  decoding alike (the greedy reference recomputes the whole sequence each step; a KV cache
  that keeps the last ``sliding_window`` keys gives the same numbers).
* qwen2: q/k/v_proj have a bias, o_proj has none (no config switch).  ``sliding_window``
  is ignored when ``use_sliding_window`` is false (HF: no layer becomes a sliding layer);
  the fixture has use_sliding_window false and sliding_window 32.
* llama: ``attention_bias`` adds a bias to q, k, v AND o_proj; ``mlp_bias`` to gate, up, down.
* RMSNorm: x * 1/sqrt(mean(x^2) + eps) * weight (weight multiplies, no "1 +" offset).
* MLP: down(silu(gate(x)) * up(x)); residual pre-norm blocks; final norm; lm_head, or
  embed_tokens (used as [V, hidden]) when tie_word_embeddings is true (then the file has no
  lm_head.weight).
* Greedy: argmax with ties going to the lowest token id; 16 new tokens from the first 3 ids of
  input_ids[0]; positions 0..18; no EOS stopping (eos ids are ignored by the fixture).
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "calm4j-core", "src", "test", "resources", "golden")

VOCAB, HIDDEN, INTER = 96, 32, 64
BATCH, SEQ = 2, 7
GREEDY_PROMPT, GREEDY_NEW = 3, 16
WEIGHT_STD = 0.2
MAX_FIXTURE_BYTES = 200 * 1024
# Smallest allowed gap between the best and second-best logit in any greedy step, so that a
# float32 implementation (errors ~1e-5 here) cannot pick a different token.
MIN_GREEDY_MARGIN = 5e-3

# ------------------------------------------------------------------------------------------
# The cases: config.json exactly as written to disk, plus the storage dtype and a seed.
# ------------------------------------------------------------------------------------------


def _cases():
    common = {
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTER,
        "num_hidden_layers": 2,
        "use_cache": True,
        "vocab_size": VOCAB,
    }
    cases = []

    # 1. Plain Llama, transformers 4.40-style (no head_dim field, rope_scaling null).
    cfg = dict(common)
    cfg.update({
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "max_position_embeddings": 64,
        "model_type": "llama",
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.40.2",
    })
    cases.append(("llama", cfg, "F32", 1011))   # seed 1001 had a greedy margin of 1e-3

    # 2. Llama 3.x style: GQA, tied embeddings, BF16, llama3 rope scaling, list-valued eos.
    cfg = dict(common)
    cfg.update({
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "eos_token_id": [2, 3],
        "head_dim": 8,
        "max_position_embeddings": 128,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "factor": 8.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 16,
            "rope_type": "llama3",
        },
        "rope_theta": 500000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.3",
    })
    cases.append(("llama_gqa_tied_bf16", cfg, "BF16", 1002))

    # 3. Qwen2: q/k/v bias, F16, sliding window configured but disabled.
    cfg = dict(common)
    cfg.update({
        "architectures": ["Qwen2ForCausalLM"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "max_position_embeddings": 64,
        "max_window_layers": 2,
        "model_type": "qwen2",
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "sliding_window": 32,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": "4.43.1",
        "use_sliding_window": False,
    })
    cases.append(("qwen2", cfg, "F16", 1003))

    # 4. Mistral, transformers 5-style: rope_parameters + dtype, explicit head_dim != hidden/heads,
    #    sliding window 4 < T.
    cfg = dict(common)
    cfg.update({
        "architectures": ["MistralForCausalLM"],
        "dtype": "float32",
        "head_dim": 8,
        "max_position_embeddings": 64,
        "model_type": "mistral",
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-05,
        "rope_parameters": {"factor": 2.0, "rope_theta": 10000.0, "rope_type": "linear"},
        "sliding_window": 4,
        "tie_word_embeddings": False,
        "transformers_version": "5.0.0",
    })
    cases.append(("mistral_gqa", cfg, "F32", 1004))

    # 5. Llama with every bias, 3 layers, legacy {"type": "linear"} rope scaling.
    cfg = dict(common)
    cfg.update({
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": True,
        "head_dim": 8,
        "max_position_embeddings": 64,
        "mlp_bias": True,
        "model_type": "llama",
        "num_attention_heads": 4,
        "num_hidden_layers": 3,
        "num_key_value_heads": 4,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 4.0, "type": "linear"},
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.46.3",
    })
    cases.append(("llama_attn_bias", cfg, "F32", 1005))
    return cases


# ------------------------------------------------------------------------------------------
# config.json -> the numbers the math needs (HF semantics)
# ------------------------------------------------------------------------------------------


def model_spec(cfg: dict) -> dict:
    mt = cfg["model_type"]
    if mt not in ("llama", "mistral", "qwen2"):
        raise ValueError(mt)
    if cfg.get("hidden_act", "silu") != "silu":
        raise ValueError("hidden_act")
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads

    # Rope: transformers-5 rope_parameters, else transformers-4 rope_theta + rope_scaling.
    if cfg.get("rope_parameters") is not None:
        rp = dict(cfg["rope_parameters"])
        theta = float(rp.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    else:
        rp = dict(cfg.get("rope_scaling") or {})
        theta = float(cfg.get("rope_theta", 10000.0))
    rope_type = rp.get("rope_type", rp.get("type", "default"))
    if rope_type not in ("default", "linear", "llama3"):
        raise ValueError(rope_type)

    if mt == "llama":
        qkv_bias = o_bias = bool(cfg.get("attention_bias", False))
        mlp_bias = bool(cfg.get("mlp_bias", False))
        window = None
    elif mt == "qwen2":
        qkv_bias, o_bias, mlp_bias = True, False, False
        if cfg.get("use_sliding_window", False):
            raise ValueError("fixture generator only supports use_sliding_window=false for qwen2")
        window = None
    else:  # mistral
        qkv_bias = o_bias = mlp_bias = False
        window = cfg.get("sliding_window")
    return {
        "vocab": cfg["vocab_size"], "hidden": cfg["hidden_size"], "inter": cfg["intermediate_size"],
        "layers": cfg["num_hidden_layers"], "heads": heads, "kv_heads": kv, "head_dim": head_dim,
        "eps": float(cfg["rms_norm_eps"]), "theta": theta, "rope_type": rope_type, "rope": rp,
        "qkv_bias": qkv_bias, "o_bias": o_bias, "mlp_bias": mlp_bias, "window": window,
        "tied": bool(cfg.get("tie_word_embeddings", False)),
    }


def tensor_shapes(s: dict) -> list:
    """(name, shape) in generation order; HF names, Linear weights are [out, in]."""
    d, hd, h, kv, f = s["hidden"], s["head_dim"], s["heads"], s["kv_heads"], s["inter"]
    out = [("model.embed_tokens.weight", (s["vocab"], d))]
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        out.append((p + "input_layernorm.weight", (d,)))
        out.append((p + "self_attn.q_proj.weight", (h * hd, d)))
        out.append((p + "self_attn.k_proj.weight", (kv * hd, d)))
        out.append((p + "self_attn.v_proj.weight", (kv * hd, d)))
        if s["qkv_bias"]:
            out.append((p + "self_attn.q_proj.bias", (h * hd,)))
            out.append((p + "self_attn.k_proj.bias", (kv * hd,)))
            out.append((p + "self_attn.v_proj.bias", (kv * hd,)))
        out.append((p + "self_attn.o_proj.weight", (d, h * hd)))
        if s["o_bias"]:
            out.append((p + "self_attn.o_proj.bias", (d,)))
        out.append((p + "post_attention_layernorm.weight", (d,)))
        out.append((p + "mlp.gate_proj.weight", (f, d)))
        out.append((p + "mlp.up_proj.weight", (f, d)))
        out.append((p + "mlp.down_proj.weight", (d, f)))
        if s["mlp_bias"]:
            out.append((p + "mlp.gate_proj.bias", (f,)))
            out.append((p + "mlp.up_proj.bias", (f,)))
            out.append((p + "mlp.down_proj.bias", (d,)))
    out.append(("model.norm.weight", (d,)))
    if not s["tied"]:
        out.append(("lm_head.weight", (s["vocab"], d)))
    return out


def random_weights(s: dict, gen: torch.Generator) -> dict:
    w = {}
    for name, shape in tensor_shapes(s):
        r = torch.randn(shape, generator=gen, dtype=torch.float32)
        if name.endswith("norm.weight"):
            t = 1.0 + 0.1 * r
        elif name.endswith(".bias"):
            t = 0.1 * r
        else:
            t = WEIGHT_STD * r
        w[name] = t.numpy().astype(np.float32)
    return w


# ------------------------------------------------------------------------------------------
# safetensors (write + read back), BF16 rounding
# ------------------------------------------------------------------------------------------


def f32_to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, round to nearest, ties to even (no NaNs expected)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError("non-finite weight")
    u = a.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_f32(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


def encode(a: np.ndarray, dtype: str) -> bytes:
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()          # numpy rounds to nearest even
    if dtype == "BF16":
        return f32_to_bf16_bits(a).astype("<u2").tobytes()
    raise ValueError(dtype)


def write_safetensors(path: str, tensors: dict, dtype: str) -> None:
    """tensors: name -> float32 array.  Tensors are laid out in name order."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        data = encode(a, dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((-len(hb)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def read_safetensors(path: str) -> dict:
    """name -> float64 array of the stored values (independent of the writer's bookkeeping)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    assert header.pop("__metadata__") == {"format": "pt"}
    data = raw[8 + n:]
    ends = sorted(v["data_offsets"] for v in header.values())
    assert ends[0][0] == 0 and ends[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(ends, ends[1:])), "gaps/overlaps in data_offsets"
    out = {}
    for name, v in header.items():
        b0, b1 = v["data_offsets"]
        buf = data[b0:b1]
        if v["dtype"] == "F32":
            a = np.frombuffer(buf, dtype="<f4")
        elif v["dtype"] == "F16":
            a = np.frombuffer(buf, dtype="<f2")
        elif v["dtype"] == "BF16":
            a = bf16_bits_to_f32(np.frombuffer(buf, dtype="<u2"))
        else:
            raise ValueError(v["dtype"])
        assert a.size == int(np.prod(v["shape"])), name
        out[name] = a.astype(np.float64).reshape(v["shape"])
    return out


# ------------------------------------------------------------------------------------------
# Reference 1: vectorised PyTorch float64, written the way HF's modeling code is organised
# ------------------------------------------------------------------------------------------


def inv_freq_torch(s: dict) -> torch.Tensor:
    hd = s["head_dim"]
    inv = 1.0 / (s["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rt, rp = s["rope_type"], s["rope"]
    if rt == "linear":
        inv = inv / float(rp["factor"])
    elif rt == "llama3":
        factor = float(rp["factor"])
        lo, hi = float(rp["low_freq_factor"]), float(rp["high_freq_factor"])
        old = float(rp["original_max_position_embeddings"])
        low_wl, high_wl = old / lo, old / hi
        wl = 2 * math.pi / inv
        scaled = torch.where(wl > low_wl, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wl < high_wl) & ~(wl > low_wl)
        inv = torch.where(medium, smoothed, scaled)
    return inv


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def forward_torch(s: dict, W: dict, ids, dtype=torch.float64) -> np.ndarray:
    """Logits [B, T, V].  dtype=float32 is only used to report what a float32 engine deviates."""
    W = {k: torch.from_numpy(v).to(dtype) for k, v in W.items()}
    ids = torch.as_tensor(ids, dtype=torch.long)
    bsz, t = ids.shape
    h, kv, hd = s["heads"], s["kv_heads"], s["head_dim"]
    pos = torch.arange(t, dtype=torch.float64)
    freqs = torch.outer(pos, inv_freq_torch(s))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)                 # [T, hd]
    i = torch.arange(t).unsqueeze(1)
    j = torch.arange(t).unsqueeze(0)
    allowed = j <= i
    if s["window"] is not None:
        allowed = allowed & (j > i - s["window"])

    x = W["model.embed_tokens.weight"][ids]
    for layer in range(s["layers"]):
        p = f"model.layers.{layer}."
        g = lambda n: W.get(p + n)                                       # noqa: E731
        y = rms_norm(x, g("input_layernorm.weight"), s["eps"])
        q = linear(y, g("self_attn.q_proj.weight"), g("self_attn.q_proj.bias"))
        k = linear(y, g("self_attn.k_proj.weight"), g("self_attn.k_proj.bias"))
        v = linear(y, g("self_attn.v_proj.weight"), g("self_attn.v_proj.bias"))
        q = q.view(bsz, t, h, hd).transpose(1, 2)
        k = k.view(bsz, t, kv, hd).transpose(1, 2)
        v = v.view(bsz, t, kv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(h // kv, dim=1)
        v = v.repeat_interleave(h // kv, dim=1)
        scores = (q @ k.transpose(-1, -2)) * (hd ** -0.5)
        scores = scores.masked_fill(~allowed, float("-inf"))
        a = torch.softmax(scores, dim=-1) @ v
        a = a.transpose(1, 2).reshape(bsz, t, h * hd)
        x = x + linear(a, g("self_attn.o_proj.weight"), g("self_attn.o_proj.bias"))
        y = rms_norm(x, g("post_attention_layernorm.weight"), s["eps"])
        gate = linear(y, g("mlp.gate_proj.weight"), g("mlp.gate_proj.bias"))
        up = linear(y, g("mlp.up_proj.weight"), g("mlp.up_proj.bias"))
        x = x + linear(torch.nn.functional.silu(gate) * up,
                       g("mlp.down_proj.weight"), g("mlp.down_proj.bias"))
    x = rms_norm(x, W["model.norm.weight"], s["eps"])
    head = W["model.embed_tokens.weight"] if s["tied"] else W["lm_head.weight"]
    return linear(x, head).to(torch.float64).numpy()


# ------------------------------------------------------------------------------------------
# Reference 2: scalar-ish NumPy loops, for cross-checking reference 1
# ------------------------------------------------------------------------------------------


def inv_freq_loop(s: dict) -> list:
    hd, rt, rp = s["head_dim"], s["rope_type"], s["rope"]
    out = []
    for i in range(hd // 2):
        f = s["theta"] ** (-(2.0 * i) / hd)
        if rt == "linear":
            f /= rp["factor"]
        elif rt == "llama3":
            old = rp["original_max_position_embeddings"]
            wl = 2 * math.pi / f
            if wl < old / rp["high_freq_factor"]:
                pass
            elif wl > old / rp["low_freq_factor"]:
                f /= rp["factor"]
            else:
                sm = (old / wl - rp["low_freq_factor"]) / (rp["high_freq_factor"] - rp["low_freq_factor"])
                f = (1 - sm) * f / rp["factor"] + sm * f
        out.append(f)
    return out


def forward_loop(s: dict, W: dict, ids) -> np.ndarray:
    ids = np.asarray(ids)
    bsz, t = ids.shape
    nh, nkv, hd, eps = s["heads"], s["kv_heads"], s["head_dim"], s["eps"]
    half, group = hd // 2, nh // nkv
    inv = inv_freq_loop(s)

    def norm(v, w):
        return v / math.sqrt(float(np.dot(v, v)) / v.size + eps) * w

    def lin(v, name):
        r = W[name] @ v
        bias = W.get(name[:-len("weight")] + "bias")
        return r if bias is None else r + bias

    def rope(vec, p):                      # vec = n_heads * head_dim, rotate each head
        out = vec.copy()
        for base in range(0, vec.size, hd):
            for i in range(half):
                c, sn = math.cos(p * inv[i]), math.sin(p * inv[i])
                a, b = vec[base + i], vec[base + i + half]
                out[base + i] = a * c - b * sn
                out[base + i + half] = b * c + a * sn
        return out

    logits = np.zeros((bsz, t, s["vocab"]))
    for bi in range(bsz):
        xs = [W["model.embed_tokens.weight"][ids[bi, p]].copy() for p in range(t)]
        for layer in range(s["layers"]):
            pre = f"model.layers.{layer}."
            ys = [norm(x, W[pre + "input_layernorm.weight"]) for x in xs]
            qs = [rope(lin(y, pre + "self_attn.q_proj.weight"), p) for p, y in enumerate(ys)]
            ks = [rope(lin(y, pre + "self_attn.k_proj.weight"), p) for p, y in enumerate(ys)]
            vs = [lin(y, pre + "self_attn.v_proj.weight") for y in ys]
            new = []
            for p in range(t):
                heads_out = []
                for hh in range(nh):
                    kh = hh // group
                    qv = qs[p][hh * hd:(hh + 1) * hd]
                    keys = [jj for jj in range(p + 1)
                            if s["window"] is None or p - jj < s["window"]]
                    sc = np.array([float(np.dot(qv, ks[jj][kh * hd:(kh + 1) * hd])) / math.sqrt(hd)
                                   for jj in keys])
                    e = np.exp(sc - sc.max())
                    e /= e.sum()
                    heads_out.append(sum(e[n] * vs[jj][kh * hd:(kh + 1) * hd] for n, jj in enumerate(keys)))
                att = lin(np.concatenate(heads_out), pre + "self_attn.o_proj.weight")
                x = xs[p] + att
                y = norm(x, W[pre + "post_attention_layernorm.weight"])
                gt = lin(y, pre + "mlp.gate_proj.weight")
                up = lin(y, pre + "mlp.up_proj.weight")
                x = x + lin(gt / (1.0 + np.exp(-gt)) * up, pre + "mlp.down_proj.weight")
                new.append(x)
            xs = new
        head = W["model.embed_tokens.weight"] if s["tied"] else W["lm_head.weight"]
        for p in range(t):
            logits[bi, p] = head @ norm(xs[p], W["model.norm.weight"])
    return logits


# ------------------------------------------------------------------------------------------
# Greedy decoding, output formatting, checks
# ------------------------------------------------------------------------------------------


def greedy(s: dict, W: dict, prompt: list, n: int):
    seq, margins = list(prompt), []
    for _ in range(n):
        last = forward_torch(s, W, [seq])[0, -1]
        nxt = int(np.argmax(last))                     # first maximum == lowest id on ties
        top2 = np.sort(last)[-2:]
        margins.append(float(top2[1] - top2[0]))
        seq.append(nxt)
    return seq[len(prompt):], min(margins)


def f32_repr(x: float) -> str:
    return repr(float(np.float32(x)))


def golden_json(ids: np.ndarray, logits: np.ndarray, greedy_from: list, greedy_ids: list) -> str:
    lines = ["{", '  "input_ids": ' + json.dumps(ids.tolist()) + ",", '  "logits": [']
    for b in range(logits.shape[0]):
        lines.append("    [")
        for t in range(logits.shape[1]):
            row = "[" + ", ".join(f32_repr(v) for v in logits[b, t]) + "]"
            lines.append("      " + row + ("," if t + 1 < logits.shape[1] else ""))
        lines.append("    ]" + ("," if b + 1 < logits.shape[0] else ""))
    lines.append("  ],")
    lines.append('  "greedy_from": ' + json.dumps(greedy_from) + ",")
    lines.append('  "greedy_ids": ' + json.dumps(greedy_ids))
    lines.append("}")
    return "\n".join(lines) + "\n"


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"CHECK FAILED: {msg}")


def make_case(name: str, cfg: dict, dtype: str, seed: int) -> None:
    s = model_spec(cfg)
    gen = torch.Generator().manual_seed(seed)
    w32 = random_weights(s, gen)
    ids = torch.randint(0, s["vocab"], (BATCH, SEQ), generator=gen).numpy()

    d = os.path.join(OUT_DIR, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    st = os.path.join(d, "model.safetensors")
    write_safetensors(st, w32, dtype)

    # The reference uses the weights as stored (read back from the file).
    W = read_safetensors(st)
    check(set(W) == {n for n, _ in tensor_shapes(s)}, f"{name}: tensor names")
    if dtype == "BF16":   # our RNE rounding agrees with torch's float32 -> bfloat16 cast
        for n, a in w32.items():
            tb = torch.from_numpy(a).to(torch.bfloat16).to(torch.float64).numpy()
            check(np.array_equal(tb, W[n]), f"{name}: bf16 rounding of {n}")
    else:
        np_dt = np.float32 if dtype == "F32" else np.float16
        for n, a in w32.items():
            check(np.array_equal(a.astype(np_dt).astype(np.float64), W[n]), f"{name}: {n} round trip")

    logits = forward_torch(s, W, ids)
    alt = forward_loop(s, W, ids)
    diff = float(np.max(np.abs(logits - alt)))
    check(diff < 1e-10, f"{name}: the two references disagree by {diff}")
    dev32 = float(np.max(np.abs(forward_torch(s, W, ids, torch.float32) - logits)))
    check(np.all(np.isfinite(logits)), f"{name}: non-finite logits")
    check(float(np.min(np.std(logits, axis=-1))) > 0.3, f"{name}: logits too flat")
    for b in range(BATCH):
        for t in range(1, SEQ):
            check(np.max(np.abs(logits[b, t] - logits[b, t - 1])) > 0.1, f"{name}: positions {t - 1},{t} alike")

    # Feature-specific checks: the configured feature really changes the numbers.
    notes = []
    if s["window"] is not None and s["window"] < SEQ:
        s2 = dict(s, window=None)
        full = forward_torch(s2, W, ids)
        w = s["window"]
        check(np.array_equal(full[:, :w], logits[:, :w]), f"{name}: window changed early positions")
        late = float(np.min(np.max(np.abs(full[:, w:] - logits[:, w:]), axis=-1)))
        check(late > 1e-2, f"{name}: window made no difference at late positions ({late})")
        notes.append(f"window vs none: first {w} positions identical, later differ by >= {late:.3g}")
    if s["rope_type"] != "default":
        s2 = dict(s, rope_type="default")
        plain = forward_torch(s2, W, ids)
        dr = float(np.max(np.abs(plain - logits)))
        check(dr > 1e-2, f"{name}: rope scaling made no difference")
        notes.append(f"rope {s['rope_type']} vs default: max |d| {dr:.3g}")
        notes.append("inv_freq " + ", ".join(f"{v:.6g}" for v in inv_freq_torch(s).tolist()))
    if s["kv_heads"] != s["heads"]:
        notes.append(f"GQA {s['heads']}/{s['kv_heads']}, head_dim {s['head_dim']}")

    greedy_from = [int(v) for v in ids[0, :GREEDY_PROMPT]]
    greedy_ids, margin = greedy(s, W, greedy_from, GREEDY_NEW)
    check(margin > MIN_GREEDY_MARGIN, f"{name}: greedy top-2 margin {margin} too small for float32 consumers")
    # Greedy prefix consistency: the first greedy step equals argmax of the batch logits at t=2.
    check(greedy_ids[0] == int(np.argmax(logits[0, GREEDY_PROMPT - 1])), f"{name}: greedy step 0")

    with open(os.path.join(d, "golden.json"), "w") as f:
        f.write(golden_json(ids, logits, greedy_from, greedy_ids))

    size = sum(os.path.getsize(os.path.join(d, fn)) for fn in os.listdir(d))
    check(size < MAX_FIXTURE_BYTES, f"{name}: {size} bytes")
    print(f"{name:22s} {dtype:4s} {size:7d} B  refs agree to {diff:.1e}  float32 dev {dev32:.1e}  "
          f"logit std {float(np.std(logits)):.3f}  greedy margin {margin:.3g}  greedy {greedy_ids}")
    for n in notes:
        print(f"{'':24s}{n}")


def main() -> None:
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
    for name, cfg, dtype, seed in _cases():
        make_case(name, cfg, dtype, seed)


if __name__ == "__main__":
    main()
