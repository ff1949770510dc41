"""Writes (and reads) safetensors files for the golden scripts without the safetensors package: an
8-byte little-endian header length, the JSON header (padded with spaces to a multiple of 8), the data.

Each script turns its tensors into (name, dtype name, shape, raw little-endian bytes) entries.
"""
import json
import struct


def write_safetensors(path, entries, metadata=None):
    """entries: iterable of (name, dtype such as "F32", shape list, bytes), in file order."""
    entries = list(entries)
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, raw in entries:
            f.write(raw)


# The dtype names the golden files use, and their numpy types.
NUMPY_DTYPES = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4", "U8": "u1"}


def read_safetensors(path):
    """Returns ({name: numpy array (a copy)}, metadata dict) of a file in the layout above."""
    import numpy as np
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    buf = data[8 + n:]
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(buf[b:e], dtype=NUMPY_DTYPES[info["dtype"]]).reshape(info["shape"]).copy()
    return out, meta
