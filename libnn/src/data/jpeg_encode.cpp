// JPEG writing through libjpeg-turbo's compressor (jpeg_decode.h: jpeg_encode), for
// nn::data::encode_jpeg. Errors leave libjpeg by longjmp, as in jpeg_decode.cpp: the function that
// calls setjmp holds no object with a destructor that the jump could skip.
#include <climits>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "data/jpeg_decode.h"

// clang-format off: jpeglib.h first (jerror.h's messages depend on its configuration)
#include <jpeglib.h>
#include <jerror.h>
// clang-format on

namespace nn::data::detail {
namespace {

struct Encoder {
  jpeg_compress_struct cinfo{};
  jpeg_error_mgr errors{};
  std::jmp_buf jump{};
  char message[JMSG_LENGTH_MAX] = {};
  unsigned char* buffer = nullptr;  // jpeg_mem_dest's output (malloc'ed by libjpeg)
  unsigned long size = 0;
  bool created = false;
  ~Encoder() {
    if (created) jpeg_destroy_compress(&cinfo);
    std::free(buffer);
  }
};

void on_error(j_common_ptr cinfo) {
  auto* e = static_cast<Encoder*>(cinfo->client_data);
  cinfo->err->format_message(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

void on_message(j_common_ptr, int) {}  // warnings and traces: an encoder's are not about the data

// Runs the compression; false after a libjpeg error (e.message).
bool compress(Encoder& e, const uint8_t* samples, int width, int height, int channels, int quality) {
  if (setjmp(e.jump) != 0) return false;
  jpeg_create_compress(&e.cinfo);
  e.created = true;
  jpeg_mem_dest(&e.cinfo, &e.buffer, &e.size);
  e.cinfo.image_width = static_cast<JDIMENSION>(width);
  e.cinfo.image_height = static_cast<JDIMENSION>(height);
  e.cinfo.input_components = channels;
  e.cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&e.cinfo);
  jpeg_set_quality(&e.cinfo, quality, TRUE);
  jpeg_start_compress(&e.cinfo, TRUE);
  const size_t row = static_cast<size_t>(width) * static_cast<size_t>(channels);
  while (e.cinfo.next_scanline < e.cinfo.image_height) {
    JSAMPROW r = const_cast<JSAMPROW>(samples + e.cinfo.next_scanline * row);
    jpeg_write_scanlines(&e.cinfo, &r, 1);
  }
  jpeg_finish_compress(&e.cinfo);
  return true;
}

}  // namespace

bool jpeg_encode(const uint8_t* samples, int width, int height, int channels, int quality, std::vector<uint8_t>* out,
                 std::string* error) {
  if (width < 1 || height < 1 || width > 65500 || height > 65500 || (channels != 1 && channels != 3) ||
      quality < 1 || quality > 100) {
    *error = "unsupported size, channel count or quality";
    return false;
  }
  Encoder e;
  e.cinfo.err = jpeg_std_error(&e.errors);
  e.errors.error_exit = on_error;
  e.errors.emit_message = on_message;
  e.cinfo.client_data = &e;
  if (!compress(e, samples, width, height, channels, quality)) {
    *error = e.message;
    return false;
  }
  out->assign(e.buffer, e.buffer + e.size);
  return true;
}

}  // namespace nn::data::detail
