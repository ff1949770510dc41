#!/usr/bin/env python3
"""Compares nn_bench_cpu (bench/conv_bench.cpp) with PyTorch on the same shapes.

Reads the Google Benchmark JSON that nn_bench_cpu wrote (--benchmark_out=FILE
--benchmark_out_format=json), times every benchmark in it again in PyTorch on the CPU with the
same number of threads, and prints one row per benchmark: our GFLOP/s, PyTorch's, and the ratio
ours/PyTorch. --json OUT also writes the rows as JSON.

    python3 bench/torch_bench.py bench/results/cpu-2026-11-25.json [--threads 2] [--json OUT]

Needs torch (Debian: python3-torch). FLOP counts are the ones conv_bench.cpp uses: a conv forward
is 2*N*O*OH*OW*C*KH*KW, forward+backward (dx, dw, db) three times that, a GEMM 2*M*N*K, a VGG16
forward (vgg_bench.cpp; torchvision.models.vgg16() here, needs torchvision) the sum over its layers.
"""
import argparse
import datetime
import json
import os
import re
import sys
import time

# VGG16's conv layers at 224x224 input (in channels, out channels, size); 3x3, stride 1, pad 1.
VGG16_CONVS = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56),
               (256, 256, 56), (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 28),
               (512, 512, 14), (512, 512, 14), (512, 512, 14)]


def parse_name(name):
    """'BM_Conv2dForward/layer:3/batch:8/min_time:0.200/real_time' -> ('BM_Conv2dForward', {...})."""
    family = name.split("/")[0]
    params = {k: int(v) for k, v in re.findall(r"([a-z]+):(\d+)(?=/|$)", name)}
    return family, params


def time_call(fn, min_time):
    """Seconds per call of fn: one warm-up call, then calls until min_time has passed."""
    fn()
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / calls


def torch_case(torch, family, p):
    """(description, FLOPs per call, callable) for one benchmark of conv_bench.cpp."""
    F = torch.nn.functional
    gen = torch.Generator().manual_seed(1234)
    if family in ("BM_Conv2dForward", "BM_Conv2dForwardBackward"):
        cin, cout, size = VGG16_CONVS[p["layer"]]
        n = p["batch"]
        x = torch.randn(n, cin, size, size, generator=gen)
        w = torch.randn(cout, cin, 3, 3, generator=gen)
        b = torch.randn(cout, generator=gen)
        flops = 2.0 * n * cout * size * size * cin * 9
        desc = f"conv L{p['layer']} {cin}->{cout}@{size}"
        if family == "BM_Conv2dForward":
            def forward():
                with torch.no_grad():
                    F.conv2d(x, w, b, padding=1)
            return desc + " fwd", flops, forward
        for t in (x, w, b):
            t.requires_grad_()
        dy = torch.randn(n, cout, size, size, generator=gen)

        def forward_backward():
            F.conv2d(x, w, b, padding=1).backward(dy)
            x.grad = w.grad = b.grad = None
        return desc + " fwd+bwd", 3.0 * flops, forward_backward
    if family == "BM_Matmul":
        s = p["n"]
        a = torch.randn(s, s, generator=gen)
        bm = torch.randn(s, s, generator=gen)
        return f"matmul {s}x{s}x{s}", 2.0 * s ** 3, lambda: torch.mm(a, bm)
    if family == "BM_Linear":
        n, k, m = p["batch"], p["in"], p["out"]
        x = torch.randn(n, k, generator=gen)
        w = torch.randn(m, k, generator=gen)
        b = torch.randn(m, generator=gen)
        return f"linear {n}x{k} -> {m}", 2.0 * n * k * m, lambda: F.linear(x, w, b)
    if family == "BM_VGG16Forward":
        import torchvision
        n = p["batch"]
        torch.manual_seed(16)
        model = torchvision.models.vgg16().eval()
        x = torch.randn(n, 3, 224, 224, generator=gen)
        flops = n * 2.0 * (sum(cout * cin * 9 * size * size for cin, cout, size in VGG16_CONVS)
                           + sum(m.weight.numel() for m in model.classifier if isinstance(m, torch.nn.Linear)))

        def forward():
            with torch.no_grad():
                model(x)
        return "VGG16 forward 224x224", flops, forward
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="nn_bench_cpu's Google Benchmark JSON output")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("NN_NUM_THREADS", "2")),
                        help="PyTorch CPU threads (default: NN_NUM_THREADS or 2)")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per PyTorch benchmark")
    parser.add_argument("--json", metavar="OUT", help="also write the combined rows to OUT")
    args = parser.parse_args()

    try:
        import torch
    except ImportError:
        print("torch_bench.py: PyTorch is not installed (Debian: apt-get install python3-torch)",
              file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)

    try:
        with open(args.results) as f:
            ours = json.load(f)
    except (OSError, ValueError) as e:
        print(f"torch_bench.py: cannot read {args.results}: {e}", file=sys.stderr)
        return 1

    rows = []
    header = f"{'benchmark':34} {'batch':>5} {'ours ms':>9} {'torch ms':>9} {'ours GF/s':>10} " \
             f"{'torch GF/s':>10} {'ours/torch':>10}"
    print(f"PyTorch {torch.__version__}, {args.threads} threads, "
          f"mkldnn {'on' if torch.backends.mkldnn.is_available() else 'off'}")
    print(header)
    print("-" * len(header))
    for entry in ours.get("benchmarks", []):
        if entry.get("run_type", "iteration") != "iteration" or "error_occurred" in entry:
            continue
        family, params = parse_name(entry["name"])
        case = torch_case(torch, family, params)
        if case is None:
            continue
        desc, flops, fn = case
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[entry.get("time_unit", "ns")]
        ours_s = entry["real_time"] * scale
        torch_s = time_call(fn, args.min_time)
        row = {
            "name": entry["name"],
            "benchmark": desc,
            "batch": params.get("batch", 1),
            "flops": flops,
            "ours_ms": ours_s * 1e3,
            "torch_ms": torch_s * 1e3,
            "ours_gflops": flops / ours_s * 1e-9,
            "torch_gflops": flops / torch_s * 1e-9,
        }
        row["ratio"] = row["ours_gflops"] / row["torch_gflops"]
        rows.append(row)
        print(f"{desc:34} {row['batch']:>5} {row['ours_ms']:>9.2f} {row['torch_ms']:>9.2f} "
              f"{row['ours_gflops']:>10.1f} {row['torch_gflops']:>10.1f} {row['ratio']:>10.2f}",
              flush=True)

    if args.json:
        out = {
            "date": datetime.date.today().isoformat(),
            "threads": args.threads,
            "torch_version": torch.__version__,
            "ours_context": ours.get("context", {}),
            "rows": rows,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
