"""PyTorch golden references for nn's tests.

Usage: torch_reference.py IN.safetensors OUT.safetensors

IN holds the inputs of every case and, in __metadata__["cases"], a JSON list of
{"name", "op", "params", "inputs": [names], "grad": [bool per input]}. For each case this computes
the op in float32 with PyTorch, the loss sum(out * "<name>.proj"), its backward, and writes
"<name>.out" and "<name>.grad.<k>" for every input k that takes a gradient. Optimizer cases
("sgd", "adam", "adamw") run their steps with the given per-step gradients and write the final
parameter. The safetensors files are read and written here with json + numpy only.
"""
import json
import sys

import numpy as np
import torch

import safetensors_writer  # tests/golden/, on sys.path as the script's folder
import torch.nn.functional as F

NAMES = {np.dtype(v): k for k, v in safetensors_writer.NUMPY_DTYPES.items()}


def read_safetensors(path):
    tensors, meta = safetensors_writer.read_safetensors(path)
    return {name: torch.from_numpy(arr) for name, arr in tensors.items()}, meta


def write_safetensors(path, tensors):
    entries = []
    for name, t in tensors.items():
        arr = t.detach().cpu().contiguous().numpy()  # (np.ascontiguousarray makes 0-d arrays 1-d)
        entries.append((name, NAMES[arr.dtype], arr.shape, arr.tobytes()))
    safetensors_writer.write_safetensors(path, entries)


def run_op(op, p, x):
    if op == "conv2d":
        return F.conv2d(x[0], x[1], x[2] if len(x) > 2 else None, stride=p["stride"], padding=p["padding"])
    if op == "max_pool2d":
        return F.max_pool2d(x[0], p["kernel"], p["stride"], p["padding"], ceil_mode=p["ceil_mode"])
    if op == "avg_pool2d":
        return F.avg_pool2d(x[0], p["kernel"], p["stride"], p["padding"], ceil_mode=p["ceil_mode"],
                            count_include_pad=p["count_include_pad"])
    if op == "adaptive_avg_pool2d":
        return F.adaptive_avg_pool2d(x[0], p["size"])
    if op == "linear":
        return F.linear(x[0], x[1], x[2] if len(x) > 2 else None)
    if op == "bce_with_logits":
        return F.binary_cross_entropy_with_logits(
            x[0], x[1], weight=x[2] if p.get("weight") else None,
            pos_weight=x[3] if p.get("pos_weight") else None, reduction=p["reduction"])
    if op == "cross_entropy":
        return F.cross_entropy(x[0], x[1], weight=x[2] if p.get("weight") else None, reduction=p["reduction"])
    if op == "mse_loss":
        return F.mse_loss(x[0], x[1], reduction=p["reduction"])
    if op == "log_softmax":
        return F.log_softmax(x[0], dim=p["dim"])
    if op == "batch_norm":
        # inputs: x, running_mean, running_var[, weight, bias]; the running statistics are copied
        # (training updates them in place).
        w, b = (x[3], x[4]) if len(x) > 3 else (None, None)
        return F.batch_norm(x[0], x[1].clone(), x[2].clone(), w, b, training=p["training"],
                            momentum=p["momentum"], eps=p["eps"])
    if op == "batch_norm_module_steps":
        # A BatchNorm2d trained on the batches x[0][k], then the running statistics and the eval
        # output on x[1]: cat(running_mean, running_var, num_batches_tracked, eval output).
        bn = torch.nn.BatchNorm2d(x[0].shape[2], momentum=p["momentum"])
        bn.train()
        for batch in x[0]:
            bn(batch)
        bn.eval()
        with torch.no_grad():
            y = bn(x[1])
        return torch.cat([bn.running_mean, bn.running_var, bn.num_batches_tracked.float().reshape(1), y.reshape(-1)])
    raise ValueError("unknown op " + op)


def run_optimizer(op, p, x):
    param = x[0].clone().requires_grad_()
    grads = x[1]  # (steps, *param.shape)
    if op == "sgd":
        opt = torch.optim.SGD([param], lr=p["lr"], momentum=p["momentum"], dampening=p["dampening"],
                              weight_decay=p["weight_decay"], nesterov=p["nesterov"])
    elif op in ("adam", "adamw"):
        cls = torch.optim.Adam if op == "adam" else torch.optim.AdamW
        opt = cls([param], lr=p["lr"], betas=(p["beta1"], p["beta2"]), eps=p["eps"],
                  weight_decay=p["weight_decay"])
    else:
        raise ValueError("unknown optimizer " + op)
    for g in grads:
        param.grad = g.clone()
        opt.step()
    return param.detach()


def main():
    torch.set_num_threads(1)
    tensors, meta = read_safetensors(sys.argv[1])
    out = {}
    for case in json.loads(meta["cases"]):
        name, op, p = case["name"], case["op"], case["params"]
        x = [tensors[f"{name}.{k}"] for k in case["inputs"]]
        if op in ("sgd", "adam", "adamw"):
            out[f"{name}.out"] = run_optimizer(op, p, x)
            continue
        for t, g in zip(x, case["grad"]):
            if g:
                t.requires_grad_()
        y = run_op(op, p, x)
        out[f"{name}.out"] = y.detach()
        if any(case["grad"]):
            (y * tensors[f"{name}.proj"]).sum().backward()
            for k, (t, g) in enumerate(zip(x, case["grad"])):
                if g:
                    out[f"{name}.grad.{k}"] = t.grad
    write_safetensors(sys.argv[2], out)


if __name__ == "__main__":
    main()
