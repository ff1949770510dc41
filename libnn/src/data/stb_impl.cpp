// stb_image's PNG decoder, from Debian's libstb-dev headers, compiled here and nowhere else.
// Everything of stb is static to this file (the wrappers in stb_impl.h are the interface), so a
// program that links nn and its own stb has no clashes. stb reads from memory only (nn reads the
// files). JPEG is libjpeg-turbo's (jpeg_decode.cpp): stb 2.27's JPEG decoder has undefined
// behaviour on crafted Huffman data (a shift by 32) that no check in front of it could rule out.
// Image writing is image_encode.cpp's (zlib for PNG, libjpeg-turbo for JPEG).
//
// Hardening, because image files are untrusted input (found by fuzzing under AddressSanitizer):
// - Allocations are zeroed (calloc), so no decoder state is ever read uninitialised.
// - STBI_ASSERT is always on and throws instead of aborting (assert() would end the process in
//   debug builds and vanish in release builds, where stb would then index out of bounds). The
//   wrappers catch it, free every block the abandoned decode still held, and report a failure.
// - Each decode has a memory budget (from the image's declared size, see image.cpp): allocations
//   past it fail, which stops decompression bombs.
#include "data/stb_impl.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace nn::data::detail {
namespace {

// A failed STBI_ASSERT: corrupt data reached a state stb does not handle.
struct StbAssertion {
  const char* condition;
};

[[noreturn]] void stb_assertion_failed(const char* condition) { throw StbAssertion{condition}; }

// The blocks stb has allocated on this thread and not yet freed (the in-flight call's), with their
// sizes, and the memory budget of that call. stb holds a handful at a time, so a list searched
// from the newest is quick, and it makes the work done independent of where the blocks lie (the
// fuzzing smoke run in CI must take the same path on every run).
struct Blocks {
  std::vector<std::pair<void*, size_t>> sizes;
  size_t bytes = 0;
  size_t budget = SIZE_MAX;
  bool over_budget = false;
};

Blocks& blocks() {
  thread_local Blocks b;
  return b;
}

// nullptr (stb's "outofmem") past the budget: the one way to stop a decompression bomb, a small
// PNG whose zlib stream inflates far beyond its declared size (stb grows its buffer up to 4 GiB).
bool within_budget(size_t more) {
  Blocks& b = blocks();
  if (more > b.budget - std::min(b.bytes, b.budget)) {
    b.over_budget = true;
    return false;
  }
  return true;
}

void* stb_malloc(size_t size) {
  if (!within_budget(size)) return nullptr;
  void* p = std::calloc(1, size != 0 ? size : 1);
  if (p != nullptr) {
    blocks().sizes.emplace_back(p, size);
    blocks().bytes += size;
  }
  return p;
}

// The entry of block p in b.sizes, or end().
std::vector<std::pair<void*, size_t>>::iterator find_block(Blocks& b, void* p) {
  auto it = std::find_if(b.sizes.rbegin(), b.sizes.rend(), [p](const auto& e) { return e.first == p; });
  return it == b.sizes.rend() ? b.sizes.end() : std::prev(it.base());
}

void* stb_realloc(void* p, size_t size) {
  if (p == nullptr) return stb_malloc(size);
  Blocks& b = blocks();
  auto it = find_block(b, p);
  const size_t old = it != b.sizes.end() ? it->second : 0;
  if (size > old && !within_budget(size - old)) return nullptr;
  if (it != b.sizes.end()) b.sizes.erase(it);  // before realloc: p's value is dead after it
  b.bytes -= old;
  void* q = std::realloc(p, size != 0 ? size : 1);
  if (q == nullptr) {  // p is still valid and still stb's
    b.sizes.emplace_back(p, old);
    b.bytes += old;
    return nullptr;
  }
  b.sizes.emplace_back(q, size);
  b.bytes += size;
  return q;
}

void stb_free_block(void* p) {
  if (p == nullptr) return;
  Blocks& b = blocks();
  auto it = find_block(b, p);
  if (it != b.sizes.end()) {
    b.bytes -= it->second;
    b.sizes.erase(it);
  }
  std::free(p);
}

// Unregisters a block that leaves stb's hands (a decoded image, now the caller's).
void release_to_caller(void* p) {
  Blocks& b = blocks();
  auto it = find_block(b, p);
  if (it == b.sizes.end()) return;
  b.bytes -= it->second;
  b.sizes.erase(it);
}

// Frees what an abandoned call still held.
void free_all_blocks() {
  Blocks& b = blocks();
  for (const auto& [p, size] : b.sizes) std::free(p);
  b.sizes.clear();
  b.bytes = 0;
}

// Why the last wrapped call failed when stb itself did not say (a failed assertion).
thread_local std::string failure_override;

}  // namespace
}  // namespace nn::data::detail

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
// stb's own ceiling on a side (its default); nn's ImageLimits are far lower and checked first.
#define STBI_MAX_DIMENSIONS (1 << 24)
#define STBI_MALLOC(size) ::nn::data::detail::stb_malloc(size)
#define STBI_REALLOC(p, size) ::nn::data::detail::stb_realloc(p, size)
#define STBI_FREE(p) ::nn::data::detail::stb_free_block(p)
#define STBI_ASSERT(x) ((x) ? (void)0 : ::nn::data::detail::stb_assertion_failed(#x))


#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wtype-limits"
#include <stb_image.h>
#pragma GCC diagnostic pop

namespace nn::data::detail {
namespace {

// Runs one stb call within a memory budget; a failed assertion frees what the call still held and
// becomes `failed`. Only blocks of the call in flight are live: a returned image is unregistered.
template <typename Call, typename Result>
Result guarded(size_t budget, const Call& call, Result failed) {
  failure_override.clear();
  Blocks& b = blocks();
  b.budget = budget;
  b.over_budget = false;
  try {
    Result r = call();
    if (b.over_budget && r == failed)
      failure_override = "decoding needs more than the " + std::to_string(budget) +
                         " bytes of memory budgeted for its size: a decompression bomb?";
    return r;
  } catch (const StbAssertion& a) {
    failure_override = std::string("failed internal check ") + a.condition;
  } catch (...) {  // std::bad_alloc
    free_all_blocks();
    throw;
  }
  free_all_blocks();
  return failed;
}

// Reading a PNG header needs little memory.
constexpr size_t kHeaderBudget = size_t{16} << 20;

}  // namespace

bool stb_info(const uint8_t* data, int size, int* width, int* height, int* channels) {
  return guarded(kHeaderBudget, [&] { return stbi_info_from_memory(data, size, width, height, channels) != 0; },
                 false);
}

bool stb_is_16_bit(const uint8_t* data, int size) {
  return guarded(kHeaderBudget, [&] { return stbi_is_16_bit_from_memory(data, size) != 0; }, false);
}

void* stb_load(const uint8_t* data, int size, bool sixteen_bit, size_t memory_budget, int* width,
               int* height, int* channels) {
  void* pixels = guarded(
      memory_budget,
      [&]() -> void* {
        if (sixteen_bit) return stbi_load_16_from_memory(data, size, width, height, channels, 0);
        return stbi_load_from_memory(data, size, width, height, channels, 0);
      },
      static_cast<void*>(nullptr));
  if (pixels != nullptr) release_to_caller(pixels);  // freed by stb_free
  return pixels;
}

void stb_free(void* pixels) { std::free(pixels); }

const char* stb_failure_reason() {
  if (!failure_override.empty()) return failure_override.c_str();
  const char* reason = stbi_failure_reason();
  return reason != nullptr && reason[0] != '\0' ? reason : "unknown error";
}

}  // namespace nn::data::detail
