// The .pth reader and its restricted unpickler (weights/src/{pickle,torch_checkpoint}.*).
//
// TorchCheckpoint (cpu): pickles and checkpoints assembled byte by byte here - every opcode the
// VM supports, refused globals and opcodes, limits, zip (with a minimal stored-zip writer) and
// legacy files in the torch 1.x and 2017 (Python 2, _rebuild_tensor, storage views) styles,
// training checkpoints, every malformed-file rule, truncation at every length and a fixed-seed
// byte-corruption loop that must end in a result or an nn::Error, never a crash.
// TorchCheckpointGolden (golden): files written by PyTorch itself
// (tests/golden/make_torch_checkpoints.py) must give exactly the tensors PyTorch holds.
#include <gtest/gtest.h>

#include "scratch_dir.h"
#include <nn/io/safetensors.h>
#include <nn/nn.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "pickle.h"
#include "torch_checkpoint.h"

namespace fs = std::filesystem;
using nn::Shape;
using nn::Tensor;
using nn::weights::ConvertedWeights;
using nn::weights::parse_torch_checkpoint;
using nn::weights::pickle::Kind;
using nn::weights::pickle::Unpickler;
using nn::weights::pickle::Value;

namespace {

// ---- helpers -------------------------------------------------------------------------------


void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le(uint64_t v, int n) {
  std::string s(static_cast<size_t>(n), '\0');
  for (int i = 0; i < n; ++i) s[static_cast<size_t>(i)] = static_cast<char>(v >> (8 * i));
  return s;
}

template <typename T>
std::string raw_of(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

// Runs FN, which must throw nn::Error whose message contains every one of NEEDLES.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << (needles.empty() ? "" : needles[0]) << "'";
  } catch (const nn::Error& e) {
    const std::string message = e.what();
    for (const std::string& needle : needles)
      EXPECT_NE(message.find(needle), std::string::npos) << "'" << needle << "' not in: " << message;
  }
}

ConvertedWeights parse(const std::string& bytes, const std::string& name = "test.pth") {
  return parse_torch_checkpoint(bytes.data(), bytes.size(), name);
}

const Tensor& tensor_named(const ConvertedWeights& w, const std::string& name) {
  for (const auto& [n, t] : w.tensors)
    if (n == name) return t;
  throw nn::Error("no tensor named " + name);
}

// A pickle being assembled opcode by opcode.
class P {
 public:
  P& op(uint8_t c) { s_ += static_cast<char>(c); return *this; }
  P& raw(const std::string& bytes) { s_ += bytes; return *this; }
  P& proto(int version = 2) { return op(0x80).op(static_cast<uint8_t>(version)); }
  P& str(const std::string& t) { return op('X').raw(le(t.size(), 4)).raw(t); }         // BINUNICODE
  P& str2(const std::string& t) { return op('U').raw(le(t.size(), 1)).raw(t); }        // SHORT_BINSTRING (Python 2)
  P& integer(int64_t v) {
    if (v >= 0 && v < 256) return op('K').raw(le(static_cast<uint64_t>(v), 1));
    if (v >= 0 && v < 65536) return op('M').raw(le(static_cast<uint64_t>(v), 2));
    if (v >= INT32_MIN && v <= INT32_MAX) return op('J').raw(le(static_cast<uint32_t>(v), 4));
    return op(0x8a).op(8).raw(le(static_cast<uint64_t>(v), 8));  // LONG1
  }
  P& long1(int64_t v) { return op(0x8a).op(8).raw(le(static_cast<uint64_t>(v), 8)); }
  P& global(const std::string& module, const std::string& name) { return op('c').raw(module + "\n" + name + "\n"); }
  P& mark() { return op('('); }
  P& tuple() { return op('t'); }
  P& empty_tuple() { return op(')'); }
  P& reduce() { return op('R'); }
  P& setitems() { return op('u'); }
  P& setitem() { return op('s'); }
  P& none() { return op('N'); }
  P& stop() { return op('.'); }
  P& ordered_dict() { return global("collections", "OrderedDict").empty_tuple().reduce(); }
  P& shape(const Shape& s) {
    mark();
    for (int64_t d : s) integer(d);
    return tuple();
  }
  const std::string& bytes() const { return s_; }

 private:
  std::string s_;
};

// Runs the VM without hooks (no global but OrderedDict) over BYTES; the value stays valid while
// the returned Unpickler lives.
struct Loaded {
  std::string bytes;
  std::unique_ptr<Unpickler> unpickler;
  Value* value = nullptr;
};
Loaded load_pickle(const std::string& bytes, Unpickler::Hooks hooks = {}, nn::weights::pickle::Limits limits = {}) {
  Loaded l;
  l.bytes = bytes;
  l.unpickler = std::make_unique<Unpickler>(l.bytes.data(), l.bytes.size(), "pickle", std::move(hooks), limits);
  size_t offset = 0;
  l.value = l.unpickler->load(offset);
  EXPECT_EQ(offset, l.bytes.size());
  return l;
}

// ---- checkpoints assembled here --------------------------------------------------------------

enum class Style {
  zip,          // torch 1.x zip: BINUNICODE, _rebuild_tensor_v2, 5-item persistent ids
  legacy,       // torch 1.x legacy: as zip, plus view_metadata None
  legacy_2017,  // Python 2 strings, _rebuild_tensor, LONG1 sizes, optional view_metadata
};

struct StorageSpec {
  std::string type;  // "FloatStorage", ...
  int64_t numel;
  std::string bytes;  // numel * element size
};

struct TensorSpec {
  std::string name, key;
  int64_t offset;
  Shape size, stride;
  // Legacy only: the persistent id names a window (view_key, view_offset, view_numel) of the root.
  bool view = false;
  int64_t view_offset = 0, view_numel = 0;
};

struct Checkpoint {
  std::map<std::string, StorageSpec> storages;
  std::vector<TensorSpec> tensors;
};

void emit_state_dict(P& p, const Checkpoint& c, Style style) {
  const bool py2 = style == Style::legacy_2017;
  auto s = [&](const std::string& t) -> P& { return py2 ? p.str2(t) : p.str(t); };
  p.ordered_dict().mark();
  for (const TensorSpec& t : c.tensors) {
    const StorageSpec& storage = c.storages.at(t.key);
    s(t.name);
    p.global("torch._utils", py2 ? "_rebuild_tensor" : "_rebuild_tensor_v2").mark();
    p.mark();
    s("storage");
    p.global("torch", storage.type);
    s(t.key);
    s("cpu");
    if (py2) p.long1(storage.numel);
    else p.integer(storage.numel);
    if (style != Style::zip) {
      if (t.view) {
        s(t.key + "_view");
        p.integer(t.view_offset).integer(t.view_numel).op(0x87);  // TUPLE3
      } else {
        p.none();
      }
    }
    p.tuple().op('Q');  // BINPERSID
    p.integer(t.offset).shape(t.size).shape(t.stride);
    if (!py2) p.op(0x89).ordered_dict();  // requires_grad False, backward_hooks OrderedDict()
    p.tuple().reduce();
  }
  p.setitems();
}

std::string state_pickle(const Checkpoint& c, Style style, const std::string& wrapper_key = "") {
  P p;
  p.proto(2);
  if (!wrapper_key.empty()) {
    // {"epoch": 5, <wrapper_key>: state_dict, "note": "x"} - a training checkpoint.
    p.op('}').mark().str("epoch").integer(5).str(wrapper_key);
    emit_state_dict(p, c, style);
    p.str("note").str("x").setitems();
  } else {
    emit_state_dict(p, c, style);
  }
  return p.stop().bytes();
}

// ---- a minimal zip writer: stored entries, CRC-32, central directory -------------------------

uint32_t crc32(const std::string& data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : data) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

std::string make_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out, central;
  for (const auto& [name, data] : entries) {
    const uint32_t crc = crc32(data);
    const std::string common = le(20, 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0x21, 2) + le(crc, 4) +
                               le(data.size(), 4) + le(data.size(), 4) + le(name.size(), 2) + le(0, 2);
    central += le(0x02014b50, 4) + le(20, 2) + common + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) +
               le(out.size(), 4) + name;
    out += le(0x04034b50, 4) + common + name + data;
  }
  const size_t central_offset = out.size();
  out += central;
  out += le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(entries.size(), 2) + le(entries.size(), 2) +
         le(central.size(), 4) + le(central_offset, 4) + le(0, 2);
  return out;
}

std::string zip_checkpoint(const Checkpoint& c, const std::string& wrapper_key = "",
                           std::vector<std::pair<std::string, std::string>> extra = {}) {
  std::vector<std::pair<std::string, std::string>> entries{
      {"archive/data.pkl", state_pickle(c, Style::zip, wrapper_key)}};
  for (const auto& [key, storage] : c.storages) entries.emplace_back("archive/data/" + key, storage.bytes);
  entries.emplace_back("archive/version", "3\n");
  for (auto& e : extra) entries.push_back(std::move(e));
  return make_zip(entries);
}

std::string legacy_header(bool py2, bool little_endian = true) {
  auto s = [&](P& p, const std::string& t) -> P& { return py2 ? p.str2(t) : p.str(t); };
  P magic;
  magic.proto(2).op(0x8a).op(10).raw(std::string("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10)).stop();
  P version;
  version.proto(2).integer(1001).stop();
  P info;
  info.proto(2).op('}').mark();
  s(info, "protocol_version").integer(1001);
  s(info, "little_endian").op(little_endian ? 0x88 : 0x89);
  s(info, "type_sizes").op('}').mark();
  s(info, "short").integer(2);
  s(info, "int").integer(4);
  s(info, "long").integer(8);
  info.setitems().setitems().stop();
  return magic.bytes() + version.bytes() + info.bytes();
}

std::string legacy_checkpoint(const Checkpoint& c, Style style, const std::string& wrapper_key = "") {
  const bool py2 = style == Style::legacy_2017;
  std::string out = legacy_header(py2) + state_pickle(c, style, wrapper_key);
  P keys;
  keys.proto(2).op(']').mark();
  for (const auto& [key, storage] : c.storages) py2 ? keys.str2(key) : keys.str(key);
  keys.op('e').stop();  // APPENDS
  out += keys.bytes();
  for (const auto& [key, storage] : c.storages) out += le(static_cast<uint64_t>(storage.numel), 8) + storage.bytes;
  return out;
}

// The checkpoint most tests use: every storage type the reader converts, views with offsets and
// strides, two tensors sharing a storage, a 0-d tensor.
Checkpoint sample_checkpoint() {
  Checkpoint c;
  std::vector<float> f(12);
  for (int i = 0; i < 12; ++i) f[static_cast<size_t>(i)] = 0.5f * static_cast<float>(i) - 1.0f;
  c.storages["0"] = {"FloatStorage", 12, raw_of(f)};
  c.storages["1"] = {"LongStorage", 1, raw_of(std::vector<int64_t>{42})};
  c.storages["2"] = {"HalfStorage", 3, raw_of(std::vector<uint16_t>{0x3c00, 0xc000, 0x3800})};  // 1, -2, 0.5
  c.storages["3"] = {"BoolStorage", 4, std::string("\x00\x01\x02\x00", 4)};
  c.storages["4"] = {"ShortStorage", 2, raw_of(std::vector<int16_t>{-5, 300})};
  c.storages["5"] = {"DoubleStorage", 7, raw_of(std::vector<double>{0, 1, 2, 3, 4, 5, 6})};
  c.storages["6"] = {"CharStorage", 2, std::string("\xff\x07", 2)};
  c.storages["7"] = {"BFloat16Storage", 2, raw_of(std::vector<uint16_t>{0x3f80, 0xc040})};  // 1, -3
  c.storages["8"] = {"IntStorage", 2, raw_of(std::vector<int32_t>{-7, 1 << 20})};
  c.storages["9"] = {"ByteStorage", 3, std::string("\x01\xfe\x80", 3)};
  c.tensors = {
      {"conv.weight", "0", 0, {3, 4}, {4, 1}},
      {"conv.weight_t", "0", 0, {4, 3}, {1, 4}},  // transposed view of the same storage
      {"tail", "0", 5, {7}, {1}},                 // storage offset
      {"bn.num_batches_tracked", "1", 0, {}, {}},
      {"half", "2", 0, {3}, {1}},
      {"mask", "3", 0, {2, 2}, {2, 1}},
      {"short", "4", 0, {2}, {1}},
      {"strided", "5", 1, {2, 2}, {3, 2}},  // elements 1, 3, 4, 6
      {"char", "6", 0, {2}, {1}},
      {"bf16", "7", 0, {2}, {1}},
      {"int", "8", 0, {2}, {1}},
      {"byte", "9", 0, {3}, {1}},
  };
  return c;
}

void expect_sample_tensors(const ConvertedWeights& w) {
  std::vector<std::string> names;
  for (const auto& [n, t] : w.tensors) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"conv.weight", "conv.weight_t", "tail", "bn.num_batches_tracked", "half",
                                             "mask", "short", "strided", "char", "bf16", "int", "byte"}));
  std::vector<float> f(12);
  for (int i = 0; i < 12; ++i) f[static_cast<size_t>(i)] = 0.5f * static_cast<float>(i) - 1.0f;
  const Tensor& w0 = tensor_named(w, "conv.weight");
  EXPECT_EQ(w0.dtype(), nn::f32);
  EXPECT_EQ(w0.shape(), (Shape{3, 4}));
  EXPECT_EQ(w0.to_vector<float>(), f);
  const Tensor& wt = tensor_named(w, "conv.weight_t");
  EXPECT_EQ(wt.shape(), (Shape{4, 3}));
  EXPECT_TRUE(wt.is_contiguous());
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(wt.at({i, j}), f[static_cast<size_t>(j * 4 + i)]);
  EXPECT_FALSE(wt.storage() == w0.storage());  // copies, not aliases
  EXPECT_EQ(tensor_named(w, "tail").to_vector<float>(), std::vector<float>(f.begin() + 5, f.end()));
  const Tensor& nbt = tensor_named(w, "bn.num_batches_tracked");
  EXPECT_EQ(nbt.dtype(), nn::i64);
  EXPECT_EQ(nbt.dim(), 0);
  EXPECT_EQ(nbt.item<int64_t>(), 42);
  EXPECT_EQ(tensor_named(w, "half").dtype(), nn::f16);
  EXPECT_EQ(tensor_named(w, "half").to_vector<float>(), (std::vector<float>{1, -2, 0.5}));
  EXPECT_EQ(tensor_named(w, "mask").dtype(), nn::u8);
  EXPECT_EQ(tensor_named(w, "mask").to_vector<int>(), (std::vector<int>{0, 1, 1, 0}));
  EXPECT_EQ(tensor_named(w, "short").dtype(), nn::i32);
  EXPECT_EQ(tensor_named(w, "short").to_vector<int>(), (std::vector<int>{-5, 300}));
  EXPECT_EQ(tensor_named(w, "strided").dtype(), nn::f64);
  EXPECT_EQ(tensor_named(w, "strided").to_vector<double>(), (std::vector<double>{1, 3, 4, 6}));
  EXPECT_EQ(tensor_named(w, "char").dtype(), nn::i32);
  EXPECT_EQ(tensor_named(w, "char").to_vector<int>(), (std::vector<int>{-1, 7}));
  EXPECT_EQ(tensor_named(w, "bf16").dtype(), nn::bf16);
  EXPECT_EQ(tensor_named(w, "bf16").to_vector<float>(), (std::vector<float>{1, -3}));
  EXPECT_EQ(tensor_named(w, "int").dtype(), nn::i32);
  EXPECT_EQ(tensor_named(w, "int").to_vector<int>(), (std::vector<int>{-7, 1 << 20}));
  EXPECT_EQ(tensor_named(w, "byte").dtype(), nn::u8);
  EXPECT_EQ(tensor_named(w, "byte").to_vector<int>(), (std::vector<int>{1, 254, 128}));
}

// A 2017-style legacy checkpoint: a root storage of 10 floats, one tensor over the whole root and
// one over a window (elements 4..9) of it.
Checkpoint legacy_view_checkpoint() {
  Checkpoint c;
  std::vector<float> f(10);
  for (int i = 0; i < 10; ++i) f[static_cast<size_t>(i)] = static_cast<float>(i);
  c.storages["140234"] = {"FloatStorage", 10, raw_of(f)};
  c.storages["140999"] = {"LongStorage", 2, raw_of(std::vector<int64_t>{-1, 1LL << 40})};
  TensorSpec whole{"features.0.weight", "140234", 0, {10}, {1}};
  TensorSpec window{"features.0.bias", "140234", 1, {2, 2}, {2, 1}};  // window elements 1..4 = root 5..8
  window.view = true;
  window.view_offset = 4;
  window.view_numel = 6;
  c.tensors = {whole, window, {"classifier.count", "140999", 0, {2}, {1}}};
  return c;
}

// ---- the VM ----------------------------------------------------------------------------------

TEST(TorchCheckpoint, PickleScalarOpcodes) {
  P p;
  p.proto(4).op(0x95).raw(le(0, 8));                    // FRAME (a hint, skipped)
  p.mark();
  p.none().op(0x88).op(0x89);                           // None True False
  p.op('K').raw(le(200, 1));                            // BININT1
  p.op('M').raw(le(60000, 2));                          // BININT2
  p.op('J').raw(le(static_cast<uint32_t>(-123456), 4)); // BININT (signed)
  p.op(0x8a).op(0);                                     // LONG1 0 bytes = 0
  p.op(0x8a).op(2).raw(std::string("\xff\x7f", 2));     // LONG1 32767
  p.op(0x8a).op(1).raw(std::string("\xff", 1));         // LONG1 -1
  p.op(0x8a).op(9).raw(std::string("\x00\x00\x00\x00\x00\x00\x00\x00\x00", 9));  // LONG1 0, padded
  p.op(0x8b).raw(le(10, 4)).raw(std::string("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10));  // LONG4 big
  p.op('I').raw("-17\n").op('I').raw("01\n").op('L').raw("12345678901L\n");  // protocol 0 ints
  p.op('F').raw("2.5\n");                                               // FLOAT
  p.op('G').raw(std::string("\x40\x09\x21\xfb\x54\x44\x2d\x18", 8));    // BINFLOAT pi, big-endian
  p.str("h\xc3\xa9llo");                                                // BINUNICODE
  p.op(0x8c).op(2).raw("ab");                                           // SHORT_BINUNICODE
  p.op(0x8d).raw(le(3, 8)).raw("xyz");                                  // BINUNICODE8
  p.op('T').raw(le(2, 4)).raw("py");                                    // BINSTRING
  p.str2("s2");                                                         // SHORT_BINSTRING
  p.op('B').raw(le(3, 4)).raw(std::string("\x00\x01\x02", 3));          // BINBYTES
  p.op('C').op(1).raw("z");                                             // SHORT_BINBYTES
  p.op(0x8e).raw(le(2, 8)).raw("qq");                                   // BINBYTES8
  p.tuple().stop();
  Loaded l = load_pickle(p.bytes());
  const auto& v = l.value->items;
  ASSERT_EQ(l.value->kind, Kind::tuple);
  ASSERT_EQ(v.size(), 24u);
  EXPECT_EQ(v[0]->kind, Kind::none);
  EXPECT_TRUE(v[1]->kind == Kind::boolean && v[1]->boolean);
  EXPECT_TRUE(v[2]->kind == Kind::boolean && !v[2]->boolean);
  EXPECT_EQ(v[3]->integer, 200);
  EXPECT_EQ(v[4]->integer, 60000);
  EXPECT_EQ(v[5]->integer, -123456);
  EXPECT_EQ(v[6]->integer, 0);
  EXPECT_EQ(v[7]->integer, 32767);
  EXPECT_EQ(v[8]->integer, -1);
  EXPECT_TRUE(v[9]->kind == Kind::integer && v[9]->integer == 0);
  EXPECT_EQ(v[10]->kind, Kind::big_integer);
  EXPECT_EQ(v[10]->text.size(), 10u);
  EXPECT_EQ(v[11]->integer, -17);
  EXPECT_TRUE(v[12]->kind == Kind::boolean && v[12]->boolean);
  EXPECT_EQ(v[13]->integer, 12345678901LL);
  EXPECT_EQ(v[14]->floating, 2.5);
  EXPECT_DOUBLE_EQ(v[15]->floating, 3.141592653589793);
  EXPECT_EQ(v[16]->text, "h\xc3\xa9llo");
  EXPECT_EQ(v[17]->text, "ab");
  EXPECT_EQ(v[18]->text, "xyz");
  EXPECT_TRUE(v[19]->is_string() && v[19]->text == "py");
  EXPECT_TRUE(v[20]->is_string() && v[20]->text == "s2");
  EXPECT_TRUE(v[21]->kind == Kind::bytes && v[21]->text == std::string("\x00\x01\x02", 3));
  EXPECT_EQ(v[22]->text, "z");
  EXPECT_TRUE(v[23]->kind == Kind::bytes && v[23]->text == "qq");
}

TEST(TorchCheckpoint, PickleContainersAndMemo) {
  P q;
  q.proto(2).mark();
  q.op('}').op('q').op(0);                                            // EMPTY_DICT, BINPUT 0
  q.str("a").integer(1).setitem();                                    // SETITEM
  q.str("b").op(']').op('r').raw(le(70000, 4));                       // EMPTY_LIST, LONG_BINPUT 70000
  q.integer(1).op('a').mark().integer(2).integer(3).op('e');          // APPEND, APPENDS
  q.setitem();
  q.str("a").integer(9).setitem();                                    // replaces "a", keeps its place
  q.mark().str("c").op(')').op(0x85).str("d").op('h').op(0).setitems();  // "c": ((),), "d": the dict
  q.op('j').raw(le(70000, 4));                                        // LONG_BINGET: the list   -> v[1]
  q.op('p').raw("5\n");                                               // PUT 5
  q.op(0x94);                                                         // MEMOIZE: index 3
  q.op('2').op('0');                                                  // DUP, POP
  q.op(0x8f).mark().integer(7).integer(8).op(0x90);                   // EMPTY_SET, ADDITEMS    -> v[2]
  q.mark().integer(6).op(0x91);                                       // FROZENSET              -> v[3]
  q.mark().str("k").integer(0).op('d');                               // DICT                   -> v[4]
  q.mark().integer(1).op('l');                                        // LIST                   -> v[5]
  q.op('g').raw("5\n");                                               // GET 5                  -> v[6]
  q.op('h').op(3);                                                    // BINGET 3               -> v[7]
  q.mark().integer(4).integer(5).op(0x86).op('1');                    // TUPLE2, POP_MARK drops it
  q.mark().op('0');                                                   // POP of a bare mark
  q.integer(1).integer(2).integer(3).op(0x87);                        // TUPLE3                 -> v[8]
  q.tuple().stop();
  Loaded l = load_pickle(q.bytes());
  const auto& v = l.value->items;
  ASSERT_EQ(v.size(), 9u);
  const Value* d = v[0];
  ASSERT_EQ(d->kind, Kind::dict);
  ASSERT_EQ(d->entries.size(), 4u);
  EXPECT_EQ(d->entries[0].first->text, "a");
  EXPECT_EQ(d->get("a")->integer, 9);
  const Value* list = d->get("b");
  ASSERT_EQ(list->kind, Kind::list);
  ASSERT_EQ(list->items.size(), 3u);
  EXPECT_EQ(list->items[2]->integer, 3);
  EXPECT_EQ(d->get("c")->kind, Kind::tuple);
  EXPECT_EQ(d->get("c")->items[0]->kind, Kind::tuple);
  EXPECT_EQ(d->get("d"), d);   // a cycle through the memo is harmless
  EXPECT_EQ(v[1], list);       // LONG_BINGET
  EXPECT_EQ(v[2]->kind, Kind::set);
  EXPECT_EQ(v[2]->items.size(), 2u);
  EXPECT_EQ(v[3]->kind, Kind::set);
  EXPECT_EQ(v[4]->get("k")->integer, 0);
  EXPECT_EQ(v[5]->kind, Kind::list);
  EXPECT_EQ(v[6], list);       // GET 5 (PUT 5 stored the list)
  EXPECT_EQ(v[7], list);       // BINGET 3 (MEMOIZE stored it after entries 0, 70000 and 5)
  ASSERT_EQ(v[8]->kind, Kind::tuple);
  EXPECT_EQ(v[8]->items.size(), 3u);
}

TEST(TorchCheckpoint, PickleGlobalsCallsAndPersistentIds) {
  int calls = 0, pids = 0;
  Unpickler::Hooks hooks;
  hooks.allow_global = [](const std::string& m, const std::string& n) { return m == "mod" && n == "make"; };
  hooks.call = [&](Unpickler& u, const Value& callable, const Value& args) {
    ++calls;
    Value* r = u.make(Kind::object);
    r->module = callable.module;
    r->name = callable.name;
    r->items = args.items;
    r->payload = static_cast<int>(args.items.size());
    return r;
  };
  hooks.persistent_load = [&](Unpickler& u, const Value& pid) {
    ++pids;
    Value* r = u.make(Kind::string);
    r->text = "pid:" + (pid.is_string() ? pid.text : std::string(nn::weights::pickle::kind_name(pid.kind)));
    return r;
  };
  P p;
  p.proto(4).mark();
  p.op(0x8c).op(11).raw("collections").op(0x8c).op(11).raw("OrderedDict").op(0x93);  // STACK_GLOBAL
  p.op(0x94).mark().str("x").integer(1).op(0x86).op('l').op(0x85).reduce();  // OrderedDict([("x", 1)])
  p.op('}').str("_metadata").op('}').setitem().op('b');                              // BUILD: kept, not applied
  p.global("mod", "make").integer(1).integer(2).op(0x86).reduce();                   // REDUCE
  p.global("mod", "make").op(')').op(0x81);                                          // NEWOBJ
  p.global("mod", "make").op(')').op('}').op(0x92);                                  // NEWOBJ_EX, no kwargs
  p.str("id").op('Q');                                                               // BINPERSID
  p.op('P').raw("text id\n");                                                        // PERSID
  p.tuple().stop();
  Loaded l = load_pickle(p.bytes(), hooks);
  const auto& v = l.value->items;
  ASSERT_EQ(v.size(), 6u);
  ASSERT_EQ(v[0]->kind, Kind::dict);
  EXPECT_EQ(v[0]->get("x")->integer, 1);
  ASSERT_NE(v[0]->state, nullptr);
  EXPECT_NE(v[0]->state->get("_metadata"), nullptr);
  EXPECT_EQ(v[1]->kind, Kind::object);
  EXPECT_EQ(v[1]->qualified_name(), "mod.make");
  EXPECT_EQ(std::any_cast<int>(v[1]->payload), 2);
  EXPECT_EQ(std::any_cast<int>(v[2]->payload), 0);
  EXPECT_EQ(std::any_cast<int>(v[3]->payload), 0);
  EXPECT_EQ(v[4]->text, "pid:id");
  EXPECT_EQ(v[5]->text, "pid:text id");
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(pids, 2);
}

TEST(TorchCheckpoint, PickleRefusesForbiddenGlobals) {
  // The classic: os.system("...") - refused when named, before anything could call it.
  P p;
  p.global("os", "system").str("touch /tmp/pwned").op(0x85).reduce().stop();
  expect_error([&] { load_pickle(p.bytes()); }, {"refusing to load", "'os.system'", "offset 0", "GLOBAL"});
  P q;
  q.proto(4).op(0x8c).op(8).raw("builtins").op(0x8c).op(4).raw("eval").op(0x93).stop();
  expect_error([&] { load_pickle(q.bytes()); }, {"refusing to load", "'builtins.eval'", "STACK_GLOBAL"});
  // Allowed by nobody: even torch's own names outside the allowlist.
  P r;
  r.proto(2).global("torch", "load").stop();
  expect_error([&] { load_pickle(r.bytes()); }, {"'torch.load'"});

  // Inside checkpoints: the reader's allowlist holds only the tensor machinery.
  Checkpoint c = sample_checkpoint();
  std::string pickle = state_pickle(c, Style::zip);
  const std::string needle = "torch._utils\n_rebuild_tensor_v2\n";
  const size_t at = pickle.find(needle);
  ASSERT_NE(at, std::string::npos);
  pickle.replace(at, needle.size(), "posix\nsystem\n");
  std::vector<std::pair<std::string, std::string>> entries{{"archive/data.pkl", pickle}};
  expect_error([&] { parse(make_zip(entries)); }, {"test.pth", "'posix.system'", "refusing"});
  std::string legacy = legacy_checkpoint(c, Style::legacy);
  const size_t at2 = legacy.find(needle);
  legacy.replace(at2, needle.size(), "subprocess\nPopen\n");
  expect_error([&] { parse(legacy); }, {"'subprocess.Popen'"});
  // A storage type may be named, not called.
  P s;
  s.proto(2).global("torch", "FloatStorage").op(')').reduce().stop();
  expect_error([&] { parse(make_zip({{"archive/data.pkl", s.bytes()}})); }, {"torch.FloatStorage", "not be called"});
}

TEST(TorchCheckpoint, PickleRejectsUnsupportedOpcodes) {
  expect_error([] { load_pickle(std::string("\x80\x02") + "imod\nname\n"); }, {"offset 2", "0x69 INST", "unsupported"});
  expect_error([] { load_pickle(std::string("\x80\x02\x82\x01", 4)); }, {"offset 2", "0x82 EXT1"});
  expect_error([] { load_pickle(std::string("\x80\x02\xff", 3)); }, {"offset 2", "0xff", "unsupported opcode"});
  expect_error([] { load_pickle("S'abc'\n."); }, {"offset 0", "STRING"});
  expect_error([] { load_pickle(std::string("\x80\x05\x97", 3)); }, {"NEXT_BUFFER"});
  expect_error([] { load_pickle(std::string("\x80\x06N.", 4)); }, {"protocol 6"});
}

TEST(TorchCheckpoint, PickleMalformedInputsAreErrors) {
  expect_error([] { load_pickle("0."); }, {"stack underflow"});
  expect_error([] { load_pickle("."); }, {"stack underflow"});
  expect_error([] { load_pickle("(N0"); }, {"truncated"});
  expect_error([] { load_pickle("}(K\x01u."); }, {"odd number"});
  expect_error([] { load_pickle("}K\x01" "a."); }, {"APPEND needs a list", "found a dict"});
  expect_error([] { load_pickle("h\x03."); }, {"memo entry 3"});
  expect_error([] { load_pickle("]]b."); }, {"BUILD on a list"});
  expect_error([] { load_pickle("t."); }, {"no MARK"});
  expect_error([] { load_pickle(std::string("T\xff\xff\xff\xff", 5)); }, {"negative BINSTRING length"});
  expect_error([] { load_pickle(std::string("X\xff\xff\xff\xff", 5)); }, {"truncated", "4294967295"});
  expect_error([] { load_pickle(std::string("\x8d\xff\xff\xff\xff\xff\xff\xff\x7f", 9)); }, {"truncated"});
  expect_error([] { load_pickle(std::string("\x95\xff\xff\xff\xff\x00\x00\x00\x00", 9)); }, {"frame"});
  expect_error([] { load_pickle(std::string("X\x02\x00\x00\x00\xc3\x28.", 8)); }, {"UTF-8"});
  expect_error([] { load_pickle("Iabc\n."); }, {"bad INT"});
  expect_error([] { load_pickle("I99999999999999999999999\n."); }, {"bad INT"});
  expect_error([] { load_pickle(std::string("c") + std::string(10000, 'a')); }, {"longer than"});
  expect_error([] { load_pickle("cos"); }, {"no end of line"});
  expect_error([] { load_pickle("N"); }, {"truncated", "opcode"});
  expect_error([] { load_pickle("NQ."); }, {"persistent ids are not expected"});
  expect_error([] { load_pickle("c__main__\nX\n."); }, {"'__main__.X'"});
  // Limits.
  expect_error([] { load_pickle(std::string(2000, '(')); }, {"nested MARKs"});
  nn::weights::pickle::Limits small;
  small.max_values = 10;
  std::string many;
  for (int i = 0; i < 20; ++i) many += "K\x01";
  expect_error([&] { load_pickle(many + ".", {}, small); }, {"more than 10 values"});
  small = {};
  small.max_stack = 5;
  expect_error([&] { load_pickle("NNNNNN.", {}, small); }, {"stack deeper than 5"});
  small = {};
  small.max_memo = 2;
  expect_error([&] { load_pickle("Nq\x01q\x02q\x03.", {}, small); }, {"memo larger than 2"});
}

TEST(TorchCheckpoint, PickleTruncatedAtEveryLength) {
  // Through the VM with hooks that accept everything, and through the checkpoint reader.
  Unpickler::Hooks anything;
  anything.allow_global = [](const std::string&, const std::string&) { return true; };
  anything.call = [](Unpickler& u, const Value&, const Value&) { return u.make(Kind::object); };
  anything.persistent_load = [](Unpickler& u, const Value&) { return u.make(Kind::object); };
  const Checkpoint c = sample_checkpoint();
  const std::string full = state_pickle(c, Style::zip, "state_dict");
  ASSERT_NO_THROW(load_pickle(full, anything));
  for (size_t n = 0; n < full.size(); ++n) {
    const std::string prefix = full.substr(0, n);
    EXPECT_THROW(load_pickle(prefix, anything), nn::Error) << "prefix of " << n << " bytes";
    std::vector<std::pair<std::string, std::string>> entries{{"archive/data.pkl", prefix}};
    for (const auto& [key, storage] : c.storages) entries.emplace_back("archive/data/" + key, storage.bytes);
    EXPECT_THROW(parse(make_zip(entries)), nn::Error) << "data.pkl cut at " << n << " bytes";
  }
}

// ---- checkpoints -----------------------------------------------------------------------------

TEST(TorchCheckpoint, ZipStateDict) {
  const ConvertedWeights w = parse(zip_checkpoint(sample_checkpoint()), "/some/dir/vgg16.pth");
  expect_sample_tensors(w);
  EXPECT_EQ(w.metadata.at("preprocessing"), "torchvision");
  EXPECT_EQ(w.metadata.at("source_format"), "torchvision-zip");
  EXPECT_EQ(w.metadata.at("source_file"), "vgg16.pth");
  // Any top-level folder name, a little-endian byteorder record, zip64-free or not: same result.
  Checkpoint c = sample_checkpoint();
  std::vector<std::pair<std::string, std::string>> entries{{"resnet18-f37072fd/data.pkl", state_pickle(c, Style::zip)},
                                                           {"resnet18-f37072fd/byteorder", "little"}};
  for (const auto& [key, storage] : c.storages) entries.emplace_back("resnet18-f37072fd/data/" + key, storage.bytes);
  expect_sample_tensors(parse(make_zip(entries)));
}

TEST(TorchCheckpoint, LegacyStateDict) {
  const ConvertedWeights w = parse(legacy_checkpoint(sample_checkpoint(), Style::legacy), "old.pth");
  expect_sample_tensors(w);
  EXPECT_EQ(w.metadata.at("source_format"), "torchvision-legacy");
  EXPECT_EQ(w.metadata.at("source_file"), "old.pth");
}

TEST(TorchCheckpoint, Legacy2017StyleWithStorageViews) {
  // Python 2 strings, torch._utils._rebuild_tensor, LONG1 sizes, a view of a root storage.
  const ConvertedWeights w = parse(legacy_checkpoint(legacy_view_checkpoint(), Style::legacy_2017));
  ASSERT_EQ(w.tensors.size(), 3u);
  EXPECT_EQ(w.tensors[0].first, "features.0.weight");
  EXPECT_EQ(w.tensors[0].second.to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(w.tensors[1].second.shape(), (Shape{2, 2}));
  EXPECT_EQ(w.tensors[1].second.to_vector<float>(), (std::vector<float>{5, 6, 7, 8}));
  EXPECT_EQ(w.tensors[2].second.dtype(), nn::i64);
  EXPECT_EQ(w.tensors[2].second.to_vector<int64_t>(), (std::vector<int64_t>{-1, 1LL << 40}));
}

TEST(TorchCheckpoint, TrainingCheckpointsHoldTheStateDict) {
  const Checkpoint c = sample_checkpoint();
  expect_sample_tensors(parse(zip_checkpoint(c, "state_dict")));
  expect_sample_tensors(parse(zip_checkpoint(c, "model")));
  expect_sample_tensors(parse(legacy_checkpoint(c, Style::legacy, "state_dict")));
  expect_error([&] { parse(zip_checkpoint(c, "weights")); },
               {"'epoch' is an int, not a tensor", "no 'state_dict' or 'model'"});
  // Only the chosen dict's tensors must be valid: the rest of the checkpoint is not materialised,
  // but it is still unpickled, so a foreign global anywhere refuses the file.
  P p;
  p.proto(2).op('}').mark().str("state_dict").ordered_dict().str("model").integer(3).setitems().stop();
  const ConvertedWeights empty = parse(make_zip({{"a/data.pkl", p.bytes()}}));
  EXPECT_TRUE(empty.tensors.empty());
  P bad;
  bad.proto(2).op('}').mark().str("state_dict").integer(1).setitems().stop();
  expect_error([&] { parse(make_zip({{"a/data.pkl", bad.bytes()}})); }, {"'state_dict' is an int, not a state dict"});
  P list;
  list.proto(2).op(']').stop();
  expect_error([&] { parse(make_zip({{"a/data.pkl", list.bytes()}})); }, {"holds a list, not a state dict"});
}

TEST(TorchCheckpoint, RefusesMalformedCheckpoints) {
  const Checkpoint c = sample_checkpoint();
  // Formats.
  expect_error([] { parse(""); }, {"not a PyTorch checkpoint"});
  expect_error([] { parse("hello world"); }, {"not a PyTorch checkpoint"});
  std::string tar(1024, '\0');
  tar.replace(0, 8, "storages");
  tar.replace(257, 6, "ustar ");
  expect_error([&] { parse(tar); }, {"tar-format", "unsupported"});
  expect_error([] { parse(std::string("\x80\x02K\x01.", 5)); }, {"magic number"});
  // Zip rules.
  expect_error([&] { parse(zip_checkpoint(c, "", {{"archive/byteorder", "big"}})); }, {"big-endian"});
  expect_error([&] { parse(zip_checkpoint(c, "", {{"archive/byteorder", "middle"}})); }, {"byte order 'middle'"});
  expect_error([] { parse(make_zip({{"archive/version", "3\n"}})); }, {"no <prefix>/data.pkl"});
  expect_error([&] { parse(make_zip({{"a/data.pkl", "x"}, {"b/data.pkl", "y"}})); }, {"two pickles"});
  {
    Checkpoint short_record = c;
    short_record.storages["5"].bytes.resize(40);
    expect_error([&] { parse(zip_checkpoint(short_record)); }, {"archive/data/5 holds 40 bytes, expected 56"});
  }
  {
    std::vector<std::pair<std::string, std::string>> entries{{"archive/data.pkl", state_pickle(c, Style::zip)}};
    expect_error([&] { parse(make_zip(entries)); }, {"record archive/data/0", "missing"});
  }
  // Tensors that do not fit their storage.
  {
    Checkpoint out_of_range = c;
    out_of_range.tensors[2].offset = 6;  // 7 elements from 6 in a storage of 12
    expect_error([&] { parse(zip_checkpoint(out_of_range)); }, {"reaches element 12", "storage '0'", "12 elements"});
    Checkpoint huge = c;
    huge.tensors[0].size = {1LL << 40, 1LL << 40};
    huge.tensors[0].stride = {0, 0};
    expect_error([&] { parse(zip_checkpoint(huge)); }, {"overflow"});
    Checkpoint expanded = c;
    expanded.tensors[0].size = {1 << 20, 1 << 10};
    expanded.tensors[0].stride = {0, 0};
    expect_error([&] { parse(zip_checkpoint(expanded)); }, {"more elements than storage"});
    Checkpoint dims = c;
    dims.tensors[0].stride = {4};
    expect_error([&] { parse(zip_checkpoint(dims)); }, {"2 sizes and 1 strides"});
    Checkpoint negative = c;
    negative.tensors[0].stride = {-4, 1};
    expect_error([&] { parse(zip_checkpoint(negative)); }, {"negative"});
  }
  // The same storage key under two types.
  {
    Checkpoint clash = c;
    clash.tensors.push_back({"clash", "1", 0, {1}, {1}});
    clash.storages["1"].type = "LongStorage";
    std::string pickle = state_pickle(clash, Style::zip);
    // The last tensor's persistent id names storage "1" as a FloatStorage of 1 element instead.
    const size_t at = pickle.rfind("LongStorage");
    pickle.replace(at, 11, "IntStorage");
    expect_error([&] { parse(make_zip({{"archive/data.pkl", pickle}})); }, {"storage '1' is named as"});
  }
  // A whole module instead of a state dict (legacy persistent id 'module').
  {
    P p;
    p.proto(2).mark().str("module").str("x").tuple().op('Q').stop();
    expect_error([&] { parse(make_zip({{"archive/data.pkl", p.bytes()}})); }, {"whole nn.Module"});
  }
  // Legacy rules.
  {
    std::string big_endian = legacy_header(false, /*little_endian=*/false) + state_pickle(c, Style::legacy);
    expect_error([&] { parse(big_endian); }, {"big-endian"});
    std::string bytes = legacy_checkpoint(c, Style::legacy);
    // The first storage's element count (right after the key list) is 12: make it 11.
    const std::string count = le(12, 8) + c.storages.at("0").bytes;
    const size_t at = bytes.find(count);
    ASSERT_NE(at, std::string::npos);
    bytes[at] = 11;
    expect_error([&] { parse(bytes); }, {"storage '0' holds 11 elements, its persistent id says 12"});
    P version;
    version.proto(2).integer(1000).stop();
    std::string header = legacy_header(false);
    const std::string v1001 = P().proto(2).integer(1001).stop().bytes();
    header.replace(header.find(v1001), v1001.size(), version.bytes());
    expect_error([&] { parse(header); }, {"protocol version"});
  }
  // Names.
  {
    Checkpoint latin1 = legacy_view_checkpoint();  // a Python 2 str name that is not UTF-8
    latin1.tensors[0].name = "caf\xe9";
    expect_error([&] { parse(legacy_checkpoint(latin1, Style::legacy_2017)); }, {"tensor name is not valid UTF-8"});
  }
}

// A small file cannot make the reader allocate without bound: tensors that together reference more
// than max(1 GiB, twice the file) - here nine expanded views (stride 0) of one 8-byte storage, 128
// MiB each - are refused while the pickle runs, before anything is allocated. The same holds for
// one storage named over and over.
TEST(TorchCheckpoint, RefusesTensorsBeyondTheAllocationBudget) {
  Checkpoint expanded;
  expanded.storages["0"] = {"DoubleStorage", 1, raw_of(std::vector<double>{1.5})};
  for (int i = 0; i < 9; ++i) expanded.tensors.push_back({"t" + std::to_string(i), "0", 0, {int64_t{1} << 24}, {0}});
  const std::string file = zip_checkpoint(expanded);
  ASSERT_LT(file.size(), 4096u);
  expect_error([&] { parse(file); }, {"test.pth", "the tensors reference more than 1073741824 bytes in all"});
  expect_error([&] { parse(legacy_checkpoint(expanded, Style::legacy)); }, {"reference more than 1073741824 bytes"});

  Checkpoint shared;
  shared.storages["0"] = {"FloatStorage", int64_t{1} << 26, ""};  // 256 MiB, never read
  for (int i = 0; i < 5; ++i) shared.tensors.push_back({"w" + std::to_string(i), "0", 0, {int64_t{1} << 26}, {1}});
  expect_error([&] { parse(zip_checkpoint(shared)); }, {"reference more than 1073741824 bytes"});
}

TEST(TorchCheckpoint, TruncatedFilesAreErrors) {
  const std::string zip = zip_checkpoint(sample_checkpoint());
  const std::string legacy = legacy_checkpoint(legacy_view_checkpoint(), Style::legacy_2017);
  ASSERT_NO_THROW(parse(zip));
  ASSERT_NO_THROW(parse(legacy));
  for (size_t n = 0; n < zip.size(); n += (n < 64 ? 1 : 7))
    EXPECT_THROW(parse(zip.substr(0, n)), nn::Error) << "zip cut at " << n << " of " << zip.size();
  for (size_t n = 0; n < legacy.size(); ++n)
    EXPECT_THROW(parse(legacy.substr(0, n)), nn::Error) << "legacy cut at " << n << " of " << legacy.size();
  // libzip's reason is in the message.
  expect_error([&] { parse(zip.substr(0, zip.size() / 2)); }, {"test.pth", "zip archive"});
  // A flipped bit inside a storage record fails its CRC, whether the record is read into a
  // buffer (storage 5: a strided view) or straight into its tensor (storage 8).
  for (const std::string key : {"5", "8"}) {
    std::string flipped = zip;
    const std::string record = sample_checkpoint().storages.at(key).bytes;
    const size_t at = flipped.find(record);
    ASSERT_NE(at, std::string::npos);
    flipped[at + 5] ^= 0x10;
    expect_error([&] { parse(flipped); }, {"archive/data/" + key, "CRC"});
  }
}

TEST(TorchCheckpoint, RandomCorruptionNeverCrashes) {
  const std::vector<std::string> originals{zip_checkpoint(sample_checkpoint(), "state_dict"),
                                           legacy_checkpoint(sample_checkpoint(), Style::legacy),
                                           legacy_checkpoint(legacy_view_checkpoint(), Style::legacy_2017)};
  std::mt19937_64 rng(20240601);
  int errors = 0, results = 0;
  for (const std::string& original : originals) {
    for (int iteration = 0; iteration < 400; ++iteration) {
      std::string bytes = original;
      const int flips = 1 + static_cast<int>(rng() % 8);
      for (int k = 0; k < flips; ++k) {
        const size_t at = rng() % bytes.size();
        bytes[at] = static_cast<char>(rng() % 3 == 0 ? bytes[at] ^ (1 << (rng() % 8)) : static_cast<char>(rng()));
      }
      try {
        const ConvertedWeights w = parse(bytes);
        for (const auto& [name, t] : w.tensors) ASSERT_TRUE(t.is_contiguous());
        ++results;
      } catch (const nn::Error&) {
        ++errors;
      }
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_EQ(errors + results, 1200);
  std::cout << "[ info     ] " << errors << " corrupted files refused, " << results << " read\n";
}

TEST(TorchCheckpoint, ReadsFiles) {
  ScratchDir dir("torch_checkpoint");
  write_bytes(dir.file("weights.pth"), zip_checkpoint(sample_checkpoint()));
  const ConvertedWeights w = nn::weights::read_torch_checkpoint(dir.file("weights.pth"));
  expect_sample_tensors(w);
  EXPECT_EQ(w.metadata.at("source_file"), "weights.pth");
  write_bytes(dir.file("legacy.pth"), legacy_checkpoint(legacy_view_checkpoint(), Style::legacy_2017));
  EXPECT_EQ(nn::weights::read_torch_checkpoint(dir.file("legacy.pth")).tensors.size(), 3u);
  write_bytes(dir.file("empty.pth"), "");
  expect_error([&] { nn::weights::read_torch_checkpoint(dir.file("empty.pth")); }, {"empty.pth", "empty"});
  expect_error([&] { nn::weights::read_torch_checkpoint(dir.file("missing.pth")); }, {"missing.pth", "cannot open"});
  expect_error([&] { nn::weights::read_torch_checkpoint(dir.str()); }, {"not a regular file"});
}

// ---- golden: files written by PyTorch --------------------------------------------------------

const char* kPython = "/usr/bin/python3";

bool torch_available() {
  static const bool ok = std::system((std::string(kPython) + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0;
  return ok;
}

class TorchCheckpointGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch_available()) GTEST_SKIP() << kPython << " cannot import torch (install python3-torch)";
    dir_ = std::make_unique<ScratchDir>("torch_checkpoint");
    const std::string cmd =
        std::string(kPython) + " " NN_SOURCE_DIR "/tests/golden/make_torch_checkpoints.py " + dir_->str();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    reference_ = nn::io::load_safetensors(dir_->file("reference.safetensors"));
  }

  // Every tensor identical to PyTorch's: names in order, dtypes, shapes, bytes.
  void expect_matches_reference(const ConvertedWeights& w, const std::string& what) {
    ASSERT_EQ(w.tensors.size(), reference_.tensors.size()) << what;
    for (size_t i = 0; i < w.tensors.size(); ++i) {
      const auto& [name, ours] = w.tensors[i];
      const auto& [ref_name, ref] = reference_.tensors[i];
      EXPECT_EQ(name, ref_name) << what;
      EXPECT_EQ(ours.dtype(), ref.dtype()) << what << " " << name;
      EXPECT_EQ(ours.shape(), ref.shape()) << what << " " << name;
      ASSERT_TRUE(ours.is_contiguous()) << what << " " << name;
      if (ours.dtype() != ref.dtype() || ours.shape() != ref.shape()) continue;
      const Tensor r = ref.contiguous();
      const size_t nbytes = static_cast<size_t>(ours.numel()) * nn::dtype_size(ours.dtype());
      EXPECT_TRUE(nbytes == 0 || std::memcmp(ours.raw_data(), r.raw_data(), nbytes) == 0) << what << " " << name;
    }
  }

  std::unique_ptr<ScratchDir> dir_;
  nn::io::SafetensorsFile reference_;
};

TEST_F(TorchCheckpointGolden, ZipAndLegacyMatchPyTorch) {
  const ConvertedWeights zip = nn::weights::read_torch_checkpoint(dir_->file("zip.pth"));
  expect_matches_reference(zip, "zip.pth");
  EXPECT_EQ(zip.metadata.at("source_format"), "torchvision-zip");
  const ConvertedWeights legacy = nn::weights::read_torch_checkpoint(dir_->file("legacy.pth"));
  expect_matches_reference(legacy, "legacy.pth");
  EXPECT_EQ(legacy.metadata.at("source_format"), "torchvision-legacy");
  EXPECT_EQ(legacy.metadata.at("preprocessing"), "torchvision");
  EXPECT_EQ(legacy.metadata.at("source_file"), "legacy.pth");
  expect_matches_reference(nn::weights::read_torch_checkpoint(dir_->file("training.pth")), "training.pth");
  expect_matches_reference(nn::weights::read_torch_checkpoint(dir_->file("training_legacy.pth")),
                           "training_legacy.pth");
}

TEST_F(TorchCheckpointGolden, RefusesPicklesThatNameOtherGlobals) {
  expect_error([&] { nn::weights::read_torch_checkpoint(dir_->file("forbidden.pth")); },
               {"forbidden.pth", "refusing to load", "'argparse.Namespace'"});
  expect_error([&] { nn::weights::read_torch_checkpoint(dir_->file("module.pth")); },
               {"module.pth", "refusing to load", "'torch.nn.modules."});
}

}  // namespace
