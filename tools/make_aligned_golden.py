#!/usr/bin/env python3
"""Golden fixture for composing an anchor and an augment that read the same text through different tokenizers.

Run by hand with a Python that has PyTorch, NumPy and the ``tokenizers`` package:

    python3 tools/make_aligned_golden.py    # writes calm4j-core/src/test/resources/golden-calm/aligned/

after ``tools/make_tokenizer_fixtures.py`` (its two BPE tokenizers are what the models read with). The folder holds

* ``anchor/``  -- config.json + model.safetensors of a tiny random Llama, and tokenizer.json (the ``bpe`` fixture);
* ``augment/`` -- the same for the augment, with the ``bpe_merges`` fixture (the same text, cut into other pieces);
* ``bridges/`` -- bridges.safetensors + calm_config.json (``same_sequence``, the augment marked ``own_tokens``);
* ``golden.json`` -- the texts, each model's ids and token ends, and the composed logits at every real anchor
  position.

The rule (docs/design.md §3): both models read the same text, each tokenizes it with its own tokenizer, and anchor
token t may attend augment token s iff s's span ends at or before the end of t's span (a token without a span, such
as BOS, ends where the token before it ends, 0 for the first). An anchor position that may see no augment token gets
no bridge contribution. Rows are right-padded; the references compute every row alone too, and the two must agree.

Reference 1 is make_calm_golden's vectorised float64 PyTorch forward with this mask; reference 2 its per-position
NumPy loops with explicit key lists, one row at a time without padding. The script refuses to write if they disagree,
if the bridges change nothing, or if the mask is the plain causal one (the tokenizers must cut the texts differently).
"""
from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import torch
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_calm_golden as cg  # noqa: E402  (CALM references, model and bridge writers)
import make_golden as mg  # noqa: E402  (Llama reference, safetensors reader/writer)

ROOT = os.path.dirname(HERE)
TOKENIZERS = os.path.join(ROOT, "calm4j-core", "src", "test", "resources", "tokenizers")
OUT = os.path.join(ROOT, "calm4j-core", "src", "test", "resources", "golden-calm", "aligned")

TEXTS = ["the sum of xtyqh and é😀 is 57", "abc+def=123"]
CONNECTIONS = [(1, 0), (2, 2)]      # (augment layer, anchor layer), in checkpoint order
HEADS = 2
SEED = 4242


def ends(encoding) -> list:
    out, last = [], 0
    for start, end in encoding.offsets:
        if end > start:
            last = max(last, end)
        out.append(last)
    return out


def padded(rows: list, fill: int) -> np.ndarray:
    n = max(len(r) for r in rows)
    return np.array([r + [fill] * (n - len(r)) for r in rows], dtype=np.int64)


def aligned_ref(case: dict, a_ids, a_ends, g_ids, g_ends) -> list:
    """Reference 1, batched: composed logits per row, real positions only."""
    anchor_ids, aug_ids = padded(a_ids, 0), padded(g_ids, 0)
    bsz, t = anchor_ids.shape
    s = aug_ids.shape[1]
    allowed = torch.zeros((bsz, t, s), dtype=torch.bool)
    for b in range(bsz):
        for i, te in enumerate(a_ends[b]):
            for j, se in enumerate(g_ends[b]):
                allowed[b, i, j] = se <= te
    aug_states, _ = cg.llama_run(case["augment_spec"], case["Wa"], aug_ids)
    Wb = {k: torch.as_tensor(v) for k, v in case["Wbr"].items()}

    def inject(j, x):
        for k, (i, jj) in enumerate(case["connections"]):
            if jj == j:
                x = cg.bridge_torch(Wb, k, case["heads"], x, aug_states[i], allowed)
        return x

    _, logits = cg.llama_run(case["anchor_spec"], case["Wb"], anchor_ids, inject)
    return [logits[b, :len(a_ids[b])].numpy() for b in range(bsz)]


def aligned_loop(case: dict, a_ids, a_ends, g_ids, g_ends) -> list:
    """Reference 2: one row at a time, no padding, explicit key lists."""
    rows = []
    for b in range(len(a_ids)):
        aug, _ = cg.llama_loop(case["augment_spec"], case["Wa"], g_ids[b])

        def visible(t, b=b):
            return [j for j, se in enumerate(g_ends[b]) if se <= a_ends[b][t]]

        def inject(j, xs, aug=aug, visible=visible):
            for k, (i, jj) in enumerate(case["connections"]):
                if jj == j:
                    xs = cg.bridge_loop(case["Wbr"], k, case["heads"], xs, aug[i], visible)
            return xs

        rows.append(cg.llama_loop(case["anchor_spec"], case["Wb"], a_ids[b], inject)[1])
    return rows


def main() -> None:
    torch.set_num_threads(1)
    check = mg.check
    tok_a = Tokenizer.from_file(os.path.join(TOKENIZERS, "bpe", "tokenizer.json"))
    tok_g = Tokenizer.from_file(os.path.join(TOKENIZERS, "bpe_merges", "tokenizer.json"))
    enc_a = [tok_a.encode(x) for x in TEXTS]
    enc_g = [tok_g.encode(x) for x in TEXTS]
    a_ids, g_ids = [e.ids for e in enc_a], [e.ids for e in enc_g]
    a_ends, g_ends = [ends(e) for e in enc_a], [ends(e) for e in enc_g]
    check(any(len(x) != len(y) for x, y in zip(a_ids, g_ids)), "the tokenizers must cut the texts differently")

    anchor_cfg = cg.llama_cfg(hidden=32, layers=4, heads=4, kv_heads=2, inter=64)
    augment_cfg = cg.llama_cfg(hidden=24, layers=3, heads=3, kv_heads=3, inter=48)
    anchor_cfg["vocab_size"] = tok_a.get_vocab_size()
    augment_cfg["vocab_size"] = tok_g.get_vocab_size()
    gen = torch.Generator().manual_seed(SEED)
    sb, sa = mg.model_spec(anchor_cfg), mg.model_spec(augment_cfg)
    wb32, wa32 = mg.random_weights(sb, gen), mg.random_weights(sa, gen)
    wbr32 = cg.random_bridges(sa["hidden"], sb["hidden"], len(CONNECTIONS), gen)

    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    Wb = cg.write_model(os.path.join(OUT, "anchor"), anchor_cfg, wb32)
    Wa = cg.write_model(os.path.join(OUT, "augment"), augment_cfg, wa32)
    shutil.copy(os.path.join(TOKENIZERS, "bpe", "tokenizer.json"), os.path.join(OUT, "anchor", "tokenizer.json"))
    shutil.copy(os.path.join(TOKENIZERS, "bpe_merges", "tokenizer.json"), os.path.join(OUT, "augment", "tokenizer.json"))
    bd = os.path.join(OUT, "bridges")
    os.makedirs(bd)
    mg.write_safetensors(os.path.join(bd, "bridges.safetensors"), wbr32, "F32")
    Wbr = mg.read_safetensors(os.path.join(bd, "bridges.safetensors"))
    calm_config = {
        "format": "calm4j-bridges", "version": 1, "mode": "same_sequence", "heads": HEADS,
        "anchor": {"path": "../anchor", "model_type": "llama", "fingerprint": cg.fingerprint(os.path.join(OUT, "anchor"))},
        "augments": [{"path": "../augment", "model_type": "llama",
                      "fingerprint": cg.fingerprint(os.path.join(OUT, "augment")), "own_tokens": True}],
        "connections": [{"augment": 0, "augment_layer": i, "anchor_layer": j} for i, j in CONNECTIONS],
    }
    with open(os.path.join(bd, "calm_config.json"), "w") as f:
        f.write(json.dumps(calm_config, indent=2) + "\n")

    case = {"heads": HEADS, "connections": CONNECTIONS, "anchor_spec": sb, "augment_spec": sa,
            "Wb": Wb, "Wa": Wa, "Wbr": Wbr}
    ref = aligned_ref(case, a_ids, a_ends, g_ids, g_ends)
    loop = aligned_loop(case, a_ids, a_ends, g_ids, g_ends)
    diff = max(float(np.max(np.abs(x - y))) for x, y in zip(ref, loop))
    check(diff < 1e-10, f"references disagree by {diff}")
    alone = [cg.anchor_only_ref(case, [a])[0] for a in a_ids]
    effect = min(float(np.max(np.abs(x - y))) for x, y in zip(ref, alone))
    check(effect > 1e-2, f"the bridges barely change a row ({effect})")
    # zero contribution where an anchor position sees no augment token: the anchor's own logits there
    for b in range(len(TEXTS)):
        for t, te in enumerate(a_ends[b]):
            if not any(se <= te for se in g_ends[b]):
                check(np.max(np.abs(ref[b][t] - alone[b][t])) < 1e-12, f"row {b} position {t}: sees nothing")

    golden = {"texts": TEXTS, "anchor_ids": a_ids, "anchor_ends": a_ends, "augment_ids": g_ids,
              "augment_ends": g_ends,
              "logits": [[[float(np.float32(v)) for v in pos] for pos in row] for row in ref]}
    with open(os.path.join(OUT, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False)
        f.write("\n")
    print(f"aligned: references agree to {diff:.1e}; bridges change every row by >= {effect:.3g}; "
          f"{cg.dir_size(OUT)} bytes")
    for b, text in enumerate(TEXTS):
        print(f"  {text!r}: anchor {len(a_ids[b])} tokens, augment {len(g_ids[b])}")


if __name__ == "__main__":
    main()
