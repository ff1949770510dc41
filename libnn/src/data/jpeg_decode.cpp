// JPEG decoding through libjpeg-turbo's libjpeg API (see jpeg_decode.h).
//
// libjpeg reports errors through a callback that must not return; the standard way out is
// longjmp back to a setjmp in the caller. The functions below that call setjmp keep to what makes
// that well defined: libjpeg's frames (C) are the only ones jumped over, every object with a
// destructor in them is constructed before the setjmp, and nothing assigned after the setjmp is
// read once it has returned a second time.
#include "data/jpeg_decode.h"

#include <algorithm>
#include <climits>
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE and size_t declared first

// clang-format off: jpeglib.h first (jerror.h's messages depend on its configuration)
#include <jpeglib.h>
#include <jerror.h>
// clang-format on

namespace nn::data::detail {

struct JpegDecoder::State {
  jpeg_decompress_struct cinfo{};
  jpeg_error_mgr errors{};
  jpeg_progress_mgr progress{};
  std::jmp_buf jump{};
  std::string error;
  bool created = false;
  const uint8_t* data = nullptr;
  size_t size = 0;
};

namespace {

JpegDecoder::State& state_of(j_common_ptr cinfo) { return *static_cast<JpegDecoder::State*>(cinfo->client_data); }

[[noreturn]] void fail(j_common_ptr cinfo) {
  JpegDecoder::State& s = state_of(cinfo);
  char message[JMSG_LENGTH_MAX] = {};
  cinfo->err->format_message(cinfo, message);
  s.error = message;
  std::longjmp(s.jump, 1);
}

void on_error(j_common_ptr cinfo) { fail(cinfo); }

// Warnings after which the pixels are not the file's: the entropy-coded data is corrupt or ends
// early, and libjpeg fills in what it could not decode (a grey smear, wrong blocks).
bool loses_pixels(int code) {
  switch (code) {
    case JWRN_HIT_MARKER:        // premature end of data segment
    case JWRN_JPEG_EOF:          // premature end of JPEG file
    case JWRN_HUFF_BAD_CODE:     // bad Huffman code
#if JPEG_LIB_VERSION >= 70 || defined(C_ARITH_CODING_SUPPORTED) || defined(D_ARITH_CODING_SUPPORTED)
    case JWRN_ARITH_BAD_CODE:    // bad arithmetic code
#endif
    case JWRN_MUST_RESYNC:       // restart marker missing
    case JWRN_NOT_SEQUENTIAL:    // invalid SOS parameters for sequential JPEG
    case JWRN_BOGUS_PROGRESSION: // inconsistent progression sequence
      return true;
    default:
      return false;
  }
}

void on_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  if (loses_pixels(cinfo->err->msg_code)) fail(cinfo);
  cinfo->err->num_warnings++;
}

void on_progress(j_common_ptr cinfo) {
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > JpegDecoder::kMaxScans) {
    JpegDecoder::State& s = state_of(cinfo);
    s.error = "more than " + std::to_string(JpegDecoder::kMaxScans) + " scans";
    std::longjmp(s.jump, 1);
  }
}

// jpeg_start_decompress to jpeg_finish_decompress into `rows` (one pointer per image row, each
// room for the image's width times `channels` samples); the only function here that libjpeg's
// errors jump back into while decoding, with no locals to lose.
bool run_decompress(JpegDecoder::State& s, JSAMPROW* rows, int channels) {
  if (setjmp(s.jump) != 0) return false;
  jpeg_start_decompress(&s.cinfo);
  if (s.cinfo.output_height != s.cinfo.image_height || s.cinfo.output_width != s.cinfo.image_width ||
      s.cinfo.output_components != channels) {
    s.error = "libjpeg's output is not the size of the image";
    return false;
  }
  while (s.cinfo.output_scanline < s.cinfo.output_height)
    jpeg_read_scanlines(&s.cinfo, rows + s.cinfo.output_scanline, s.cinfo.output_height - s.cinfo.output_scanline);
  jpeg_finish_decompress(&s.cinfo);
  return true;
}

}  // namespace

JpegDecoder::JpegDecoder(const uint8_t* data, size_t size) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.data = data;
  s.size = size;
  s.cinfo.err = jpeg_std_error(&s.errors);
  s.errors.error_exit = on_error;
  s.errors.emit_message = on_message;
  s.cinfo.client_data = &s;
  s.progress.progress_monitor = on_progress;
}

JpegDecoder::~JpegDecoder() {
  if (state_->created) jpeg_destroy_decompress(&state_->cinfo);
}

bool JpegDecoder::read_header() {
  State& s = *state_;
  if (s.size > ULONG_MAX) {
    s.error = "the data is too large";
    return false;
  }
  if (setjmp(s.jump) != 0) return false;
  jpeg_create_decompress(&s.cinfo);  // may fail (out of memory): the jump above then returns
  s.created = true;
  s.cinfo.progress = &s.progress;
  jpeg_mem_src(&s.cinfo, s.data, static_cast<unsigned long>(s.size));
  jpeg_read_header(&s.cinfo, TRUE);
  return true;
}

int JpegDecoder::width() const { return static_cast<int>(state_->cinfo.image_width); }
int JpegDecoder::height() const { return static_cast<int>(state_->cinfo.image_height); }
int JpegDecoder::components() const { return state_->cinfo.num_components; }
const std::string& JpegDecoder::error() const { return state_->error; }

bool JpegDecoder::decode(size_t memory_budget, std::vector<uint8_t>* samples, int* channels) {
  State& s = *state_;
  jpeg_decompress_struct& c = s.cinfo;
  int n = 0;
  switch (c.jpeg_color_space) {
    case JCS_GRAYSCALE: n = 1; c.out_color_space = JCS_GRAYSCALE; break;
    case JCS_YCbCr:
    case JCS_RGB: n = 3; c.out_color_space = JCS_RGB; break;
    case JCS_CMYK:
    case JCS_YCCK: n = 4; c.out_color_space = JCS_CMYK; break;
    default:
      s.error = std::to_string(c.num_components) +
                " components in no colour space it knows (gray, YCbCr, RGB, CMYK or YCCK)";
      return false;
  }
  c.mem->max_memory_to_use = static_cast<long>(std::min<size_t>(memory_budget, LONG_MAX));
  const size_t width = c.image_width, height = c.image_height, row = width * static_cast<size_t>(n);
  samples->assign(row * height, 0);
  std::vector<JSAMPROW> rows(height);
  for (size_t y = 0; y < height; ++y) rows[y] = samples->data() + y * row;

  if (!run_decompress(s, rows.data(), n)) return false;
  if (n == 4) {  // Adobe's inverted CMYK -> RGB: R = C' K' / 255, rounded (C', K': stored values)
    uint8_t* p = samples->data();
    const size_t pixels = width * height;
    for (size_t i = 0; i < pixels; ++i) {
      const unsigned k = p[4 * i + 3];
      for (int ch = 0; ch < 3; ++ch) {
        const unsigned t = p[4 * i + ch] * k + 128;
        p[3 * i + ch] = static_cast<uint8_t>((t + (t >> 8)) >> 8);
      }
    }
    samples->resize(pixels * 3);
    n = 3;
  }
  *channels = n;
  return true;
}

}  // namespace nn::data::detail
