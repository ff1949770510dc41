"""Golden references for VGG16 weight import (tests/test_vgg_golden.cpp), run with /usr/bin/python3
(Debian's python3-torch, python3-torchvision, python3-h5py).

Usage: vgg_reference.py OUT_DIR

Writes into OUT_DIR:
  vgg16_zip.pth, vgg16_legacy.pth     a randomly initialised torchvision vgg16() state dict saved by
                                      torch.save in the zip format and in the legacy stream format
  keras1_full.h5, keras2_full.h5      the same weights in Keras' layout (HWIO kernels, fc1 rows in
  keras1_notop.h5, keras2_notop.h5    H,W,C order) with Keras 1 names (block1_conv1_W_1:0) and
                                      Keras 2 names (block1_conv1/kernel:0), full and without the top
  image0.png, image1.png              two 224x224 RGB images
  reference.safetensors               the state dict, the two preprocessed batches and PyTorch's
                                      features (last max-pool output) and logits for each preset
  bad_global.pth                      a torch.save file whose pickle names os.system
  truncated.pth                       the first part of vgg16_zip.pth
  bad_shape.h5                        a Keras file whose block2_conv1 kernel is 5x5
  vgg16_bn_zip.pth, vgg16_bn_legacy.pth   a random torchvision vgg16_bn() (batch norms with random
                                      running statistics and affine parameters) in both formats
  reference_bn.safetensors            its state dict and, in eval mode, its features and logits for
                                      the torchvision preset
  done                                written last (the C++ side waits for complete output)

Nothing here is downloaded: the weights are random (seeded), the images synthetic.
"""
import os
import sys

import h5py
import numpy as np
import torch

import safetensors_writer  # tests/golden/, on sys.path as the script's folder
import torchvision

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(20261125)

# ---- the model: torchvision's VGG16 with random weights; biases made non-zero (torchvision
# initialises them to 0, which would hide a bias that is dropped or misplaced) ----
model = torchvision.models.vgg16()
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.uniform_(-0.05, 0.05)
model.eval()
state = model.state_dict()
torch.save(state, os.path.join(out, "vgg16_zip.pth"))
torch.save(state, os.path.join(out, "vgg16_legacy.pth"), _use_new_zipfile_serialization=False)

# ---- two smooth, colourful 224x224 images ----
from PIL import Image

yy, xx = np.mgrid[0:224, 0:224].astype(np.float64) / 223.0
rng = np.random.default_rng(7)
images = []
for k in range(2):
    chans = []
    for c in range(3):
        f = rng.uniform(1.0, 6.0, size=2)
        ph = rng.uniform(0, 2 * np.pi, size=2)
        v = 0.5 + 0.25 * np.sin(2 * np.pi * f[0] * xx + ph[0]) + 0.25 * np.cos(2 * np.pi * f[1] * yy + ph[1])
        chans.append(v)
    rgb = np.clip(np.stack(chans, axis=-1) * 255.0 + rng.normal(0, 6, size=(224, 224, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(os.path.join(out, f"image{k}.png"))
    images.append(rgb)
pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()  # N,3,H,W in 0..255, RGB

# torchvision preset: /255, ImageNet mean/std, RGB.
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
x_torchvision = (pixels / 255.0 - mean) / std
# caffe preset (Keras): 0..255, BGR, mean subtracted.
x_caffe = pixels[:, [2, 1, 0]] - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)

with torch.no_grad():
    features_tv = model.features(x_torchvision)
    logits_tv = model(x_torchvision)
    features_caffe = model.features(x_caffe)
    logits_caffe = model(x_caffe)

# ---- Keras layout ----
def keras_file(path, names, full, bad_shape=False):
    """names: 1 -> Keras 1 (block1_conv1_W_1:0), 2 -> Keras 2 (block1_conv1/kernel:0)."""
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    layers = ["input_1"]
    weights = {}
    blocks = [2, 2, 3, 3, 3]
    k = 0
    for b, n in enumerate(blocks, start=1):
        for i in range(1, n + 1):
            conv = convs[k]
            k += 1
            w = conv.weight.detach().permute(2, 3, 1, 0).contiguous().numpy()  # OIHW -> HWIO
            if bad_shape and b == 2 and i == 1:
                w = np.zeros((5, 5, w.shape[2], w.shape[3]), np.float32)
            layers.append(f"block{b}_conv{i}")
            weights[layers[-1]] = [w, conv.bias.detach().numpy()]
        layers.append(f"block{b}_pool")
    if full:
        layers.append("flatten")
        fc = [model.classifier[0], model.classifier[3], model.classifier[6]]
        w0 = fc[0].weight.detach()  # (4096, 512*7*7), inputs in C,H,W order
        k0 = w0.view(w0.shape[0], 512, 7, 7).permute(2, 3, 1, 0).reshape(7 * 7 * 512, w0.shape[0])
        for name, lin, kernel in (("fc1", fc[0], k0), ("fc2", fc[1], fc[1].weight.detach().t()),
                                  ("predictions", fc[2], fc[2].weight.detach().t())):
            layers.append(name)
            weights[name] = [kernel.contiguous().numpy(), lin.bias.detach().numpy()]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([l.encode() for l in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"1.2.2" if names == 1 else b"2.2.4"
        for layer in layers:
            g = f.create_group(layer)
            ws = weights.get(layer, [])
            if names == 1:
                wnames = [f"{layer}_W_1:0", f"{layer}_b_1:0"] if ws else []
            else:
                wnames = [f"{layer}/kernel:0", f"{layer}/bias:0"] if ws else []
            g.attrs["weight_names"] = np.array([w.encode() for w in wnames], dtype="S" if wnames else "S1")
            for wname, value in zip(wnames, ws):
                g.create_dataset(wname, data=value.astype(np.float32))


keras_file(os.path.join(out, "keras1_full.h5"), 1, True)
keras_file(os.path.join(out, "keras2_full.h5"), 2, True)
keras_file(os.path.join(out, "keras1_notop.h5"), 1, False)
keras_file(os.path.join(out, "keras2_notop.h5"), 2, False)
keras_file(os.path.join(out, "bad_shape.h5"), 2, False, bad_shape=True)

# ---- refused inputs ----
class Exploit:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


torch.save({"features.0.weight": Exploit()}, os.path.join(out, "bad_global.pth"))
with open(os.path.join(out, "vgg16_zip.pth"), "rb") as f:
    head = f.read(5_000_000)
with open(os.path.join(out, "truncated.pth"), "wb") as f:
    f.write(head)

# ---- reference.safetensors (plain json + numpy bytes; no safetensors package needed) ----
tensors = [(k, v) for k, v in state.items()]
tensors += [("input.torchvision", x_torchvision), ("input.caffe", x_caffe),
            ("features.torchvision", features_tv), ("logits.torchvision", logits_tv),
            ("features.caffe", features_caffe), ("logits.caffe", logits_caffe)]
safetensors_writer.write_safetensors(
    os.path.join(out, "reference.safetensors"),
    ((name, "F32", t.shape, t.detach().contiguous().numpy().astype(np.float32).tobytes()) for name, t in tensors),
    {"torch": torch.__version__, "torchvision": torchvision.__version__})

# ---- VGG16 with batch norm (torchvision's vgg16_bn layout), in eval mode ----
bn_model = torchvision.models.vgg16_bn()
with torch.no_grad():
    for name, p in bn_model.named_parameters():
        if name.endswith("bias"):
            p.uniform_(-0.05, 0.05)
    for m in bn_model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(17)
bn_model.eval()
bn_state = bn_model.state_dict()
torch.save(bn_state, os.path.join(out, "vgg16_bn_zip.pth"))
torch.save(bn_state, os.path.join(out, "vgg16_bn_legacy.pth"), _use_new_zipfile_serialization=False)
with torch.no_grad():
    bn_features = bn_model.features(x_torchvision)
    bn_logits = bn_model(x_torchvision)
bn_tensors = [(k, v) for k, v in bn_state.items()] + [("features.torchvision", bn_features),
                                                       ("logits.torchvision", bn_logits)]
safetensors_writer.write_safetensors(
    os.path.join(out, "reference_bn.safetensors"),
    ((name, "I64" if t.dtype == torch.int64 else "F32", t.shape,
      t.detach().contiguous().numpy().astype(np.int64 if t.dtype == torch.int64 else np.float32).tobytes())
     for name, t in bn_tensors))

with open(os.path.join(out, "done"), "w") as f:
    f.write("ok\n")
