#!/usr/bin/env python3
"""BatchNorm2d on the CPU: nn (bench/batch_norm_bench.cpp) against PyTorch, on the same shapes,
in one run, with the same number of threads.

    python3 bench/batch_norm_vs_pytorch.py [--build build] [--threads 2] [--repeat 10] [--json OUT]

Runs build/bin/batch-norm-bench, then times torch.nn.BatchNorm2d on the same shapes (train
forward, train forward + backward of sum(y * g) into x and the affine parameters, eval forward;
best of --repeat after a warm-up) and prints per shape and mode: ours, PyTorch's, and PyTorch's time
divided by ours (above 1: we are faster). Needs torch (Debian: python3-torch; run with
/usr/bin/python3 when the first python3 lacks it).
"""
import argparse
import json
import subprocess
import sys
import time

import torch


def best_ms(repeat, f):
    f()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        best = min(best, (time.perf_counter() - t) * 1000.0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    ours = json.loads(subprocess.check_output([f"{args.build}/bin/batch-norm-bench", "--threads", str(args.threads),
                                               "--repeat", str(args.repeat)]))
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    rows = []
    for case in ours["cases"]:
        shape = case["shape"]
        x = torch.randn(shape)
        g = torch.randn(shape)
        bn = torch.nn.BatchNorm2d(shape[1])
        bn.train()
        with torch.no_grad():
            fwd = best_ms(args.repeat, lambda: bn(x))
        xg = x.clone().requires_grad_(True)

        def step():
            bn.zero_grad()
            xg.grad = None
            (bn(xg) * g).sum().backward()

        train_step = best_ms(args.repeat, step)
        bn.eval()
        with torch.no_grad():
            ev = best_ms(args.repeat, lambda: bn(x))
        for mode, theirs in (("train_forward", fwd), ("train_step", train_step), ("eval_forward", ev)):
            rows.append({"shape": shape, "mode": mode, "nn_ms": case[mode], "torch_ms": theirs,
                         "torch_over_nn": theirs / case[mode]})
    print(f"BatchNorm2d, CPU, {args.threads} threads, torch {torch.__version__}; best of {args.repeat}")
    print(f"{'shape':>20} {'mode':>14} {'nn ms':>9} {'torch ms':>9} {'torch/nn':>9}")
    for r in rows:
        print(f"{str(tuple(r['shape'])):>20} {r['mode']:>14} {r['nn_ms']:9.3f} {r['torch_ms']:9.3f} {r['torch_over_nn']:9.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "repeat": args.repeat, "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
