// The library's only contact with stb_image (compiled in stb_impl.cpp with static linkage, so it
// never clashes with a consumer's own copy of stb): PNG decoding. Thin wrappers: checks and
// messages are image.cpp's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace nn::data::detail {

// Dimensions and channel count from the header alone (stbi_info); false if stb cannot read it.
bool stb_info(const uint8_t* data, int size, int* width, int* height, int* channels);
// True for a PNG with 16-bit samples.
bool stb_is_16_bit(const uint8_t* data, int size);
// Decodes to the file's own channel count (palettes expanded): uint8_t samples, or uint16_t when
// sixteen_bit. stb's allocations during the call may total at most memory_budget bytes. nullptr on
// failure. Free with stb_free.
void* stb_load(const uint8_t* data, int size, bool sixteen_bit, size_t memory_budget, int* width,
               int* height, int* channels);
void stb_free(void* pixels);
// Why the last stb call on this thread failed (stb keeps it thread-local).
const char* stb_failure_reason();

}  // namespace nn::data::detail
