// torch.save checkpoints -> ConvertedWeights (formats in torch_checkpoint.h).
//
// The pickle runs in the restricted VM of pickle.h with three hooks: the allowlist (the tensor
// rebuild functions, the storage types, collections.OrderedDict), the calls of the rebuild
// functions (which only record a TensorRef: storage key, offset, size, stride, validated against
// the storage's size right there), and the persistent ids (which name storages). Tensor bytes are
// read only afterwards, for the tensors of the chosen state dict: from `<prefix>/data/<key>`
// records (zip; straight into the tensor when the record is exactly that tensor, else read once
// and dropped after its last tensor) or from the raw storage stream after the pickles (legacy;
// copied from the caller's memory). Every number from the file is checked (overflow-safe) before
// it sizes an allocation or a copy.
#include "torch_checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <unordered_map>

#include <nn/error.h>

#include "pickle.h"

// Storage records are little-endian and are copied as host-order bytes.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the .pth reader assumes a little-endian host");

namespace nn::weights {
namespace {

using pickle::Kind;
using pickle::Unpickler;
using pickle::Value;

template <typename... Args>
[[noreturn]] void fail(const std::string& source, const Args&... args) {
  throw Error(detail::concat_message(source, ": ", args...));
}

// ---- storage types ------------------------------------------------------------------------

enum class Conversion { copy, int16_to_int32, int8_to_int32, bool_to_uint8 };

struct StorageType {
  const char* name;     // the global torch.<name>
  DType dtype;          // what nn makes of it
  size_t element_size;  // bytes per element in the file
  Conversion conversion;
};

constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", DType::f32, 4, Conversion::copy},
    {"DoubleStorage", DType::f64, 8, Conversion::copy},
    {"HalfStorage", DType::f16, 2, Conversion::copy},
    {"BFloat16Storage", DType::bf16, 2, Conversion::copy},
    {"LongStorage", DType::i64, 8, Conversion::copy},
    {"IntStorage", DType::i32, 4, Conversion::copy},
    {"ShortStorage", DType::i32, 2, Conversion::int16_to_int32},
    {"CharStorage", DType::i32, 1, Conversion::int8_to_int32},
    {"ByteStorage", DType::u8, 1, Conversion::copy},
    {"BoolStorage", DType::u8, 1, Conversion::bool_to_uint8},
};

const StorageType* find_storage_type(const std::string& name) {
  for (const StorageType& t : kStorageTypes)
    if (name == t.name) return &t;
  return nullptr;
}

// torch.save never writes more dimensions; anything beyond is a corrupt file.
constexpr size_t kMaxDims = 64;
// A tensor may have more elements than its storage only through zero strides (an expanded
// tensor saved as is); this bounds the allocation such a file can ask for.
constexpr int64_t kMaxExpandedNumel = int64_t{1} << 24;
// The bytes all the tensors of a pickle may reference together: twice the file (tensors sharing a
// storage are materialised once each) or 1 GiB, whichever is larger. Without it, a small file
// could name one storage a million times, or many expanded tensors, and ask for terabytes; it is
// checked as each tensor is named, before anything is allocated.
constexpr int64_t kMinTensorBudgetBytes = int64_t{1} << 30;
// The largest element count whose byte size cannot overflow.
constexpr int64_t kMaxStorageNumel = std::numeric_limits<int64_t>::max() / 16;

// The legacy format's magic number 0x1950a86a20f9469cfc6c as LONG1 stores it (little-endian).
const std::string kLegacyMagic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);
constexpr int64_t kLegacyProtocolVersion = 1001;

// ---- what the pickle's hooks record --------------------------------------------------------

struct StorageRecord {
  const StorageType* type;
  int64_t numel;  // elements of the whole (root) storage
};

// What a persistent id names: a root storage, or (legacy view_metadata) a window of one.
struct StorageView {
  std::string key;
  const StorageType* type;
  int64_t offset;  // elements into the root storage
  int64_t numel;   // elements in the window
};

struct TensorRef {
  StorageView storage;
  int64_t offset;  // elements into the window
  Shape size, stride;
};

const TensorRef* as_tensor(const Value* v) {
  return v && v->kind == Kind::object ? std::any_cast<TensorRef>(&v->payload) : nullptr;
}

// "an int", "a tensor", "a torch.FloatStorage", "the global torch.FloatStorage", ...
std::string describe(const Value& v) {
  if (as_tensor(&v)) return "a tensor";
  if (v.kind == Kind::object) return "a " + v.qualified_name();
  if (v.kind == Kind::global) return "the global " + v.qualified_name();
  return pickle::a_kind_name(v.kind);
}

// The pickle hooks of one checkpoint, and the storages its persistent ids named.
class CheckpointPickle {
 public:
  // `file_size`: the checkpoint's size in bytes, which sets the budget for what its tensors may
  // reference in all (see kMinTensorBudgetBytes).
  CheckpointPickle(bool legacy, size_t file_size)
      : legacy_(legacy), budget_bytes_(std::max<int64_t>(kMinTensorBudgetBytes, 2 * static_cast<int64_t>(file_size))) {}

  Unpickler::Hooks hooks() {
    Unpickler::Hooks h;
    h.allow_global = [](const std::string& module, const std::string& name) {
      if (module == "torch._utils")
        return name == "_rebuild_tensor_v2" || name == "_rebuild_tensor" || name == "_rebuild_parameter";
      return module == "torch" && find_storage_type(name) != nullptr;
    };
    h.call = [this](Unpickler& u, const Value& callable, const Value& args) { return call(u, callable, args); };
    h.persistent_load = [this](Unpickler& u, const Value& pid) { return persistent_load(u, pid); };
    return h;
  }

  const StorageRecord* storage(const std::string& key) const {
    auto it = storages_.find(key);
    return it == storages_.end() ? nullptr : &it->second;
  }

 private:
  static int64_t get_int(Unpickler& u, const Value* v, const char* what) {
    if (!v->is_int()) u.fail(detail::concat_message(what, " is ", describe(*v), ", not an int"));
    return v->as_int();
  }
  static const std::string& get_string(Unpickler& u, const Value* v, const char* what) {
    if (!v->is_string()) u.fail(detail::concat_message(what, " is ", describe(*v), ", not a str"));
    return v->text;
  }
  static Shape get_shape(Unpickler& u, const Value* v, const char* what) {
    if (v->kind != Kind::tuple && v->kind != Kind::list)
      u.fail(detail::concat_message(what, " is ", describe(*v), ", not a tuple"));
    if (v->items.size() > kMaxDims) u.fail(detail::concat_message(what, " has ", v->items.size(), " dimensions"));
    Shape shape;
    for (const Value* d : v->items) {
      const int64_t n = get_int(u, d, what);
      if (n < 0) u.fail(detail::concat_message(what, " holds the negative number ", n));
      shape.push_back(n);
    }
    return shape;
  }

  // ('storage', torch.XStorage, key, location, numel) and, legacy, a 6th item view_metadata:
  // None or (view_key, offset, view_numel).
  Value* persistent_load(Unpickler& u, const Value& pid) {
    if (pid.kind != Kind::tuple || pid.items.empty() || !pid.items[0]->is_string())
      u.fail("a persistent id is " + describe(pid) + ", not a ('storage', ...) tuple");
    const std::string& tag = pid.items[0]->text;
    if (tag == "module")
      u.fail("the checkpoint pickles a whole nn.Module (torch.save(model)); only state dicts "
             "(torch.save(model.state_dict())) can be read");
    if (tag != "storage") u.fail("unknown persistent id '" + tag + "'");
    const size_t expected = legacy_ ? 6 : 5;
    if (pid.items.size() != expected)
      u.fail(detail::concat_message("a storage persistent id has ", pid.items.size(), " items, expected ", expected));
    const Value* type_value = pid.items[1];
    if (type_value->kind != Kind::global || type_value->module != "torch" || !find_storage_type(type_value->name))
      u.fail("a storage persistent id names " + describe(*type_value) + ", not a torch storage type");
    const StorageType* type = find_storage_type(type_value->name);
    const std::string& key = get_string(u, pid.items[2], "a storage key");
    get_string(u, pid.items[3], "a storage location");  // "cpu", "cuda:0", ...: all load to the CPU
    const int64_t numel = get_int(u, pid.items[4], "a storage size");
    if (numel < 0 || numel > kMaxStorageNumel)
      u.fail(detail::concat_message("storage '", key, "' has the impossible size ", numel));

    auto [it, inserted] = storages_.emplace(key, StorageRecord{type, numel});
    if (!inserted && (it->second.type != type || it->second.numel != numel))
      u.fail(detail::concat_message("storage '", key, "' is named as ", it->second.numel, " elements of torch.",
                                    it->second.type->name, " and as ", numel, " elements of torch.", type->name));

    StorageView view{key, type, 0, numel};
    if (legacy_ && pid.items[5]->kind != Kind::none) {
      const Value* meta = pid.items[5];
      if (meta->kind != Kind::tuple || meta->items.size() != 3)
        u.fail("a storage's view metadata is " + describe(*meta) + ", not (key, offset, size)");
      get_string(u, meta->items[0], "a storage view key");
      view.offset = get_int(u, meta->items[1], "a storage view offset");
      view.numel = get_int(u, meta->items[2], "a storage view size");
      if (view.offset < 0 || view.numel < 0 || view.offset > numel || view.numel > numel - view.offset)
        u.fail(detail::concat_message("a view of ", view.numel, " elements at offset ", view.offset,
                                      " does not fit storage '", key, "' of ", numel, " elements"));
    }
    Value* result = u.make(Kind::object);
    result->module = "torch";
    result->name = type->name;
    result->payload = std::move(view);
    return result;
  }

  Value* call(Unpickler& u, const Value& callable, const Value& args) {
    const std::string& name = callable.name;
    const std::vector<Value*>& a = args.items;
    if (callable.module == "torch._utils") {
      if (name == "_rebuild_tensor_v2") {
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (a.size() != 6 && a.size() != 7)
          u.fail(detail::concat_message("torch._utils._rebuild_tensor_v2 takes 6 or 7 arguments, got ", a.size()));
        return rebuild(u, callable, a);
      }
      if (name == "_rebuild_tensor") {  // (storage, storage_offset, size, stride): 2017-era files
        if (a.size() != 4)
          u.fail(detail::concat_message("torch._utils._rebuild_tensor takes 4 arguments, got ", a.size()));
        return rebuild(u, callable, a);
      }
      if (name == "_rebuild_parameter") {  // (tensor, requires_grad, backward_hooks)
        if (a.size() != 3 || !as_tensor(a[0]))
          u.fail("torch._utils._rebuild_parameter takes (tensor, requires_grad, backward_hooks)");
        return a[0];
      }
    }
    u.fail(callable.qualified_name() + " may only name the type inside a storage's persistent id, not be called");
  }

  Value* rebuild(Unpickler& u, const Value& callable, const std::vector<Value*>& a) {
    const StorageView* view = a[0]->kind == Kind::object ? std::any_cast<StorageView>(&a[0]->payload) : nullptr;
    if (!view)
      u.fail("the storage argument of " + callable.qualified_name() + " is " + describe(*a[0]) + ", not a storage");
    TensorRef ref{*view, get_int(u, a[1], "a tensor's storage offset"), get_shape(u, a[2], "a tensor's size"),
                  get_shape(u, a[3], "a tensor's stride")};
    if (ref.offset < 0) u.fail(detail::concat_message("negative storage offset ", ref.offset));
    if (ref.size.size() != ref.stride.size())
      u.fail(detail::concat_message("a tensor has ", ref.size.size(), " sizes and ", ref.stride.size(), " strides"));
    // numel, and the last element's index, overflow-checked.
    int64_t numel = 1, last = ref.offset;
    for (size_t d = 0; d < ref.size.size(); ++d) {
      if (ref.size[d] == 0) {
        numel = 0;
        break;
      }
      int64_t span;
      if (__builtin_mul_overflow(numel, ref.size[d], &numel) ||
          __builtin_mul_overflow(ref.size[d] - 1, ref.stride[d], &span) || __builtin_add_overflow(last, span, &last))
        u.fail("a tensor's size and strides overflow 64 bits");
    }
    if (numel > 0 && last >= view->numel)
      u.fail(detail::concat_message("a tensor of size ", shape_str(ref.size), ", stride ", shape_str(ref.stride),
                                    " at offset ", ref.offset, " reaches element ", last, " of storage '", view->key,
                                    "', which has ", view->numel, " elements"));
    if (numel > std::max(view->numel, kMaxExpandedNumel))
      u.fail(detail::concat_message("a tensor of size ", shape_str(ref.size), " has more elements than storage '",
                                    view->key, "' (", view->numel, ") and than an expanded tensor may have"));
    referenced_bytes_ += numel * static_cast<int64_t>(view->type->element_size);  // both bounded above
    if (referenced_bytes_ > budget_bytes_)
      u.fail(detail::concat_message("the tensors reference more than ", budget_bytes_,
                                    " bytes in all (twice the file's size, at least 1 GiB); refusing to materialise "
                                    "them"));
    Value* result = u.make(Kind::object);
    result->module = callable.module;
    result->name = callable.name;
    result->payload = std::move(ref);
    return result;
  }

  bool legacy_;
  int64_t budget_bytes_;
  int64_t referenced_bytes_ = 0;
  std::unordered_map<std::string, StorageRecord> storages_;
};

// ---- choosing the state dict ---------------------------------------------------------------

// The first entry of DICT that is not a tensor with a str key, or nullptr.
const std::pair<Value*, Value*>* first_non_tensor(const Value& dict) {
  for (const auto& entry : dict.entries)
    if (!entry.first->is_string() || !as_tensor(entry.second)) return &entry;
  return nullptr;
}

std::string entry_problem(const std::pair<Value*, Value*>& entry) {
  if (!entry.first->is_string()) return "a key is " + describe(*entry.first) + ", not a str";
  return "the entry '" + entry.first->text + "' is " + describe(*entry.second) + ", not a tensor";
}

// The root itself when it is a dict of tensors, else its "state_dict" or "model" dict of tensors.
std::vector<std::pair<std::string, TensorRef>> select_state_dict(const Value* root, const std::string& source) {
  if (root->kind != Kind::dict)
    fail(source, "the checkpoint holds ", describe(*root), ", not a state dict (a dict of tensors)");
  const Value* chosen = nullptr;
  const auto* bad = first_non_tensor(*root);
  if (!bad) {
    chosen = root;
  } else {
    for (const char* key : {"state_dict", "model"}) {
      const Value* inner = root->get(key);
      if (!inner) continue;
      if (inner->kind != Kind::dict)
        fail(source, "the checkpoint's '", key, "' is ", describe(*inner), ", not a state dict (a dict of tensors)");
      if (const auto* inner_bad = first_non_tensor(*inner))
        fail(source, "the checkpoint's '", key, "' is not a state dict: ", entry_problem(*inner_bad));
      chosen = inner;
      break;
    }
    if (!chosen)
      fail(source, "the checkpoint is not a state dict (", entry_problem(*bad),
           ") and holds no 'state_dict' or 'model' entry");
  }
  std::vector<std::pair<std::string, TensorRef>> out;
  out.reserve(chosen->entries.size());
  for (const auto& [key, value] : chosen->entries) {
    if (!pickle::is_valid_utf8(key->text)) fail(source, "a tensor name is not valid UTF-8");
    out.emplace_back(key->text, *as_tensor(value));
  }
  return out;
}

// ---- materialising tensors -----------------------------------------------------------------

// COUNT elements from SRC (SRC_STRIDE elements apart) to consecutive elements at DST.
void copy_run(uint8_t* dst, const uint8_t* src, int64_t count, int64_t src_stride, const StorageType& type) {
  const size_t es = type.element_size;
  switch (type.conversion) {
    case Conversion::copy:
      if (src_stride == 1) {
        std::memcpy(dst, src, static_cast<size_t>(count) * es);
      } else {
        for (int64_t i = 0; i < count; ++i) std::memcpy(dst + i * es, src + i * src_stride * es, es);
      }
      break;
    case Conversion::int16_to_int32:
      for (int64_t i = 0; i < count; ++i) {
        int16_t v;
        std::memcpy(&v, src + i * src_stride * 2, 2);
        const int32_t w = v;
        std::memcpy(dst + i * 4, &w, 4);
      }
      break;
    case Conversion::int8_to_int32:
      for (int64_t i = 0; i < count; ++i) {
        const int32_t w = static_cast<int8_t>(src[i * src_stride]);
        std::memcpy(dst + i * 4, &w, 4);
      }
      break;
    case Conversion::bool_to_uint8:
      for (int64_t i = 0; i < count; ++i) dst[i] = src[i * src_stride] != 0;
      break;
  }
}

// A contiguous copy of REF, whose root storage starts at BASE (bounds checked by rebuild()).
Tensor materialize(const TensorRef& ref, const uint8_t* base) {
  const StorageType& type = *ref.storage.type;
  Tensor out = nn::empty(ref.size, type.dtype);
  const int64_t numel = out.numel();
  if (numel == 0) return out;
  uint8_t* dst = static_cast<uint8_t*>(out.raw_data());
  const uint8_t* src = base + static_cast<size_t>(ref.storage.offset + ref.offset) * type.element_size;
  const size_t dst_es = dtype_size(type.dtype);
  const size_t nd = ref.size.size();

  bool contiguous = true;
  for (int64_t d = static_cast<int64_t>(nd) - 1, expected = 1; d >= 0; --d) {
    if (ref.size[d] != 1 && ref.stride[d] != expected) contiguous = false;
    expected *= ref.size[d];
  }
  if (contiguous) {
    copy_run(dst, src, numel, 1, type);
    return out;
  }
  // Odometer over all dimensions but the last; one strided run per step.
  const int64_t inner = ref.size[nd - 1], inner_stride = ref.stride[nd - 1];
  std::vector<int64_t> index(nd - 1, 0);
  int64_t offset = 0;
  for (int64_t run = 0, runs = numel / inner; run < runs; ++run) {
    copy_run(dst + static_cast<size_t>(run * inner) * dst_es, src + static_cast<size_t>(offset) * type.element_size,
             inner, inner_stride, type);
    for (int64_t d = static_cast<int64_t>(nd) - 2; d >= 0; --d) {
      if (++index[d] < ref.size[d]) {
        offset += ref.stride[d];
        break;
      }
      index[d] = 0;
      offset -= (ref.size[d] - 1) * ref.stride[d];
    }
  }
  return out;
}

// True when REF is its whole storage, densely, in the file's own element type: its bytes are
// the record's bytes.
bool is_whole_storage(const TensorRef& ref, const StorageRecord& storage) {
  if (ref.storage.type->conversion != Conversion::copy || ref.storage.offset != 0 || ref.offset != 0 ||
      ref.storage.numel != storage.numel)
    return false;
  int64_t expected = 1;
  for (size_t d = ref.size.size(); d-- > 0;) {
    if (ref.size[d] != 1 && ref.stride[d] != expected) return false;
    expected *= ref.size[d];
  }
  return expected == storage.numel;
}

// ---- zip -----------------------------------------------------------------------------------

// A read-only libzip archive over bytes in memory.
class ZipReader {
 public:
  ZipReader(const void* data, size_t size, const std::string& source) : source_(source) {
    zip_error_t error;
    zip_error_init(&error);
    zip_source_t* src = zip_source_buffer_create(data, size, 0, &error);
    if (!src) fail_with(error, "cannot read the zip archive");
    archive_ = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &error);
    if (!archive_) {
      zip_source_free(src);
      fail_with(error, "not a readable zip archive");
    }
    zip_error_fini(&error);
  }
  ~ZipReader() {
    if (archive_) zip_discard(archive_);
  }
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  std::vector<std::string> names() const {
    const zip_int64_t n = zip_get_num_entries(archive_, 0);
    std::vector<std::string> out;
    for (zip_int64_t i = 0; i < n; ++i) {
      const char* name = zip_get_name(archive_, static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW);
      if (!name) fail(source_, "the name of zip entry ", i, " cannot be read: ", zip_strerror(archive_));
      out.emplace_back(name);
    }
    return out;
  }

  // The index of entry NAME, or -1.
  zip_int64_t locate(const std::string& name) const { return zip_name_locate(archive_, name.c_str(), ZIP_FL_ENC_RAW); }

  // The size of an entry; when EXPECTED_SIZE >= 0 it must be exactly that.
  size_t entry_size(zip_int64_t index, const std::string& name, int64_t expected_size) const {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(archive_, static_cast<zip_uint64_t>(index), 0, &st) != 0)
      fail(source_, "zip entry ", name, ": ", zip_strerror(archive_));
    if (!(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE))
      fail(source_, "zip entry ", name, " does not record its size");
    if (expected_size >= 0 && st.size != static_cast<uint64_t>(expected_size))
      fail(source_, "zip entry ", name, " holds ", st.size, " bytes, expected ", expected_size,
           " (the storage's element count times its element size)");
    // Deflate cannot expand data more than ~1032 times: a larger claim is a corrupt header.
    if (st.size > st.comp_size * 1100 + 4096)
      fail(source_, "zip entry ", name, " claims ", st.size, " bytes from ", st.comp_size, " compressed bytes");
    return static_cast<size_t>(st.size);
  }

  // Reads the whole entry, of SIZE bytes (from entry_size), into DST; libzip checks its CRC.
  void read_into(zip_int64_t index, const std::string& name, uint8_t* dst, size_t size) const {
    zip_file_t* file = zip_fopen_index(archive_, static_cast<zip_uint64_t>(index), 0);
    if (!file) fail(source_, "zip entry ", name, " cannot be opened: ", zip_strerror(archive_));
    std::string problem;
    size_t got = 0;
    while (problem.empty() && got < size) {
      const zip_int64_t n = zip_fread(file, dst + got, size - got);
      if (n < 0) problem = zip_file_strerror(file);
      else if (n == 0) problem = detail::concat_message("ends after ", got, " of ", size, " bytes");
      else got += static_cast<size_t>(n);
    }
    if (problem.empty()) {  // read on to the end, where libzip checks the CRC
      uint8_t extra;
      const zip_int64_t n = zip_fread(file, &extra, 1);
      if (n < 0) problem = zip_file_strerror(file);
      else if (n > 0) problem = "is longer than its recorded size";
    }
    const int close_error = zip_fclose(file);
    if (problem.empty() && close_error != 0) problem = zip_error_strerror(zip_get_error(archive_));
    if (!problem.empty()) fail(source_, "zip entry ", name, ": ", problem);
  }

  std::vector<uint8_t> read(zip_int64_t index, const std::string& name, int64_t expected_size = -1) const {
    std::vector<uint8_t> bytes(entry_size(index, name, expected_size));
    read_into(index, name, bytes.data(), bytes.size());
    return bytes;
  }

 private:
  [[noreturn]] void fail_with(zip_error_t& error, const char* what) {
    const std::string reason = zip_error_strerror(&error);
    zip_error_fini(&error);
    fail(source_, what, ": ", reason);
  }

  std::string source_;
  zip_t* archive_ = nullptr;
};

ConvertedWeights parse_zip(const void* data, size_t size, const std::string& source) {
  ZipReader zip(data, size, source);
  // The pickle is the one `<prefix>/data.pkl`, whatever the prefix (torch uses the file's stem).
  std::string pickle_name;
  for (const std::string& name : zip.names()) {
    const size_t slash = name.find('/');
    if (slash == 0 || slash == std::string::npos || name.substr(slash) != "/data.pkl") continue;
    if (!pickle_name.empty()) fail(source, "the zip archive holds two pickles, ", pickle_name, " and ", name);
    pickle_name = name;
  }
  if (pickle_name.empty()) fail(source, "the zip archive holds no <prefix>/data.pkl: not a PyTorch checkpoint");
  const std::string prefix = pickle_name.substr(0, pickle_name.find('/'));

  const zip_int64_t byteorder_index = zip.locate(prefix + "/byteorder");
  if (byteorder_index >= 0) {
    std::vector<uint8_t> raw = zip.read(byteorder_index, prefix + "/byteorder");
    std::string order(raw.begin(), raw.end());
    while (!order.empty() && std::isspace(static_cast<unsigned char>(order.back()))) order.pop_back();
    if (order == "big")
      fail(source, "the checkpoint was written on a big-endian machine; only little-endian data is supported");
    if (order != "little") fail(source, "unknown byte order '", order.substr(0, 32), "' in ", prefix, "/byteorder");
  }

  const std::vector<uint8_t> bytes = zip.read(zip.locate(pickle_name), pickle_name);
  CheckpointPickle checkpoint(/*legacy=*/false, size);
  Unpickler unpickler(bytes.data(), bytes.size(), source + " (" + pickle_name + ")", checkpoint.hooks());
  size_t offset = 0;
  const Value* root = unpickler.load(offset);
  const auto state = select_state_dict(root, source);

  // A record that is exactly one tensor (the common case) is read straight into it; others are
  // read when their first tensor needs them and dropped after their last.
  std::unordered_map<std::string, int64_t> users;
  for (const auto& entry : state) ++users[entry.second.storage.key];
  std::unordered_map<std::string, std::vector<uint8_t>> records;
  ConvertedWeights out;
  for (const auto& [name, ref] : state) {
    const std::string& key = ref.storage.key;
    const StorageRecord& storage = *checkpoint.storage(key);
    const std::string record_name = prefix + "/data/" + key;
    auto it = records.find(key);
    if (it == records.end()) {
      const zip_int64_t index = zip.locate(record_name);
      if (index < 0) fail(source, "the record ", record_name, " of tensor '", name, "' is missing");
      const size_t nbytes =
          zip.entry_size(index, record_name, storage.numel * static_cast<int64_t>(storage.type->element_size));
      if (users[key] == 1 && is_whole_storage(ref, storage)) {
        Tensor t = nn::empty(ref.size, storage.type->dtype);
        if (nbytes > 0) zip.read_into(index, record_name, static_cast<uint8_t*>(t.raw_data()), nbytes);
        out.tensors.emplace_back(name, std::move(t));
        continue;
      }
      std::vector<uint8_t> bytes(nbytes);
      zip.read_into(index, record_name, bytes.data(), nbytes);
      it = records.emplace(key, std::move(bytes)).first;
    }
    out.tensors.emplace_back(name, materialize(ref, it->second.data()));
    if (--users[key] == 0) records.erase(it);
  }
  out.metadata[kMetaSourceFormat] = "torchvision-zip";
  return out;
}

// ---- legacy --------------------------------------------------------------------------------

ConvertedWeights parse_legacy(const uint8_t* data, size_t size, const std::string& source) {
  CheckpointPickle checkpoint(/*legacy=*/true, size);
  Unpickler unpickler(data, size, source, checkpoint.hooks());
  size_t offset = 0;
  const Value* magic = unpickler.load(offset);
  if (magic->kind != Kind::big_integer || magic->text != kLegacyMagic)
    fail(source, "not a PyTorch checkpoint: the file is a pickle, but does not start with torch.save's magic number");
  const Value* protocol = unpickler.load(offset);
  if (!protocol->is_int() || protocol->as_int() != kLegacyProtocolVersion)
    fail(source, "unsupported torch.save protocol version ",
         protocol->is_int() ? std::to_string(protocol->as_int()) : describe(*protocol), " (expected 1001)");
  const Value* sys_info = unpickler.load(offset);
  if (sys_info->kind != Kind::dict) fail(source, "the sys_info record is ", describe(*sys_info), ", not a dict");
  if (const Value* little = sys_info->get("little_endian"); little && (!little->is_int() || little->as_int() == 0))
    fail(source, "the checkpoint was written on a big-endian machine; only little-endian data is supported");
  const Value* root = unpickler.load(offset);
  const Value* keys = unpickler.load(offset);
  if (keys->kind != Kind::list) fail(source, "the storage key list is ", describe(*keys), ", not a list");

  // The storages follow, in the list's order: int64 element count, then the elements.
  std::unordered_map<std::string, const uint8_t*> bases;
  for (const Value* key_value : keys->items) {
    if (!key_value->is_string()) fail(source, "a storage key is ", describe(*key_value), ", not a str");
    const std::string& key = key_value->text;
    const StorageRecord* storage = checkpoint.storage(key);
    if (!storage) fail(source, "the storage list names '", key, "', which no persistent id named");
    if (size - offset < 8) fail(source, "truncated: the data of storage '", key, "' is missing (offset ", offset, ")");
    int64_t count;
    std::memcpy(&count, data + offset, 8);
    offset += 8;
    if (count != storage->numel)
      fail(source, "storage '", key, "' holds ", count, " elements, its persistent id says ", storage->numel);
    const uint64_t nbytes = static_cast<uint64_t>(count) * storage->type->element_size;
    if (nbytes > size - offset)
      fail(source, "truncated: storage '", key, "' needs ", nbytes, " bytes at offset ", offset, ", ", size - offset,
           " left");
    if (!bases.emplace(key, data + offset).second) fail(source, "the storage list names '", key, "' twice");
    offset += static_cast<size_t>(nbytes);
  }

  ConvertedWeights out;
  for (const auto& [name, ref] : select_state_dict(root, source)) {
    auto it = bases.find(ref.storage.key);
    if (it == bases.end())
      fail(source, "storage '", ref.storage.key, "' of tensor '", name, "' has no data in the file");
    out.tensors.emplace_back(name, materialize(ref, it->second));
  }
  out.metadata[kMetaSourceFormat] = "torchvision-legacy";
  return out;
}

// ---- files ---------------------------------------------------------------------------------

std::string errno_text(int error) { return std::strerror(error); }

// A read-only private mapping of a whole file.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(path, "cannot open: ", errno_text(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      fail(path, "cannot stat: ", errno_text(e));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      fail(path, "not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ == 0) {
      ::close(fd);
      fail(path, "the file is empty");
    }
    void* address = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int e = errno;
    ::close(fd);
    if (address == MAP_FAILED) fail(path, "cannot map ", size_, " bytes into memory: ", errno_text(e));
    address_ = address;
  }
  ~MappedFile() { ::munmap(address_, size_); }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const void* data() const { return address_; }
  size_t size() const { return size_; }

 private:
  void* address_ = nullptr;
  size_t size_ = 0;
};

}  // namespace

ConvertedWeights parse_torch_checkpoint(const void* data, size_t size, const std::string& source_name) {
  const auto* p = static_cast<const uint8_t*>(data);
  ConvertedWeights out;
  if (size >= 4 && p[0] == 'P' && p[1] == 'K' && ((p[2] == 3 && p[3] == 4) || (p[2] == 5 && p[3] == 6))) {
    out = parse_zip(data, size, source_name);
  } else if (size >= 1 && p[0] == 0x80) {  // PROTO: a pickle, the legacy stream
    out = parse_legacy(p, size, source_name);
  } else if (size >= 262 && std::memcmp(p + 257, "ustar", 5) == 0) {
    fail(source_name, "unsupported: a tar-format torch.save checkpoint (PyTorch before 0.1.10); "
                      "re-save it with a recent PyTorch");
  } else {
    fail(source_name, "not a PyTorch checkpoint (neither a zip archive nor a legacy torch.save stream)");
  }
  check_unique_names(out, source_name);
  out.metadata[kMetaPreprocessing] = "torchvision";
  out.metadata[kMetaSourceFile] = std::filesystem::path(source_name).filename().string();
  return out;
}

ConvertedWeights read_torch_checkpoint(const std::string& path) {
  MappedFile file(path);
  return parse_torch_checkpoint(file.data(), file.size(), path);
}

}  // namespace nn::weights
