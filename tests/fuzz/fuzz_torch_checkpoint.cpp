// libFuzzer target: the PyTorch .pth reader (weights/src/torch_checkpoint.h): the zip container
// (libzip on a memory source), the legacy back-to-back pickle format, and the restricted unpickler
// (weights/src/pickle.h) that runs the pickle inside both. The input is a whole file, given to
// parse_torch_checkpoint; every tensor it returns is read to the last byte. nn::Error is the
// expected answer to a malformed or refused file; anything else (a sanitizer report, another
// exception, an allocation over -malloc_limit_mb, a run over -timeout) is a finding.
//
// A second entry point runs the bare unpickler on the same bytes with an allowlist that accepts
// every global and a call hook that returns its arguments, so the fuzzer reaches every opcode of
// the VM (REDUCE, NEWOBJ, BUILD, the memo, persistent ids) without having to discover torch's
// global names and the zip layout first.
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>

#include "nn/error.h"
#include "read_tensors.h"
#include "nn/tensor.h"
#include "pickle.h"
#include "torch_checkpoint.h"

// libzip stamps its memory source with time(NULL), and values derived from it reach the
// comparisons libFuzzer records to steer its mutations (-use_cmp): the run would depend on the
// clock, and CI's fixed-seed smoke run (scripts/fuzz.sh --smoke) would not give the same verdict
// twice. The target pins the clock for the whole process (this definition takes the place of
// libc's; libFuzzer itself times its runs with clock_gettime).
extern "C" time_t time(time_t* out) {
  const time_t fixed = 1767225600;  // 2026-01-01 00:00:00 UTC
  if (out != nullptr) *out = fixed;
  return fixed;
}

namespace {

volatile uint64_t sink;

uint64_t touch(const nn::weights::ConvertedWeights& w) {
  uint64_t sum = read_every_byte(w.tensors);
  for (const auto& [key, value] : w.metadata) sum += key.size() + value.size();
  return sum;
}

// Visits at most `budget` nodes, 100 deep, of a value tree (the memo can make it a graph with cycles).
uint64_t walk(const nn::weights::pickle::Value* v, int& budget, int depth = 0) {
  if (v == nullptr || depth > 100 || --budget < 0) return 0;
  uint64_t sum = static_cast<uint64_t>(v->kind) + v->text.size() + v->module.size() + v->name.size();
  for (const auto* item : v->items) sum += walk(item, budget, depth + 1);
  for (const auto& [k, val] : v->entries) sum += walk(k, budget, depth + 1) + walk(val, budget, depth + 1);
  return sum + walk(v->state, budget, depth + 1);
}

void run_unpickler(const uint8_t* data, size_t size) {
  using nn::weights::pickle::Kind;
  using nn::weights::pickle::Unpickler;
  using nn::weights::pickle::Value;
  Unpickler::Hooks hooks;
  hooks.allow_global = [](const std::string& module, const std::string&) { return module != "os"; };
  hooks.call = [](Unpickler& u, const Value& callable, const Value& args) {
    Value* out = u.make(Kind::object);
    out->module = callable.module;
    out->name = callable.name;
    out->items = args.items;
    return out;
  };
  hooks.persistent_load = [](Unpickler& u, const Value& pid) {
    Value* out = u.make(Kind::tuple);
    out->items = pid.items;
    return out;
  };
  nn::weights::pickle::Limits limits;
  limits.max_values = 1 << 16;
  limits.max_memo = 1 << 16;
  Unpickler unpickler(data, size, "<fuzz>", hooks, limits);
  size_t offset = 0;
  // Several pickles back to back, as in torch's legacy format.
  for (int k = 0; k < 8 && offset < size; ++k) {
    int budget = 10000;
    sink = walk(unpickler.load(offset), budget);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    sink = touch(nn::weights::parse_torch_checkpoint(data, size, "<fuzz>"));
  } catch (const nn::Error&) {
  }
  try {
    run_unpickler(data, size);
  } catch (const nn::Error&) {
  }
  return 0;
}
