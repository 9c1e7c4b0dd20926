#!/usr/bin/env python3
"""Summarise compare.sh's raw results (one JSON object per line, tagged with "impl") as Markdown tables:
medians over the runs, calm4j's ratios to the fastest PyTorch build, and calm4j's performance targets
(docs/performance.md).
Standard library only (no torch needed)."""

import json
import os
import statistics
import sys
from collections import defaultdict

TRAIN_MODES = ("calm-train", "calm-forward", "anchor-full-ft")


MAX_OTHER = float(os.environ.get("MAX_OTHER", "0.10"))


def load(path):
    """(impl, mode) -> results, leaving out runs that other processes disturbed (other_cpu_frac > MAX_OTHER)."""
    rows = defaultdict(list)
    left_out = 0
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                d = json.loads(line)
                if (d.get("other_cpu_frac") or 0.0) > MAX_OTHER:
                    left_out += 1
                    continue
                rows[(d["impl"], d["mode"])].append(d)
    return rows, left_out


def med(results, *keys):
    vals = []
    for r in results:
        for k in keys:
            if r.get(k) is not None:
                vals.append(float(r[k]))
                break
    return statistics.median(vals) if vals else None


def fmt(x, digits=0):
    return "–" if x is None else f"{x:,.{digits}f}"


def main(path):
    rows, left_out = load(path)
    impls = sorted({i for i, _ in rows})
    calm = [i for i in impls if i.startswith("calm4j")]
    torch_all = [i for i in impls if i.startswith("torch")]
    torch = [i for i in torch_all if not i.endswith("bf16")]              # fp32 peers
    torch_bf16 = [i for i in torch_all if i.endswith("bf16")]             # "torch V bf16", "torch V autocast-bf16"
    cols = calm + torch + torch_bf16
    n_runs = max((len(v) for v in rows.values()), default=0)

    def rate(impl, mode):
        keys = ("tokens_per_s",) if impl.startswith("calm4j") or mode != "calm-decode" else ("decode_tokens_per_s",)
        return med(rows.get((impl, mode), []), *keys)

    def best_torch(mode, among=None):
        vals = [(rate(t, mode), t) for t in (torch if among is None else among) if rate(t, mode) is not None]
        return max(vals) if vals else (None, None)

    print(f"Medians of up to {n_runs} runs each; tokens/s (higher is better)."
          + (f" {left_out} run(s) left out: other processes used > {MAX_OTHER:.0%} of the machine meanwhile." if left_out else "")
          + "\n")
    print("| mode | " + " | ".join(cols) + " | calm4j fp32 / fastest torch fp32 | calm4j bf16 / fastest torch bf16 |")
    print("|---|" + "---|" * (len(cols) + 2))
    for mode in ("calm-train", "calm-forward", "anchor-full-ft", "calm-decode"):
        if not any((c, mode) in rows for c in cols):
            continue
        best, who = best_torch(mode)
        ours = rate("calm4j fp32", mode)
        ratio = f"**{ours / best:.2f}x** (vs {who})" if ours and best else "–"
        best16, who16 = best_torch(mode, torch_bf16)
        ours16 = rate("calm4j bf16", mode)
        ratio16 = f"**{ours16 / best16:.2f}x** (vs {who16})" if ours16 and best16 else "–"
        label = mode + (" (decode tokens/s)" if mode == "calm-decode" else "")
        print(f"| {label} | " + " | ".join(fmt(rate(c, mode), 1 if mode == "calm-decode" else 0) for c in cols)
              + f" | {ratio} | {ratio16} |")

    print("\nPeak RSS (MB, medians):\n")
    print("| mode | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for mode in ("calm-train", "calm-forward", "anchor-full-ft", "calm-decode"):
        if any((c, mode) in rows for c in cols):
            print(f"| {mode} | " + " | ".join(fmt(med(rows.get((c, mode), []), "peak_rss_mb", "peak_rss_mib"))
                                                for c in cols) + " |")

    print("\nCompute (calm-train, matmul FLOPs counted as calm_torch.py counts them):\n")
    print("| | achieved GFLOP/s | GEMM peak GFLOP/s of its dtype (calm4j: same process; torch fp32: peak_gemm.py) "
          "| utilisation |")
    print("|---|---|---|---|")
    for c in cols:
        got = med(rows.get((c, "calm-train"), []), "gflops_per_s", "achieved_gflops")
        if c.startswith("calm4j"):
            peak = med(rows.get((c, "calm-train"), []), "gemm_peak_gflops")
        elif c in torch_bf16:
            peak = None                                                   # peak_gemm.py times fp32 only
        else:
            peak = med(rows.get((c, "peak-gemm"), []), "best_gflops")
        util = f"{got / peak:.0%}" if got and peak else "–"
        print(f"| {c} | {fmt(got)} | {fmt(peak)} | {util} |")
    for t in torch:
        one = med(rows.get((t, "peak-gemm"), []), "onednn_best_gflops")
        if one:
            print(f"\n({t}: oneDNN's fp32 matmul reached {one:.0f} GFLOP/s in peak_gemm.py, for contrast.)")

    dec = rows.get(("calm4j fp32", "calm-decode"), [])
    if dec:
        print("\nDecode (calm4j fp32, tokens/s, medians): composed {}, anchor alone {}, augment alone {}, "
              "composed / back-to-back {:.2f}".format(
                  fmt(med(dec, "tokens_per_s"), 1), fmt(med(dec, "anchor_decode_tokens_per_s"), 1),
                  fmt(med(dec, "augment_decode_tokens_per_s"), 1), med(dec, "composed_vs_back_to_back")))

    contention = [(r.get("other_cpu_frac") or 0.0) for v in rows.values() for r in v]
    if contention:
        print(f"\nCPU used by other processes during the timed parts of the runs kept: up to {max(contention):.0%} of "
              "the machine (a few % is background).")

    print("\nTargets:\n")

    def target(name, value, goal, ok):
        mark = "–" if value is None else "reported" if ok is None else ("met" if ok(value) else "missed")
        print(f"- {name}: {fmt(value, 3) if value is not None else '–'} (goal {goal}) — {mark}")

    best, who = best_torch("calm-train")
    ours = rate("calm4j fp32", "calm-train")
    target(f"fp32 calm-train tokens/s vs fastest torch fp32 ({who})", ours / best if ours and best else None,
           ">= 1.0x", lambda v: v >= 1.0)
    got = med(rows.get(("calm4j fp32", "calm-train"), []), "gflops_per_s")
    peak = med(rows.get(("calm4j fp32", "calm-train"), []), "gemm_peak_gflops")
    target("fp32 calm-train GFLOP/s / fp32 GEMM peak", got / peak if got and peak else None, ">= 0.70",
           lambda v: v >= 0.70)
    bf = rate("calm4j bf16", "calm-train")
    best16, who16 = best_torch("calm-train", torch_bf16)
    target(f"bf16 calm-train tokens/s vs fastest torch bf16 variant ({who16})",
           bf / best16 if bf and best16 else None, ">= 1.3x", lambda v: v >= 1.3)
    mixed = rate("calm4j bf16-mixed", "calm-train")
    if mixed:
        autocast = [t for t in torch_bf16 if t.endswith("autocast-bf16")]
        best_ac, who_ac = best_torch("calm-train", autocast)
        target(f"bf16-mixed calm-train tokens/s vs {who_ac} (the same scheme)",
               mixed / best_ac if best_ac else None, "none, reported", None)
    got16 = med(rows.get(("calm4j bf16", "calm-train"), []), "gflops_per_s")
    peak16 = med(rows.get(("calm4j bf16", "calm-train"), []), "gemm_peak_gflops")
    target("bf16 calm-train GFLOP/s / bf16 GEMM peak (reported)", got16 / peak16 if got16 and peak16 else None,
           "none, reported", None)
    target("composed decode / anchor+augment back to back", med(dec, "composed_vs_back_to_back") if dec else None,
           ">= 0.85", lambda v: v >= 0.85)
    for ours_impl, peers in (("calm4j fp32", torch), ("calm4j bf16", torch_bf16)):
        mine = med(rows.get((ours_impl, "calm-train"), []), "peak_rss_mb")
        theirs = [(med(rows.get((t, "calm-train"), []), "peak_rss_mb", "peak_rss_mib"), t) for t in peers]
        theirs = [x for x in theirs if x[0]]
        if mine and theirs:
            low, who_low = min(theirs)
            target(f"{ours_impl} calm-train peak RSS / {who_low}'s", mine / low, "<= 1.0", lambda v: v <= 1.0)
    tr = med(rows.get(("calm4j fp32", "calm-train"), []), "peak_rss_mb")
    ft = med(rows.get(("calm4j fp32", "anchor-full-ft"), []), "peak_rss_mb")
    target("calm-train peak RSS / anchor-full-ft peak RSS", tr / ft if tr and ft else None, "<= 0.6",
           lambda v: v <= 0.6)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: summarize.py results.jsonl")
    main(sys.argv[1])
