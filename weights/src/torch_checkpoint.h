// Reading PyTorch/torchvision .pth checkpoints (state dicts written by torch.save) without Python
// and without running the pickle inside them (see pickle.h for the restricted unpickler).
//
// Two container formats, told apart by their first bytes:
//   - zip (PyTorch >= 1.6): `<prefix>/data.pkl` (the pickle), `<prefix>/data/<key>` (one raw
//     little-endian record per storage), `<prefix>/version`, optionally `<prefix>/byteorder`.
//   - legacy (torch.save(..., _use_new_zipfile_serialization=False), and the 2017-era files such
//     as torchvision's vgg16-397923af.pth): back-to-back pickles of the magic number
//     0x1950a86a20f9469cfc6c, the protocol version 1001, a sys_info dict, the object, the list of
//     storage keys; then, for each key in that order, an int64 element count and the raw bytes.
// Inside the pickle, tensors are `torch._utils._rebuild_tensor_v2` (or the 2017 `_rebuild_tensor`)
// calls over storages named by persistent ids ('storage', torch.FloatStorage, key, location,
// numel[, view_metadata]). Only those globals, `_rebuild_parameter`, the storage types and
// collections.OrderedDict are accepted; any other global is refused when it is named.
#pragma once

#include <cstddef>
#include <string>

#include "converted_weights.h"

namespace nn::weights {

// Reads the state dict in the checkpoint at PATH (memory-mapped). The top-level object must be a
// dict of tensors, or a dict holding one under "state_dict" or "model" (training checkpoints);
// only the tensors of the chosen dict are materialised. Tensors keep their names (in the file's
// order), shapes and dtypes, as contiguous CPU copies (storage offsets and strides honoured):
// float32/64/16, bfloat16, int64, int32 and uint8 as is; bool as uint8 (0/1); int16 and int8
// widened to int32 (nn has no narrower integer type). Metadata: preprocessing = "torchvision",
// source_format = "torchvision-zip" or "torchvision-legacy", source_file = PATH's file name.
// Every problem (refused global, truncation, corrupt zip, big-endian data, sizes that disagree)
// is an nn::Error naming the file.
ConvertedWeights read_torch_checkpoint(const std::string& path);

// The same on bytes in memory (`source_name` names them in messages and in source_file).
ConvertedWeights parse_torch_checkpoint(const void* data, size_t size, const std::string& source_name);

}  // namespace nn::weights
