#!/usr/bin/env python3
"""Can a bridge read m_A's translation? A probe of the language experiment's last bridge, in PyTorch.

Run by hand, after ``./calm experiment language`` (it reads that run's ``data/``), with a Python that has PyTorch,
``transformers`` and ``tokenizers``:

    python3 experiments/language/diagnostics/bridge_probe.py --run runs/language-<time> [--steps 200] [--threads 1]

What it does. The shipped m_A and m_B are loaded with ``transformers`` (they are Llama checkpoints). Every D_C pair is
read as the composition reads it: m_B reads ``<s> + prompt + completion + </s>`` through its tokenizer, m_A reads the
same text through its own, and anchor token t may see augment token s iff s's span ends at or before the end of t's
(docs/design.md §3). Only the last connection of the experiment's plan is kept (m_A's block 3 into the anchor after
its block 5, before the final norm), so that the frozen states are computed once and each variant trains in under a
minute; everything else is as in the experiment (8 heads, q at a tenth of nn.Linear's init, o = 0, AdamW, lr 3e-3
held for 70 % of the steps then decayed linearly, 16 rows a step, the loss on the English and </s>).

The variants differ only in how an anchor position finds what to read among m_A's tokens:
  bridge     CALM's cross-attention, as calm4j computes it;
  alibi-8    the same with a fixed recency bias per head (ALiBi, Press et al. 2022: -slope_h * how many visible m_A
             tokens lie after the key; slopes 2^(-8 (h+1)/H));
  alibi-2    steeper slopes, 2^(-2 (h+1)/H);
  last       no attention: the state of the latest visible m_A token, through Linear, tanh and o (an upper bound on
             what finding the right token can give; not CALM).

Evaluated on development pairs: training-book pairs of the 20 % sweep set that are not in D_C (m_A pretrained on
them, as on every training pair, so m_A's own figure there flatters it; the variants are compared with one another).
The test books are never read. Prints bits per character of the English (and </s>, counted as one character).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOS, EOS = 1, 2


def ends(encoding) -> list:
    """Each token's end in the text (characters); a token without a span ends where the one before it ends."""
    out, last = [], 0
    for start, end in encoding.offsets:
        if end > start:
            last = max(last, end)
        out.append(last)
    return out


def block_outputs(model, ids: list) -> dict:
    """Every block's output (before the final norm) for one row."""
    outs = {}
    hooks = [layer.register_forward_hook(lambda m, i, o, k=k: outs.__setitem__(k, o[0] if isinstance(o, tuple) else o))
             for k, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    for h in hooks:
        h.remove()
    return {k: v[0] for k, v in outs.items()}, logits


class Row:
    """One pair as the composition reads it, with the frozen states the probe needs."""

    def __init__(self, pair: dict, models: dict):
        a, b, tok_a, tok_b = models["a"], models["b"], models["tok_a"], models["tok_b"]
        prompt, completion = pair["prompt"], pair["completion"]
        text = prompt + completion
        ep = tok_b.encode(prompt, add_special_tokens=False)
        ec = tok_b.encode(completion, add_special_tokens=False)
        ids_b = [BOS] + ep.ids + ec.ids + [EOS]
        ends_b = [0] + ends(ep) + [len(prompt) + e for e in ends(ec)] + [len(text)]
        for i in range(1, len(ends_b)):
            ends_b[i] = max(ends_b[i], ends_b[i - 1])
        ea = tok_a.encode(text, add_special_tokens=False)
        states_a, _ = block_outputs(a, ea.ids)
        states_b, self.logits_b = block_outputs(b, ids_b)
        self.h_a = states_a[3]                                                        # [S, 128]
        self.h_b = states_b[5]                                                        # [T, 256]
        self.mask = torch.tensor([[e <= eb for e in ends(ea)] for eb in ends_b])      # [T, S]
        labels = [-100] * (1 + len(ep.ids)) + ec.ids + [EOS]                          # what position i-1 predicts
        self.labels = torch.tensor(labels[1:] + [-100])
        self.chars = len(completion) + 1
        # m_A alone on the pair, as it was pretrained: <s> + the whole text; the loss on the completion's tokens.
        ids_a = [BOS] + tok_a.encode(text, add_special_tokens=False).ids + [EOS]
        n_prompt_a = 1 + len(tok_a.encode(prompt, add_special_tokens=False).ids)
        with torch.no_grad():
            la = a(torch.tensor([ids_a])).logits[0, :-1]
        self.loss_a = F.cross_entropy(la[n_prompt_a - 1:], torch.tensor(ids_a[n_prompt_a:]), reduction="sum").item()


class Bridge(nn.Module):
    def __init__(self, d_a=128, d_b=256, heads=8, query_init=0.1, recency_base=None):
        super().__init__()
        self.heads = heads
        self.proj = nn.Linear(d_a, d_b)
        self.q, self.k, self.v, self.o = (nn.Linear(d_b, d_b, bias=False) for _ in range(4))
        with torch.no_grad():
            self.q.weight.mul_(query_init)
            self.o.weight.zero_()
        self.slopes = None if recency_base is None else torch.tensor(
            [2.0 ** (-recency_base * (h + 1) / heads) for h in range(heads)])

    def forward(self, h_b, h_a, mask):
        t, s, d = h_b.shape[0], h_a.shape[0], h_b.shape[1] // self.heads
        p = self.proj(h_a)
        k = self.k(p).view(s, self.heads, d).transpose(0, 1)                          # [H, S, d]
        v = self.v(p).view(s, self.heads, d).transpose(0, 1)
        q = self.q(h_b).view(t, self.heads, d).transpose(0, 1)                        # [H, T, d]
        visible = mask.any(1, keepdim=True)                                           # [T, 1]
        m = mask.clone()
        m[~visible[:, 0], 0] = True                                                   # zeroed below
        if self.slopes is None:
            bias = m
        else:
            after = m.float().flip(-1).cumsum(-1).flip(-1) - 1                        # visible keys after this one
            bias = torch.where(m, -after[None] * self.slopes[:, None, None], torch.tensor(float("-inf")))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)                   # [H, T, d]
        return h_b + self.o(a.transpose(0, 1).reshape(t, -1) * visible)


class Latest(nn.Module):
    def __init__(self, d_a=128, d_b=256):
        super().__init__()
        self.proj = nn.Linear(d_a, d_b)
        self.o = nn.Linear(d_b, d_b, bias=False)
        with torch.no_grad():
            self.o.weight.zero_()

    def forward(self, h_b, h_a, mask):
        visible = mask.any(1)
        latest = mask.long().cumsum(1).argmax(1)                                      # last visible m_A token
        return h_b + self.o(torch.tanh(self.proj(h_a[latest]))) * visible[:, None]


def bits_per_char(rows, logits_of) -> float:
    total, chars = 0.0, 0
    with torch.no_grad():
        for r in rows:
            total += F.cross_entropy(logits_of(r), r.labels, ignore_index=-100, reduction="sum").item()
            chars += r.chars
    return total / math.log(2) / chars


def train(name, module, b, rows, dev, steps, batch, lr, seed):
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    head = lambda h: b.lm_head(b.model.norm(h))
    logits_of = lambda r: head(module(r.h_b, r.h_a, r.mask))
    order = random.Random(seed)
    started = time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (steps - step) / (0.3 * steps))
        picked = [rows[order.randrange(len(rows))] for _ in range(batch)]
        loss = sum(F.cross_entropy(logits_of(r), r.labels, ignore_index=-100, reduction="sum") for r in picked)
        loss = loss / sum(int((r.labels != -100).sum()) for r in picked)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"{name:10s} dev {bits_per_char(dev, logits_of):.3f} bits/char   D_C {bits_per_char(rows[:300], logits_of):.3f}"
          f"   ({time.time() - started:.0f} s)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a run directory of `calm experiment language` (its data/ is read)")
    ap.add_argument("--models", default=os.path.join(ROOT, "models"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--dev", type=int, default=300, help="development pairs (from the 20 %% set, not in D_C)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = os.path.join(args.run, "data")
    read = lambda f: [json.loads(l) for l in open(os.path.join(data, f), encoding="utf-8") if l.strip()]
    dc = read("composition_pairs.jsonl")
    in_dc = {p["ref"] for p in dc}
    dev_pairs = [p for p in read("composition_pairs_20pct.jsonl") if p["ref"] not in in_dc]
    random.Random(args.seed).shuffle(dev_pairs)
    dev_pairs = dev_pairs[:args.dev]

    models = {"a": LlamaForCausalLM.from_pretrained(os.path.join(args.models, "m_A")).eval(),
              "b": LlamaForCausalLM.from_pretrained(os.path.join(args.models, "m_B")).eval(),
              "tok_a": Tokenizer.from_file(os.path.join(args.models, "m_A", "tokenizer.json")),
              "tok_b": Tokenizer.from_file(os.path.join(args.models, "m_B", "tokenizer.json"))}
    for m in (models["a"], models["b"]):
        for p in m.parameters():
            p.requires_grad_(False)
    started = time.time()
    rows = [Row(p, models) for p in dc]
    dev = [Row(p, models) for p in dev_pairs]
    print(f"{len(rows)} D_C pairs, {len(dev)} development pairs; frozen states in {time.time() - started:.0f} s")
    chars = sum(r.chars for r in dev)
    print(f"{'m_B':10s} dev {bits_per_char(dev, lambda r: r.logits_b):.3f} bits/char")
    print(f"{'m_A':10s} dev {sum(r.loss_a for r in dev) / math.log(2) / chars:.3f} bits/char (pretrained on these pairs)")
    for name, module in [("bridge", Bridge()), ("alibi-8", Bridge(recency_base=8.0)),
                         ("alibi-2", Bridge(recency_base=2.0)), ("last", Latest())]:
        train(name, module, models["b"], rows, dev, args.steps, 16, 3e-3, args.seed)


if __name__ == "__main__":
    main()
