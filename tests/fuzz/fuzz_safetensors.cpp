// libFuzzer target: the safetensors reader (nn/io/safetensors.h). The input is a whole file.
// Each input goes through the in-memory parser (parse_safetensors) and, through a memfd, the
// memory-mapped path (load_safetensors), whose aliasing of aligned tensors differs; every tensor's
// bytes are then read, and check_finite runs over the floating-point ones. nn::Error is the
// expected answer to a malformed file; anything else (a sanitizer report, another exception, an
// allocation over -malloc_limit_mb) is a finding.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "nn/io/safetensors.h"
#include "read_tensors.h"

namespace {

// Reads every byte of every tensor (ASan sees any read outside the buffer or the mapping).
uint64_t touch(const nn::io::SafetensorsFile& file) {
  uint64_t sum = read_every_byte(file.tensors);
  for (const auto& [key, value] : file.metadata) sum += key.size() + value.size();
  try {
    nn::io::check_finite(file);
  } catch (const nn::Error&) {
    // NaN/Inf in the data: reported, as it should be.
  }
  if (!file.tensors.empty()) {
    (void)file.contains(file.tensors.front().first);
    (void)file.at(file.tensors.back().first);
  }
  return sum;
}

// A memfd holding the input, so load_safetensors maps it as it would a file (no disk I/O).
int memfd_for(const uint8_t* data, size_t size) {
  static int fd = -1;
  if (fd < 0) fd = memfd_create("fuzz_safetensors", MFD_CLOEXEC);
  if (fd < 0) return -1;
  if (ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)))
    return -1;
  return fd;
}

volatile uint64_t sink;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    sink = touch(nn::io::parse_safetensors(data, size, "<fuzz>"));
  } catch (const nn::Error&) {
  }
  const int fd = memfd_for(data, size);
  if (fd >= 0) {
    try {
      sink = touch(nn::io::load_safetensors("/proc/self/fd/" + std::to_string(fd)));
    } catch (const nn::Error&) {
    }
  }
  return 0;
}
