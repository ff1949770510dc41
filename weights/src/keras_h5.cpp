// Keras VGG .h5 reader (see keras_h5.h for the file layout and the mapping). It walks the file the
// way Keras' load_weights does - layer_names, then each layer's weight_names - opens and checks
// every dataset's type and shape against a VGG before reading any data, then reads each as float32
// and rearranges it into torchvision's layout with one permuted copy. HDF5 is used through its C
// API; every identifier is owned by an H5Handle, so nothing leaks on the error paths, and HDF5's
// automatic error printing is switched off (its innermost message is appended to ours instead).
#include "keras_h5.h"

#include <hdf5.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <system_error>
#include <filesystem>
#include <fstream>
#include <optional>
#include <utility>
#include <vector>

#include <nn/error.h>
#include <nn/models/vgg.h>
#include <nn/tensor.h>

namespace nn::weights {
namespace {

// Largest dataset accepted, and largest total over all datasets (elements, read as float32: 1 GiB
// each). VGG's largest, fc1 of VGG16/19, has 25088 * 4096 ~ 1.0e8 and VGG19 with its top ~1.44e8
// in all; the limits keep a hostile shape from turning into a huge allocation, and are checked
// for every dataset before any data is read.
constexpr int64_t kMaxElements = int64_t{1} << 28;
constexpr int64_t kMaxTotalElements = int64_t{1} << 28;

// Torchvision's classifier indices of the three Linear layers (ReLU and Dropout in between).
constexpr int64_t kClassifierIndices[] = {0, 3, 6};

// One HDF5 identifier, released with its close function (H5Fclose, H5Gclose, ...) on destruction.
class H5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Handle() = default;
  H5Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  H5Handle(H5Handle&& other) noexcept
      : id_(std::exchange(other.id_, H5I_INVALID_HID)), close_(other.close_) {}
  H5Handle& operator=(H5Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      close_ = other.close_;
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  ~H5Handle() { reset(); }

  bool valid() const { return id_ >= 0; }
  hid_t get() const { return id_; }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// Turns HDF5's automatic error printing (to stderr) off for the calling thread, and leaves it off:
// besides printing the error stack of a failed call, HDF5 prints through the same switch at
// process exit ("infinite loop closing library") when a corrupt file left internal state it cannot
// release, so restoring the previous handler after a refused file would still print, later. HDF5
// is nn_weights' own dependency (nn-convert and the tests are its only users).
void silence_hdf5_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

// The most specific message on HDF5's error stack (e.g. "truncated file: eof = 1024, ..."), as
// " (HDF5: ...)" to append to an error, or "" when the stack is empty. Clears the stack.
std::string hdf5_detail() {
  std::string innermost;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* err, void* out) -> herr_t {
        if (n == 0 && err != nullptr && err->desc != nullptr) *static_cast<std::string*>(out) = err->desc;
        return 0;
      },
      &innermost);
  H5Eclear2(H5E_DEFAULT);
  return innermost.empty() ? std::string() : " (HDF5: " + innermost + ")";
}

const char* type_class_name(H5T_class_t c) {
  switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_ARRAY: return "array";
    default: return "unknown";
  }
}

bool has_attribute(hid_t loc, const std::string& name) {
  htri_t exists = H5Aexists(loc, name.c_str());
  if (exists < 0) H5Eclear2(H5E_DEFAULT);
  return exists > 0;
}

// Checks that `path` (relative to `loc`, '/'-separated, as Keras writes weight names) names an
// object through hard links only: no soft link (which may point anywhere in the file), no external
// link (which would open another file, anywhere on disk, on the file's say-so), no absolute path,
// no empty or "." / ".." component. Throws, naming `what`, otherwise; false when a component is
// absent.
bool hard_link_path_exists(hid_t loc, const std::string& path, const std::string& where, const std::string& what) {
  NN_CHECK(!path.empty() && path.front() != '/', where, ": ", what, " '", path,
           "' is empty or absolute; expected a name relative to its group");
  size_t begin = 0;
  while (true) {
    const size_t slash = path.find('/', begin);
    const std::string component = path.substr(begin, slash == std::string::npos ? std::string::npos : slash - begin);
    NN_CHECK(!component.empty() && component != "." && component != "..", where, ": ", what, " '", path,
             "' has an empty, '.' or '..' component");
    const std::string prefix = path.substr(0, slash);
    const htri_t exists = H5Lexists(loc, prefix.c_str(), H5P_DEFAULT);
    if (exists <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
#if H5_VERSION_GE(1, 12, 0)
    H5L_info2_t info;
    const herr_t got = H5Lget_info2(loc, prefix.c_str(), &info, H5P_DEFAULT);
#else
    H5L_info_t info;
    const herr_t got = H5Lget_info(loc, prefix.c_str(), &info, H5P_DEFAULT);
#endif
    NN_CHECK(got >= 0, where, ": cannot read the link '", prefix, "'", hdf5_detail());
    NN_CHECK(info.type == H5L_TYPE_HARD, where, ": ", what, " '", path, "' goes through ",
             info.type == H5L_TYPE_SOFT ? "a soft link" : info.type == H5L_TYPE_EXTERNAL ? "an external link (to another file)" : "a user-defined link",
             " at '", prefix, "'; refusing to follow links in a weights file");
    if (slash == std::string::npos) return true;
    begin = slash + 1;
  }
}

// Reads one attribute holding strings: fixed-length byte strings (what numpy's 'S' arrays become
// through h5py, as in the published Keras files) or variable-length strings, any shape, flattened.
// An attribute with no elements is an empty list whatever its type (Keras writes an empty float64
// array as the weight_names of weightless layers).
std::vector<std::string> read_string_attribute(hid_t loc, const std::string& name, const std::string& where) {
  H5Handle attr(H5Aopen(loc, name.c_str(), H5P_DEFAULT), H5Aclose);
  NN_CHECK(attr.valid(), where, ": cannot open the attribute '", name, "'", hdf5_detail());
  H5Handle space(H5Aget_space(attr.get()), H5Sclose);
  H5Handle type(H5Aget_type(attr.get()), H5Tclose);
  NN_CHECK(space.valid() && type.valid(), where, ": cannot read the attribute '", name, "'", hdf5_detail());
  hssize_t count = H5Sget_simple_extent_npoints(space.get());
  NN_CHECK(count >= 0, where, ": cannot read the attribute '", name, "'", hdf5_detail());
  if (count == 0) return {};
  H5T_class_t type_class = H5Tget_class(type.get());
  NN_CHECK(type_class == H5T_STRING, where, ": the attribute '", name, "' holds ", type_class_name(type_class),
           " data; expected a list of strings");
  const size_t n = static_cast<size_t>(count);

  std::vector<std::string> values;
  values.reserve(n);
  if (H5Tis_variable_str(type.get()) > 0) {
    H5Handle mem_type(H5Tcopy(H5T_C_S1), H5Tclose);
    NN_CHECK(mem_type.valid() && H5Tset_size(mem_type.get(), H5T_VARIABLE) >= 0 &&
                 H5Tset_cset(mem_type.get(), H5Tget_cset(type.get())) >= 0,
             where, ": cannot read the attribute '", name, "'", hdf5_detail());
    std::vector<char*> strings(n, nullptr);
    NN_CHECK(H5Aread(attr.get(), mem_type.get(), strings.data()) >= 0, where, ": cannot read the attribute '",
             name, "'", hdf5_detail());
    for (char* s : strings) values.emplace_back(s != nullptr ? s : "");
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mem_type.get(), space.get(), H5P_DEFAULT, strings.data());
#else
    H5Dvlen_reclaim(mem_type.get(), space.get(), H5P_DEFAULT, strings.data());
#endif
  } else {
    // Read the bytes as stored (no conversion) and apply the padding rule ourselves.
    const size_t size = H5Tget_size(type.get());
    NN_CHECK(size > 0, where, ": cannot read the attribute '", name, "'", hdf5_detail());
    const bool space_padded = H5Tget_strpad(type.get()) == H5T_STR_SPACEPAD;
    std::vector<char> bytes(n * size);
    NN_CHECK(H5Aread(attr.get(), type.get(), bytes.data()) >= 0, where, ": cannot read the attribute '", name,
             "'", hdf5_detail());
    for (size_t i = 0; i < n; ++i) {
      const char* begin = bytes.data() + i * size;
      size_t length = strnlen(begin, size);
      if (space_padded)
        while (length > 0 && begin[length - 1] == ' ') --length;
      values.emplace_back(begin, length);
    }
  }
  return values;
}

// A list attribute the way Keras stores it: `name`, or, when it was too large for one HDF5
// attribute header, the chunks `name0`, `name1`, ... concatenated. nullopt when absent.
std::optional<std::vector<std::string>> read_keras_list(hid_t loc, const std::string& name,
                                                        const std::string& where) {
  if (has_attribute(loc, name)) return read_string_attribute(loc, name, where);
  if (!has_attribute(loc, name + "0")) return std::nullopt;
  std::vector<std::string> values;
  for (int chunk = 0; has_attribute(loc, name + std::to_string(chunk)); ++chunk) {
    std::vector<std::string> part = read_string_attribute(loc, name + std::to_string(chunk), where);
    values.insert(values.end(), part.begin(), part.end());
  }
  return values;
}

// One dataset named by a layer's weight_names, opened and checked to hold floats.
struct KerasWeight {
  std::string name;  // as listed in weight_names
  H5Handle dataset;
  Shape shape;
};

// A (kernel, bias) pair of one layer: a Conv2D (kernel rank 4) or a Dense layer (rank 2).
struct KerasParam {
  std::string layer;
  const KerasWeight* kernel;
  const KerasWeight* bias;
  bool conv;
};

class KerasReader {
 public:
  // Reads the file at `path`, or, with `image`, the bytes of an HDF5 file in memory (`path` then
  // only names them in messages).
  explicit KerasReader(const std::string& path, const void* image = nullptr, size_t image_size = 0)
      : path_(path), image_(image), image_size_(image_size) {}

  ConvertedWeights read() {
    open_file();
    collect_layers();
    validate();
    return convert();
  }

 private:
  std::string at_layer(const std::string& layer) const { return path_ + ": layer '" + layer + "'"; }

  void open_file() {
    if (image_ != nullptr) return open_image();
    std::error_code ec;
    const auto status = std::filesystem::status(path_, ec);
    NN_CHECK(std::filesystem::exists(status), path_, ": cannot open: ",
             ec && ec != std::errc::no_such_file_or_directory ? ec.message() : "no such file");
    NN_CHECK(!std::filesystem::is_directory(status), path_, ": cannot open: it is a directory");
    {
      std::ifstream probe(path_, std::ios::binary);
      NN_CHECK(probe.good(), path_, ": cannot open for reading: ", std::strerror(errno));
      NN_CHECK(probe.peek() != std::ifstream::traits_type::eof(), path_,
               ": the file is empty; expected a Keras .h5 weights file (HDF5)");
    }
#if H5_VERSION_GE(1, 12, 0)
    const htri_t is_hdf5 = H5Fis_accessible(path_.c_str(), H5P_DEFAULT);
#else
    const htri_t is_hdf5 = H5Fis_hdf5(path_.c_str());
#endif
    NN_CHECK(is_hdf5 >= 0, path_, ": cannot open as HDF5", hdf5_detail());
    NN_CHECK(is_hdf5 > 0, path_, ": not an HDF5 file (no HDF5 signature); expected a Keras .h5 weights file");
    file_ = H5Handle(H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    NN_CHECK(file_.valid(), path_, ": cannot open the HDF5 file (truncated or corrupt?)", hdf5_detail());
  }

  // The in-memory file: HDF5's core driver over a copy of the bytes, no backing file.
  void open_image() {
    NN_CHECK(image_size_ > 0, path_, ": the file is empty; expected a Keras .h5 weights file (HDF5)");
    // HDF5 looks for its superblock signature at 0, 512, 1024, 2048, ... bytes.
    static const char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
    bool signed_file = false;
    for (size_t at = 0; at + 8 <= image_size_ && !signed_file; at = at == 0 ? 512 : at * 2)
      signed_file = std::memcmp(static_cast<const char*>(image_) + at, kSignature, 8) == 0;
    NN_CHECK(signed_file, path_, ": not an HDF5 file (no HDF5 signature); expected a Keras .h5 weights file");
    H5Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    NN_CHECK(fapl.valid() && H5Pset_fapl_core(fapl.get(), 1 << 16, 0) >= 0 &&
                 H5Pset_file_image(fapl.get(), const_cast<void*>(image_), image_size_) >= 0,
             path_, ": cannot set up an in-memory HDF5 file", hdf5_detail());
    // HDF5 refuses a file image whose name exists on disk and identifies open files by name, so
    // the name is one no file can have, unique per open.
    static std::atomic<uint64_t> opened{0};
    const std::string name = "/proc/self/nn-keras-h5-image-" + std::to_string(opened++);
    file_ = H5Handle(H5Fopen(name.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
    NN_CHECK(file_.valid(), path_, ": cannot open the HDF5 file (truncated or corrupt?)", hdf5_detail());
  }

  // Finds the group holding layer_names (the root, or model_weights in model.save() files) and
  // opens every layer's weight datasets in layer order.
  void collect_layers() {
    H5Handle root(H5Gopen2(file_.get(), "/", H5P_DEFAULT), H5Gclose);
    NN_CHECK(root.valid(), path_, ": cannot open the root group (truncated or corrupt?)", hdf5_detail());
    std::optional<std::vector<std::string>> layer_names = read_keras_list(root.get(), "layer_names", path_);
    if (layer_names) {
      group_ = std::move(root);
      group_path_ = "";
    } else {
      const bool has_model_weights = hard_link_path_exists(root.get(), "model_weights", path_, "the group");
      NN_CHECK(has_model_weights, path_,
               ": no 'layer_names' attribute at the root and no 'model_weights' group; not a Keras (1 or 2) "
               "weights file (Keras 3 .weights.h5 files are not supported)");
      group_ = H5Handle(H5Gopen2(root.get(), "model_weights", H5P_DEFAULT), H5Gclose);
      NN_CHECK(group_.valid(), path_, ": 'model_weights' is not a group", hdf5_detail());
      group_path_ = "/model_weights";
      layer_names = read_keras_list(group_.get(), "layer_names", path_ + ": group /model_weights");
      NN_CHECK(layer_names.has_value(), path_,
               ": the group /model_weights has no 'layer_names' attribute; not a Keras weights file");
    }
    check_backend();

    for (const std::string& layer : *layer_names) {
      const std::string where = at_layer(layer);
      const bool exists = hard_link_path_exists(group_.get(), layer, where, "the layer group");
      H5Handle group(exists ? H5Gopen2(group_.get(), layer.c_str(), H5P_DEFAULT) : H5I_INVALID_HID, H5Gclose);
      NN_CHECK(group.valid(), where, ": listed in layer_names but there is no group ", group_path_, "/", layer,
               hdf5_detail());
      std::optional<std::vector<std::string>> weight_names = read_keras_list(group.get(), "weight_names", where);
      NN_CHECK(weight_names.has_value(), where, ": the layer group has no 'weight_names' attribute");
      std::vector<KerasWeight>& weights = layers_.emplace_back(layer, std::vector<KerasWeight>()).second;
      for (const std::string& name : *weight_names) weights.push_back(open_weight(group.get(), layer, name));
    }
  }

  // Keras 1 files saved with the Theano backend store flipped (O, I, H, W) kernels.
  void check_backend() {
    if (!has_attribute(group_.get(), "backend")) return;
    std::vector<std::string> backend = read_string_attribute(group_.get(), "backend", path_);
    NN_CHECK(backend.size() != 1 || backend[0] != "theano", path_,
             ": saved with the Theano backend (flipped, channels-first kernels); only TensorFlow-ordered files "
             "(*_tf_dim_ordering_tf_kernels.h5) are supported");
  }

  KerasWeight open_weight(hid_t layer_group, const std::string& layer, const std::string& name) {
    const std::string where = at_layer(layer);
    KerasWeight w;
    w.name = name;
    const bool exists = hard_link_path_exists(layer_group, name, where, "the weight");
    w.dataset = H5Handle(exists ? H5Dopen2(layer_group, name.c_str(), H5P_DEFAULT) : H5I_INVALID_HID, H5Dclose);
    NN_CHECK(w.dataset.valid(), where, ": weight_names lists '", name, "' but there is no dataset ", group_path_,
             "/", layer, "/", name, hdf5_detail());
    // Data kept outside the file (external raw files, virtual datasets mapping other files) is
    // refused like external links: the file must not make us read other files.
    H5Handle dcpl(H5Dget_create_plist(w.dataset.get()), H5Pclose);
    NN_CHECK(dcpl.valid(), where, ": cannot read the dataset '", name, "'", hdf5_detail());
    const H5D_layout_t layout = H5Pget_layout(dcpl.get());
    NN_CHECK(layout != H5D_VIRTUAL && H5Pget_external_count(dcpl.get()) == 0, where, ": the dataset '", name,
             "' keeps its data in other files (", layout == H5D_VIRTUAL ? "a virtual dataset" : "external storage",
             "); refusing to read them");
    H5Handle type(H5Dget_type(w.dataset.get()), H5Tclose);
    H5Handle space(H5Dget_space(w.dataset.get()), H5Sclose);
    NN_CHECK(type.valid() && space.valid(), where, ": cannot read the dataset '", name, "'", hdf5_detail());
    const H5T_class_t type_class = H5Tget_class(type.get());
    NN_CHECK(type_class == H5T_FLOAT, where, ": the dataset '", name, "' holds ", type_class_name(type_class),
             " data; expected float32 or float64");
    const int rank = H5Sget_simple_extent_ndims(space.get());
    NN_CHECK(rank >= 0, where, ": cannot read the shape of the dataset '", name, "'", hdf5_detail());
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    NN_CHECK(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) >= 0, where,
             ": cannot read the shape of the dataset '", name, "'", hdf5_detail());
    int64_t numel = 1;
    for (hsize_t d : dims) {
      NN_CHECK(d > 0 && d <= static_cast<hsize_t>(kMaxElements) && numel <= kMaxElements / static_cast<int64_t>(d),
               where, ": the dataset '", name, "' has an empty or implausibly large shape (", dims_list(dims),
               "; at most ", kMaxElements, " elements)");
      numel *= static_cast<int64_t>(d);
      w.shape.push_back(static_cast<int64_t>(d));
    }
    total_elements_ += numel;
    NN_CHECK(total_elements_ <= kMaxTotalElements, where, ": the datasets hold more than ", kMaxTotalElements,
             " elements in all; far more than any VGG");
    // Unfiltered (uncompressed) data must all be in the file: a dataset whose chunks were never
    // written reads as fill values, which no weights file holds (and costs memory for nothing).
    const int filters = H5Pget_nfilters(dcpl.get());
    const size_t element_size = H5Tget_size(type.get());
    if (filters == 0)
      NN_CHECK(H5Dget_storage_size(w.dataset.get()) >= static_cast<hsize_t>(numel) * element_size, where,
               ": the dataset '", name, "' does not hold all its data (", H5Dget_storage_size(w.dataset.get()),
               " bytes stored for ", numel, " elements of ", element_size, " bytes)");
    return w;
  }

  // Pairs every layer's weights into (kernel, bias) and checks the whole network is a VGG: 3x3
  // convolutions whose channels chain from the image's 3, then at most three dense layers whose
  // sizes chain from the last convolution's flattened (C, H, W) output.
  void validate() {
    for (const auto& [layer, weights] : layers_) {
      const std::string where = at_layer(layer);
      NN_CHECK(weights.size() % 2 == 0, where, ": has ", weights.size(),
               " weights; expected (kernel, bias) pairs (VGG layers have a bias)");
      for (size_t i = 0; i < weights.size(); i += 2) {
        const KerasWeight& kernel = weights[i];
        const KerasWeight& bias = weights[i + 1];
        const int64_t rank = static_cast<int64_t>(kernel.shape.size());
        NN_CHECK(rank == 4 || rank == 2, where, ": the kernel '", kernel.name, "' has shape ",
                 shape_str(kernel.shape), "; expected rank 4 (Conv2D, HWIO) or 2 (Dense, (in, out))");
        NN_CHECK(bias.shape.size() == 1, where, ": the bias '", bias.name, "' has shape ", shape_str(bias.shape),
                 "; expected rank 1 (weights must come as [kernel, bias])");
        NN_CHECK(bias.shape[0] == kernel.shape.back(), where, ": the bias '", bias.name, "' has ", bias.shape[0],
                 " elements but the kernel '", kernel.name, "' has ", kernel.shape.back(), " outputs");
        const bool conv = rank == 4;
        NN_CHECK(!conv || dense_count_ == 0, where, ": a convolution after a dense layer; not a VGG");
        params_.push_back({layer, &kernel, &bias, conv});
        (conv ? conv_count_ : dense_count_) += 1;
      }
    }

    depth_ = models::vgg_depth_for_conv_count(conv_count_);
    NN_CHECK(depth_ != 0, path_, ": has ", conv_count_,
             " convolution layers; VGG11, VGG13, VGG16 and VGG19 have 8, 10, 13 and 16");
    NN_CHECK(dense_count_ <= 3, path_, ": has ", dense_count_,
             " dense layers; a VGG top has at most 3 (fc1, fc2, predictions)");

    int64_t channels = 3;  // the image's
    std::string previous;  // the previous convolution's layer name
    for (const KerasParam& p : params_) {
      if (!p.conv) break;
      const Shape& k = p.kernel->shape;  // (kh, kw, in, out)
      const std::string where = at_layer(p.layer);
      NN_CHECK(k[0] == 3 && k[1] == 3, where, ": the kernel '", p.kernel->name, "' is ", k[0], "x", k[1],
               " (shape ", shape_str(k), "); VGG convolutions are 3x3");
      if (previous.empty())
        NN_CHECK(k[2] == channels, where, ": the first convolution takes ", k[2],
                 " input channels; VGG takes 3-channel (BGR) images");
      else
        NN_CHECK(k[2] == channels, where, ": takes ", k[2], " input channels but the previous convolution ('",
                 previous, "') has ", channels, " output channels");
      channels = k[3];
      previous = p.layer;
    }
    last_conv_channels_ = channels;

    int64_t features = 0;  // outputs of the previous dense layer
    for (const KerasParam& p : params_) {
      if (p.conv) continue;
      const Shape& k = p.kernel->shape;  // (in, out)
      const std::string where = at_layer(p.layer);
      if (features == 0) {
        // fc1 reads the flattened last pool: C * H * W inputs on a square H x W grid.
        const int64_t grid = k[0] / channels;
        const int64_t side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(grid))));
        NN_CHECK(k[0] % channels == 0 && side * side == grid, where, ": the first dense layer takes ", k[0],
                 " inputs; expected C*H*W with C = ", channels,
                 " (the last convolution's output channels) and a square H x W pooling grid");
        grid_side_ = side;
      } else {
        NN_CHECK(k[0] == features, where, ": takes ", k[0], " inputs but the previous dense layer has ", features,
                 " outputs");
      }
      features = k[1];
    }
  }

  // Reads one dataset as float32 (HDF5 converts float64) in its stored shape.
  Tensor read_data(const KerasWeight& w, const std::string& layer) {
    Tensor t = empty(w.shape, f32);
    NN_CHECK(H5Dread(w.dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data<float>()) >= 0,
             at_layer(layer), ": cannot read the dataset '", w.name, "' (truncated or corrupt?)", hdf5_detail());
    return t;
  }

  // Keras (H, W, C, O), row-major -> torchvision (O, C, H, W): a conv kernel (H, W the kernel
  // size), or fc1 viewed over the pooling grid, whose (H, W, C) flattening becomes (C, H, W).
  static Tensor hwio_to_oihw(const Tensor& keras, int64_t h, int64_t w, int64_t c, int64_t o) {
    return keras.reshape({h, w, c, o}).permute({3, 2, 0, 1}).contiguous();
  }

  ConvertedWeights convert() {
    ConvertedWeights out;
    const std::vector<int64_t> conv_indices = models::vgg_conv_indices(depth_);
    size_t conv = 0, dense = 0;
    for (const KerasParam& p : params_) {
      Tensor kernel = read_data(*p.kernel, p.layer);
      Tensor bias = read_data(*p.bias, p.layer);
      const Shape& k = p.kernel->shape;
      std::string prefix;
      if (p.conv) {
        prefix = "features." + std::to_string(conv_indices.at(conv++));
        kernel = hwio_to_oihw(kernel, k[0], k[1], k[2], k[3]);
      } else {
        prefix = "classifier." + std::to_string(kClassifierIndices[dense]);
        // fc1 spans the pooling grid; later layers are a plain (in, out) -> (out, in) transpose.
        const int64_t side = dense == 0 ? grid_side_ : 1;
        const int64_t channels = dense == 0 ? last_conv_channels_ : k[0];
        kernel = hwio_to_oihw(kernel, side, side, channels, k[1]).reshape({k[1], k[0]});
        ++dense;
      }
      out.tensors.emplace_back(prefix + ".weight", std::move(kernel));
      out.tensors.emplace_back(prefix + ".bias", std::move(bias));
    }
    out.metadata[kMetaPreprocessing] = "caffe";
    out.metadata[kMetaSourceFormat] = "keras-h5";
    out.metadata[kMetaSourceFile] = std::filesystem::path(path_).filename().string();
    out.metadata[kMetaArchitecture] = "vgg" + std::to_string(depth_);
    check_unique_names(out, path_);
    return out;
  }

  // "4, 5": the dimensions, comma-separated.
  static std::string dims_list(const std::vector<hsize_t>& dims) {
    std::string out;
    for (size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
    return out;
  }

  std::string path_;
  const void* image_ = nullptr;
  size_t image_size_ = 0;
  int64_t total_elements_ = 0;
  H5Handle file_;
  H5Handle group_;          // the group holding layer_names
  std::string group_path_;  // "" (root) or "/model_weights", for messages
  std::vector<std::pair<std::string, std::vector<KerasWeight>>> layers_;  // layer name, its weights
  std::vector<KerasParam> params_;  // points into layers_, which no longer changes
  int64_t conv_count_ = 0, dense_count_ = 0;
  int depth_ = 0;
  int64_t last_conv_channels_ = 0, grid_side_ = 0;
};

}  // namespace

ConvertedWeights read_keras_h5(const std::string& path) {
  silence_hdf5_errors();
  KerasReader reader(path);
  return reader.read();
}

ConvertedWeights parse_keras_h5(const void* data, size_t size, const std::string& source_name) {
  silence_hdf5_errors();
  KerasReader reader(source_name, data, size);
  return reader.read();
}

}  // namespace nn::weights
