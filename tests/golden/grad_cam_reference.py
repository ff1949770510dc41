"""PyTorch Grad-CAM reference for tests/test_grad_cam.cpp (suite GradCamGolden).

Usage: grad_cam_reference.py IN.safetensors OUT.safetensors

IN holds "input" (1, 3, H, W) and the state dicts of several VGGs, each under a prefix ("m0."),
with torchvision's names (features.N.weight, classifier.N.bias). __metadata__["models"] is a JSON
list of {"prefix", "features": [module type per index], "classifier": [...], "pooled", "layer",
"targets"}. Each model is rebuilt as torchvision's VGG layout (features / avgpool / classifier,
same indices), loaded strictly, put in eval mode, and Grad-CAM is computed the standard way:
a forward hook on features[layer] keeps its output and registers a tensor hook for its gradient;
backward from logits[0, target]; weights = gradient mean over (h, w); cam = relu(sum_c w_c A_c);
F.interpolate(bilinear, align_corners=False) to the input size; divided by its max.
Writes "heatmap.<prefix><t>", "cam.<prefix><t>" and "logit.<prefix><t>". Exits 77 when torch or
numpy cannot be imported (the test then skips).
"""
import json
import os
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # the test skips on this exit code
    print(f"grad_cam_reference.py: {e}", file=sys.stderr)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_writer  # noqa: E402


def read_safetensors(path):
    tensors, meta = safetensors_writer.read_safetensors(path)
    return {name: torch.from_numpy(arr) for name, arr in tensors.items()}, meta


class VGG(nn.Module):
    def __init__(self, spec, sd):
        super().__init__()
        p = spec["prefix"]
        layers = []
        for i, kind in enumerate(spec["features"]):
            if kind == "Conv2d":
                w = sd[f"{p}features.{i}.weight"]
                layers.append(nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=w.shape[2] // 2))
            elif kind == "ReLU":
                layers.append(nn.ReLU(inplace=False))
            elif kind == "MaxPool2d":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                raise ValueError(kind)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(spec["pooled"])
        head = []
        for i, kind in enumerate(spec["classifier"]):
            if kind == "Linear":
                w = sd[f"{p}classifier.{i}.weight"]
                head.append(nn.Linear(w.shape[1], w.shape[0]))
            elif kind == "ReLU":
                head.append(nn.ReLU(inplace=False))
            elif kind == "Dropout":
                head.append(nn.Dropout(0.5))
            else:
                raise ValueError(kind)
        self.classifier = nn.Sequential(*head)
        own = {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
        self.load_state_dict(own, strict=True)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def grad_cam(model, x, layer, target):
    store = {}

    def forward_hook(module, inputs, output):
        store["activations"] = output
        output.register_hook(lambda g: store.__setitem__("gradients", g))

    handle = model.features[layer].register_forward_hook(forward_hook)
    try:
        logits = model(x)
        model.zero_grad()
        logits[0, target].backward()
    finally:
        handle.remove()
    a, g = store["activations"].detach(), store["gradients"].detach()
    weights = g.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * a).sum(dim=1, keepdim=True))
    up = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[0, 0]
    m = up.max()
    heat = up / m if m > 0 else torch.zeros_like(up)
    return heat, cam[0, 0], logits[0, target].detach()


def main():
    tensors, meta = read_safetensors(sys.argv[1])
    x = tensors["input"]
    out = []
    for spec in json.loads(meta["models"]):
        model = VGG(spec, tensors).eval()
        for t in spec["targets"]:
            heat, cam, logit = grad_cam(model, x, spec["layer"], t)
            key = f"{spec['prefix']}{t}"
            for name, v in (("heatmap", heat), ("cam", cam), ("logit", logit.reshape(1))):
                arr = v.contiguous().numpy().astype(np.float32)
                out.append((f"{name}.{key}", "F32", arr.shape, arr.tobytes()))
    safetensors_writer.write_safetensors(sys.argv[2], out)


if __name__ == "__main__":
    main()
