// DICOM decoding through GDCM (see dicom_decode.h for why the file is walked here before GDCM
// sees it). In order:
//   1. the file meta information (explicit VR little endian, group 0002) gives the transfer syntax;
//      a deflated data set is inflated here (bounded) and handed on as explicit VR little endian;
//   2. walk_data_set follows every element of the data set, recursively through sequences, items
//      and encapsulated fragments, and refuses anything PS3.5 does not allow or that would steer
//      GDCM into one of its recovery paths; it records the image attributes of the top level;
//   3. the attributes are checked (one frame, grayscale, 8 or 16 bits, the size limits, the pixel
//      data's length or its codestream's own header);
//   4. gdcm::Reader parses the same bytes; what it read is compared with the walk;
//   5. a GDCM codec (RAW, JPEG, JPEG-LS, JPEG 2000, RLE) decodes the pixel data;
//   6. the stored values become [0, 1] floats: modality LUT (rescale), VOI LUT (window, or the
//      full stored range), MONOCHROME1 inversion.
// Messages never quote a value of the data set except numbers and names nn itself knows (a UID or
// photometric interpretation is quoted only when it is made of the characters such values use).
#include "data/dicom_decode.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <istream>
#include <limits>
#include <mutex>
#include <sstream>
#include <streambuf>
#include <utility>
#include <vector>

#include "nn/error.h"

// GDCM's headers: only here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <gdcmByteValue.h>
#include <gdcmDataElement.h>
#include <gdcmDataSet.h>
#include <gdcmFile.h>
#include <gdcmFragment.h>
#include <gdcmJPEG2000Codec.h>
#include <gdcmJPEGCodec.h>
#include <gdcmJPEGLSCodec.h>
#include <gdcmPhotometricInterpretation.h>
#include <gdcmPixelFormat.h>
#include <gdcmRAWCodec.h>
#include <gdcmRLECodec.h>
#include <gdcmReader.h>
#include <gdcmSequenceOfFragments.h>
#include <gdcmSwapper.h>
#include <gdcmTag.h>
#include <gdcmTrace.h>
#pragma GCC diagnostic pop

namespace nn::data::detail {
namespace {

// ---- messages ----

template <typename... Args>
[[noreturn]] void refuse(const std::string& source, const Args&... args) {
  ::nn::detail::throw_error(__FILE__, __LINE__,
                            ::nn::detail::concat_message("cannot decode image '", source, "': ", args...));
}

constexpr uint32_t make_tag(uint16_t group, uint16_t element) { return (uint32_t{group} << 16) | element; }

std::string tag_text(uint32_t tag) {
  char text[16];
  std::snprintf(text, sizeof text, "(%04X,%04X)", unsigned(tag >> 16), unsigned(tag & 0xffff));
  return text;
}

// A value of the file quoted in a message only when every character is one of `allowed` (UIDs:
// digits and dots; code strings: capitals, digits, space, underscore), so that no name, ID or date
// can reach a message through it.
std::string quoted_if(const std::string& value, const char* allowed, size_t max_length) {
  if (value.empty() || value.size() > max_length) return "";
  for (char c : value)
    if (std::strchr(allowed, c) == nullptr || c == '\0') return "";
  return "'" + value + "'";
}

// ---- tags and value representations ----

constexpr uint32_t kItem = make_tag(0xfffe, 0xe000);
constexpr uint32_t kItemEnd = make_tag(0xfffe, 0xe00d);
constexpr uint32_t kSequenceEnd = make_tag(0xfffe, 0xe0dd);
constexpr uint32_t kGroupLength = make_tag(0x0002, 0x0000);
constexpr uint32_t kTransferSyntax = make_tag(0x0002, 0x0010);
constexpr uint32_t kSamplesPerPixel = make_tag(0x0028, 0x0002);
constexpr uint32_t kPhotometric = make_tag(0x0028, 0x0004);
constexpr uint32_t kNumberOfFrames = make_tag(0x0028, 0x0008);
constexpr uint32_t kRows = make_tag(0x0028, 0x0010);
constexpr uint32_t kColumns = make_tag(0x0028, 0x0011);
constexpr uint32_t kBitsAllocated = make_tag(0x0028, 0x0100);
constexpr uint32_t kBitsStored = make_tag(0x0028, 0x0101);
constexpr uint32_t kHighBit = make_tag(0x0028, 0x0102);
constexpr uint32_t kPixelRepresentation = make_tag(0x0028, 0x0103);
constexpr uint32_t kWindowCenter = make_tag(0x0028, 0x1050);
constexpr uint32_t kWindowWidth = make_tag(0x0028, 0x1051);
constexpr uint32_t kRescaleIntercept = make_tag(0x0028, 0x1052);
constexpr uint32_t kRescaleSlope = make_tag(0x0028, 0x1053);
constexpr uint32_t kVoiLutFunction = make_tag(0x0028, 0x1056);
constexpr uint32_t kFloatPixelData = make_tag(0x7fe0, 0x0008);
constexpr uint32_t kDoubleFloatPixelData = make_tag(0x7fe0, 0x0009);
constexpr uint32_t kPixelData = make_tag(0x7fe0, 0x0010);

// Limits of the walk. Real images have a few hundred to a few thousand elements and sequences a
// handful of levels deep; GDCM builds an object per element, item and fragment (about 200 bytes
// each) and recurses per level, so a small file of empty items must not become a huge tree.
constexpr size_t kMaxElements = 200'000;
constexpr int kMaxDepth = 32;

struct VrInfo {
  char name[3];
  bool long_length;  // 2 reserved bytes and a 32-bit length in explicit VR
  uint32_t unit;     // a binary VR's value is a whole number of these (1: any even length)
};

constexpr std::array<VrInfo, 34> kVrs = {{
    {"AE", false, 1}, {"AS", false, 1}, {"AT", false, 4}, {"CS", false, 1}, {"DA", false, 1},
    {"DS", false, 1}, {"DT", false, 1}, {"FD", false, 8}, {"FL", false, 4}, {"IS", false, 1},
    {"LO", false, 1}, {"LT", false, 1}, {"OB", true, 1},  {"OD", true, 8},  {"OF", true, 4},
    {"OL", true, 4},  {"OV", true, 8},  {"OW", true, 2},  {"PN", false, 1}, {"SH", false, 1},
    {"SL", false, 4}, {"SQ", true, 1},  {"SS", false, 2}, {"ST", false, 1}, {"SV", true, 8},
    {"TM", false, 1}, {"UC", true, 1},  {"UI", false, 1}, {"UL", false, 4}, {"UN", true, 1},
    {"UR", true, 1},  {"US", false, 2}, {"UT", true, 1},  {"UV", true, 8},
}};

const VrInfo* find_vr(const uint8_t* p) {
  for (const VrInfo& vr : kVrs)
    if (p[0] == uint8_t(vr.name[0]) && p[1] == uint8_t(vr.name[1])) return &vr;
  return nullptr;
}

// ---- transfer syntaxes ----

enum class Codec { native, jpeg, jpeg_ls, jpeg_2000, rle };

struct Syntax {
  const char* uid;
  const char* name;
  bool explicit_vr, big_endian, deflated;
  Codec codec;
};

constexpr Syntax kExplicitLittleEndian = {"1.2.840.10008.1.2.1", "Explicit VR Little Endian", true, false, false,
                                          Codec::native};
constexpr std::array<Syntax, 13> kSyntaxes = {{
    {"1.2.840.10008.1.2", "Implicit VR Little Endian", false, false, false, Codec::native},
    kExplicitLittleEndian,
    {"1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", true, false, true, Codec::native},
    {"1.2.840.10008.1.2.2", "Explicit VR Big Endian", true, true, false, Codec::native},
    {"1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)", true, false, false, Codec::jpeg},
    {"1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 and 4)", true, false, false, Codec::jpeg},
    {"1.2.840.10008.1.2.4.57", "JPEG Lossless (Process 14)", true, false, false, Codec::jpeg},
    {"1.2.840.10008.1.2.4.70", "JPEG Lossless (Process 14, Selection Value 1)", true, false, false, Codec::jpeg},
    {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless", true, false, false, Codec::jpeg_ls},
    {"1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless", true, false, false, Codec::jpeg_ls},
    {"1.2.840.10008.1.2.4.90", "JPEG 2000 (Lossless Only)", true, false, false, Codec::jpeg_2000},
    {"1.2.840.10008.1.2.4.91", "JPEG 2000", true, false, false, Codec::jpeg_2000},
    {"1.2.840.10008.1.2.5", "RLE Lossless", true, false, false, Codec::rle},
}};

// ---- reading bytes ----

uint16_t le16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24); }
uint16_t be16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }
uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]); }

constexpr uint32_t kUndefinedLength = 0xffffffffu;

// ---- the file meta information ----

struct MetaElement {
  uint32_t tag;
  size_t begin, end;  // the whole element, header included
};

struct Meta {
  const Syntax* syntax = nullptr;
  std::vector<MetaElement> elements;
  size_t data_set_begin = 0;
};

// The file meta information: explicit VR little endian elements of group 0002 from byte 132, in
// ascending order, with a Transfer Syntax UID nn reads; a File Meta Information Group Length, when
// present, must end exactly where the group does (GDCM and this walk must agree where the data set
// begins).
Meta read_meta(const uint8_t* d, size_t n, const std::string& source) {
  Meta meta;
  size_t at = 132;
  uint32_t previous = 0;
  int64_t group_end = -1;
  std::string uid;
  bool has_uid = false;
  while (n - at >= 8 && le16(d + at) == 0x0002) {
    const uint32_t tag = make_tag(0x0002, le16(d + at + 2));
    if (!meta.elements.empty() && tag <= previous)
      refuse(source, "corrupt DICOM file meta information (element ", tag_text(tag), " at byte ", at,
             " is out of order)");
    const VrInfo* vr = find_vr(d + at + 4);
    if (vr == nullptr || (vr->name[0] == 'S' && vr->name[1] == 'Q'))
      refuse(source, "corrupt DICOM file meta information (element ", tag_text(tag), " at byte ", at,
             " has no valid value representation)");
    size_t header = 8;
    uint32_t length = le16(d + at + 6);
    if (vr->long_length) {
      if (n - at < 12) refuse(source, "truncated DICOM file (the data ends in the file meta information)");
      header = 12;
      length = le32(d + at + 8);
    }
    if (length == kUndefinedLength || length > n - at - header)
      refuse(source, "truncated or corrupt DICOM file meta information (element ", tag_text(tag), " at byte ", at,
             " declares ", length, " bytes; ", n - at - header, " remain)");
    const uint8_t* value = d + at + header;
    if (tag == kGroupLength) {
      if (length != 4) refuse(source, "corrupt DICOM file meta information (a group length of ", length, " bytes)");
      group_end = static_cast<int64_t>(at + header + 4) + le32(value);
    } else if (tag == kTransferSyntax) {
      uid.assign(reinterpret_cast<const char*>(value), length);
      while (!uid.empty() && (uid.back() == '\0' || uid.back() == ' ')) uid.pop_back();
      has_uid = true;
    }
    meta.elements.push_back({tag, at, at + header + length});
    previous = tag;
    at += header + length;
  }
  if (meta.elements.empty()) refuse(source, "corrupt DICOM file (no file meta information after 'DICM')");
  if (group_end >= 0 && group_end != static_cast<int64_t>(at))
    refuse(source, "corrupt DICOM file meta information (its group length says it ends at byte ", group_end,
           ", its elements end at byte ", at, ")");
  if (!has_uid) refuse(source, "corrupt DICOM file meta information (no Transfer Syntax UID (0002,0010))");
  for (const Syntax& s : kSyntaxes)
    if (uid == s.uid) meta.syntax = &s;
  if (meta.syntax == nullptr) {
    const std::string q = quoted_if(uid, "0123456789.", 64);
    refuse(source, "DICOM transfer syntax ", q.empty() ? "(an invalid UID)" : q,
           " is not supported (nn reads implicit, explicit and deflated little endian, explicit big endian, "
           "JPEG baseline, extended and lossless, JPEG-LS, JPEG 2000 and RLE)");
  }
  meta.data_set_begin = at;
  return meta;
}

// A deflated data set, inflated (raw deflate, PS3.5 A.5) into a file GDCM and the walk read as
// explicit VR little endian: the preamble, the file meta information with its transfer syntax
// replaced, the inflated data set. A data set that would inflate past `max_bytes` is refused.
std::vector<uint8_t> inflate_file(const uint8_t* d, size_t n, const Meta& meta, size_t max_bytes,
                                  const std::string& source) {
  std::vector<uint8_t> out(d, d + 132);
  // File meta information: every element but the group length and the transfer syntax, which
  // become explicit VR little endian's.
  std::vector<uint8_t> group;
  auto put_element = [&](uint16_t element, const char* vr, const std::string& value) {
    const uint8_t head[8] = {0x02, 0x00, uint8_t(element & 0xff), uint8_t(element >> 8),
                             uint8_t(vr[0]), uint8_t(vr[1]), uint8_t(value.size() & 0xff), uint8_t(value.size() >> 8)};
    group.insert(group.end(), head, head + 8);
    group.insert(group.end(), value.begin(), value.end());
  };
  bool put_uid = false;
  for (const MetaElement& e : meta.elements) {
    if (e.tag == kGroupLength) continue;
    if (e.tag >= kTransferSyntax && !put_uid) {
      put_element(0x0010, "UI", std::string(kExplicitLittleEndian.uid) + '\0');
      put_uid = true;
    }
    if (e.tag != kTransferSyntax) group.insert(group.end(), d + e.begin, d + e.end);
  }
  const auto length = static_cast<uint32_t>(group.size());
  const uint8_t group_length[12] = {0x02, 0x00, 0x00, 0x00, 'U', 'L', 4, 0, uint8_t(length & 0xff),
                                    uint8_t((length >> 8) & 0xff), uint8_t((length >> 16) & 0xff), uint8_t(length >> 24)};
  out.insert(out.end(), group_length, group_length + 12);
  out.insert(out.end(), group.begin(), group.end());

  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) refuse(source, "cannot start zlib to inflate the DICOM data set");
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&z};
  const size_t begin = out.size();
  z.next_in = const_cast<Bytef*>(d + meta.data_set_begin);
  z.avail_in = static_cast<uInt>(std::min<size_t>(n - meta.data_set_begin, std::numeric_limits<uInt>::max()));
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (out.size() - begin >= max_bytes)
      refuse(source, "the deflated DICOM data set inflates past ", max_bytes,
             " bytes, more than an image within the size limits needs (a decompression bomb?)");
    const size_t chunk = std::min<size_t>(max_bytes - (out.size() - begin), size_t{1} << 20);
    const size_t had = out.size();
    out.resize(had + chunk);
    z.next_out = out.data() + had;
    z.avail_out = static_cast<uInt>(chunk);
    rc = inflate(&z, Z_NO_FLUSH);
    out.resize(had + chunk - z.avail_out);
    if (rc == Z_BUF_ERROR && z.avail_in == 0)
      refuse(source, "truncated DICOM file (the deflated data set ends early)");
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
      refuse(source, "corrupt deflated DICOM data set (zlib: ", z.msg != nullptr ? std::string(z.msg) : "error " + std::to_string(rc), ")");
  }
  // PS3.5 A.5: an odd-length deflated stream is padded with one NUL byte.
  const size_t rest = z.avail_in;
  const uint8_t* tail = d + n - rest;
  if (rest > 1 || (rest == 1 && tail[0] != 0))
    refuse(source, "corrupt DICOM file (", rest, " bytes after the end of the deflated data set)");
  return out;
}

// ---- the walk ----

struct Value {
  bool present = false;
  size_t at = 0, length = 0;
  char vr[2] = {0, 0};
};

struct Attributes {
  Value samples_per_pixel, photometric, number_of_frames, rows, columns, bits_allocated, bits_stored, high_bit,
      pixel_representation, window_center, window_width, rescale_intercept, rescale_slope, voi_lut_function;
  bool float_pixel_data = false;
  bool has_pixel_data = false, encapsulated = false;
  Value pixel_data;
  std::vector<std::pair<size_t, size_t>> fragments;  // (offset, length) of each fragment after the offset table
};

class Walker {
 public:
  Walker(const uint8_t* d, size_t n, const Syntax& syntax, const std::string& source, Attributes* top)
      : d_(d), n_(n), syntax_(syntax), source_(source), top_(top) {}

  // The data set from `at` to the end of the data.
  void walk(size_t at) { walk_data_set(at, n_, false, 0, syntax_.explicit_vr, true); }

 private:
  uint16_t u16(size_t at) const { return syntax_.big_endian ? be16(d_ + at) : le16(d_ + at); }
  uint32_t u32(size_t at) const { return syntax_.big_endian ? be32(d_ + at) : le32(d_ + at); }

  template <typename... Args>
  [[noreturn]] void corrupt(const Args&... args) const {
    refuse(source_, "corrupt DICOM data set (", args..., ")");
  }
  [[noreturn]] void truncated(uint32_t tag, size_t at, uint64_t length, size_t end) const {
    refuse(source_, "truncated DICOM file (element ", tag_text(tag), " at byte ", at, " declares ", length,
           " bytes; the ", end == n_ ? "data ends" : "enclosing item ends", " at byte ", end, ")");
  }
  void count() {
    if (++elements_ > kMaxElements)
      refuse(source_, "the DICOM data set has more than ", kMaxElements, " elements, items and fragments");
  }

  // One data set (the top level or an item's) from `at`: up to `end`, or, when `until_item_end`,
  // up to its Item Delimitation Item. Returns where it ends (after the delimiter).
  size_t walk_data_set(size_t at, size_t end, bool until_item_end, int depth, bool explicit_vr, bool top) {
    uint32_t previous = 0;
    bool first = true;
    while (true) {
      if (!until_item_end && at == end) return at;
      if (end - at < 8) {
        if (until_item_end) refuse(source_, "truncated DICOM file (an item without its end at byte ", end, ")");
        refuse(source_, "truncated DICOM file (", end - at, " bytes at byte ", at, " are not a whole element)");
      }
      const uint16_t group = u16(at);
      const uint32_t tag = make_tag(group, u16(at + 2));
      if (group == 0xfffe) {
        if (until_item_end && tag == kItemEnd) {
          if (u32(at + 4) != 0) corrupt("an item delimiter with a length at byte ", at);
          return at + 8;
        }
        corrupt("item tag ", tag_text(tag), " where a data element belongs, at byte ", at);
      }
      if (!first && tag <= previous)
        corrupt("element ", tag_text(tag), " at byte ", at, " follows ", tag_text(previous), "; elements must ascend");
      // Groups 0000-0007 hold no data set elements (0002 is the file meta information); GDCM reads
      // (00FF,4AA5) as pixel data running to the end of the file.
      if ((group < 0x0008 && group != 0x0004) || tag == make_tag(0x00ff, 0x4aa5))
        corrupt("element ", tag_text(tag), " at byte ", at, " cannot be in a data set");
      count();
      Value value;
      size_t header = 8;
      uint32_t length;
      const VrInfo* vr = nullptr;
      if (explicit_vr) {
        vr = find_vr(d_ + at + 4);
        if (vr == nullptr) corrupt("element ", tag_text(tag), " at byte ", at, " has no valid value representation");
        value.vr[0] = vr->name[0];
        value.vr[1] = vr->name[1];
        if (vr->long_length) {
          if (end - at < 12) truncated(tag, at, 12, end);
          header = 12;
          length = u32(at + 8);
        } else {
          length = u16(at + 6);
        }
      } else {
        length = u32(at + 4);
      }
      const size_t v = at + header;
      const bool is_sq = vr != nullptr && vr->name[0] == 'S' && vr->name[1] == 'Q';
      const bool is_un = vr != nullptr && vr->name[0] == 'U' && vr->name[1] == 'N';
      // GDCM asserts that Pixel Data is OB or OW (UN it reads as a sequence of fragments too).
      if (tag == kPixelData && explicit_vr && !(value.vr[0] == 'O' && (value.vr[1] == 'B' || value.vr[1] == 'W')))
        corrupt("pixel data at byte ", at, " has value representation ", value.vr[0], value.vr[1]);
      if (length == kUndefinedLength) {
        if (tag == kPixelData) {
          if (!explicit_vr || syntax_.codec == Codec::native)
            corrupt("pixel data of undefined length at byte ", at, " in an uncompressed transfer syntax");
          at = walk_fragments(v, end, top);
          if (top) {
            top_->has_pixel_data = true;
            top_->encapsulated = true;
          }
        } else if (!explicit_vr || is_sq) {
          at = walk_sequence(v, end, true, depth + 1, explicit_vr);
        } else if (is_un && !syntax_.big_endian) {
          at = walk_sequence(v, end, true, depth + 1, false);  // CP-246: an implicit VR sequence
        } else {
          corrupt("element ", tag_text(tag), " at byte ", at, " has an undefined length but is not a sequence");
        }
      } else {
        if (length % 2 != 0) corrupt("element ", tag_text(tag), " at byte ", at, " has an odd length (", length, ")");
        if (length > end - v) truncated(tag, at, length, end);
        if (is_sq) {
          walk_sequence(v, v + length, false, depth + 1, explicit_vr);
        } else if (vr != nullptr && length % vr->unit != 0) {
          corrupt("element ", tag_text(tag), " at byte ", at, " of value representation ", vr->name, " holds ", length,
                  " bytes");
        }
        if (tag == kPixelData && syntax_.codec != Codec::native && top)
          refuse(source_, "corrupt DICOM file (the transfer syntax is ", syntax_.name,
                 " but the pixel data is not encapsulated)");
        value.present = true;
        value.at = v;
        value.length = length;
        if (top) record(tag, value);
        at = v + length;
      }
      previous = tag;
      first = false;
    }
  }

  // A sequence's items from `at`: up to `end` (defined length) or its Sequence Delimitation Item.
  size_t walk_sequence(size_t at, size_t end, bool undefined, int depth, bool explicit_vr) {
    if (depth > kMaxDepth) refuse(source_, "the DICOM data set nests sequences deeper than ", kMaxDepth, " levels");
    while (true) {
      if (!undefined && at == end) return at;
      if (end - at < 8) refuse(source_, "truncated DICOM file (a sequence without its end at byte ", end, ")");
      const uint32_t tag = make_tag(u16(at), u16(at + 2));
      const uint32_t length = u32(at + 4);
      if (undefined && tag == kSequenceEnd) {
        if (length != 0) corrupt("a sequence delimiter with a length at byte ", at);
        return at + 8;
      }
      if (tag != kItem) corrupt(tag_text(tag), " at byte ", at, " where a sequence item belongs");
      count();
      if (length == kUndefinedLength) {
        at = walk_data_set(at + 8, end, true, depth, explicit_vr, false);
      } else {
        if (length % 2 != 0) corrupt("an item of odd length at byte ", at);
        if (length > end - at - 8) truncated(tag, at, length, end);
        walk_data_set(at + 8, at + 8 + length, false, depth, explicit_vr, false);
        at += 8 + size_t{length};
      }
    }
  }

  // Encapsulated pixel data (PS3.5 A.4): the Basic Offset Table item, one or more fragment items,
  // the Sequence Delimitation Item.
  size_t walk_fragments(size_t at, size_t end, bool top) {
    bool table = true;
    size_t fragments = 0;
    while (true) {
      if (end - at < 8) refuse(source_, "truncated DICOM file (the encapsulated pixel data has no end)");
      const uint32_t tag = make_tag(u16(at), u16(at + 2));
      const uint32_t length = u32(at + 4);
      if (!table && tag == kSequenceEnd) {
        if (length != 0) corrupt("a sequence delimiter with a length at byte ", at);
        if (fragments == 0) corrupt("encapsulated pixel data without fragments");
        return at + 8;
      }
      if (tag != kItem) corrupt(tag_text(tag), " at byte ", at, " where a pixel data fragment belongs");
      if (length == kUndefinedLength) corrupt("a pixel data fragment of undefined length at byte ", at);
      if (length % 2 != 0 || (table && length % 4 != 0) || (!table && length == 0))
        corrupt("a pixel data fragment of ", length, " bytes at byte ", at);
      if (length > end - at - 8) truncated(tag, at, length, end);
      count();
      if (!table) {
        ++fragments;
        if (top) top_->fragments.emplace_back(at + 8, length);
      }
      table = false;
      at += 8 + size_t{length};
    }
  }

  void record(uint32_t tag, const Value& value) {
    switch (tag) {
      case kSamplesPerPixel: top_->samples_per_pixel = value; break;
      case kPhotometric: top_->photometric = value; break;
      case kNumberOfFrames: top_->number_of_frames = value; break;
      case kRows: top_->rows = value; break;
      case kColumns: top_->columns = value; break;
      case kBitsAllocated: top_->bits_allocated = value; break;
      case kBitsStored: top_->bits_stored = value; break;
      case kHighBit: top_->high_bit = value; break;
      case kPixelRepresentation: top_->pixel_representation = value; break;
      case kWindowCenter: top_->window_center = value; break;
      case kWindowWidth: top_->window_width = value; break;
      case kRescaleIntercept: top_->rescale_intercept = value; break;
      case kRescaleSlope: top_->rescale_slope = value; break;
      case kVoiLutFunction: top_->voi_lut_function = value; break;
      case kFloatPixelData:
      case kDoubleFloatPixelData: top_->float_pixel_data = true; break;
      case kPixelData:
        top_->has_pixel_data = true;
        top_->pixel_data = value;
        break;
      default: break;
    }
  }

  const uint8_t* d_;
  size_t n_;
  const Syntax& syntax_;
  const std::string& source_;
  Attributes* top_;
  size_t elements_ = 0;
};

// ---- attribute values ----

class Values {
 public:
  Values(const uint8_t* d, const Syntax& syntax, const std::string& source) : d_(d), syntax_(syntax), source_(source) {}

  // A US value (one 16-bit number); -1 when absent.
  int64_t us(const Value& v, const char* name) const {
    if (!v.present) return -1;
    expect_vr(v, "US", name);
    if (v.length != 2) refuse(source_, "corrupt DICOM header (", name, " holds ", v.length, " bytes, not one US value)");
    return syntax_.big_endian ? be16(d_ + v.at) : le16(d_ + v.at);
  }
  // The first value of a multi-valued string, spaces and NULs trimmed.
  std::string text(const Value& v, const char* vr, const char* name) const {
    expect_vr(v, vr, name);
    std::string s(reinterpret_cast<const char*>(d_ + v.at), v.length);
    s = s.substr(0, s.find('\\'));
    const size_t first = s.find_first_not_of(" \0", 0, 2), last = s.find_last_not_of(" \0", std::string::npos, 2);
    return first == std::string::npos ? std::string() : s.substr(first, last - first + 1);
  }
  // A decimal string's first value; `fallback` when absent or empty.
  double ds(const Value& v, const char* name, double fallback, bool* given = nullptr) const {
    if (given != nullptr) *given = false;
    if (!v.present) return fallback;
    const std::string s = text(v, "DS", name);
    if (s.empty()) return fallback;
    double x = 0;
    const bool chars = s.find_first_not_of("0123456789+-.eE") == std::string::npos;
    const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
    const auto [end, ec] = std::from_chars(begin, s.data() + s.size(), x);
    if (!chars || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(x))
      refuse(source_, "corrupt DICOM header (", name, " is not a decimal number)");
    if (given != nullptr) *given = true;
    return x;
  }
  // An integer string's first value; `fallback` when absent or empty.
  int64_t is(const Value& v, const char* name, int64_t fallback) const {
    if (!v.present) return fallback;
    const std::string s = text(v, "IS", name);
    if (s.empty()) return fallback;
    int64_t x = 0;
    const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
    const auto [end, ec] = std::from_chars(begin, s.data() + s.size(), x);
    if (ec != std::errc() || end != s.data() + s.size())
      refuse(source_, "corrupt DICOM header (", name, " is not an integer)");
    return x;
  }

 private:
  // In explicit VR the element must have the attribute's own VR (UN is accepted in little endian).
  void expect_vr(const Value& v, const char* vr, const char* name) const {
    if (!syntax_.explicit_vr) return;
    if (v.vr[0] == vr[0] && v.vr[1] == vr[1]) return;
    if (v.vr[0] == 'U' && v.vr[1] == 'N' && !syntax_.big_endian) return;
    refuse(source_, "corrupt DICOM header (", name, " has value representation ", v.vr[0], v.vr[1], ", not ", vr, ")");
  }

  const uint8_t* d_;
  const Syntax& syntax_;
  const std::string& source_;
};

enum class VoiFunction { linear, linear_exact, sigmoid };

struct ImageInfo {
  int64_t rows = 0, columns = 0, bits_allocated = 0, bits_stored = 0;
  bool is_signed = false, monochrome1 = false;
  double slope = 1, intercept = 0;
  bool has_window = false;
  double center = 0, width = 0;
  VoiFunction voi = VoiFunction::linear;
};

// The attributes' values and every refusal that needs only the header.
ImageInfo check_attributes(const Attributes& a, const Values& values, const Syntax& syntax, const std::string& source,
                           const std::function<void(uint64_t, uint64_t)>& check_size) {
  if (a.float_pixel_data && !a.has_pixel_data)
    refuse(source, "DICOM float pixel data (7FE0,0008/0009) is not supported (integer Pixel Data only)");
  if (!a.has_pixel_data) refuse(source, "the DICOM file has no pixel data (7FE0,0010)");
  const int64_t frames = values.is(a.number_of_frames, "Number of Frames (0028,0008)", 1);
  if (frames > 1) refuse(source, "multi-frame DICOM images are not supported (", frames, " frames; nn reads one)");
  if (frames < 1) refuse(source, "corrupt DICOM header (Number of Frames is ", frames, ")");

  if (!a.photometric.present) refuse(source, "corrupt DICOM header (no Photometric Interpretation (0028,0004))");
  const std::string photometric = values.text(a.photometric, "CS", "Photometric Interpretation (0028,0004)");
  int64_t samples = values.us(a.samples_per_pixel, "Samples per Pixel (0028,0002)");
  if (samples == 0) refuse(source, "corrupt DICOM header (Samples per Pixel is 0)");
  if (samples < 0) samples = 1;  // absent: ACR-NEMA's single sample
  const bool mono = photometric == "MONOCHROME1" || photometric == "MONOCHROME2";
  if (!mono || samples != 1) {
    static const char* const kColour[] = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420",
                                          "YBR_ICT", "YBR_RCT", "PALETTE COLOR", "HSV", "ARGB", "CMYK"};
    const bool colour = std::find_if(std::begin(kColour), std::end(kColour),
                                     [&](const char* c) { return photometric == c; }) != std::end(kColour);
    if (colour || (mono && samples != 1))
      refuse(source, "colour DICOM images are not supported (photometric interpretation ", photometric, ", ", samples,
             " samples per pixel; nn reads MONOCHROME1 and MONOCHROME2)");
    const std::string q = quoted_if(photometric, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _", 16);
    refuse(source, "corrupt DICOM header (unknown photometric interpretation ", q.empty() ? "(not a code string)" : q, ")");
  }

  ImageInfo info;
  info.monochrome1 = photometric == "MONOCHROME1";
  info.rows = values.us(a.rows, "Rows (0028,0010)");
  info.columns = values.us(a.columns, "Columns (0028,0011)");
  if (info.rows < 0 || info.columns < 0) refuse(source, "corrupt DICOM header (no Rows (0028,0010) or Columns (0028,0011))");
  if (info.rows == 0 || info.columns == 0)
    refuse(source, "the DICOM image is empty (", info.columns, "x", info.rows, " pixels)");
  info.bits_allocated = values.us(a.bits_allocated, "Bits Allocated (0028,0100)");
  info.bits_stored = values.us(a.bits_stored, "Bits Stored (0028,0101)");
  const int64_t high_bit = values.us(a.high_bit, "High Bit (0028,0102)");
  const int64_t representation = values.us(a.pixel_representation, "Pixel Representation (0028,0103)");
  if (info.bits_allocated < 0 || info.bits_stored < 0 || representation < 0)
    refuse(source, "corrupt DICOM header (no Bits Allocated, Bits Stored or Pixel Representation)");
  // GDCM's codecs require Bits Stored = Bits Allocated for 8-bit data.
  if (info.bits_allocated != 8 && info.bits_allocated != 16)
    refuse(source, "DICOM images of ", info.bits_allocated, " bits allocated are not supported (8 or 16)");
  if (info.bits_stored < 8 || info.bits_stored > info.bits_allocated)
    refuse(source, "DICOM images of ", info.bits_stored, " bits stored in ", info.bits_allocated,
           " are not supported (8 to ", info.bits_allocated, ")");
  if (high_bit >= 0 && high_bit != info.bits_stored - 1)
    refuse(source, "DICOM images whose High Bit (", high_bit, ") is not Bits Stored - 1 are not supported");
  if (representation > 1) refuse(source, "corrupt DICOM header (Pixel Representation ", representation, ")");
  info.is_signed = representation == 1;

  // The size limits, before any pixel data is decoded.
  check_size(static_cast<uint64_t>(info.columns), static_cast<uint64_t>(info.rows));

  info.slope = values.ds(a.rescale_slope, "Rescale Slope (0028,1053)", 1.0);
  info.intercept = values.ds(a.rescale_intercept, "Rescale Intercept (0028,1052)", 0.0);
  if (info.slope == 0) refuse(source, "corrupt DICOM header (Rescale Slope is 0)");
  bool has_center = false, has_width = false;
  info.center = values.ds(a.window_center, "Window Center (0028,1050)", 0.0, &has_center);
  info.width = values.ds(a.window_width, "Window Width (0028,1051)", 0.0, &has_width);
  if (has_center != has_width)
    refuse(source, "corrupt DICOM header (", has_center ? "Window Center without Window Width" : "Window Width without Window Center", ")");
  info.has_window = has_center;
  if (a.voi_lut_function.present) {
    const std::string f = values.text(a.voi_lut_function, "CS", "VOI LUT Function (0028,1056)");
    if (f == "LINEAR_EXACT") info.voi = VoiFunction::linear_exact;
    else if (f == "SIGMOID") info.voi = VoiFunction::sigmoid;
    else if (!f.empty() && f != "LINEAR")
      refuse(source, "corrupt DICOM header (VOI LUT Function is not LINEAR, LINEAR_EXACT or SIGMOID)");
  }
  if (info.has_window && (info.voi == VoiFunction::linear ? info.width < 1 : info.width <= 0))
    refuse(source, "corrupt DICOM header (Window Width ", info.width, " is below ",
           info.voi == VoiFunction::linear ? "1" : "or at 0", ")");

  const uint64_t pixels = static_cast<uint64_t>(info.rows) * static_cast<uint64_t>(info.columns);
  const uint64_t need = pixels * static_cast<uint64_t>(info.bits_allocated / 8);
  if (syntax.codec == Codec::native) {
    const uint64_t have = a.pixel_data.length;
    if (have < need)
      refuse(source, "truncated DICOM pixel data (", have, " bytes; ", info.columns, "x", info.rows, " pixels of ",
             info.bits_allocated, " bits need ", need, ")");
    if (have > need + 1)
      refuse(source, "corrupt DICOM pixel data (", have, " bytes where ", info.columns, "x", info.rows, " pixels of ",
             info.bits_allocated, " bits need ", need, ")");
  }
  return info;
}

// ---- the codestreams' own headers ----

// The concatenated fragments of the frame (PS3.5 A.4: one frame may span several fragments).
std::vector<uint8_t> frame_bytes(const uint8_t* d, const Attributes& a) {
  std::vector<uint8_t> out;
  for (const auto& [at, length] : a.fragments) out.insert(out.end(), d + at, d + at + length);
  return out;
}

// Fragments are padded to even length: trailing zero bytes after the end-of-image marker.
size_t without_padding(const std::vector<uint8_t>& s) {
  size_t n = s.size();
  while (n > 0 && s[n - 1] == 0) --n;
  return n;
}

bool is_start_of_frame(uint8_t marker) {
  return marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc;
}

// JPEG (ISO 10918-1, lossy and lossless) and JPEG-LS (ISO 14495-1; its frame marker is SOF55,
// F7, and its entropy-coded data stuffs a 0 bit, not a 0 byte, after FF): the segments from SOI
// to EOI. GDCM's IJG decoder asserts on any warning while it reads the header (bytes between
// segments, a JFIF version other than 1) and takes the frame's size from the codestream, so the
// frame must be the one the DICOM header describes: one component, Columns x Rows, a precision
// that fits Bits Allocated. More than 256 scans is refused (each costs a pass over the image).
void check_jpeg_codestream(const std::vector<uint8_t>& s, const ImageInfo& info, bool jpeg_ls, const std::string& source) {
  const char* kind = jpeg_ls ? "JPEG-LS" : "JPEG";
  const size_t n = without_padding(s);
  const uint8_t* d = s.data();
  if (n < 4 || d[0] != 0xff || d[1] != 0xd8) refuse(source, "corrupt DICOM pixel data (the ", kind, " data does not start with SOI)");
  auto truncated = [&] { refuse(source, "truncated DICOM pixel data (the ", kind, " data ends before its end-of-image marker)"); };
  bool frame = false;
  int scans = 0;
  size_t i = 2;
  while (true) {
    if (i >= n) truncated();
    if (d[i] != 0xff) refuse(source, "corrupt DICOM pixel data (stray bytes in the ", kind, " data at byte ", i, ")");
    while (i < n && d[i] == 0xff) ++i;
    if (i >= n) truncated();
    const uint8_t marker = d[i++];
    if (marker == 0xd9) break;
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xd0 && marker <= 0xd8))
      refuse(source, "corrupt DICOM pixel data (marker ff ", int(marker), " out of place in the ", kind, " data)");
    if (n - i < 2) truncated();
    const size_t length = (size_t{d[i]} << 8) | d[i + 1];
    if (length < 2) refuse(source, "corrupt DICOM pixel data (a ", kind, " segment of length ", length, ")");
    if (n - i < length) truncated();
    const uint8_t* p = d + i + 2;  // the segment's data
    const size_t size = length - 2;
    const bool sof = jpeg_ls ? marker == 0xf7 : is_start_of_frame(marker);
    if (sof) {
      if (frame) refuse(source, "corrupt DICOM pixel data (two ", kind, " frame headers)");
      frame = true;
      if (size < 6) refuse(source, "corrupt DICOM pixel data (a short ", kind, " frame header)");
      const int precision = p[0], components = p[5];
      const int64_t height = be16(p + 1), width = be16(p + 3);
      if (components != 1)
        refuse(source, "colour DICOM images are not supported (the ", kind, " data has ", components, " components)");
      if (size != 6 + 3 * size_t(components)) refuse(source, "corrupt DICOM pixel data (a ", kind, " frame header of ", size, " bytes)");
      if (width != info.columns || height != info.rows)
        refuse(source, "corrupt DICOM pixel data (the ", kind, " frame is ", width, "x", height, ", the header says ",
               info.columns, "x", info.rows, ")");
      const bool fits = jpeg_ls ? (precision + 7) / 8 == info.bits_allocated / 8 && precision >= 2
                                : precision >= 2 && precision <= info.bits_allocated;
      if (!fits)
        refuse(source, "corrupt DICOM pixel data (", kind, " samples of ", precision, " bits in ", info.bits_allocated,
               " bits allocated)");
    } else if (marker == 0xc4 && !jpeg_ls) {
      size_t at = 0;  // Huffman tables: 16 code counts adding to at most 256, then the symbols
      while (at < size) {
        if (size - at < 17) refuse(source, "corrupt DICOM pixel data (a short JPEG Huffman table)");
        unsigned codes = 0;
        for (size_t k = 1; k <= 16; ++k) codes += p[at + k];
        if (codes > 256 || size - at - 17 < codes) refuse(source, "corrupt DICOM pixel data (a bad JPEG Huffman table)");
        at += 17 + codes;
      }
    } else if (marker == 0xe0 && size >= 14 && std::memcmp(p, "JFIF\0", 5) == 0 && p[5] != 1) {
      refuse(source, "corrupt DICOM pixel data (JFIF version ", int(p[5]), " in the JPEG data)");
    }
    i += length;
    if (marker != 0xda) continue;
    if (!frame) refuse(source, "corrupt DICOM pixel data (a ", kind, " scan before the frame header)");
    if (++scans > 256) refuse(source, "corrupt DICOM pixel data (more than 256 ", kind, " scans)");
    while (true) {  // entropy-coded data up to the next marker
      const void* ff = i < n ? std::memchr(d + i, 0xff, n - i) : nullptr;
      if (ff == nullptr) truncated();
      size_t j = static_cast<size_t>(static_cast<const uint8_t*>(ff) - d) + 1;
      if (!jpeg_ls) {
        while (j < n && d[j] == 0xff) ++j;
        if (j >= n) truncated();
        if (d[j] != 0x00 && (d[j] < 0xd0 || d[j] > 0xd7)) {
          i = j - 1;
          break;
        }
      } else {
        if (j >= n) truncated();
        if (d[j] >= 0x80) {  // a marker (FF then a byte with its high bit set)
          i = j - 1;
          break;
        }
      }
      i = j + 1;
    }
  }
  if (!frame) refuse(source, "corrupt DICOM pixel data (the ", kind, " data has no frame header)");
}

// JPEG 2000 (ISO 15444-1): DICOM holds the bare codestream (SOC, SIZ, ..., EOC), never the JP2
// file format. GDCM 3.0.21 sizes its output from the DICOM header but writes what the codestream
// declares (TALOS-2024-1935), so the SIZ segment must describe exactly this image: one component
// of Columns x Rows samples, no subsampling, a precision that fills Bits Allocated's bytes.
void check_jpeg_2000_codestream(const std::vector<uint8_t>& s, const ImageInfo& info, const std::string& source) {
  const uint8_t* d = s.data();
  const size_t n = without_padding(s);
  if (n >= 12 && std::memcmp(d, "\0\0\0\x0cjP  \r\n\x87\n", 12) == 0)
    refuse(source, "corrupt DICOM pixel data (JPEG 2000 in the JP2 file format; DICOM holds a bare codestream)");
  if (n < 45 || be16(d) != 0xff4f || be16(d + 2) != 0xff51)
    refuse(source, "corrupt DICOM pixel data (the JPEG 2000 data does not start with SOC and SIZ)");
  const uint32_t lsiz = be16(d + 4);
  const uint32_t xsiz = be32(d + 8), ysiz = be32(d + 12), xosiz = be32(d + 16), yosiz = be32(d + 20);
  const uint32_t components = be16(d + 40);
  if (components != 1)
    refuse(source, "colour DICOM images are not supported (the JPEG 2000 data has ", components, " components)");
  if (lsiz != 41) refuse(source, "corrupt DICOM pixel data (a JPEG 2000 SIZ segment of ", lsiz, " bytes)");
  if (xsiz <= xosiz || ysiz <= yosiz || xsiz - xosiz != info.columns || ysiz - yosiz != info.rows)
    refuse(source, "corrupt DICOM pixel data (the JPEG 2000 image is not the header's ", info.columns, "x", info.rows, ")");
  const int precision = (d[42] & 0x7f) + 1;
  if (d[43] != 1 || d[44] != 1) refuse(source, "corrupt DICOM pixel data (subsampled JPEG 2000 components)");
  if ((precision + 7) / 8 != info.bits_allocated / 8)
    refuse(source, "corrupt DICOM pixel data (JPEG 2000 samples of ", precision, " bits in ", info.bits_allocated,
           " bits allocated)");
  if (be16(d + n - 2) != 0xffd9)
    refuse(source, "truncated DICOM pixel data (the JPEG 2000 data ends without its end-of-codestream marker)");
}

// RLE (PS3.5 G): one fragment for the frame, a 64-byte header of little-endian 32-bit numbers: the
// number of segments (one per byte of a sample) and their offsets, the first at 64, ascending,
// inside the fragment. GDCM divides by the segment count and reads up to 15 offsets without checks.
void check_rle(const uint8_t* d, const Attributes& a, const ImageInfo& info, const std::string& source) {
  if (a.fragments.size() != 1)
    refuse(source, "corrupt DICOM pixel data (RLE data in ", a.fragments.size(), " fragments; one frame is one fragment)");
  const uint8_t* p = d + a.fragments[0].first;
  const size_t n = a.fragments[0].second;
  if (n < 64) refuse(source, "truncated DICOM pixel data (an RLE header of ", n, " bytes)");
  const uint32_t segments = le32(p);
  if (segments != uint32_t(info.bits_allocated / 8))
    refuse(source, "corrupt DICOM pixel data (", segments, " RLE segments for ", info.bits_allocated, "-bit samples)");
  uint32_t previous = 0;
  for (uint32_t k = 0; k < segments; ++k) {
    const uint32_t offset = le32(p + 4 + 4 * k);
    if ((k == 0 && offset != 64) || (k > 0 && offset <= previous) || offset >= n)
      refuse(source, "corrupt DICOM pixel data (RLE segment ", k + 1, " at offset ", offset, ")");
    previous = offset;
  }
}

// ---- GDCM ----

// GDCM reports through gdcm::Trace to std::cerr, and its messages may quote element values:
// all of it is switched off once, for the process (nn never prints on its own).
void silence_gdcm() {
  static std::once_flag once;
  std::call_once(once, [] {
    gdcm::Trace::DebugOff();
    gdcm::Trace::WarningOff();
    gdcm::Trace::ErrorOff();
  });
}

// A read-only std::streambuf over the bytes, with the seeking gdcm::Reader does.
class MemoryBuffer : public std::streambuf {
 public:
  MemoryBuffer(const uint8_t* d, size_t n) {
    char* p = const_cast<char*>(reinterpret_cast<const char*>(d));  // never written: no put area
    setg(p, p, p + n);
  }

 protected:
  pos_type seekoff(off_type off, std::ios_base::seekdir dir, std::ios_base::openmode which) override {
    if (!(which & std::ios_base::in)) return pos_type(off_type(-1));
    const off_type size = egptr() - eback();
    const off_type base = dir == std::ios_base::beg ? 0 : dir == std::ios_base::cur ? gptr() - eback() : size;
    if ((off < 0 && -off > base) || (off > 0 && off > size - base)) return pos_type(off_type(-1));
    setg(eback(), eback() + base + off, egptr());
    return pos_type(base + off);
  }
  pos_type seekpos(pos_type pos, std::ios_base::openmode which) override {
    return seekoff(off_type(pos), std::ios_base::beg, which);
  }
};

// JPEG-LS through the codec's DecodeExtent: GDCM's Decode(DataElement) leaks the codestream's copy
// whenever CharLS refuses it; DecodeExtent keeps it in a vector and checks the decoded size.
class JpegLsDecoder : public gdcm::JPEGLSCodec {
 public:
  using gdcm::JPEGLSCodec::DecodeExtent;
};

template <typename Codec>
void configure(Codec& codec, const ImageInfo& info) {
  // JPEGCodec::SetPixelFormat builds its 8/12/16-bit decoder from what is set before it.
  codec.SetNumberOfDimensions(2);
  const unsigned dims[3] = {unsigned(info.columns), unsigned(info.rows), 1};
  codec.SetDimensions(dims);
  codec.SetPlanarConfiguration(0);
  codec.SetPhotometricInterpretation(info.monochrome1 ? gdcm::PhotometricInterpretation::MONOCHROME1
                                                      : gdcm::PhotometricInterpretation::MONOCHROME2);
  gdcm::PixelFormat pf(1, uint16_t(info.bits_allocated), uint16_t(info.bits_stored), uint16_t(info.bits_stored - 1),
                       uint16_t(info.is_signed ? 1 : 0));
  codec.SetPixelFormat(pf);
  codec.SetNeedOverlayCleanup(false);
  codec.SetNeedByteSwap(false);
}

// gdcm::Reader parses the data set the walk accepted; the pixel data is decoded by the transfer
// syntax's codec. Returns the samples (1 or 2 bytes each, host order) and their size in bytes.
std::vector<uint8_t> decode_with_gdcm(const uint8_t* d, size_t n, const Syntax& syntax, const Attributes& a,
                                      const ImageInfo& info, const std::string& source, int* sample_bytes) {
  silence_gdcm();
  MemoryBuffer buffer(d, n);
  std::istream in(&buffer);
  gdcm::Reader reader;
  reader.SetStream(in);
  bool read = false;
  try {
    read = reader.Read();
  } catch (...) {  // GDCM throws gdcm::Exception, std::exception and std::string
    read = false;
  }
  if (!read) refuse(source, "GDCM could not read the DICOM data set");
  const gdcm::DataSet& ds = reader.GetFile().GetDataSet();

  // What GDCM read must be what the walk read (the same bytes; a difference is refused).
  auto gdcm_us = [&](uint32_t tag) -> int64_t {
    const gdcm::Tag t(uint16_t(tag >> 16), uint16_t(tag & 0xffff));
    if (!ds.FindDataElement(t)) return -1;
    const gdcm::ByteValue* bv = ds.GetDataElement(t).GetByteValue();
    if (bv == nullptr || bv->GetLength() != 2) return -1;
    uint16_t v = 0;
    std::memcpy(&v, bv->GetPointer(), 2);  // GDCM keeps binary values in host order
    return v;
  };
  if (gdcm_us(kRows) != info.rows || gdcm_us(kColumns) != info.columns || gdcm_us(kBitsAllocated) != info.bits_allocated)
    refuse(source, "GDCM read the DICOM header differently (rows, columns or bits allocated)");
  const gdcm::Tag pixel_tag(0x7fe0, 0x0010);
  if (!ds.FindDataElement(pixel_tag)) refuse(source, "GDCM found no pixel data in the DICOM data set");
  const gdcm::DataElement& pixels = ds.GetDataElement(pixel_tag);

  const size_t need = size_t(info.rows) * size_t(info.columns) * size_t(info.bits_allocated / 8);
  std::vector<uint8_t> out;
  *sample_bytes = int(info.bits_allocated / 8);
  bool ok = false;
  try {
    if (syntax.codec == Codec::native) {
      const gdcm::ByteValue* bv = pixels.GetByteValue();
      if (bv == nullptr || bv->GetLength() != a.pixel_data.length)
        refuse(source, "GDCM read the DICOM pixel data differently");
      gdcm::RAWCodec codec;
      configure(codec, info);
      out.resize(need);
      ok = codec.DecodeBytes(bv->GetPointer(), bv->GetLength(), reinterpret_cast<char*>(out.data()), need);
    } else {
      const gdcm::SequenceOfFragments* sf = pixels.GetSequenceOfFragments();
      if (sf == nullptr || sf->GetNumberOfFragments() != a.fragments.size())
        refuse(source, "GDCM read the DICOM pixel data differently");
      for (size_t k = 0; k < a.fragments.size(); ++k) {
        const gdcm::ByteValue* bv = sf->GetFragment(static_cast<unsigned>(k)).GetByteValue();
        if (bv == nullptr || bv->GetLength() != a.fragments[k].second)
          refuse(source, "GDCM read the DICOM pixel data differently");
      }
      gdcm::DataElement decoded;
      if (syntax.codec == Codec::jpeg) {
        // One fragment holding the whole frame, so that GDCM's decoder runs once over it.
        std::vector<char> frame(sf->ComputeByteLength());
        if (!sf->GetBuffer(frame.data(), static_cast<unsigned long>(frame.size())))
          refuse(source, "GDCM could not gather the DICOM pixel data fragments");
        gdcm::Fragment fragment;
        fragment.SetByteValue(frame.data(), static_cast<uint32_t>(frame.size()));
        gdcm::SmartPointer<gdcm::SequenceOfFragments> one = new gdcm::SequenceOfFragments;
        one->AddFragment(fragment);
        gdcm::DataElement element(pixel_tag);
        element.SetValue(*one);
        gdcm::JPEGCodec codec;
        configure(codec, info);
        ok = codec.Decode(element, decoded);
      } else if (syntax.codec == Codec::jpeg_ls) {
        std::stringstream encapsulated;
        sf->Write<gdcm::SwapperNoOp>(encapsulated);
        JpegLsDecoder codec;
        configure(codec, info);
        out.resize(need);
        ok = codec.DecodeExtent(reinterpret_cast<char*>(out.data()), 0, unsigned(info.columns - 1), 0,
                                unsigned(info.rows - 1), 0, 0, encapsulated);
      } else if (syntax.codec == Codec::jpeg_2000) {
        gdcm::JPEG2000Codec codec;
        codec.SetNumberOfThreadsForDecompression(0);  // the caller's thread only (loaders run many)
        configure(codec, info);
        ok = codec.Decode(pixels, decoded);
      } else {
        gdcm::RLECodec codec;
        configure(codec, info);
        codec.SetBufferLength(need);  // the decoded size it checks against
        ok = codec.Decode(pixels, decoded);
      }
      if (ok && syntax.codec != Codec::jpeg_ls) {
        const gdcm::ByteValue* bv = decoded.GetByteValue();
        const size_t pixel_count = size_t(info.rows) * size_t(info.columns);
        // GDCM's JPEG decoder gives 1 byte per sample for 8-bit precision, 2 above.
        if (bv != nullptr && syntax.codec == Codec::jpeg && bv->GetLength() == pixel_count) *sample_bytes = 1;
        if (bv == nullptr || bv->GetLength() != pixel_count * size_t(*sample_bytes))
          refuse(source, "GDCM's ", syntax.name, " decoder gave ", bv == nullptr ? uint64_t{0} : uint64_t{bv->GetLength()},
                 " bytes for ", info.columns, "x", info.rows, " pixels (corrupt pixel data)");
        out.assign(bv->GetPointer(), bv->GetPointer() + bv->GetLength());
      }
    }
  } catch (const nn::Error&) {
    throw;
  } catch (...) {
    ok = false;
  }
  if (!ok) refuse(source, "GDCM's ", syntax.name, " decoder failed (corrupt or unsupported pixel data)");
  return out;
}

// ---- pixel processing ----

// Stored values -> [0, 1] (decode_image's rules): the stored value is the sample's Bits Stored low
// bits (sign-extended when signed); modality LUT x = slope * stored + intercept; VOI LUT: the
// window (PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT, SIGMOID) or, without one, the full stored range
// through the modality LUT (the lowest storable value -> 0, the highest -> 1, whatever the image
// holds); MONOCHROME1: 1 - y. Computed in double.
Image to_unit_range(const std::vector<uint8_t>& samples, int sample_bytes, const ImageInfo& info) {
  const size_t count = size_t(info.rows) * size_t(info.columns);
  const int bits = std::min<int>(int(info.bits_stored), 8 * sample_bytes);
  const uint32_t mask = bits >= 32 ? 0xffffffffu : (1u << bits) - 1u;
  const uint32_t sign = 1u << (bits - 1);
  auto stored = [&](size_t i) -> int64_t {
    uint32_t v;
    if (sample_bytes == 1) {
      v = samples[i];
    } else {
      uint16_t s;
      std::memcpy(&s, samples.data() + 2 * i, 2);
      v = s;
    }
    v &= mask;
    if (info.is_signed && (v & sign) != 0) return int64_t(v) - (int64_t(1) << bits);
    return int64_t(v);
  };
  auto modality = [&](int64_t s) { return info.slope * double(s) + info.intercept; };

  double lo = 0, hi = 0;
  if (!info.has_window) {  // the modality LUT of the full range of stored values (PS3.4 N.2.1.2:
                           // no VOI LUT is the identity, over the range the modality LUT can output)
    const int64_t smin = info.is_signed ? -(int64_t(1) << (bits - 1)) : 0;
    const int64_t smax = info.is_signed ? (int64_t(1) << (bits - 1)) - 1 : (int64_t(1) << bits) - 1;
    lo = std::min(modality(smin), modality(smax));
    hi = std::max(modality(smin), modality(smax));
  }
  const double c = info.center, w = info.width;
  auto voi = [&](double x) -> double {
    if (!info.has_window) return hi > lo ? (x - lo) / (hi - lo) : 0.0;
    switch (info.voi) {
      case VoiFunction::linear:
        if (x <= c - 0.5 - (w - 1) / 2) return 0.0;
        if (x > c - 0.5 + (w - 1) / 2) return 1.0;
        return (x - (c - 0.5)) / (w - 1) + 0.5;  // w > 1 here (w = 1 is a step at c - 0.5)
      case VoiFunction::linear_exact:
        if (x <= c - w / 2) return 0.0;
        if (x > c + w / 2) return 1.0;
        return (x - c) / w + 0.5;
      case VoiFunction::sigmoid: return 1.0 / (1.0 + std::exp(-4.0 * (x - c) / w));
    }
    return 0.0;
  };
  Image image;
  image.height = info.rows;
  image.width = info.columns;
  image.channels = 1;
  image.pixels.resize(count);
  for (size_t i = 0; i < count; ++i) {
    double y = std::clamp(voi(modality(stored(i))), 0.0, 1.0);
    if (info.monochrome1) y = 1.0 - y;
    image.pixels[i] = static_cast<float>(y);
  }
  return image;
}

}  // namespace

Image decode_dicom(const uint8_t* data, size_t size, const std::string& source, const ImageLimits& limits,
                   const std::function<void(uint64_t, uint64_t)>& check_size) {
  if (size < 132 || std::memcmp(data + 128, "DICM", 4) != 0)
    refuse(source, "not a DICOM Part 10 file (no 'DICM' at byte 128)");
  Meta meta = read_meta(data, size, source);
  std::vector<uint8_t> inflated;
  const uint8_t* d = data;
  size_t n = size;
  if (meta.syntax->deflated) {
    // What the largest image within the limits needs (2 bytes a pixel), plus 64 MiB for the rest.
    const size_t max_bytes = (size_t{64} << 20) + 2 * static_cast<size_t>(limits.max_pixels);
    inflated = inflate_file(data, size, meta, max_bytes, source);
    d = inflated.data();
    n = inflated.size();
    meta = read_meta(d, n, source);
  }
  const Syntax& syntax = *meta.syntax;
  Attributes attributes;
  Walker(d, n, syntax, source, &attributes).walk(meta.data_set_begin);
  const Values values(d, syntax, source);
  const ImageInfo info = check_attributes(attributes, values, syntax, source, check_size);
  if (syntax.codec == Codec::jpeg || syntax.codec == Codec::jpeg_ls)
    check_jpeg_codestream(frame_bytes(d, attributes), info, syntax.codec == Codec::jpeg_ls, source);
  else if (syntax.codec == Codec::jpeg_2000)
    check_jpeg_2000_codestream(frame_bytes(d, attributes), info, source);
  else if (syntax.codec == Codec::rle)
    check_rle(d, attributes, info, source);
  int sample_bytes = 0;
  const std::vector<uint8_t> samples = decode_with_gdcm(d, n, syntax, attributes, info, source, &sample_bytes);
  return to_unit_range(samples, sample_bytes, info);
}

}  // namespace nn::data::detail
