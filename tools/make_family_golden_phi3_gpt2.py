#!/usr/bin/env python3
"""Golden fixtures for calm4j's phi3 and gpt2 families, computed by Hugging Face transformers itself.

Run by hand with a Python that has torch and transformers (no network needed):

    python3 tools/make_family_golden_phi3_gpt2.py

Each case builds a tiny random checkpoint with transformers' own config and model classes
(``Phi3Config`` + ``Phi3ForCausalLM``, ``GPT2Config`` + ``GPT2LMHeadModel``), saves it with
``save_pretrained`` (safetensors) into ``calm4j-core/src/test/resources/golden/<case>/`` and
writes ``golden.json`` there, in the format of ``tools/make_golden.py``:

* ``input_ids`` [B][T], ``logits`` [B][T][V] (float32, shortest repr), ``greedy_from`` [3],
  ``greedy_ids`` [16] (the new tokens of greedy decoding by full recomputation at every step;
  for every case but longrope the script checks that ``model.generate(do_sample=False)`` and
  the model's forward with a kept ``DynamicCache`` give the same ids);
* ``hidden_1`` [B][T][D]: the output of block 1 (a forward hook on that block; HF's
  ``hidden_states[2]``), for ``CausalLm.layer(1)``;
* longrope case only: ``long_input_ids`` [1][T_long] / ``long_logits``, a row longer than
  ``original_max_position_embeddings`` (so HF switches to the long factors);
  ``greedy_ids_cached`` and ``cached_logits`` [1][16][V]: greedy decoding through the model's
  forward with one ``DynamicCache`` kept across the steps, and the logits of each step (see
  below).

Logits and hidden states come from the saved checkpoint, reloaded by ``from_pretrained`` and
evaluated in float64 (``model.double()``, eager attention) from the weights as stored (BF16
upcast exactly); HF's rotary tables are float32 even then (``inv_freq`` is cast to float32 in
``Phi3RotaryEmbedding.forward``), as in calm4j. Greedy runs in float64 as well, and the script
refuses to write a case whose top-1/top-2 gap is under 5e-3 at any step.

Weights: N(0, 0.2^2) for every matrix and embedding, norm weights 1 + 0.1 N(0, 1), biases
0.1 N(0, 1) (HF's 0.02 init gives near-uniform logits that test little); seeded.

Cases
-----

* ``phi3_gqa_tied_bf16``: 5.x config as ``save_pretrained`` writes it (``rope_parameters``
  default, theta 1e4), GQA 4/2, tied head (no ``lm_head.weight``), BF16 storage,
  ``sliding_window`` 4 < T (bites within the 7-token batch and during greedy decoding).
* ``phi3_longrope_partial``: config.json rewritten in the 4.x layout the Phi-3 hub checkpoints
  use (``rope_scaling {"type": "longrope", short_factor, long_factor}``, top-level
  ``rope_theta``, ``partial_rotary_factor`` 0.75, ``original_max_position_embeddings`` 8,
  ``torch_dtype``); ``max_position_embeddings`` 32 (factor 4, so cos/sin are scaled by
  sqrt(1 + ln 4 / ln 8)); GQA 2/1, head_dim 16 with 12 rotary dims, untied, F32, vocab 64,
  ``sliding_window`` null. The script checks that transformers reads the rewritten 4.x config to
  the same logits.
  HF longrope picks the factor set per forward call: long when the call's last position + 1 >
  original_max_position_embeddings, else short, for every position of the call. So a KV cache
  filled while the sequence was short holds keys (and, from block 1 on, values) of the short
  factors, and cached decoding parts from recomputation once the sequence crosses (this is what
  the model's forward with a cache does, and Microsoft's original Phi-3 code). HF's generate
  means to recompute there (``Phi3ForCausalLM.prepare_inputs_for_generation`` drops the cache),
  but in transformers 5.18 it then feeds only the last token with no past; the script prints
  what it gives and does not use it.
* ``gpt2``: tied head, F32, names as ``GPT2LMHeadModel.save_pretrained`` writes them
  (``transformer.h.0.attn.c_attn.weight``, Conv1D weights [in, out]), ``gelu_new``,
  ``n_inner`` null (4 x 32), ``n_positions`` 32.
* ``gpt2_untied_bf16_hub``: untied head (``lm_head.weight``), BF16 storage, tensor names without
  the ``transformer.`` prefix (the layout of the openai-community/gpt2 hub file; the script
  checks transformers loads it to the same logits), ``n_inner`` 48, ``activation_function``
  ``gelu`` (erf), ``scale_attn_by_inverse_layer_idx`` true, ``n_positions`` 20.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel, Phi3Config, Phi3ForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "calm4j-core", "src", "test", "resources", "golden")
BATCH, SEQ, LONG_SEQ = 2, 7, 12
GREEDY_PROMPT, GREEDY_NEW = 3, 16
MIN_GREEDY_MARGIN = 5e-3
MAX_FIXTURE_BYTES = 200_000


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"CHECK FAILED: {msg}")


def f32_repr(x: float) -> str:
    return repr(float(np.float32(x)))


def rows(a: np.ndarray, indent: str) -> list:
    """[B][T][X] as lines, one [X] row per line."""
    out = []
    for b in range(a.shape[0]):
        out.append(indent + "[")
        for t in range(a.shape[1]):
            row = "[" + ", ".join(f32_repr(v) for v in a[b, t]) + "]"
            out.append(indent + "  " + row + ("," if t + 1 < a.shape[1] else ""))
        out.append(indent + "]" + ("," if b + 1 < a.shape[0] else ""))
    return out


def golden_json(fields: list) -> str:
    """fields: (name, value) in order; 3-d arrays as one row per line, lists of ints inline."""
    lines = ["{"]
    for i, (name, value) in enumerate(fields):
        comma = "," if i + 1 < len(fields) else ""
        if isinstance(value, np.ndarray) and value.ndim == 3:
            lines.append(f'  "{name}": [')
            lines.extend(rows(value, "    "))
            lines.append("  ]" + comma)
        else:
            lines.append(f'  "{name}": ' + json.dumps(value) + comma)
    lines.append("}")
    return "\n".join(lines) + "\n"


def randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():       # a tied head is one parameter: drawn once
            if name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "norm" in name or ".ln_" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def reload(cls, d: str) -> torch.nn.Module:
    m = cls.from_pretrained(d, attn_implementation="eager").double().eval()
    return m


def block_output(model, block: torch.nn.Module, ids: torch.Tensor) -> tuple:
    got = {}

    def hook(_mod, _inp, out):
        got["h"] = out[0] if isinstance(out, tuple) else out

    handle = block.register_forward_hook(hook)
    with torch.no_grad():
        logits = model(ids).logits
    handle.remove()
    return logits.numpy(), got["h"].numpy()


def greedy_generate(model, prompt: list, n: int) -> list:
    """model.generate, greedy, exactly n new tokens (no EOS stop); float64."""
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=n, min_new_tokens=n,
                             eos_token_id=None, pad_token_id=0, use_cache=True)
    return out[0, len(prompt):].tolist()


def top2_gap(last: np.ndarray) -> float:
    top2 = np.sort(last)[-2:]
    return float(top2[1] - top2[0])


def greedy_recompute(model, prompt: list, n: int) -> tuple:
    """Every step a full forward of the whole sequence (no cache); the ids and the smallest top-2 gap."""
    seq, gaps = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            last = model(torch.tensor([seq]), use_cache=False).logits[0, -1].numpy()
            gaps.append(top2_gap(last))
            seq.append(int(np.argmax(last)))
    return seq[len(prompt):], min(gaps)


def greedy_plain_cache(model, prompt: list, n: int) -> tuple:
    """Greedy through the model's forward with a DynamicCache kept across the steps (never dropped): the ids, the
    logits of every step [n][V], and the smallest top-2 gap."""
    from transformers import DynamicCache
    cache = DynamicCache(config=model.config)
    seq, rows, gaps = list(prompt), [], []
    with torch.no_grad():
        ids = torch.tensor([seq])
        for _ in range(n):
            last = model(ids, past_key_values=cache, use_cache=True).logits[0, -1].numpy()
            rows.append(last)
            gaps.append(top2_gap(last))
            seq.append(int(np.argmax(last)))
            ids = torch.tensor([[seq[-1]]])
    return seq[len(prompt):], np.stack(rows), min(gaps)


def rename_safetensors(path: str, fn) -> None:
    t = load_file(path)
    save_file({fn(k): v.contiguous() for k, v in t.items()}, path, metadata={"format": "pt"})


def finish(name: str, d: str, cls, model_for_block, ids, extra_checks=None, long_ids=None) -> None:
    m = reload(cls, d)
    block = model_for_block(m)
    logits, hidden1 = block_output(m, block, torch.tensor(ids))
    check(np.all(np.isfinite(logits)), f"{name}: non-finite logits")
    check(float(np.min(np.std(logits, axis=-1))) > 0.3, f"{name}: logits too flat")
    m32 = cls.from_pretrained(d, attn_implementation="eager").float().eval()
    with torch.no_grad():
        dev32 = float(np.max(np.abs(m32(torch.tensor(ids)).logits.double().numpy() - logits)))

    greedy_from = [int(v) for v in ids[0, :GREEDY_PROMPT]]
    generated = greedy_generate(m, greedy_from, GREEDY_NEW)
    recompute, gap_r = greedy_recompute(m, greedy_from, GREEDY_NEW)
    cached, step_logits, gap_c = greedy_plain_cache(m, greedy_from, GREEDY_NEW)
    margin = min(gap_r, gap_c)
    check(margin > MIN_GREEDY_MARGIN, f"{name}: greedy top-2 margin {margin} too small")
    check(recompute[0] == int(np.argmax(logits[0, GREEDY_PROMPT - 1])), f"{name}: greedy step 0")
    fields = [("input_ids", ids.tolist()), ("logits", logits), ("greedy_from", greedy_from),
              ("greedy_ids", recompute), ("hidden_1", hidden1)]
    notes = []
    if long_ids is None:
        check(generated == recompute == cached, f"{name}: generate {generated}, recomputed {recompute}, cached {cached}")
    else:
        with torch.no_grad():
            long_logits = m(torch.tensor(long_ids)).logits.numpy()
            full = np.stack([m(torch.tensor([greedy_from + cached[:k]])).logits[0, -1].numpy()
                             for k in range(GREEDY_NEW)])
        dev = np.max(np.abs(step_logits - full), axis=-1)
        cross = m.config.original_max_position_embeddings - GREEDY_PROMPT + 1   # first step whose call ends past it
        check(float(np.max(dev[:cross])) < 1e-5, f"{name}: cache deviates before the crossing: {dev}")
        check(float(np.min(dev[cross:])) > 1e-3, f"{name}: short-factor keys in the cache do not matter: {dev}")
        check(cached != recompute, f"{name}: cached and recomputed greedy agree: the fixture would not tell them apart")
        fields += [("long_input_ids", long_ids.tolist()), ("long_logits", long_logits),
                   ("greedy_ids_cached", cached), ("cached_logits", step_logits[None])]
        notes.append(f"greedy, plain cache   {cached}")
        notes.append(f"cache vs recomputation from step {cross} on: {float(np.min(dev[cross:])):.3g}"
                     f"..{float(np.max(dev[cross:])):.3g}")
        notes.append(f"HF generate gives     {generated} (its cache drop at the crossing feeds one token, no past)")
    if extra_checks is not None:
        notes += extra_checks(m, logits)

    with open(os.path.join(d, "golden.json"), "w") as f:
        f.write(golden_json(fields))
    size = sum(os.path.getsize(os.path.join(d, fn)) for fn in os.listdir(d))
    check(size < MAX_FIXTURE_BYTES, f"{name}: {size} bytes")
    print(f"{name:24s} {size:7d} B  float32 dev {dev32:.1e}  logit std {float(np.std(logits)):.3f}  "
          f"greedy margin {margin:.3g}  greedy {recompute}")
    for n in notes:
        print(f"{'':26s}{n}")


def fresh_dir(name: str) -> str:
    d = os.path.join(OUT_DIR, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    return d


def ids_for(vocab: int, gen: torch.Generator, t: int = SEQ) -> np.ndarray:
    return torch.randint(0, vocab, (BATCH, t), generator=gen).numpy()


# ---------------------------------------------------------------------------------------------- phi3

def phi3_gqa_tied_bf16(seed: int) -> None:
    name = "phi3_gqa_tied_bf16"
    gen = torch.Generator().manual_seed(seed)
    cfg = Phi3Config(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                     original_max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=True,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, sliding_window=4,
                     bos_token_id=1, eos_token_id=2, pad_token_id=None)
    torch.manual_seed(seed)
    model = Phi3ForCausalLM(cfg)
    randomize(model, gen)
    d = fresh_dir(name)
    model.to(torch.bfloat16).save_pretrained(d)
    check(not any(k.startswith("lm_head") for k in load_file(os.path.join(d, "model.safetensors"))),
          f"{name}: a tied checkpoint has no lm_head.weight")
    ids = ids_for(96, gen)

    def window_bites(m, logits):
        m.config.sliding_window = None
        with torch.no_grad():
            full = m(torch.tensor(ids)).logits.numpy()
        m.config.sliding_window = 4
        check(np.allclose(full[:, :4], logits[:, :4], atol=1e-12), f"{name}: window changed early positions")
        late = float(np.min(np.max(np.abs(full[:, 4:] - logits[:, 4:]), axis=-1)))
        check(late > 1e-2, f"{name}: window made no difference")
        return [f"window 4 vs none: first 4 positions identical, later differ by >= {late:.3g}"]

    finish(name, d, Phi3ForCausalLM, lambda m: m.model.layers[1], ids, window_bites)


def phi3_longrope_partial(seed: int) -> None:
    name = "phi3_longrope_partial"
    gen = torch.Generator().manual_seed(seed)
    short = [1.0, 1.1, 1.3, 1.6, 2.0, 2.5]
    long = [1.0, 1.5, 2.5, 4.0, 6.0, 9.0]
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
            "short_factor": short, "long_factor": long}
    cfg = Phi3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
                     original_max_position_embeddings=8, rms_norm_eps=1e-5, tie_word_embeddings=False,
                     rope_parameters=rope, sliding_window=None, bos_token_id=1, eos_token_id=2, pad_token_id=None)
    torch.manual_seed(seed)
    model = Phi3ForCausalLM(cfg)
    randomize(model, gen)
    d = fresh_dir(name)
    model.save_pretrained(d)
    ids = ids_for(64, gen)
    long_ids = ids_for(64, gen, LONG_SEQ)[:1]

    # Logits of the config as saved (5.x layout), to check the 4.x rewrite against.
    m5 = reload(Phi3ForCausalLM, d)
    with torch.no_grad():
        want = m5(torch.tensor(ids)).logits.numpy()
        want_long = m5(torch.tensor(long_ids)).logits.numpy()
    scaling = m5.model.rotary_emb.attention_scaling
    check(abs(scaling - math.sqrt(1 + math.log(4) / math.log(8))) < 1e-12, f"{name}: attention factor {scaling}")

    # The 4.x layout of the Phi-3 hub configs.
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters")
    c["rope_theta"] = rp["rope_theta"]
    c["partial_rotary_factor"] = rp["partial_rotary_factor"]
    c["rope_scaling"] = {"type": "longrope", "short_factor": short, "long_factor": long}
    c["torch_dtype"] = c.pop("dtype")
    c["transformers_version"] = "4.46.3"
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(json.dumps(c, indent=2, sort_keys=True) + "\n")
    m4 = reload(Phi3ForCausalLM, d)
    with torch.no_grad():
        check(np.array_equal(m4(torch.tensor(ids)).logits.numpy(), want), f"{name}: 4.x config reads differently")
        check(np.array_equal(m4(torch.tensor(long_ids)).logits.numpy(), want_long), f"{name}: 4.x config (long)")

    def features(m, logits):
        notes = []
        re = m.model.rotary_emb
        short_inv = re.original_inv_freq.clone()
        with torch.no_grad():
            m(torch.tensor(long_ids))
            check(not torch.equal(re.inv_freq, short_inv), f"{name}: long batch did not switch to long factors")
            # The long batch's first 8 positions differ from the short batch's rule (factor set per call).
            long_logits = m(torch.tensor(long_ids)).logits.numpy()
            head = m(torch.tensor(long_ids[:, :8])).logits.numpy()
        dl = float(np.max(np.abs(long_logits[:, :8] - head)))
        check(dl > 1e-2, f"{name}: long factors made no difference")
        notes.append(f"long vs short factors on the same 8 positions: max |d| {dl:.3g}")
        notes.append("short inv_freq " + ", ".join(f"{v:.6g}" for v in short_inv.tolist()))
        return notes

    finish(name, d, Phi3ForCausalLM, lambda m: m.model.layers[1], ids, features, long_ids)


# ---------------------------------------------------------------------------------------------- gpt2

def gpt2(seed: int) -> None:
    name = "gpt2"
    gen = torch.Generator().manual_seed(seed)
    cfg = GPT2Config(vocab_size=96, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg)
    randomize(model, gen)
    d = fresh_dir(name)
    model.save_pretrained(d)
    names = set(load_file(os.path.join(d, "model.safetensors")))
    check("transformer.h.0.attn.c_attn.weight" in names and "lm_head.weight" not in names, f"{name}: names {names}")
    ids = ids_for(96, gen)
    finish(name, d, GPT2LMHeadModel, lambda m: m.transformer.h[1], ids)


def gpt2_untied_bf16_hub(seed: int) -> None:
    name = "gpt2_untied_bf16_hub"
    gen = torch.Generator().manual_seed(seed)
    cfg = GPT2Config(vocab_size=96, n_positions=20, n_embd=32, n_layer=2, n_head=4, n_inner=48,
                     activation_function="gelu", scale_attn_by_inverse_layer_idx=True, tie_word_embeddings=False,
                     bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg)
    randomize(model, gen)
    d = fresh_dir(name)
    model.to(torch.bfloat16).save_pretrained(d)
    ids = ids_for(96, gen)
    want = reload(GPT2LMHeadModel, d)(torch.tensor(ids)).logits.detach().numpy()
    st = os.path.join(d, "model.safetensors")
    rename_safetensors(st, lambda k: k[len("transformer."):] if k.startswith("transformer.") else k)
    names = set(load_file(st))
    check("h.0.attn.c_attn.weight" in names and "lm_head.weight" in names, f"{name}: names {sorted(names)}")
    got = reload(GPT2LMHeadModel, d)(torch.tensor(ids)).logits.detach().numpy()
    check(np.array_equal(got, want), f"{name}: the hub layout reads differently")
    finish(name, d, GPT2LMHeadModel, lambda m: m.transformer.h[1], ids)


def main() -> None:
    torch.set_num_threads(1)
    import transformers
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {sys.version.split()[0]}")
    phi3_gqa_tied_bf16(11)
    phi3_longrope_partial(15)
    gpt2(13)
    gpt2_untied_bf16_hub(14)


if __name__ == "__main__":
    main()
