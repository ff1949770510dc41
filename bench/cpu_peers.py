#!/usr/bin/env python3
"""VGG16's feature extractor on the CPU: nn against the engines a user would pick instead, in one
run, on the same weights and inputs, every output checked against ours before anything is timed.

    python3 bench/cpu_peers.py --build build [--threads 2] [--batches 1 8] [--runs 5] [--rounds 3] [--json OUT]

Peers (test-only, never a run-time dependency of nn): ncnn (model converted by pnnx from the ONNX
file nn exports, f32 weights, Winograd on, fp16/bf16 off; it runs images one by one, so batch 8 is 8
calls), onnxruntime, OpenVINO (latency hint, f32) and PyTorch (Debian's, NCHW and channels_last, the
faster counts). They are installed from PyPI, pinned, into a virtual environment over Debian's Python
(which has torch), made on first use at BUILD/venv-cpu-peers (or $NN_CPU_PEERS_VENV); the script
re-runs itself there.

Steps: random torchvision VGG16 weights (seed 0) -> .pth -> `nn-convert torchvision` -> safetensors
-> `nn-convert onnx-export` -> ONNX -> pnnx -> ncnn. One input batch (seed 1); each engine's
features must match nn's (`vgg16-bench --features`) within 1e-4 relative (max |a - b| / max |b|).
Then per batch size, each engine in a process of its own (loaded side by side in one process, the
engines' spinning worker threads slow each other down): its output checked first, then --warmup
untimed runs, --runs timed runs, the best; nn is `vgg16-bench --batch B --threads T --weights` (its
weight transforms made at load, as ncnn's). All that --rounds times, the engines interleaved; per
engine the best of its rounds.
Prints one JSON object: seconds per image per engine and batch, and nn's speed ratio against each
(their seconds / ours: > 1 means nn is faster).
"""
import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from vgg16_vs_pytorch import best_seconds  # the same warm-up / best-of-runs rule

PEERS = ["numpy<2", "onnxruntime==1.32.0", "openvino==2026.4.1", "ncnn==1.0.20261020", "pnnx==20261020"]
TOLERANCE = 1e-4


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default="build", help="nn's build folder (bin/vgg16-bench, bin/nn-convert)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3, help="rounds over all engines; the best per engine")
    p.add_argument("--json", help="also write the result here")
    p.add_argument("--peer", help=argparse.SUPPRESS)  # internal: time one engine in this process
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    return p.parse_args()


def ensure_venv(build):
    """Re-runs this script inside BUILD/venv-cpu-peers (made on first use) unless already there."""
    venv = Path(os.environ.get("NN_CPU_PEERS_VENV") or Path(build).resolve() / "venv-cpu-peers").resolve()
    python = venv / "bin" / "python"
    if Path(sys.prefix).resolve() == venv:
        return
    if not python.exists():
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PEERS], check=True)
    os.execv(str(python), [str(python), *sys.argv])


def read_safetensors(path):
    import numpy as np
    data = Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name != "__metadata__":
            b, e = info["data_offsets"]
            out[name] = np.frombuffer(data[8 + n + b:8 + n + e], dtype=np.float32).reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    import numpy as np
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def time_peer(args):
    """--peer: one engine in this process alone: its features of the first --batch images of
    DIR/input.safetensors checked against nn's (DIR/features.safetensors), then timed. Prints JSON."""
    import numpy as np
    d, b, s = Path(args.dir), args.batch, args.image_size
    xb = np.ascontiguousarray(read_safetensors(d / "input.safetensors")["input"][:b])
    reference = read_safetensors(d / "features.safetensors")["features"][:b].astype(np.float64)
    name = args.peer
    if name == "ncnn":
        import ncnn
        net = ncnn.Net()
        net.opt.num_threads = args.threads
        net.opt.use_winograd_convolution = True
        for flag in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
            setattr(net.opt, flag, False)
        net.load_param(str(d / "vgg16.ncnn.param"))
        net.load_model(str(d / "vgg16.ncnn.bin"))
        in_name, out_name = net.input_names()[0], net.output_names()[0]

        def run():
            outs = []
            for image in xb:  # one image per call
                ex = net.create_extractor()
                ex.input(in_name, ncnn.Mat(np.ascontiguousarray(image)))
                _, y = ex.extract(out_name)
                outs.append(np.array(y))
            return np.stack(outs)
    elif name == "onnxruntime":
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(str(d / "vgg16.onnx"), options, providers=["CPUExecutionProvider"])

        def run():
            return session.run(None, {"input": xb})[0]
    elif name == "openvino":
        import openvino as ov
        model = ov.Core().read_model(str(d / "vgg16.onnx"))
        model.reshape([b, 3, s, s])
        compiled = ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                          "INFERENCE_NUM_THREADS": args.threads,
                                                          "INFERENCE_PRECISION_HINT": "f32"})

        def run():
            return compiled([xb])[0]
    elif name in ("pytorch", "pytorch_channels_last"):
        import torch
        import torchvision
        torch.set_num_threads(args.threads)
        net = torchvision.models.vgg16().features.eval()
        state = torch.load(d / "vgg16.pth")
        net.load_state_dict({k[len("features."):]: v for k, v in state.items()})
        t = torch.from_numpy(xb)
        if name == "pytorch_channels_last":
            t = t.contiguous(memory_format=torch.channels_last)
            net = net.to(memory_format=torch.channels_last)

        def run():
            with torch.no_grad():
                return net(t).contiguous().numpy()
    else:
        raise SystemExit(f"cpu_peers.py: unknown peer {name}")
    y = np.asarray(run(), dtype=np.float64)
    error = float(np.abs(y - reference).max() / np.abs(reference).max())
    seconds = best_seconds(run, args.warmup, args.runs) if error <= TOLERANCE else float("nan")
    print(json.dumps({"peer": name, "batch": b, "max_relative_error": error, "seconds": seconds}))


def main():
    args = parse_args()
    if args.peer:
        time_peer(args)
        return
    ensure_venv(args.build)
    import numpy as np
    import ncnn
    import onnxruntime as ort
    import openvino as ov
    import pnnx  # noqa: F401  (its converter binary)
    import torch
    import torchvision

    torch.set_num_threads(args.threads)
    bin_dir = Path(args.build).resolve() / "bin"
    s = args.image_size
    result = {"what": "VGG16 features forward, f32, CPU", "image_size": s, "threads": args.threads,
              "cpu": platform.processor() or platform.machine(), "tolerance": TOLERANCE,
              "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__,
                           "openvino": ov.__version__.split("-")[0], "ncnn": ncnn.__version__},
              "max_relative_error": {}, "seconds_per_image": {}, "nn_speedup": {}}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        torch.manual_seed(0)
        net = torchvision.models.vgg16().features.eval()
        torch.save({"features." + k: v for k, v in net.state_dict().items()}, d / "vgg16.pth")
        subprocess.run([bin_dir / "nn-convert", "torchvision", d / "vgg16.pth", "-o", d / "vgg16.safetensors"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run([bin_dir / "nn-convert", "onnx-export", d / "vgg16.safetensors", "-o", d / "vgg16.onnx",
                        "--input-size", str(s)], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([pnnx.EXEC_PATH, str(d / "vgg16.onnx"), f"inputshape=[1,3,{s},{s}]", "fp16=0",
                        f"ncnnparam={d / 'vgg16.ncnn.param'}", f"ncnnbin={d / 'vgg16.ncnn.bin'}",
                        f"pnnxparam={d / 'p.param'}", f"pnnxbin={d / 'p.bin'}", f"pnnxpy={d / 'p.py'}",
                        f"pnnxonnx={d / 'p.onnx'}", f"ncnnpy={d / 'n.py'}"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        batch = max(args.batches)
        x = np.random.default_rng(1).standard_normal((batch, 3, s, s)).astype(np.float32)
        write_safetensors(d / "input.safetensors", {"input": x})
        subprocess.run([bin_dir / "vgg16-bench", "--weights", d / "vgg16.safetensors", "--image-size", str(s),
                        "--features", d / "input.safetensors", d / "features.safetensors"], check=True)

        # Every peer runs in a process of its own (this script again, with --peer): engines loaded
        # side by side in one process disturb each other's timings (onnxruntime's and OpenMP's worker
        # threads spin after a run, OpenVINO keeps a TBB pool), while nn runs alone in vgg16-bench.
        # --rounds rounds, the engines one after the other in each; per engine the best of all its
        # rounds (the VM's speed drifts over minutes: interleaving keeps a slow minute from landing
        # on one engine only). Every round's numbers are kept in the output.
        failures = []
        engines = ("nn", "ncnn", "onnxruntime", "openvino", "pytorch", "pytorch_channels_last")

        def seconds_per_image(name, b):
            """One engine's best time at batch b in a fresh process; a peer's output is checked first."""
            if name == "nn":
                command = [bin_dir / "vgg16-bench", "--weights", d / "vgg16.safetensors", "--batch", str(b), "--json"]
            else:
                command = [sys.executable, __file__, "--peer", name, "--dir", str(d), "--batch", str(b)]
            command += ["--image-size", str(s), "--threads", str(args.threads), "--warmup", str(args.warmup),
                        "--runs", str(args.runs)]
            out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            if name == "nn":
                return out["seconds_per_image"]
            error = out["max_relative_error"]
            result["max_relative_error"][name] = max(error, result["max_relative_error"].get(name, 0.0))
            if error > TOLERANCE:
                failures.append(f"{name} at batch {b}: relative error {error:.3g} > {TOLERANCE}")
            return out["seconds"] / b

        result["rounds"] = []
        for _ in range(args.rounds):
            result["rounds"].append({f"batch {b}": {name: seconds_per_image(name, b) for name in engines}
                                     for b in args.batches})
            if failures:
                break
        for b in args.batches:
            key = f"batch {b}"
            row = {name: min(rr[key][name] for rr in result["rounds"]) for name in engines}
            row["pytorch"] = min(row.pop("pytorch"), row.pop("pytorch_channels_last"))
            result["seconds_per_image"][key] = row
            result["nn_speedup"][key] = {k: v / row["nn"] for k, v in row.items() if k != "nn"}
        if failures:
            result["failures"] = failures
            print(json.dumps(result, indent=1))
            sys.exit(1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
