// The restricted pickle VM (see pickle.h). Opcode semantics follow CPython's Modules/_pickle.c
// (stack "fence" at the innermost MARK, POP of a bare mark, memo as a dict), minus everything
// that would run code: globals are checked against an allowlist when named, calls go to the
// caller's hook, and INST/OBJ/EXT*/out-of-band buffers are not supported at all.
#include "pickle.h"

#include <charconv>
#include <cstring>
#include <limits>

#include <nn/error.h>

namespace nn::weights::pickle {

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::none: return "None";
    case Kind::boolean: return "bool";
    case Kind::integer: return "int";
    case Kind::big_integer: return "int (wider than 64 bits)";
    case Kind::floating: return "float";
    case Kind::string: return "str";
    case Kind::bytes: return "bytes";
    case Kind::tuple: return "tuple";
    case Kind::list: return "list";
    case Kind::dict: return "dict";
    case Kind::set: return "set";
    case Kind::global: return "global";
    case Kind::object: return "object";
  }
  return "?";
}

std::string a_kind_name(Kind kind) {
  const std::string name = kind_name(kind);
  if (kind == Kind::none) return name;
  return (name[0] == 'i' || name[0] == 'o' ? "an " : "a ") + name;
}

const Value* Value::get(std::string_view key) const {
  if (kind != Kind::dict) return nullptr;
  auto it = dict_index.find("s" + std::string(key));
  return it == dict_index.end() ? nullptr : entries[it->second].second;
}

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

namespace {

// Opcodes (pickletools' names).
enum Op : uint8_t {
  MARK = '(', STOP = '.', POP = '0', POP_MARK = '1', DUP = '2', FLOAT = 'F', INT = 'I',
  BININT = 'J', BININT1 = 'K', LONG = 'L', BININT2 = 'M', NONE = 'N', PERSID = 'P',
  BINPERSID = 'Q', REDUCE = 'R', STRING = 'S', BINSTRING = 'T', SHORT_BINSTRING = 'U',
  UNICODE = 'V', BINUNICODE = 'X', APPEND = 'a', BUILD = 'b', GLOBAL = 'c', DICT = 'd',
  EMPTY_DICT = '}', APPENDS = 'e', GET = 'g', BINGET = 'h', INST = 'i', LONG_BINGET = 'j',
  LIST = 'l', EMPTY_LIST = ']', OBJ = 'o', PUT = 'p', BINPUT = 'q', LONG_BINPUT = 'r',
  SETITEM = 's', TUPLE = 't', EMPTY_TUPLE = ')', SETITEMS = 'u', BINFLOAT = 'G',
  // protocol 2
  PROTO = 0x80, NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83, EXT4 = 0x84, TUPLE1 = 0x85,
  TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89, LONG1 = 0x8a, LONG4 = 0x8b,
  // protocol 3
  BINBYTES = 'B', SHORT_BINBYTES = 'C',
  // protocol 4
  SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e, EMPTY_SET = 0x8f,
  ADDITEMS = 0x90, FROZENSET = 0x91, NEWOBJ_EX = 0x92, STACK_GLOBAL = 0x93, MEMOIZE = 0x94,
  FRAME = 0x95,
  // protocol 5
  BYTEARRAY8 = 0x96, NEXT_BUFFER = 0x97, READONLY_BUFFER = 0x98,
};

const char* opcode_name(uint8_t op) {
  switch (op) {
    case MARK: return "MARK"; case STOP: return "STOP"; case POP: return "POP";
    case POP_MARK: return "POP_MARK"; case DUP: return "DUP"; case FLOAT: return "FLOAT";
    case INT: return "INT"; case BININT: return "BININT"; case BININT1: return "BININT1";
    case LONG: return "LONG"; case BININT2: return "BININT2"; case NONE: return "NONE";
    case PERSID: return "PERSID"; case BINPERSID: return "BINPERSID"; case REDUCE: return "REDUCE";
    case STRING: return "STRING"; case BINSTRING: return "BINSTRING";
    case SHORT_BINSTRING: return "SHORT_BINSTRING"; case UNICODE: return "UNICODE";
    case BINUNICODE: return "BINUNICODE"; case APPEND: return "APPEND"; case BUILD: return "BUILD";
    case GLOBAL: return "GLOBAL"; case DICT: return "DICT"; case EMPTY_DICT: return "EMPTY_DICT";
    case APPENDS: return "APPENDS"; case GET: return "GET"; case BINGET: return "BINGET";
    case INST: return "INST"; case LONG_BINGET: return "LONG_BINGET"; case LIST: return "LIST";
    case EMPTY_LIST: return "EMPTY_LIST"; case OBJ: return "OBJ"; case PUT: return "PUT";
    case BINPUT: return "BINPUT"; case LONG_BINPUT: return "LONG_BINPUT"; case SETITEM: return "SETITEM";
    case TUPLE: return "TUPLE"; case EMPTY_TUPLE: return "EMPTY_TUPLE"; case SETITEMS: return "SETITEMS";
    case BINFLOAT: return "BINFLOAT"; case PROTO: return "PROTO"; case NEWOBJ: return "NEWOBJ";
    case EXT1: return "EXT1"; case EXT2: return "EXT2"; case EXT4: return "EXT4";
    case TUPLE1: return "TUPLE1"; case TUPLE2: return "TUPLE2"; case TUPLE3: return "TUPLE3";
    case NEWTRUE: return "NEWTRUE"; case NEWFALSE: return "NEWFALSE"; case LONG1: return "LONG1";
    case LONG4: return "LONG4"; case BINBYTES: return "BINBYTES"; case SHORT_BINBYTES: return "SHORT_BINBYTES";
    case SHORT_BINUNICODE: return "SHORT_BINUNICODE"; case BINUNICODE8: return "BINUNICODE8";
    case BINBYTES8: return "BINBYTES8"; case EMPTY_SET: return "EMPTY_SET"; case ADDITEMS: return "ADDITEMS";
    case FROZENSET: return "FROZENSET"; case NEWOBJ_EX: return "NEWOBJ_EX";
    case STACK_GLOBAL: return "STACK_GLOBAL"; case MEMOIZE: return "MEMOIZE"; case FRAME: return "FRAME";
    case BYTEARRAY8: return "BYTEARRAY8"; case NEXT_BUFFER: return "NEXT_BUFFER";
    case READONLY_BUFFER: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

std::string hex_byte(uint8_t b) {
  const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[b >> 4] + digits[b & 15];
}

// The dict index key of a hashable scalar (Python: hash equality), or "" when the key is not
// indexed (tuples, floats, ...: such keys are appended without deduplication).
std::string dict_key(const Value& key) {
  switch (key.kind) {
    case Kind::string: return "s" + key.text;
    case Kind::bytes: return "b" + key.text;
    case Kind::integer:
    case Kind::boolean: return "i" + std::to_string(key.as_int());
    case Kind::none: return "n";
    default: return "";
  }
}

}  // namespace

struct Unpickler::Impl {
  Unpickler& self;
  const uint8_t* data;
  size_t size;
  Hooks hooks;
  Limits limits;

  std::vector<std::unique_ptr<Value>> arena;
  Value none_value, true_value, false_value;  // immutable singletons, not counted
  std::vector<Value*> stack;
  std::vector<size_t> marks;  // stack sizes at each open MARK
  std::unordered_map<uint64_t, Value*> memo;
  size_t pos = 0;        // next byte to read
  size_t op_offset = 0;  // offset of the opcode being run (for messages)
  uint8_t op = 0;
  bool have_op = false;  // false while the opcode byte itself is being read

  Impl(Unpickler& u, const void* d, size_t n, Hooks h, Limits l)
      : self(u), data(static_cast<const uint8_t*>(d)), size(n), hooks(std::move(h)), limits(l) {
    true_value.kind = false_value.kind = Kind::boolean;
    true_value.boolean = true;
  }

  // ---- reading ----------------------------------------------------------------------------
  const uint8_t* take(uint64_t n, const char* what) {
    if (n > size - pos)
      self.fail(detail::concat_message("truncated: ", what, " needs ", n, " bytes, ", size - pos,
                                       " left"));
    const uint8_t* p = data + pos;
    pos += static_cast<size_t>(n);
    return p;
  }
  uint64_t read_le(int bytes) {
    const uint8_t* p = take(bytes, "the argument");
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  }
  // A text line (protocol 0 arguments), without its '\n'.
  std::string read_line() {
    const size_t max = std::min(size - pos, limits.max_line + 1);
    const void* nl = std::memchr(data + pos, '\n', max);
    if (!nl) {
      if (max == size - pos) self.fail("truncated: the text argument has no end of line");
      self.fail(detail::concat_message("text argument longer than ", limits.max_line, " bytes"));
    }
    const size_t len = static_cast<const uint8_t*>(nl) - (data + pos);
    std::string line(reinterpret_cast<const char*>(data + pos), len);
    pos += len + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
  }
  int64_t parse_int(const std::string& text, const char* what) {
    int64_t v = 0;
    const char* b = text.data();
    const char* e = b + text.size();
    if (b != e && *b == '+') ++b;
    auto [end, ec] = std::from_chars(b, e, v);
    if (ec != std::errc() || end != e || b == e)
      self.fail(detail::concat_message("bad ", what, " '", text, "' (not a 64-bit integer)"));
    return v;
  }

  // ---- values -----------------------------------------------------------------------------
  Value* make(Kind kind) {
    if (arena.size() >= limits.max_values)
      self.fail(detail::concat_message("more than ", limits.max_values, " values"));
    arena.push_back(std::make_unique<Value>());
    arena.back()->kind = kind;
    return arena.back().get();
  }
  Value* make_int(int64_t v) {
    Value* x = make(Kind::integer);
    x->integer = v;
    return x;
  }
  Value* make_text(Kind kind, const uint8_t* p, uint64_t n) {
    Value* x = make(kind);
    x->text.assign(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    return x;
  }
  Value* make_unicode(uint64_t n) {
    const uint8_t* p = take(n, "the string");
    Value* x = make_text(Kind::string, p, n);
    if (!is_valid_utf8(x->text)) self.fail("the string is not valid UTF-8");
    return x;
  }
  // LONG1/LONG4 payload: little-endian two's complement.
  Value* make_long(const uint8_t* p, size_t n) {
    if (n == 0) return make_int(0);
    // Drop redundant sign-extension bytes so small numbers written long stay ints.
    while (n > 1 && ((p[n - 1] == 0x00 && !(p[n - 2] & 0x80)) || (p[n - 1] == 0xff && (p[n - 2] & 0x80))))
      --n;
    if (n <= 8) {
      uint64_t u = 0;
      for (size_t i = n; i-- > 0;) u = (u << 8) | p[i];
      if (n < 8 && (p[n - 1] & 0x80)) u |= ~uint64_t{0} << (8 * n);  // sign-extend
      int64_t v;
      std::memcpy(&v, &u, sizeof v);
      return make_int(v);
    }
    return make_text(Kind::big_integer, p, n);
  }

  void dict_set(Value* dict, Value* key, Value* value) {
    const std::string k = dict_key(*key);
    if (!k.empty()) {
      auto [it, inserted] = dict->dict_index.emplace(k, dict->entries.size());
      if (!inserted) {
        dict->entries[it->second].second = value;
        return;
      }
    }
    dict->entries.emplace_back(key, value);
  }

  // ---- stack ------------------------------------------------------------------------------
  size_t fence() const { return marks.empty() ? 0 : marks.back(); }
  void push(Value* v) {
    if (stack.size() >= limits.max_stack)
      self.fail(detail::concat_message("stack deeper than ", limits.max_stack, " entries"));
    stack.push_back(v);
  }
  Value* pop() {
    if (stack.size() <= fence()) self.fail("stack underflow");
    Value* v = stack.back();
    stack.pop_back();
    return v;
  }
  Value* top() {
    if (stack.size() <= fence()) self.fail("stack underflow");
    return stack.back();
  }
  // The entries above the innermost MARK, which is closed.
  std::vector<Value*> pop_mark() {
    if (marks.empty()) self.fail("no MARK to pop to");
    const size_t m = marks.back();
    marks.pop_back();
    std::vector<Value*> items(stack.begin() + static_cast<std::ptrdiff_t>(m), stack.end());
    stack.resize(m);
    return items;
  }
  Value* top_of_kind(Kind kind, const char* what) {
    Value* v = top();
    if (v->kind != kind)
      self.fail(detail::concat_message(what, " needs ", a_kind_name(kind), " on the stack, found ",
                                       a_kind_name(v->kind)));
    return v;
  }

  void memo_put(uint64_t index, Value* v) {
    if (memo.size() >= limits.max_memo && !memo.count(index))
      self.fail(detail::concat_message("memo larger than ", limits.max_memo, " entries"));
    memo[index] = v;
  }
  Value* memo_get(uint64_t index) {
    auto it = memo.find(index);
    if (it == memo.end()) self.fail(detail::concat_message("memo entry ", index, " was never stored"));
    return it->second;
  }

  // ---- globals and calls ------------------------------------------------------------------
  static bool is_ordered_dict(const std::string& module, const std::string& name) {
    return module == "collections" && name == "OrderedDict";
  }
  Value* make_global(const std::string& module, const std::string& name) {
    const bool allowed = is_ordered_dict(module, name) || (hooks.allow_global && hooks.allow_global(module, name));
    if (!allowed)
      self.fail("refusing to load: the pickle names the global '" + module + "." + name +
                "', which is not on the allowlist of this reader (unpickling it could run "
                "arbitrary code)");
    Value* g = make(Kind::global);
    g->module = module;
    g->name = name;
    return g;
  }
  Value* call(Value* callable, Value* args) {
    if (callable->kind != Kind::global)
      self.fail(detail::concat_message("calls ", a_kind_name(callable->kind), ", not a global"));
    if (args->kind != Kind::tuple)
      self.fail(detail::concat_message("the arguments of ", callable->qualified_name(), " are ",
                                       a_kind_name(args->kind), ", not a tuple"));
    if (is_ordered_dict(callable->module, callable->name)) {
      // OrderedDict() or OrderedDict([(key, value), ...]).
      Value* d = make(Kind::dict);
      if (args->items.empty()) return d;
      const Value* pairs = args->items[0];
      if (args->items.size() != 1 || (pairs->kind != Kind::list && pairs->kind != Kind::tuple))
        self.fail("collections.OrderedDict takes no argument or one list of pairs");
      for (Value* p : pairs->items) {
        if (p->kind != Kind::tuple || p->items.size() != 2)
          self.fail("collections.OrderedDict takes a list of (key, value) pairs");
        dict_set(d, p->items[0], p->items[1]);
      }
      return d;
    }
    if (!hooks.call) self.fail("calls " + callable->qualified_name() + ", which this reader does not interpret");
    Value* result = hooks.call(self, *callable, *args);
    if (!result) self.fail("internal: the hook for " + callable->qualified_name() + " returned nothing");
    return result;
  }
  Value* persistent_load(Value* pid) {
    if (!hooks.persistent_load) self.fail("persistent ids are not expected here");
    Value* result = hooks.persistent_load(self, *pid);
    if (!result) self.fail("internal: the persistent-id hook returned nothing");
    return result;
  }

  // ---- the VM -----------------------------------------------------------------------------
  Value* run(size_t& offset) {
    if (offset > size) self.fail("start offset beyond the end of the data");
    pos = offset;
    stack.clear();
    marks.clear();
    memo.clear();
    for (;;) {
      op_offset = pos;
      have_op = false;
      op = *take(1, "an opcode");
      have_op = true;
      switch (op) {
        case PROTO: {
          const uint8_t version = *take(1, "PROTO's version");
          if (version > 5) self.fail(detail::concat_message("unsupported pickle protocol ", int{version}));
          break;
        }
        case FRAME: {
          // A hint for buffering: the frame's bytes are the following opcodes.
          const uint64_t n = read_le(8);
          if (n > size - pos)
            self.fail(detail::concat_message("truncated: the frame announces ", n, " bytes, ", size - pos, " left"));
          break;
        }
        case STOP: {
          Value* result = pop();
          offset = pos;
          stack.clear();
          marks.clear();
          memo.clear();
          return result;
        }
        case MARK:
          if (marks.size() >= limits.max_marks)
            self.fail(detail::concat_message("more than ", limits.max_marks, " nested MARKs"));
          marks.push_back(stack.size());
          break;
        case POP:
          if (!marks.empty() && marks.back() == stack.size()) marks.pop_back();  // a bare mark
          else pop();
          break;
        case POP_MARK: pop_mark(); break;
        case DUP: push(top()); break;

        case NONE: push(&none_value); break;
        case NEWTRUE: push(&true_value); break;
        case NEWFALSE: push(&false_value); break;
        case BININT: push(make_int(static_cast<int32_t>(static_cast<uint32_t>(read_le(4))))); break;
        case BININT1: push(make_int(static_cast<int64_t>(read_le(1)))); break;
        case BININT2: push(make_int(static_cast<int64_t>(read_le(2)))); break;
        case LONG1: {
          const size_t n = static_cast<size_t>(read_le(1));
          push(make_long(take(n, "LONG1's bytes"), n));
          break;
        }
        case LONG4: {
          const int32_t n = static_cast<int32_t>(static_cast<uint32_t>(read_le(4)));
          if (n < 0) self.fail("negative LONG4 length");
          push(make_long(take(static_cast<uint64_t>(n), "LONG4's bytes"), static_cast<size_t>(n)));
          break;
        }
        case INT: {
          const std::string line = read_line();
          if (line == "00") push(&false_value);
          else if (line == "01") push(&true_value);
          else push(make_int(parse_int(line, "INT")));
          break;
        }
        case LONG: {
          std::string line = read_line();
          if (!line.empty() && line.back() == 'L') line.pop_back();
          push(make_int(parse_int(line, "LONG")));
          break;
        }
        case FLOAT: {
          const std::string line = read_line();
          double v = 0;
          auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), v);
          if (ec != std::errc() || end != line.data() + line.size() || line.empty())
            self.fail("bad FLOAT '" + line + "'");
          Value* x = make(Kind::floating);
          x->floating = v;
          push(x);
          break;
        }
        case BINFLOAT: {
          const uint8_t* p = take(8, "BINFLOAT's bytes");
          uint64_t u = 0;
          for (int i = 0; i < 8; ++i) u = (u << 8) | p[i];  // big-endian
          Value* x = make(Kind::floating);
          std::memcpy(&x->floating, &u, sizeof u);
          push(x);
          break;
        }

        case BINUNICODE: push(make_unicode(read_le(4))); break;
        case SHORT_BINUNICODE: push(make_unicode(read_le(1))); break;
        case BINUNICODE8: push(make_unicode(read_le(8))); break;
        case BINSTRING: {
          const int32_t n = static_cast<int32_t>(static_cast<uint32_t>(read_le(4)));
          if (n < 0) self.fail("negative BINSTRING length");
          push(make_text(Kind::string, take(static_cast<uint64_t>(n), "the string"), static_cast<uint64_t>(n)));
          break;
        }
        case SHORT_BINSTRING: {
          const uint64_t n = read_le(1);
          push(make_text(Kind::string, take(n, "the string"), n));
          break;
        }
        case BINBYTES: {
          const uint64_t n = read_le(4);
          push(make_text(Kind::bytes, take(n, "the bytes"), n));
          break;
        }
        case SHORT_BINBYTES: {
          const uint64_t n = read_le(1);
          push(make_text(Kind::bytes, take(n, "the bytes"), n));
          break;
        }
        case BINBYTES8: {
          const uint64_t n = read_le(8);
          push(make_text(Kind::bytes, take(n, "the bytes"), n));
          break;
        }

        case EMPTY_TUPLE: push(make(Kind::tuple)); break;
        case TUPLE1:
        case TUPLE2:
        case TUPLE3: {
          const size_t n = static_cast<size_t>(op - TUPLE1 + 1);
          Value* t = make(Kind::tuple);
          t->items.resize(n);
          for (size_t i = n; i-- > 0;) t->items[i] = pop();
          push(t);
          break;
        }
        case TUPLE: {
          Value* t = make(Kind::tuple);
          t->items = pop_mark();
          push(t);
          break;
        }
        case EMPTY_LIST: push(make(Kind::list)); break;
        case LIST: {
          Value* l = make(Kind::list);
          l->items = pop_mark();
          push(l);
          break;
        }
        case APPEND: {
          Value* v = pop();
          top_of_kind(Kind::list, "APPEND")->items.push_back(v);
          break;
        }
        case APPENDS: {
          std::vector<Value*> items = pop_mark();
          Value* l = top_of_kind(Kind::list, "APPENDS");
          l->items.insert(l->items.end(), items.begin(), items.end());
          break;
        }
        case EMPTY_DICT: push(make(Kind::dict)); break;
        case DICT: {
          std::vector<Value*> items = pop_mark();
          if (items.size() % 2) self.fail("odd number of items for DICT");
          Value* d = make(Kind::dict);
          for (size_t i = 0; i < items.size(); i += 2) dict_set(d, items[i], items[i + 1]);
          push(d);
          break;
        }
        case SETITEM: {
          Value* v = pop();
          Value* k = pop();
          dict_set(top_of_kind(Kind::dict, "SETITEM"), k, v);
          break;
        }
        case SETITEMS: {
          std::vector<Value*> items = pop_mark();
          if (items.size() % 2) self.fail("odd number of items for SETITEMS");
          Value* d = top_of_kind(Kind::dict, "SETITEMS");
          for (size_t i = 0; i < items.size(); i += 2) dict_set(d, items[i], items[i + 1]);
          break;
        }
        case EMPTY_SET: push(make(Kind::set)); break;
        case ADDITEMS: {
          std::vector<Value*> items = pop_mark();
          Value* s = top_of_kind(Kind::set, "ADDITEMS");
          s->items.insert(s->items.end(), items.begin(), items.end());
          break;
        }
        case FROZENSET: {
          Value* s = make(Kind::set);
          s->items = pop_mark();
          push(s);
          break;
        }

        case GLOBAL: {
          const std::string module = read_line();
          const std::string name = read_line();
          push(make_global(module, name));
          break;
        }
        case STACK_GLOBAL: {
          Value* name = pop();
          Value* module = pop();
          if (!module->is_string() || !name->is_string()) self.fail("STACK_GLOBAL needs two strings");
          push(make_global(module->text, name->text));
          break;
        }
        case REDUCE: {
          Value* args = pop();
          Value* callable = pop();
          push(call(callable, args));
          break;
        }
        case NEWOBJ: {  // cls.__new__(cls, *args): interpreted like a call of cls
          Value* args = pop();
          Value* cls = pop();
          push(call(cls, args));
          break;
        }
        case NEWOBJ_EX: {
          Value* kwargs = pop();
          Value* args = pop();
          Value* cls = pop();
          if (kwargs->kind != Kind::dict || !kwargs->entries.empty())
            self.fail("NEWOBJ_EX with keyword arguments is not supported");
          push(call(cls, args));
          break;
        }
        case BUILD: {
          Value* state = pop();
          Value* obj = top();
          if (obj->kind != Kind::dict && obj->kind != Kind::object)
            self.fail(detail::concat_message("BUILD on ", a_kind_name(obj->kind)));
          obj->state = state;  // kept, never applied
          break;
        }
        case BINPERSID: {
          Value* pid = pop();
          push(persistent_load(pid));
          break;
        }
        case PERSID: {
          const std::string line = read_line();
          Value* pid = make(Kind::string);
          pid->text = line;
          push(persistent_load(pid));
          break;
        }

        case PUT: memo_put(static_cast<uint64_t>(parse_int(read_line(), "PUT index")), top()); break;
        case BINPUT: memo_put(read_le(1), top()); break;
        case LONG_BINPUT: memo_put(read_le(4), top()); break;
        case MEMOIZE: memo_put(memo.size(), top()); break;
        case GET: push(memo_get(static_cast<uint64_t>(parse_int(read_line(), "GET index")))); break;
        case BINGET: push(memo_get(read_le(1))); break;
        case LONG_BINGET: push(memo_get(read_le(4))); break;

        default:
          self.fail("unsupported opcode");
      }
    }
  }
};

Unpickler::Unpickler(const void* data, size_t size, std::string source, Hooks hooks, Limits limits)
    : impl_(std::make_unique<Impl>(*this, data, size, std::move(hooks), limits)), source_(std::move(source)) {}

Unpickler::~Unpickler() = default;

Value* Unpickler::load(size_t& offset) { return impl_->run(offset); }

Value* Unpickler::make(Kind kind) { return impl_->make(kind); }

void Unpickler::fail(const std::string& message) const {
  std::string where = detail::concat_message(source_, ": pickle offset ", impl_->op_offset);
  if (impl_->have_op) {
    where += " (opcode " + hex_byte(impl_->op);
    if (const char* name = opcode_name(impl_->op)) where += std::string(" ") + name;
    where += ")";
  }
  throw Error(where + ": " + message);
}

}  // namespace nn::weights::pickle
