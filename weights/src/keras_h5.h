// Keras VGG weights (.h5, HDF5) -> torchvision names and layouts, so the ImageNet weights Keras
// publishes (vgg16_weights_tf_dim_ordering_tf_kernels.h5, its _notop variant, VGG19 likewise) and
// VGGs trained in Keras load into nn::models::VGG.
//
// Layout of a Keras weights file (what Keras' own loader, load_weights_from_hdf5_group, reads):
//
//   /                        attribute layer_names: every layer in order, weightless ones included
//   /block1_conv1            attribute weight_names: dataset paths relative to this group, in the
//                            layer's weight order ([kernel, bias]); empty for weightless layers
//   /block1_conv1/block1_conv1/kernel:0   Keras 2 ("block1_conv1_W_1:0" in Keras 1 files)
//
// model.save() files hold the same tree under the group /model_weights. Names are followed, never
// guessed. Conversion: Conv2D kernels HWIO -> OIHW, Dense kernels (in, out) -> (out, in), and fc1's
// inputs reordered from Keras' (H, W, C) flattening to torchvision's (C, H, W), so logits agree.
// The k-th convolution becomes features.<vgg_conv_indices(depth)[k]>, the dense layers
// classifier.0, classifier.3 and classifier.6 in order.
#pragma once

#include <cstddef>
#include <string>

#include "converted_weights.h"

namespace nn::weights {

// Reads a Keras VGG weights file. Every tensor is float32 (float64 datasets are converted).
// Metadata: preprocessing "caffe" (Keras VGG expects BGR, mean-subtracted 0..255 inputs),
// source_format "keras-h5", source_file the file's name, architecture "vgg11/13/16/19" from the
// number of convolutions. Throws nn::Error naming the file and the layer for anything that is not
// a VGG-shaped Keras weights file: not HDF5, truncated, missing attributes or datasets, non-float
// data, wrong ranks or shapes, channels that do not chain, an unknown convolution count, more
// than three dense layers. Never prints: HDF5's automatic error printing is switched off for the
// calling thread and stays off (HDF5 would otherwise also print at exit after a corrupt file).
// Links: every group and dataset must be reached through hard links; a soft or external link, an
// absolute or ".." name, a dataset with external storage or a virtual dataset is refused (a
// weights file must not make the reader open other files). Sizes: at most 2^28 elements per
// dataset and in all (1 GiB as float32; VGG19 has 1.44e8), checked before any data is read.
ConvertedWeights read_keras_h5(const std::string& path);

// The same on the bytes of an HDF5 file in memory (HDF5's core driver; nothing touches the disk);
// `source_name` names them in messages and in source_file.
ConvertedWeights parse_keras_h5(const void* data, size_t size, const std::string& source_name);

}  // namespace nn::weights
