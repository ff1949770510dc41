#!/usr/bin/env python3
"""Runs vgg16-bench and the same network in PyTorch, one after the other, and prints both and
the ratio (ours / PyTorch in images per second: > 1 means we are faster).

    /usr/bin/python3 bench/vgg16_vs_pytorch.py --bench build/bin/vgg16-bench \
        [--batch 8] [--image-size 224] [--width-mult 1] [--train] [--head pneumonia|imagenet]
        [--device cpu|cuda] [--threads 2] [--runs 3] [--rounds 1] [--json OUT]

Forward (default): torchvision's vgg16().features, eval, torch.no_grad(). --train: the pneumonia
app's scratch model (VGG16 features at the width, AdaptiveAvgPool to S/32, Linear-ReLU-Dropout x2
with 256 hidden units, Linear(1)), BCEWithLogitsLoss, backward, Adam step. PyTorch is timed in both
memory formats (contiguous NCHW and channels_last) and the faster one is the peer. Same warm-up /
best-of-runs rule as vgg16-bench; same thread count (torch.set_num_threads).
--head imagenet (with --train): the full VGG16 (4096-4096-1000 classifier), cross-entropy, SGD with
momentum 0.9. --device cuda: both on the GPU; PyTorch is then the cuDNN/cuBLAS network, in FP32
without TF32 (torch.backends.{cudnn,cuda.matmul}.allow_tf32 = False) and with cudnn.benchmark on,
synchronised at the end of each run.
--rounds N: N rounds, nn and PyTorch one after the other in each, and per engine (and memory
format) the best of its rounds. The CPU VM's speed drifts by 10-30% from minute to minute, so a
single round can time the two sides in different minutes; interleaved rounds give both the same
chances (as bench/cpu_peers.py does).
"""
import argparse
import json
import platform
import subprocess
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", required=True, help="path of the vgg16-bench binary")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--train", action="store_true")
    p.add_argument("--head", choices=["pneumonia", "imagenet"], default="pneumonia")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds of both; per engine the best")
    p.add_argument("--json", help="write both results and the ratio here")
    return p.parse_args()


def best_seconds(run, warmup, runs):
    for _ in range(warmup):
        run()
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def make_features(width):
    import torch.nn as nn
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, c_in = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            c_out = max(1, round(v * width))
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = c_out
    return nn.Sequential(*layers), c_in


def torch_run(args, channels_last):
    import torch
    import torch.nn as nn
    torch.manual_seed(16)
    dev = torch.device(args.device)
    features, channels = make_features(args.width_mult)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size)
    if not args.train:
        model = features.eval()
    else:
        side = args.image_size // 32
        hidden, classes = (4096, 1000) if args.head == "imagenet" else (256, 1)
        model = nn.Sequential(features, nn.AdaptiveAvgPool2d((side, side)), nn.Flatten(),
                              nn.Linear(channels * side * side, hidden), nn.ReLU(True), nn.Dropout(0.5),
                              nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(0.5),
                              nn.Linear(hidden, classes)).train()
    model, x = model.to(dev), x.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    if not args.train:
        def step():
            with torch.no_grad():
                model(x)
    else:
        if args.head == "imagenet":
            target = (torch.arange(args.batch) * 37 % 1000).to(dev)
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            loss_fn = nn.CrossEntropyLoss()
        else:
            target = (torch.arange(args.batch) % 2).float().unsqueeze(1).to(dev)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            loss_fn = nn.BCEWithLogitsLoss()

        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), target).backward()
            opt.step()

    def run():
        step()
        sync()
    return best_seconds(run, args.warmup, args.runs)


def main():
    args = parse_args()
    cmd = [args.bench, "--batch", str(args.batch), "--image-size", str(args.image_size), "--width-mult",
           str(args.width_mult), "--threads", str(args.threads), "--warmup", str(args.warmup), "--runs",
           str(args.runs), "--device", args.device, "--head", args.head, "--json"] + (["--train"] if args.train else [])
    import torch
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    # On the GPU only NCHW: channels_last was slower in FP32 on the H200 for both the forward pass
    # and the training step (bench/results/2026-11-26-h200-run1), and each format costs a full
    # cudnn.benchmark search.
    formats = (("contiguous", False),) if args.device == "cuda" else (("contiguous", False), ("channels_last", True))
    rounds = []
    for _ in range(max(1, args.rounds)):
        t0 = time.perf_counter()
        nn_result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(f"(vgg16-bench took {time.perf_counter() - t0:.1f} s in all)", file=sys.stderr)
        this_round = {"nn": nn_result}
        for fmt, cl in formats:
            t0 = time.perf_counter()
            s = torch_run(args, cl)
            print(f"(PyTorch {fmt} took {time.perf_counter() - t0:.1f} s in all)", file=sys.stderr)
            this_round[fmt] = {"seconds": s, "seconds_per_image": s / args.batch}
        rounds.append(this_round)
    ours = min((r["nn"] for r in rounds), key=lambda r: r["seconds_per_image"])
    peer = {fmt: min((r[fmt] for r in rounds), key=lambda r: r["seconds"]) for fmt, _ in formats}
    best_fmt = min(peer, key=lambda k: peer[k]["seconds"])
    torch_spi = peer[best_fmt]["seconds_per_image"]
    ratio = torch_spi / ours["seconds_per_image"]
    what = "training step" if args.train else "features forward"
    print(f"VGG16 {what} on {args.device}, batch {args.batch}, {args.image_size}x{args.image_size}, width {args.width_mult:g}, "
          f"{args.threads} threads (best of {args.runs}{f', best of {len(rounds)} rounds' if len(rounds) > 1 else ''})")
    print(f"  nn:      {ours['seconds_per_image']:.4f} s/image  ({ours['gflops']:.1f} GFLOP/s)")
    for fmt, r in peer.items():
        print(f"  PyTorch: {r['seconds_per_image']:.4f} s/image  ({fmt}{', the peer' if fmt == best_fmt else ''})")
    print(f"  ours / PyTorch (images/s): {ratio:.2f}x")
    if args.json:
        result = {"date": time.strftime("%Y-%m-%d"), "machine": (torch.cuda.get_device_name(0) if args.device == "cuda"
                                                                else platform.processor() or platform.machine()),
                  "torch": torch.__version__, "args": vars(args), "nn": ours, "pytorch": peer,
                  "pytorch_best_format": best_fmt, "ratio_images_per_second": ratio,
                  "rounds": rounds}
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
