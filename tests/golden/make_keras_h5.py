#!/usr/bin/env python3
"""Writes a small VGG11 weights file with h5py exactly the way Keras' save_weights writes it, for
tests/test_keras_h5.cpp (suite KerasH5Golden).

    make_keras_h5.py OUT.h5 keras1|keras2 top|notop

keras1: Keras 1.x save_weights_to_hdf5_group, the layout of the published
        vgg16_weights_tf_dim_ordering_tf_kernels*.h5: weight names like "block1_conv1_W_1:0",
        datasets directly in the layer group, no other root attributes.
keras2: Keras 2.x: 'backend' and 'keras_version' root attributes, weight names like
        "block1_conv1/kernel:0" (so the dataset sits in a subgroup of the layer group).

Both store the name lists as fixed-length byte strings (numpy 'S' arrays) and an empty list as an
empty float64 array, as the published files do. Keras 1 assigned plain Python lists, which the
h5py 2.x of the time turned into 'S' arrays through np.asarray; h5py 3 would store a list of bytes
as variable-length strings, so the conversion is spelled out here.

The architecture must match small_vgg11() in the test: conv channels 4,5,6,6,7,7,8,8, a 3x3 last
pooling grid, dense 72 -> 10 -> 10 -> 5. The l-th layer with weights (from 0) gets kernel values
l*10000 + j at flat index j and bias values l*10000 + 5000 + j, all exact in float32, so the test
can tell any misplaced element.
"""
import sys

import h5py
import numpy as np

CONVS = [("block1_conv1", 4, True), ("block2_conv1", 5, True), ("block3_conv1", 6, False),
         ("block3_conv2", 6, True), ("block4_conv1", 7, False), ("block4_conv2", 7, True),
         ("block5_conv1", 8, False), ("block5_conv2", 8, True)]
GRID = 3
DENSE = [("fc1", 10), ("fc2", 10), ("predictions", 5)]


def layers(include_top):
    """(name, kernel shape or None) in Keras' layer order."""
    out = [("input_1", None)]
    channels = 3
    for name, c, pool in CONVS:
        out.append((name, (3, 3, channels, c)))
        channels = c
        if pool:
            out.append((name[:6] + "_pool", None))
    if include_top:
        out.append(("flatten", None))
        features = channels * GRID * GRID
        for name, n in DENSE:
            out.append((name, (features, n)))
            features = n
    return out


def main():
    path, style, top = sys.argv[1], sys.argv[2], sys.argv[3]
    assert style in ("keras1", "keras2") and top in ("top", "notop")
    spec = layers(top == "top")
    with h5py.File(path, "w") as f:
        if style == "keras2":
            f.attrs["backend"] = "tensorflow".encode("utf8")
            f.attrs["keras_version"] = "2.1.5".encode("utf8")
        f.attrs["layer_names"] = np.asarray([name.encode("utf8") for name, _ in spec])
        index = 0
        for name, kernel_shape in spec:
            g = f.create_group(name)
            values = []
            if kernel_shape is not None:
                kernel = (index * 10000 + np.arange(np.prod(kernel_shape))).reshape(kernel_shape)
                bias = index * 10000 + 5000 + np.arange(kernel_shape[-1])
                values = [kernel.astype(np.float32), bias.astype(np.float32)]
                index += 1
                if style == "keras1":
                    weight_names = [(name + "_W_1:0").encode("utf8"), (name + "_b_1:0").encode("utf8")]
                else:
                    weight_names = [(name + "/kernel:0").encode("utf8"), (name + "/bias:0").encode("utf8")]
            else:
                weight_names = []
            g.attrs["weight_names"] = np.asarray(weight_names)
            for weight_name, value in zip(weight_names, values):
                dataset = g.create_dataset(weight_name, value.shape, dtype=value.dtype)
                if not value.shape:
                    dataset[()] = value
                else:
                    dataset[:] = value


if __name__ == "__main__":
    main()
