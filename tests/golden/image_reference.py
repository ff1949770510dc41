"""PIL / torchvision golden references for nn's image code (tests/test_image.cpp, suite ImageGolden).

Usage: image_reference.py DIR

Writes into DIR a few images made with PIL (and, for 16-bit colour PNGs, which PIL can neither
write nor read at full depth, with a small PNG writer below that uses every PNG row filter) and
DIR/ref.safetensors with:

  decoded.<file>            the pixels PIL decodes (for the 16-bit colour PNGs: the samples written;
                            for the palette PNG and the CMYK JPEG: PIL's conversion to RGB),
                            float32 [H, W, C] in [0, 1] (v/255, v/65535)
  gray.<file>               PIL's convert("L") (uint8 rounded), float32 [H, W, 1]
  resize.<case>             torchvision F.resize(float tensor, [h, w], antialias=True), [C, h, w]
  eval.<case>.pil           Resize(256), CenterCrop(224), ToTensor, Normalize on the PIL image
  eval.<case>.tensor        the same transform on the float tensor (ToTensor first; antialias=True)
  eval.<case>.caffe         Keras "caffe" preprocessing of the tensor path's crop (x*255, BGR, -means)

__metadata__ holds "resize" and "eval" (JSON lists of the cases). The safetensors file is written
with json + numpy only.
"""
import json
import os
import struct
import sys
import zlib

import numpy as np
import torch

import safetensors_writer  # tests/golden/, on sys.path as the script's folder
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CAFFE_BGR_MEAN = [103.939, 116.779, 123.68]


def write_safetensors(path, tensors, metadata):
    entries = []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        entries.append((name, "F32", arr.shape, arr.tobytes()))
    safetensors_writer.write_safetensors(path, entries, metadata)


def smooth(rng, h, w, c):
    """Smooth waves plus a little noise, in [0, 1]: realistic for JPEG, non-trivial for resizing."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = [0.5 + 0.35 * np.sin(x / (4.0 + 3 * k) + y / (6.0 + 2 * k)) + 0.08 * rng.randn(h, w) for k in range(c)]
    return np.clip(np.stack(planes, -1), 0.0, 1.0)


def to_u8(a):
    return np.round(a * 255).astype(np.uint8)


def png_16bit(path, samples, color_type):
    """A 16-bit PNG (color type 0, 2, 4 or 6) of uint16 samples [H, W, C], row filters 0-4 in turn."""
    h, w, c = samples.shape
    bpp = 2 * c
    rows = samples.astype(">u2").reshape(h, w * bpp // 2).view(np.uint8).reshape(h, w * bpp)
    raw = bytearray()
    prev = np.zeros(w * bpp, dtype=np.int64)
    for r in range(h):
        cur = rows[r].astype(np.int64)
        ftype = r % 5
        out = np.zeros_like(cur)
        for i in range(len(cur)):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            cc = prev[i - bpp] if i >= bpp else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            else:
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
            out[i] = (cur[i] - pred) % 256
        raw.append(ftype)
        raw.extend(out.astype(np.uint8).tobytes())
        prev = cur

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) +
                chunk(b"IEND", b""))


def decoded(path):
    """PIL's pixels as float32 [H, W, C] in [0, 1]."""
    img = Image.open(path)
    img.load()
    a = np.array(img)
    if img.mode in ("I", "I;16"):
        a = a.astype(np.float32) / np.float32(65535)
    else:
        a = a.astype(np.float32) / np.float32(255)
    return a.reshape(a.shape[0], a.shape[1], -1)


def main():
    out_dir = sys.argv[1]
    rng = np.random.RandomState(1234)
    refs = {}
    p = lambda name: os.path.join(out_dir, name)

    # PNGs (lossless: PIL's pixels are the ones we wrote).
    Image.fromarray(to_u8(smooth(rng, 45, 61, 1))[:, :, 0], "L").save(p("gray.png"))
    Image.fromarray(to_u8(smooth(rng, 33, 40, 2)), "LA").save(p("gray_alpha.png"))
    rgb = to_u8(smooth(rng, 97, 131, 3))
    Image.fromarray(rgb, "RGB").save(p("rgb.png"))
    Image.fromarray(to_u8(smooth(rng, 50, 37, 4)), "RGBA").save(p("rgba.png"))
    Image.fromarray(rgb, "RGB").convert("P", palette=getattr(Image, "Palette", Image).ADAPTIVE, colors=64).save(p("palette.png"))
    gray16 = np.round(smooth(rng, 29, 43, 1)[:, :, 0] * 65535).astype(np.uint16)
    Image.fromarray(gray16, "I;16").save(p("gray16.png"))
    # PIL reads 16-bit colour PNGs as 8-bit: the reference is the samples written, and PIL's 8-bit
    # view of the file must be their high bytes (a check of the writer).
    written16 = {}
    for name, (h, w, c, color_type) in {"rgb16.png": (21, 26, 3, 2), "rgba16.png": (17, 19, 4, 6),
                                        "gray_alpha16.png": (13, 22, 2, 4)}.items():
        samples = np.round(smooth(rng, h, w, c) * 65535).astype(np.uint16)
        png_16bit(p(name), samples, color_type)
        pil8 = np.array(Image.open(p(name)).convert("RGBA" if c in (2, 4) else "RGB"))
        high = (samples >> 8).astype(np.uint8)
        if c == 2:
            high = high[:, :, [0, 0, 0, 1]]
        assert np.array_equal(pil8, high), name
        written16[name] = samples.astype(np.float32) / np.float32(65535)

    # JPEGs: baseline 4:2:0, baseline 4:4:4, odd sizes (partial blocks and chroma edges), progressive,
    # grayscale, and Adobe CMYK (PIL writes inverted CMYK with an APP14 marker; its reference is
    # PIL's conversion to RGB).
    photo = Image.fromarray(to_u8(smooth(rng, 120, 160, 3)), "RGB")
    photo.save(p("rgb.jpg"), quality=90)
    photo.save(p("rgb444.jpg"), quality=95, subsampling=0)
    photo.save(p("progressive.jpg"), quality=85, progressive=True)
    Image.fromarray(to_u8(smooth(rng, 37, 53, 3)), "RGB").save(p("odd420.jpg"), quality=80)
    Image.fromarray(to_u8(smooth(rng, 70, 90, 1))[:, :, 0], "L").save(p("gray.jpg"), quality=90)
    Image.fromarray(to_u8(smooth(rng, 30, 42, 4)), "CMYK").save(p("cmyk.jpg"), quality=90)

    # Non-square images for the evaluation transform (colour and grayscale, landscape and portrait).
    Image.fromarray(to_u8(smooth(rng, 300, 400, 3)), "RGB").save(p("eval_rgb.png"))
    Image.fromarray(to_u8(smooth(rng, 333, 260, 1))[:, :, 0], "L").save(p("eval_gray.png"))

    files = ["gray.png", "gray_alpha.png", "rgb.png", "rgba.png", "palette.png", "gray16.png", "rgb16.png",
             "rgba16.png", "gray_alpha16.png", "rgb.jpg", "rgb444.jpg", "progressive.jpg", "odd420.jpg", "gray.jpg",
             "cmyk.jpg"]
    for f in files:
        if f in written16:
            refs["decoded." + f] = written16[f]
        elif f in ("palette.png", "cmyk.jpg"):
            a = np.array(Image.open(p(f)).convert("RGB")).astype(np.float32) / np.float32(255)
            refs["decoded." + f] = a
        else:
            refs["decoded." + f] = decoded(p(f))
        if f in ("rgb.png", "rgba.png", "rgb.jpg"):
            g = np.array(Image.open(p(f)).convert("L")).astype(np.float32) / np.float32(255)
            refs["gray." + f] = g[:, :, None]

    # Resizing the float tensor of a decoded PNG (the same floats nn decodes).
    resize_cases = [("down", "rgb.png", 40, 57), ("up", "rgb.png", 150, 203), ("mixed", "rgb.png", 120, 50),
                    ("far_down", "rgb.png", 9, 13), ("gray_down", "gray.png", 20, 30),
                    ("rgba_down", "rgba.png", 31, 11)]
    for name, src, h, w in resize_cases:
        t = torch.from_numpy(refs["decoded." + src]).permute(2, 0, 1).contiguous()
        refs["resize." + name] = F.resize(t, [h, w], interpolation=T.InterpolationMode.BILINEAR,
                                          antialias=True).numpy()

    # The evaluation transform, the PIL way (what torchvision training scripts do) and on tensors.
    eval_cases = ["eval_rgb.png", "eval_gray.png"]
    for src in eval_cases:
        img = Image.open(p(src)).convert("RGB")
        pil = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])(img)
        crop = T.Compose([T.ToTensor(), T.Resize(256, antialias=True), T.CenterCrop(224)])(img)
        refs["eval." + src + ".pil"] = pil.numpy()
        refs["eval." + src + ".tensor"] = T.Normalize(MEAN, STD)(crop).numpy()
        mean = torch.tensor(CAFFE_BGR_MEAN, dtype=torch.float32).view(3, 1, 1)
        refs["eval." + src + ".caffe"] = (crop[[2, 1, 0]] * 255 - mean).numpy()

    meta = {"resize": json.dumps([{"name": n, "source": s, "height": h, "width": w} for n, s, h, w in resize_cases]),
            "eval": json.dumps(eval_cases), "files": json.dumps(files)}
    write_safetensors(p("ref.safetensors"), refs, meta)


if __name__ == "__main__":
    main()
