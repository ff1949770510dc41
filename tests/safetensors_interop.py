"""Interop check between nn's safetensors code and the official `safetensors` Python package.

usage: safetensors_interop.py IN OUT

Reads IN (written by nn) with the official parser, which validates it, and writes OUT with the
official writer: every tensor of IN unchanged (same name, dtype, shape and bytes), IN's metadata
plus "seen_by_python" (name:DTYPE:[shape] for each tensor, sorted by name), and two tensors made
here ("python.f32", "python.i64"). tests/test_safetensors.cpp reads OUT back and checks it all.
Only the standard library and `safetensors` are needed (numpy is used when present).
"""
import ctypes
import json
import struct
import sys

import safetensors

# Header dtype names -> the names the writer API takes (dicts before 0.8, TensorSpec since).
SPEC_DTYPES = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16",
               "I64": "int64", "I32": "int32", "U8": "uint8"}


def read_metadata(path):
    try:
        with safetensors.safe_open(path, framework="numpy") as f:
            return dict(f.metadata() or {})
    except ImportError:  # safe_open needs numpy; the header is plain JSON
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            return json.loads(f.read(n)).get("__metadata__", {})


def serialize(tensors, metadata):
    """tensors: {name: (DTYPE, shape, bytes)} -> file bytes, through whichever API this version has."""
    try:
        return bytes(safetensors.serialize(
            {k: {"dtype": SPEC_DTYPES[d], "shape": s, "data": b} for k, (d, s, b) in tensors.items()},
            metadata=metadata))
    except TypeError:  # safetensors >= 0.8 takes TensorSpec objects instead of dicts
        pass
    buffers = {}  # kept alive until serialize returns
    specs = {}
    for k, (d, s, b) in tensors.items():
        buffers[k] = ctypes.create_string_buffer(bytes(b), max(len(b), 1))
        specs[k] = safetensors.TensorSpec(dtype=SPEC_DTYPES[d], shape=list(s),
                                          data_ptr=ctypes.addressof(buffers[k]), data_len=len(b))
    return bytes(safetensors.serialize(specs, metadata=metadata))


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        data = f.read()
    tensors = {}
    for name, t in safetensors.deserialize(data):
        tensors[name] = (t["dtype"], list(t["shape"]), bytes(t["data"]))
    metadata = read_metadata(src)
    metadata["seen_by_python"] = ";".join(
        "%s:%s:[%s]" % (name, d, ",".join(str(x) for x in s)) for name, (d, s, _) in sorted(tensors.items()))
    tensors["python.f32"] = ("F32", [3], struct.pack("<3f", 1.5, -2.25, 3.0))
    tensors["python.i64"] = ("I64", [2], struct.pack("<2q", -(1 << 40), 7))
    with open(dst, "wb") as f:
        f.write(serialize(tensors, metadata))
    print("wrote %d tensors to %s with safetensors %s" % (len(tensors), dst, safetensors.__version__))


if __name__ == "__main__":
    main()
