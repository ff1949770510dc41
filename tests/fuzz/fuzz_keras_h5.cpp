// libFuzzer target: the Keras .h5 reader (weights/src/keras_h5.h), on HDF5 files built in memory.
//
// The input is not an HDF5 file but a recipe for one (FuzzedDataProvider): the target writes the
// file with the HDF5 C API into memory (the core driver, no disk), takes its bytes
// (H5Fget_file_image) and hands them to parse_keras_h5. So every input is a well-formed HDF5 file
// and the fuzzer explores what our reader decides about it - the layer_names / weight_names
// attributes (fixed- and variable-length strings, chunked lists, numbers, empty arrays), names with
// '/', '..' and absolute paths, missing groups and datasets, soft and external links, external
// storage, unwritten and chunked and compressed datasets, dtypes, ranks, shapes that do or do not
// chain into a VGG, huge declared shapes - instead of spending its time inside HDF5's own
// parser of corrupt bytes (which is libhdf5's, not ours; the unit tests feed truncated files).
// Half the recipes start from a valid VGG11/13/16/19 layout with small channels, so the
// conversion itself (HWIO -> OIHW, the fc1 reorder) runs too.
//
// nn::Error is the expected answer; anything else (a sanitizer report, another exception, an
// allocation over -malloc_limit_mb, a run over -timeout) is a finding.
#include <fuzzer/FuzzedDataProvider.h>

#include <hdf5.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "keras_h5.h"
#include "nn/error.h"
#include "nn/tensor.h"
#include "read_tensors.h"

namespace {

volatile uint64_t sink;

// An HDF5 identifier closed on scope exit (creation failures are tolerated: the recipe may ask for
// something HDF5 refuses, such as a dataset under a missing group).
struct Id {
  hid_t id;
  herr_t (*close)(hid_t);
  Id(hid_t i, herr_t (*c)(hid_t)) : id(i), close(c) {}
  ~Id() {
    if (id >= 0) close(id);
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
};

const char* const kNames[] = {"block1_conv1", "block1_conv2", "block2_conv1", "fc1", "fc2", "predictions",
                              "flatten",      "input_1",      "kernel:0",     "bias:0", "model_weights",
                              "..",           ".",            "",             "/",      "a/b",
                              "/block1_conv1", "x/../y"};

std::string pick_name(FuzzedDataProvider& p) {
  if (p.ConsumeBool()) return p.PickValueInArray(kNames);
  return p.ConsumeRandomLengthString(24);
}

void write_strings(FuzzedDataProvider& p, hid_t loc, const std::string& name, const std::vector<std::string>& values) {
  const int form = p.ConsumeIntegralInRange(0, 5);
  const hsize_t n = values.size();
  if (form == 4) {  // numbers instead of strings
    Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
    Id attr(H5Acreate2(loc, name.c_str(), H5T_STD_I32LE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    std::vector<int32_t> v(values.size(), 7);
    if (attr.id >= 0 && !v.empty()) H5Awrite(attr.id, H5T_NATIVE_INT32, v.data());
    return;
  }
  if (form == 5) {  // a scalar string
    Id space(H5Screate(H5S_SCALAR), H5Sclose);
    Id type(H5Tcopy(H5T_C_S1), H5Tclose);
    const std::string v = values.empty() ? std::string() : values[0];
    H5Tset_size(type.id, v.size() + 1);
    Id attr(H5Acreate2(loc, name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (attr.id >= 0) H5Awrite(attr.id, type.id, v.c_str());
    return;
  }
  Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Id type(H5Tcopy(H5T_C_S1), H5Tclose);
  if (form <= 1) {  // variable-length, UTF-8 or ASCII
    H5Tset_size(type.id, H5T_VARIABLE);
    H5Tset_cset(type.id, form == 0 ? H5T_CSET_UTF8 : H5T_CSET_ASCII);
    std::vector<const char*> pointers;
    for (const std::string& v : values) pointers.push_back(v.c_str());
    Id attr(H5Acreate2(loc, name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (attr.id >= 0 && !pointers.empty()) H5Awrite(attr.id, type.id, pointers.data());
    return;
  }
  size_t width = 1;
  for (const std::string& v : values) width = std::max(width, v.size());
  width += p.ConsumeIntegralInRange<size_t>(0, 3);
  H5Tset_size(type.id, width);
  H5Tset_strpad(type.id, form == 2 ? H5T_STR_NULLPAD : H5T_STR_SPACEPAD);
  std::vector<char> bytes(values.size() * width, form == 2 ? '\0' : ' ');
  for (size_t i = 0; i < values.size(); ++i) std::copy(values[i].begin(), values[i].end(), &bytes[i * width]);
  Id attr(H5Acreate2(loc, name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (attr.id >= 0 && !bytes.empty()) H5Awrite(attr.id, type.id, bytes.data());
}

// A list attribute: whole, split into name0, name1, ... (Keras' chunking), an empty float array,
// or absent.
void write_list(FuzzedDataProvider& p, hid_t loc, const std::string& name, const std::vector<std::string>& values) {
  const int how = p.ConsumeIntegralInRange(0, 9);
  if (how == 9) return;  // absent
  if (how == 8) {        // empty float64 array (Keras' weight_names of a weightless layer)
    const hsize_t zero = 0;
    Id space(H5Screate_simple(1, &zero, nullptr), H5Sclose);
    Id attr(H5Acreate2(loc, name.c_str(), H5T_IEEE_F64LE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    return;
  }
  if (how == 7 && values.size() >= 2) {
    const size_t half = values.size() / 2;
    write_strings(p, loc, name + "0", {values.begin(), values.begin() + static_cast<long>(half)});
    write_strings(p, loc, name + "1", {values.begin() + static_cast<long>(half), values.end()});
    return;
  }
  write_strings(p, loc, name, values);
}

// One dataset at `path` under `group`, with a shape, type, layout and data chosen by the recipe.
void write_dataset(FuzzedDataProvider& p, hid_t group, const std::string& path, std::vector<hsize_t> dims) {
  const int kind = p.ConsumeIntegralInRange(0, 15);
  Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.id, 1);
  if (kind == 13) {  // a soft link to some other path
    H5Lcreate_soft(pick_name(p).c_str(), group, path.c_str(), lcpl.id, H5P_DEFAULT);
    return;
  }
  if (kind == 14) {  // an external link (the reader must not follow it)
    H5Lcreate_external("/nonexistent/other.h5", "/x", group, path.c_str(), lcpl.id, H5P_DEFAULT);
    return;
  }
  if (kind == 15) return;  // listed but absent
  if (p.ConsumeIntegralInRange(0, 7) == 0) {  // a free-form shape
    dims.clear();
    const int rank = p.ConsumeIntegralInRange(0, 5);
    for (int i = 0; i < rank; ++i)
      dims.push_back(p.ConsumeBool() ? p.ConsumeIntegralInRange<hsize_t>(0, 9)
                                     : p.ConsumeIntegralInRange<hsize_t>(0, hsize_t{1} << 40));
  }
  Id space(dims.empty() ? H5Screate(H5S_SCALAR)
                        : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
           H5Sclose);
  if (space.id < 0) return;
  const hid_t types[] = {H5T_IEEE_F32LE, H5T_IEEE_F32LE, H5T_IEEE_F32BE, H5T_IEEE_F64LE, H5T_STD_I32LE, H5T_STD_U8LE};
  const hid_t type = p.PickValueInArray(types);
  Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  const int layout = kind % 6;  // 0-2 contiguous, 3 chunked, 4 chunked + deflate, 5 external storage
  if ((layout == 3 || layout == 4) && !dims.empty()) {
    // Two chunks for a small tensor (its first dimension over 1 split in halves), 16 elements along
    // dimensions over 64. What the reader must handle is more than one chunk, not thousands: with
    // 4-element chunks a 1-D tensor of 2^16 floats made 16384 chunks, each a B-tree insert and,
    // deflated, a fresh zlib stream, and such inputs took much of the target's time.
    std::vector<hsize_t> chunk(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) chunk[i] = dims[i] <= 64 ? std::max<hsize_t>(1, dims[i]) : 16;
    for (size_t i = 0; i < dims.size(); ++i) {
      if (dims[i] > 1) {
        chunk[i] = (chunk[i] + 1) / 2;
        break;
      }
    }
    H5Pset_chunk(dcpl.id, static_cast<int>(chunk.size()), chunk.data());
    if (layout == 4) H5Pset_deflate(dcpl.id, 1);
  }
  if (layout == 5) H5Pset_external(dcpl.id, "/nonexistent/raw.bin", 0, H5F_UNLIMITED);
  Id dataset(H5Dcreate2(group, path.c_str(), type, space.id, lcpl.id, dcpl.id, H5P_DEFAULT), H5Dclose);
  if (dataset.id < 0 || layout == 5) return;
  hssize_t n = H5Sget_simple_extent_npoints(space.id);
  // Data for small datasets only (a huge declared shape stays unwritten: its storage is empty).
  if (n <= 0 || n > (1 << 16) || kind == 12) return;
  std::vector<float> values(static_cast<size_t>(n));
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 17) * 0.25f - 2.0f;
  if (p.ConsumeIntegralInRange(0, 15) == 0 && !values.empty()) values[0] = std::numeric_limits<float>::quiet_NaN();
  H5Dwrite(dataset.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
}

struct LayerRecipe {
  std::string name;
  std::vector<std::pair<std::string, std::vector<hsize_t>>> weights;  // name, shape
};

// A VGG of the given depth with small channels (what a valid file holds), top or not.
std::vector<LayerRecipe> vgg_layers(FuzzedDataProvider& p) {
  static const std::vector<std::vector<int>> kBlocks = {{1, 1, 2, 2, 2}, {2, 2, 2, 2, 2}, {2, 2, 3, 3, 3}, {2, 2, 4, 4, 4}};
  const std::vector<int>& blocks = kBlocks[p.ConsumeIntegralInRange<size_t>(0, 3)];
  const bool keras2 = p.ConsumeBool();
  std::vector<LayerRecipe> layers;
  layers.push_back({"input_1", {}});
  hsize_t in = 3;
  for (size_t b = 0; b < blocks.size(); ++b) {
    for (int c = 0; c < blocks[b]; ++c) {
      const std::string name = "block" + std::to_string(b + 1) + "_conv" + std::to_string(c + 1);
      const hsize_t out = p.ConsumeIntegralInRange<hsize_t>(1, 4);
      const std::string k = keras2 ? name + "/kernel:0" : name + "_W_1:0";
      const std::string bias = keras2 ? name + "/bias:0" : name + "_b_1:0";
      layers.push_back({name, {{k, {3, 3, in, out}}, {bias, {out}}}});
      in = out;
    }
    layers.push_back({"block" + std::to_string(b + 1) + "_pool", {}});
  }
  if (p.ConsumeBool()) {
    layers.push_back({"flatten", {}});
    const hsize_t grid = p.ConsumeIntegralInRange<hsize_t>(1, 3);
    hsize_t features = in * grid * grid;
    const int dense = p.ConsumeIntegralInRange(1, 3);
    for (int d = 0; d < dense; ++d) {
      const std::string name = d == dense - 1 ? "predictions" : "fc" + std::to_string(d + 1);
      const hsize_t out = p.ConsumeIntegralInRange<hsize_t>(1, 6);
      layers.push_back({name, {{name + (keras2 ? "/kernel:0" : "_W_1:0"), {features, out}},
                               {name + (keras2 ? "/bias:0" : "_b_1:0"), {out}}}});
      features = out;
    }
  }
  return layers;
}

// Random layers: names, weight counts and shapes from the recipe.
std::vector<LayerRecipe> free_layers(FuzzedDataProvider& p) {
  std::vector<LayerRecipe> layers(p.ConsumeIntegralInRange<size_t>(0, 24));
  for (LayerRecipe& l : layers) {
    l.name = pick_name(p);
    const int n = p.ConsumeIntegralInRange(0, 3);
    for (int i = 0; i < n; ++i) {
      std::vector<hsize_t> dims(p.ConsumeIntegralInRange<size_t>(0, 4));
      for (hsize_t& d : dims) d = p.ConsumeIntegralInRange<hsize_t>(1, 6);
      l.weights.push_back({p.ConsumeBool() ? l.name + "/" + pick_name(p) : pick_name(p), dims});
    }
  }
  return layers;
}

// Builds the file in memory and returns its bytes (empty when HDF5 refused something essential).
std::vector<char> build_file(FuzzedDataProvider& p) {
  Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_fapl_core(fapl.id, 1 << 16, 0);
  Id file(H5Fcreate("fuzz_keras_h5_build", H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id), H5Fclose);
  if (file.id < 0) return {};
  {
    const bool model_weights = p.ConsumeIntegralInRange(0, 3) == 0;
    Id group(model_weights ? H5Gcreate2(file.id, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
                           : H5Gopen2(file.id, "/", H5P_DEFAULT),
             H5Gclose);
    if (group.id < 0) return {};
    std::vector<LayerRecipe> layers = p.ConsumeBool() ? vgg_layers(p) : free_layers(p);
    // Perturbations of the layer list: drop, duplicate or rename a few entries.
    for (int k = p.ConsumeIntegralInRange(0, 3); k > 0 && !layers.empty(); --k) {
      const size_t i = p.ConsumeIntegralInRange<size_t>(0, layers.size() - 1);
      switch (p.ConsumeIntegralInRange(0, 3)) {
        case 0: layers.erase(layers.begin() + static_cast<long>(i)); break;
        case 1: layers.push_back(layers[i]); break;
        case 2: layers[i].name = pick_name(p); break;
        default:
          if (!layers[i].weights.empty()) layers[i].weights.back().second.push_back(2);
      }
    }
    std::vector<std::string> names;
    for (const LayerRecipe& l : layers) names.push_back(l.name);
    write_list(p, group.id, "layer_names", names);
    if (p.ConsumeIntegralInRange(0, 7) == 0) write_strings(p, group.id, "backend", {p.ConsumeBool() ? "theano" : "tensorflow"});
    for (const LayerRecipe& l : layers) {
      if (p.ConsumeIntegralInRange(0, 15) == 0) continue;  // no group for this layer
      Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
      H5Pset_create_intermediate_group(lcpl.id, 1);
      Id layer(H5Gcreate2(group.id, l.name.c_str(), lcpl.id, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
      if (layer.id < 0) continue;
      std::vector<std::string> weight_names;
      for (const auto& w : l.weights) weight_names.push_back(w.first);
      write_list(p, layer.id, "weight_names", weight_names);
      for (const auto& [name, dims] : l.weights) write_dataset(p, layer.id, name, dims);
    }
  }
  if (H5Fflush(file.id, H5F_SCOPE_GLOBAL) < 0) return {};
  const ssize_t size = H5Fget_file_image(file.id, nullptr, 0);
  if (size <= 0) return {};
  std::vector<char> image(static_cast<size_t>(size));
  if (H5Fget_file_image(file.id, image.data(), image.size()) != size) return {};
  return image;
}

uint64_t touch(const nn::weights::ConvertedWeights& w) {
  return read_every_byte(w.tensors) + w.metadata.size();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // the recipe's refused HDF5 calls stay quiet
  // HDF5 keeps freed blocks on its own free lists, but by default at most 64 KiB per list, so each
  // file's metadata cache (calloc'd, far larger than that) went back to the system at every close and
  // every execution paid for mapping, zeroing and unmapping it twice (build, then read). Larger
  // limits let HDF5 reuse its blocks; with the smaller ASan quarantine of scripts/fuzz.sh the target
  // runs 1.9x faster (173 -> 333 exec/s measured on this corpus). This changes only how HDF5
  // recycles its own memory: our reader's allocations, and every block HDF5 takes from the system,
  // still go through ASan and -malloc_limit_mb.
  H5set_free_list_limits(256 << 20, 64 << 20, 256 << 20, 64 << 20, 256 << 20, 64 << 20);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider p(data, size);
  std::vector<char> image = build_file(p);
  H5Eclear2(H5E_DEFAULT);
  if (image.empty()) return 0;
  try {
    sink = touch(nn::weights::parse_keras_h5(image.data(), image.size(), "<fuzz>"));
  } catch (const nn::Error&) {
  }
  return 0;
}
