"""Checkpoints written by PyTorch itself, for nn's .pth reader (tests/test_torch_checkpoint.cpp).

Usage: make_torch_checkpoints.py OUTDIR

Writes into OUTDIR:
  zip.pth            torch.save(state_dict)                                    (PyTorch >= 1.6 zip)
  legacy.pth         torch.save(state_dict, _use_new_zipfile_serialization=False)  (legacy stream)
  training.pth       {"epoch", "state_dict", "optimizer", "best_acc"}          (zip)
  training_legacy.pth  the same, legacy
  forbidden.pth      {"args": argparse.Namespace, "state_dict"}                (must be refused)
  module.pth         torch.save(model): a whole nn.Module                      (must be refused)
  reference.safetensors  what the reader must produce from the state dict: every tensor as a
                     contiguous copy, in state-dict order, bool as U8, int16/int8 widened to I32.
The state dict is an nn.Module's (with its _metadata) plus tensors of every storage type and
layout that matters: offset views, transposed/permuted/step-sliced views, two views of one
storage, a 0-d tensor, an empty tensor and an expanded (zero-stride) tensor, all saved as is.
The safetensors file is written with json + numpy only (no safetensors package).
"""
import argparse
import copy
import os
import sys

import torch

import safetensors_writer  # tests/golden/, on sys.path as the script's folder

NAMES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
         torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def write_safetensors(path, tensors):
    entries = []
    for name, t in tensors.items():
        t = t.detach().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()  # raw bytes, also for bfloat16
        entries.append((name, NAMES[t.dtype], t.shape, raw))
    safetensors_writer.write_safetensors(path, entries)


def expected(t):
    """What nn's reader makes of a saved tensor."""
    if t.dtype == torch.bool:
        return t.to(torch.uint8)
    if t.dtype in (torch.int16, torch.int8):
        return t.to(torch.int32)
    return t


def main():
    out = sys.argv[1]
    torch.manual_seed(20240601)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 5))
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].num_batches_tracked.fill_(7)
    sd = model.state_dict()  # an OrderedDict with _metadata
    assert hasattr(sd, "_metadata")

    base = torch.randn(10)
    shared = torch.randn(8)
    sd["extra.f64"] = torch.randn(3, 4, dtype=torch.float64)
    sd["extra.f16"] = torch.randn(5).half()
    sd["extra.bf16"] = torch.randn(2, 3).bfloat16()
    sd["extra.i32"] = torch.randint(-1000, 1000, (2, 2), dtype=torch.int32)
    sd["extra.i16"] = torch.randint(-30000, 30000, (4,), dtype=torch.int16)
    sd["extra.i8"] = torch.randint(-128, 127, (3,), dtype=torch.int8)
    sd["extra.u8"] = torch.randint(0, 255, (7,), dtype=torch.uint8)
    sd["extra.bool"] = torch.rand(6) > 0.5
    sd["extra.slice"] = base[1:]                                   # storage offset 1
    sd["extra.transposed"] = torch.randn(3, 5).t()                 # strides (1, 5)
    sd["extra.permuted"] = torch.randn(2, 3, 4, 5).permute(0, 2, 3, 1)
    sd["extra.strided"] = torch.randn(6, 8, dtype=torch.float64)[::2, 1::3]
    sd["extra.shared_a"] = shared[:4]                              # two views of one storage
    sd["extra.shared_b"] = shared[4:].view(2, 2)
    sd["extra.scalar"] = torch.tensor(3.5)
    sd["extra.empty"] = torch.zeros(0, 3)
    sd["extra.expanded"] = torch.randn(3, 1).expand(3, 4)          # stride 0
    assert not sd["extra.transposed"].is_contiguous() and sd["extra.slice"].storage_offset() == 1

    torch.save(sd, os.path.join(out, "zip.pth"))
    torch.save(sd, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)

    trained = copy.deepcopy(model)  # (stepping `model` would change the tensors sd aliases)
    opt = torch.optim.SGD(trained.parameters(), lr=0.1, momentum=0.9)
    trained(torch.randn(2, 3, 6, 6)).sum().backward()
    opt.step()
    training = {"epoch": 3, "state_dict": sd, "optimizer": opt.state_dict(), "best_acc": 0.875}
    torch.save(training, os.path.join(out, "training.pth"))
    torch.save(training, os.path.join(out, "training_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": sd}, os.path.join(out, "forbidden.pth"))
    torch.save(model, os.path.join(out, "module.pth"))

    write_safetensors(os.path.join(out, "reference.safetensors"), {k: expected(v) for k, v in sd.items()})


if __name__ == "__main__":
    main()
