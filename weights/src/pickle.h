// A restricted pickle reader: the subset of Python's pickle virtual machine (protocols 0-5) that
// torch.save writes, run on untrusted bytes without ever executing anything.
//
// Why not "just unpickle": a pickle is a program. GLOBAL/STACK_GLOBAL name any Python callable and
// REDUCE calls it, so loading a downloaded .pth with Python's pickle can run `os.system`. This VM
// builds a small tree of values instead (None, bool, int, float, str, bytes, tuple, list, dict,
// set, named globals, call results). A global is refused the moment it is named unless the
// caller's allowlist holds it (collections.OrderedDict is always known), and a call (REDUCE,
// NEWOBJ) of an allowed global is interpreted by the caller's hook, never by Python semantics.
//
// Robustness: every read is bounds-checked against the input, lengths are checked before any
// allocation, the stack, mark nesting, memo and the number of values are limited, and nothing
// recurses over the value tree. Values live in an arena owned by the Unpickler, so cyclic
// structures (a list appended to itself through the memo) are harmless: they are freed with it.
// Every failure is an nn::Error naming the source, the byte offset and the opcode.
#pragma once

#include <any>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace nn::weights::pickle {

enum class Kind : uint8_t {
  none,
  boolean,
  integer,      // fits in int64
  big_integer,  // LONG1/LONG4 wider than int64 (e.g. torch's legacy magic number)
  floating,
  string,  // BINUNICODE & co. (UTF-8), and Python 2 str (BINSTRING & co., raw bytes)
  bytes,   // BINBYTES & co.
  tuple,
  list,
  dict,    // dict and collections.OrderedDict, in insertion order
  set,     // set and frozenset (no deduplication)
  global,  // a named global that the allowlist let through (module, name)
  object,  // the result of calling an allowed global: what the caller's hook made of it
};
const char* kind_name(Kind kind);    // "int", "dict", "None", ...
std::string a_kind_name(Kind kind);  // the same with its article: "an int", "a dict", "None"

struct Value {
  Kind kind = Kind::none;
  bool boolean = false;
  int64_t integer = 0;
  double floating = 0.0;
  // string / bytes: the bytes; big_integer: little-endian two's complement, as LONG1 stores it.
  std::string text;
  // global: its name; object: the name of the global that was called.
  std::string module, name;
  // tuple, list, set: the elements; object: the call's arguments.
  std::vector<Value*> items;
  // dict: (key, value) in insertion order; setting an existing str/bytes/int/bool/None key
  // replaces its value in place, as Python does.
  std::vector<std::pair<Value*, Value*>> entries;
  // dict, object: the state a BUILD gave it (an OrderedDict's `_metadata`), kept, not applied.
  Value* state = nullptr;
  // object: the caller's interpretation of the call (a tensor reference, ...).
  std::any payload;

  bool is_string() const { return kind == Kind::string; }
  // int or bool (Python's bool is an int).
  bool is_int() const { return kind == Kind::integer || kind == Kind::boolean; }
  int64_t as_int() const { return kind == Kind::boolean ? int64_t{boolean} : integer; }
  std::string qualified_name() const { return module + "." + name; }
  // dict: the value under the str key, or nullptr.
  const Value* get(std::string_view key) const;

  // dict, maintained by the Unpickler: each str/bytes/int/bool/None key (encoded with its kind)
  // -> its position in `entries`.
  std::unordered_map<std::string, size_t> dict_index;
};

// Sizes a well-formed torch pickle stays far below; the input's size bounds everything else.
struct Limits {
  size_t max_values = size_t{1} << 22;  // values created by one Unpickler (all its loads)
  size_t max_stack = size_t{1} << 20;   // entries on the stack
  size_t max_marks = 1000;              // open MARKs (nesting of tuples/lists/dicts being built)
  size_t max_memo = size_t{1} << 22;    // memo entries
  size_t max_line = 4096;               // text-opcode lines (GLOBAL names, INT, ...)
};

class Unpickler {
 public:
  struct Hooks {
    // GLOBAL / STACK_GLOBAL: true when the global may be named. Anything else is refused at once
    // ("refusing to load: the pickle names the global 'os.system' ..."). collections.OrderedDict
    // is always allowed (the VM builds it as a dict).
    std::function<bool(const std::string& module, const std::string& name)> allow_global;
    // REDUCE / NEWOBJ of an allowed global other than collections.OrderedDict: `args` is the
    // argument tuple; returns the result (made with Unpickler::make) or throws (Unpickler::fail).
    std::function<Value*(Unpickler&, const Value& callable, const Value& args)> call;
    // BINPERSID / PERSID: what the persistent id stands for.
    std::function<Value*(Unpickler&, const Value& pid)> persistent_load;
  };

  // `data` must outlive the Unpickler; `source` prefixes every error message.
  Unpickler(const void* data, size_t size, std::string source, Hooks hooks, Limits limits = {});
  ~Unpickler();
  Unpickler(const Unpickler&) = delete;
  Unpickler& operator=(const Unpickler&) = delete;

  // Runs one pickle starting at `offset` up to its STOP and returns the value it leaves; `offset`
  // moves just past the STOP (torch's legacy format is several pickles back to back). The stack
  // and memo start empty at each load; the values stay alive until the Unpickler is destroyed.
  Value* load(size_t& offset);

  // A new value owned by this Unpickler (for hooks). Counts against Limits::max_values.
  Value* make(Kind kind);
  // Throws nn::Error "<source>: pickle offset N (opcode X): <message>" at the current opcode.
  [[noreturn]] void fail(const std::string& message) const;
  const std::string& source() const { return source_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string source_;
};

// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code points > U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace nn::weights::pickle
