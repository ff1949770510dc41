"""ONNX interop checked against the real engines (run by tests/onnx_engines.sh).

1. nn exports VGG16 (224, random weights) and a 3-member VGG11-BN ensemble with a temperature and
   a bias (tests/onnx_reference.cpp; the ensemble also through `nn-convert onnx-export`); onnxruntime and
   OpenVINO (f32) run every file, and each output must match what nn's modules computed within
   1e-5 relative (max |a - b| / max |b|). The ensemble's metadata must reach onnxruntime.
2. torchvision's VGG16 and VGG11-BN, exported by torch.onnx.export (opset 13, dynamic batch), are
   imported by nn (nn::onnx::import_model) and must match torchvision's logits within 1e-5
   relative; `nn-convert onnx` must recognise VGG16 under torchvision's names, and `classify` must
   run the converted file.
Prints one JSON summary; exits 1 on any mismatch.
"""
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino as ov
import torch
import torchvision

TOLERANCE = 1e-5
build = Path(sys.argv[1])
bin_dir = build / "bin"


def read_safetensors(path):
    data = Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + begin:8 + n + end], dtype=np.float32).reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        array = np.ascontiguousarray(array, dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        blobs.append(array.tobytes())
        offset += array.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def run(*args):
    subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL)


results, failures = [], []


def record(case, engine, output, error):
    ok = error <= TOLERANCE
    results.append({"case": case, "engine": engine, "output": output, "relative_error": error, "ok": ok})
    if not ok:
        failures.append(f"{case} / {engine} / {output}: relative error {error:.3g} > {TOLERANCE}")


with tempfile.TemporaryDirectory() as tmp:
    d = Path(tmp)
    run(bin_dir / "onnx-reference", "make", d)
    run(bin_dir / "nn-convert", "onnx-export", d / "ensemble.safetensors", "-o", d / "ensemble_cli.onnx")
    core = ov.Core()
    cases = [("vgg16.onnx", "input_224", "vgg16_nn"), ("ensemble.onnx", "input_128", "ensemble_nn"),
             ("ensemble_cli.onnx", "input_128", "ensemble_nn")]
    for model, inputs, expected in cases:
        x = read_safetensors(d / f"{inputs}.safetensors")["input"]
        reference = read_safetensors(d / f"{expected}.safetensors")
        session = ort.InferenceSession(str(d / model), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        assert sorted(names) == sorted(reference), (model, names)
        for name, value in zip(names, session.run(names, {"input": x})):
            record(model, f"onnxruntime {ort.__version__}", name, relative(value, reference[name]))
        compiled = core.compile_model(str(d / model), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        answer = compiled([x])
        for name in names:
            record(model, f"openvino {ov.__version__.split('-')[0]}", name, relative(answer[compiled.output(name)], reference[name]))
        if model.startswith("ensemble"):
            meta = session.get_modelmeta().custom_metadata_map
            if meta.get("threshold") != "0.4" or meta.get("preprocessing") != "torchvision":
                failures.append(f"{model}: metadata not seen by onnxruntime: {meta}")

    torch.manual_seed(0)
    for arch in ("vgg16", "vgg11_bn"):
        net = getattr(torchvision.models, arch)().eval()
        with torch.no_grad():
            for m in net.modules():  # BatchNorm statistics away from 0 / 1
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.3, 0.3)
            x = torch.randn(2, 3, 224, 224)
            logits = net(x).numpy()
        path = d / f"torchvision_{arch}.onnx"
        torch.onnx.export(net, x, str(path), opset_version=13, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        write_safetensors(d / "tv_input.safetensors", {"input": x.numpy()})
        run(bin_dir / "onnx-reference", "run", path, d / "tv_input.safetensors", d / "tv_out.safetensors")
        record(f"torch.onnx.export {arch}", "nn import", "logits",
               relative(read_safetensors(d / "tv_out.safetensors")["logits"], logits))
        run(bin_dir / "nn-convert", "onnx", path, "-o", d / f"{arch}.safetensors", "--preprocessing", "torchvision")
        inspect = json.loads(subprocess.run([str(bin_dir / "nn-convert"), "inspect", str(d / f"{arch}.safetensors"), "--json"],
                                            check=True, capture_output=True, text=True).stdout)
        architecture = inspect["metadata"].get("architecture")
        results.append({"case": f"nn-convert onnx torchvision_{arch}.onnx", "architecture": architecture})
        if arch == "vgg16" and architecture != "vgg16":
            failures.append(f"nn-convert onnx did not recognise torchvision's VGG16 (architecture {architecture})")
        if arch == "vgg16":  # and classify runs the converted file
            from PIL import Image
            Image.fromarray(np.random.default_rng(1).integers(0, 255, (240, 260, 3), dtype=np.uint8)).save(d / "photo.png")
            answer = subprocess.run([str(bin_dir / "classify"), "--weights", str(d / "vgg16.safetensors"), "--json",
                                     "--topk", "3", str(d / "photo.png")], capture_output=True, text=True)
            results.append({"case": "classify on the imported torchvision VGG16", "exit": answer.returncode})
            if answer.returncode != 0 or "photo.png" not in answer.stdout:
                failures.append(f"classify failed on the imported VGG16: {answer.stderr.strip()}")

print(json.dumps({"tolerance": TOLERANCE, "torch": torch.__version__, "results": results, "failures": failures}, indent=1))
sys.exit(1 if failures else 0)
