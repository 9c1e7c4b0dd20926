#!/usr/bin/env python3
"""Golden fixtures for calm4j's Gemma family (gemma2, gemma3_text), from Hugging Face transformers itself.

Run by hand with a Python that has torch and transformers (no network needed):

    python3 tools/make_family_golden_gemma.py

For every case it builds a TINY random checkpoint with transformers' own config and model classes
(Gemma2Config + Gemma2ForCausalLM, Gemma3TextConfig + Gemma3ForCausalLM), writes it with
``save_pretrained`` (safetensors) into ``calm4j-core/src/test/resources/golden/<case>/`` and writes
``golden.json`` next to it, in the format of tools/make_golden.py:

* ``input_ids``   [B][T]     (T = 10, longer than the sliding window 4, so the window bites)
* ``logits``      [B][T][V]  float32 from HF's eager forward, written as the shortest repr of the float
* ``hidden_1``    [B][T][D]  HF ``hidden_states[2]``: the output of block 1 (0-based), for ``layer(1)``
* ``padded_ids`` [B][T], ``padded_mask`` [B][T] (1 = real): row 0 is 3 pad slots then ``input_ids[0][:7]``;
  ``padded_logits_tail`` [4][V]: HF's logits for row 0's last 4 positions, with ``attention_mask`` and
  ``position_ids`` = cumsum(mask) - 1 (as ``generate`` makes them)
* ``greedy_from`` [3], ``greedy_ids`` [16]: ``model.generate(do_sample=False)`` with HF's KV cache
  (its sliding-window cache layers included), checked here against a greedy loop that recomputes the
  whole sequence each step.

Weights are redrawn from N(0, 0.3^2) (norm weights too, so the ``1 + w`` of Gemma's RMSNorm matters), the
embedding from a narrower normal (it is scaled by sqrt(hidden) and would otherwise drown the blocks: greedy
would repeat the last token); soft-capping values are small so that the tanh caps actually bend the numbers (the
script checks that removing either cap moves the logits). BF16 cases are stored in bfloat16 and evaluated
in float32 from the stored values (upcast exactly), as calm4j computes them by default.

Cases
-----
* ``gemma2_tied``: gemma2, F32, tied head, GQA 4/2, head_dim 12 (!= 32/4), query_pre_attn_scalar 20
  (the attention scale is 20^-0.5, not head_dim^-0.5), attn_logit_softcapping 2.0, final_logit_softcapping
  3.0, sliding_window 4, 3 layers (sliding, full, sliding: HF's default alternation).
* ``gemma3_bf16``: gemma3_text, BF16, untied head, MQA 4/1, q/k RMSNorm, layer_types from
  sliding_window_pattern 3 (sliding, sliding, full), sliding layers with rope_theta 10 (default rope), full
  layers with rope_theta 1000 and linear scaling x4, no soft-capping (null), sliding_window 4.

Before writing golden.json, the script checks: the window bites (without it, logits at positions < window are
the same and later ones change), each soft cap matters (removing it moves the logits by > 1e-2), HF's cached
greedy equals the recomputing greedy, the greedy top-1/top-2 gap is >= 1e-3 at every step, and each directory
is < 200 KB.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import torch
import transformers
from transformers import Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "calm4j-core", "src", "test", "resources", "golden")

T = 10
B = 2
GREEDY_NEW = 16
PAD = 3          # left-padding slots in the padded batch
KEEP = 4         # last positions of the padded row whose logits are kept


def cases():
    common = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                  max_position_embeddings=64, rms_norm_eps=1e-6, sliding_window=4, bos_token_id=2, eos_token_id=1,
                  pad_token_id=0, attn_implementation="eager")
    yield "gemma2_tied", Gemma2Config(**common, num_key_value_heads=2, head_dim=12, query_pre_attn_scalar=20,
                                      attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
                                      tie_word_embeddings=True,
                                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), \
        Gemma2ForCausalLM, torch.float32, 11, 0.1
    yield "gemma3_bf16", Gemma3TextConfig(**common, num_key_value_heads=1, head_dim=8, query_pre_attn_scalar=8,
                                          attn_logit_softcapping=None, final_logit_softcapping=None,
                                          tie_word_embeddings=False, sliding_window_pattern=3,
                                          rope_parameters={
                                              "full_attention": {"rope_type": "linear", "factor": 4.0,
                                                                 "rope_theta": 1000.0},
                                              "sliding_attention": {"rope_type": "default", "rope_theta": 10.0}}), \
        Gemma3ForCausalLM, torch.bfloat16, 12, 0.05


def f32repr(x: float) -> float:
    return float(x)   # json.dumps writes the shortest repr of the double, which holds the float32 exactly


def nested(t: torch.Tensor):
    return [nested(x) for x in t] if t.dim() > 0 else f32repr(t.item())


def greedy_recompute(model, prompt):
    seq = list(prompt)
    gaps = []
    for _ in range(GREEDY_NEW):
        with torch.no_grad():
            logits = model(torch.tensor([seq]), use_cache=False).logits[0, -1]
        top = torch.topk(logits, 2)
        gaps.append((top.values[0] - top.values[1]).item())
        seq.append(int(torch.argmax(logits)))
    return seq[len(prompt):], min(gaps)


def main():
    print("transformers", transformers.__version__, "torch", torch.__version__)
    for name, config, cls, storage, seed, embed_std in cases():
        torch.manual_seed(seed)
        model = cls(config).eval()
        with torch.no_grad():
            for n, p in model.named_parameters():
                # A smaller embedding: it is scaled by sqrt(hidden) and would otherwise drown every block's
                # contribution (greedy would repeat the last token forever).
                p.normal_(0.0, embed_std if "embed_tokens" in n else 0.3)
        if config.tie_word_embeddings:
            assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        # Save in the storage dtype, then compute everything from the checkpoint as HF loads it in float32 (weights
        # upcast exactly; non-persistent buffers such as the embedding scale rebuilt in float32, not bf16-rounded).
        out_dir = os.path.join(OUT, name)
        shutil.rmtree(out_dir, ignore_errors=True)
        model.to(storage).save_pretrained(out_dir, safe_serialization=True)
        model = cls.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").eval()
        config = model.config

        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(3, config.vocab_size, (B, T), generator=g)
        with torch.no_grad():
            out = model(ids, output_hidden_states=True, use_cache=False)
        logits = out.logits.float()
        hidden_1 = out.hidden_states[2].float()          # [0] = embeddings, [i+1] = output of block i
        assert torch.isfinite(logits).all()

        # The soft caps and the window must matter for these inputs, or the fixture would not test them.
        with torch.no_grad():
            if config.final_logit_softcapping is not None:
                saved = config.final_logit_softcapping
                config.final_logit_softcapping = None
                d = (model(ids, use_cache=False).logits - logits).abs().max().item()
                config.final_logit_softcapping = saved
                assert d > 1e-2, f"{name}: final soft-capping changes logits by only {d}"
            if config.attn_logit_softcapping is not None:
                saved = config.attn_logit_softcapping
                for layer in model.model.layers:
                    layer.self_attn.attn_logit_softcapping = None
                d = (model(ids, use_cache=False).logits - logits).abs().max().item()
                for layer in model.model.layers:
                    layer.self_attn.attn_logit_softcapping = saved
                assert d > 1e-2, f"{name}: attention soft-capping changes logits by only {d}"
            saved = config.sliding_window
            for layer in model.model.layers:
                if layer.self_attn.sliding_window is not None:
                    layer.self_attn.sliding_window = 10 ** 6
            model.config.sliding_window = 10 ** 6
            no_window = model(ids, use_cache=False).logits
            model.config.sliding_window = saved
            for layer in model.model.layers:
                if layer.self_attn.sliding_window is not None:
                    layer.self_attn.sliding_window = saved
            again = model(ids, use_cache=False).logits
            assert torch.equal(again, out.logits), f"{name}: restoring the window did not restore the logits"
            w = config.sliding_window
            early = (no_window[:, :w] - logits[:, :w]).abs().max().item()
            late = (no_window[:, w:] - logits[:, w:]).abs().max().item()
            assert early < 1e-5 and late > 1e-2, f"{name}: window: early {early}, late {late}"

        # Left padding: row 0 is PAD real ids[0][:T-PAD] after PAD pad tokens, row 1 unpadded. Positions as HF's
        # generate makes them (cumsum of the mask - 1, pads at 0); windows count pad slots, as HF's cache positions do.
        padded = torch.cat([torch.cat([torch.zeros(PAD, dtype=torch.long), ids[0, :T - PAD]]).unsqueeze(0),
                            ids[1:2]])
        mask = torch.ones(B, T, dtype=torch.long)
        mask[0, :PAD] = 0
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        with torch.no_grad():
            padded_logits = model(padded, attention_mask=mask, position_ids=positions, use_cache=False).logits
        # With a window, row 0's real tokens see fewer real keys than they would unpadded (pad slots take room in
        # the window): HF's behaviour, which calm4j's mask must reproduce.
        padded_tail = padded_logits[0, T - KEEP:].float()
        assert torch.isfinite(padded_logits[:, PAD:]).all()

        prompt = ids[0, :3].tolist()
        with torch.no_grad():
            gen = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=GREEDY_NEW,
                                 min_new_tokens=GREEDY_NEW, use_cache=True, pad_token_id=0)[0, 3:].tolist()
        recomputed, gap = greedy_recompute(model, prompt)
        assert gen == recomputed, f"{name}: HF cached greedy {gen} != recomputed {recomputed}"
        assert gap >= 1e-3, f"{name}: greedy top-1/top-2 gap {gap} too small for a stable fixture"

        golden = {"input_ids": ids.tolist(), "logits": nested(logits), "hidden_1": nested(hidden_1),
                  "greedy_from": prompt, "greedy_ids": gen,
                  "padded_ids": padded.tolist(), "padded_mask": mask.tolist(), "padded_logits_tail": nested(padded_tail)}
        with open(os.path.join(out_dir, "golden.json"), "w") as f:
            json.dump(golden, f, separators=(",", ":"))
            f.write("\n")
        for x in os.listdir(out_dir):
            os.chmod(os.path.join(out_dir, x), 0o644)
        size = sum(os.path.getsize(os.path.join(out_dir, x)) for x in os.listdir(out_dir))
        assert size < 200_000, f"{name}: {size} bytes"
        print(f"{name}: {size} bytes, logit range [{logits.min():.3f}, {logits.max():.3f}], "
              f"greedy gap {gap:.4f}, greedy {gen}")


if __name__ == "__main__":
    sys.exit(main())
