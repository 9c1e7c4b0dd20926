#!/usr/bin/env python3
"""Where a training step's time goes, in the PyTorch-eager peer, phase by phase and op by op.

It builds the peer's own model (``calm_torch.build``, imported from the calm_torch.py beside this script, or from
BENCH_DIR when set; the configs default to calm4j-bench/configs, or BENCH_DIR/configs), runs the same steps as
``calm_torch.py`` (same flags, same seeds), and prints the median forward / backward / optimizer milliseconds of
the timed steps, the same ``phase_ms`` that ``calm bench --json`` reports, so the two can be set side by side;
with ``--ops N`` it then profiles one more step with ``torch.profiler`` and prints the N ops with the most self
CPU time. Run by hand (it needs PyTorch); it installs nothing:

  python calm4j-bench/scripts/profile_torch.py --mode calm-train --steps 10 --ops 15
  ./calm bench --anchor calm4j-bench/configs/anchor-b1.json --augment calm4j-bench/configs/augment-b1.json \\
      --mode calm-train --steps 10 --json        # calm4j's phase_ms, same model and flags
"""
import argparse
import json
import os
import statistics
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
bench_dir = os.environ.get("BENCH_DIR", here)
config_dir = os.path.join(bench_dir, "configs") if "BENCH_DIR" in os.environ else os.path.join(here, "..", "configs")
if not os.path.isfile(os.path.join(bench_dir, "calm_torch.py")):
    sys.exit(f"profile_torch.py: {bench_dir}/calm_torch.py is missing (set BENCH_DIR to the folder that holds it)")
sys.path.insert(0, bench_dir)
import torch  # noqa: E402
import calm_torch as ct  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="phase and op profile of the PyTorch-eager peer")
    ap.add_argument("--mode", choices=["calm-train", "calm-forward", "anchor-full-ft"], default="calm-train")
    ap.add_argument("--anchor", default=os.path.join(config_dir, "anchor-b1.json"))
    ap.add_argument("--augment", default=os.path.join(config_dir, "augment-b1.json"))
    ap.add_argument("--connections", default="1->3,3->7")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ops", type=int, default=0, help="profile one more step and print the N costliest ops")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    anchor, calm = ct.build(args)
    train = args.mode != "calm-forward"
    if args.mode == "anchor-full-ft":
        model, params = anchor.train(), list(anchor.parameters())
    else:
        model, params = calm.train(train), list(calm.bridges.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed + 1)
    vocab = anchor.cfg.vocab_size

    def step(batch):
        """One step; returns the seconds of its forward, backward and optimizer phases."""
        t0 = time.perf_counter()
        if train:
            loss = ct.next_token_loss(model(batch[:, :-1]), batch)
            t1 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            loss.item()                          # the step's result read back, as the peer does
            t2 = time.perf_counter()
            opt.step()
        else:
            with torch.no_grad():
                float(ct.next_token_loss(model(batch[:, :-1]), batch))
            t1 = t2 = time.perf_counter()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    phases = []
    for s in range(args.warmup + args.steps):
        p = step(ct.random_batch(gen, vocab, args.batch, args.seq))
        if s >= args.warmup:
            phases.append(p)
    names = ["forward", "backward", "optimizer"]
    res = {"mode": args.mode, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "batch": args.batch, "seq": args.seq, "timed_steps": args.steps,
           "step_ms": 1e3 * statistics.median(sum(p) for p in phases),
           "phase_ms": {n: 1e3 * statistics.median(p[i] for p in phases) for i, n in enumerate(names)}}
    print(json.dumps(res))
    if args.ops > 0:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step(ct.random_batch(gen, vocab, args.batch, args.seq))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))


if __name__ == "__main__":
    main()
