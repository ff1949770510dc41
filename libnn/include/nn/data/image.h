// Images: decoding (JPEG through libjpeg-turbo, PNG through stb_image compiled inside the library,
// DICOM through GDCM when nn is built with it), PNG writing, resizing, cropping and the
// preprocessing that turns an image into a model's input tensor.
//
// An Image is interleaved HWC float32 with values in [0, 1] (8-bit samples v/255, 16-bit v/65535;
// DICOM through its modality and VOI LUTs, see decode_image), with 1 (gray), 2 (gray + alpha),
// 3 (RGB) or 4 (RGBA) channels, as stored in the file. The
// operations follow torchvision's ImageNet evaluation pipeline
//
//   Resize(256) -> CenterCrop(224) -> ToTensor() -> Normalize(mean, std)
//
// rule for rule (see each function), except that resizing works on floats: PIL resizes 8-bit
// images with a uint8 rounding after each pass, so results differ from the PIL path by about 1/255
// and agree with torchvision's float-tensor path (F.resize(antialias=True)) to float rounding.
// Decoding never trusts the file: the dimensions are checked against ImageLimits from the header
// before any pixel memory is allocated, and every failure is an nn::Error naming the source.
// EXIF orientation is not applied (neither torchvision's ImageFolder nor Keras apply it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nn/tensor.h"

namespace nn::data {

struct Image {  // interleaved HWC, values in [0, 1] (8-bit v/255, 16-bit v/65535; DICOM: decode_image)
  int64_t height = 0, width = 0, channels = 0;  // channels 1, 2 (gray+alpha), 3 or 4
  std::vector<float> pixels;                    // height * width * channels
  // The sample at row y, column x, channel c (checked).
  float at(int64_t y, int64_t x, int64_t c) const;
};

// Checked from the header BEFORE decoding: a side above max_side or more than max_pixels pixels
// (height * width) is refused without allocating anything.
struct ImageLimits {
  int64_t max_pixels = 50'000'000;
  int64_t max_side = 30'000;
};

// Decodes a JPEG (8-bit baseline, extended, progressive or arithmetic-coded, with or without
// restart intervals; gray, YCbCr or RGB; CMYK and YCCK converted to RGB as a screen shows Adobe's
// inverted CMYK) with libjpeg-turbo, giving the same pixels as Pillow's decoder (the same library
// and settings), a PNG (1, 2, 4, 8 or 16 bits per sample; gray, gray + alpha, RGB, RGBA or
// palette, interlaced or not; a tRNS chunk adds an alpha channel), or, when nn is built with GDCM
// (CMake option NN_DICOM), a DICOM file (below). `source` names the data in error messages.
// Refused, with the reason: empty data, other formats (named by their magic bytes: GIF, BMP, WEBP,
// TIFF, ...; DICOM too when nn is built without GDCM), images over `limits`, truncated data (a JPEG
// must reach its end-of-image marker, a PNG its IEND chunk), corrupt data (a PNG's critical chunks
// must match their CRCs; a JPEG whose entropy-coded data is corrupt, 12-bit and lossless JPEGs,
// more than 256 scans; a decoder's reason otherwise), a PNG that inflates past what its size needs.
// Data after the end of the image is ignored.
//
// DICOM: a Part 10 file (a 128-byte preamble, then "DICM" at byte 128; a bare data set without
// them is refused by name, since its transfer syntax would have to be guessed) of one grayscale
// frame, in implicit or explicit VR little endian, explicit VR big endian, deflated explicit VR
// little endian, JPEG baseline (Process 1) or extended (2 and 4), JPEG lossless (Process 14, and
// its selection value 1), JPEG-LS lossless or near-lossless, JPEG 2000 (lossless or not) or RLE,
// with 8 bits allocated and stored or 16 allocated and 8 to 16 stored, unsigned or signed. The
// result has 1 channel, computed in double and stored as float, in this order:
//   1. the stored value: the sample's Bits Stored low bits (higher bits, e.g. overlays, are
//      dropped), sign-extended when Pixel Representation is 1;
//   2. the modality LUT: x = stored * Rescale Slope (0028,1053) + Rescale Intercept (0028,1052),
//      1 and 0 when absent;
//   3. the VOI LUT, to [0, 1]: with a Window Center (0028,1050) and Width (0028,1051) (the first
//      value of each when there are several), PS3.3 C.11.2.1.2's function named by VOI LUT
//      Function (0028,1056): LINEAR (the default: x <= c - 0.5 - (w - 1) / 2 -> 0,
//      x > c - 0.5 + (w - 1) / 2 -> 1, else (x - (c - 0.5)) / (w - 1) + 0.5), LINEAR_EXACT
//      (x <= c - w / 2 -> 0, x > c + w / 2 -> 1, else (x - c) / w + 0.5) or SIGMOID
//      (1 / (1 + exp(-4 (x - c) / w))); without a window, the full stored range through the
//      modality LUT (PS3.4's identity VOI): (x - lo) / (hi - lo) where lo and hi are the modality
//      LUT of the lowest and highest storable values (0 and 2^bits - 1, or -2^(bits-1) and
//      2^(bits-1) - 1 when signed), whatever the image holds. Modality and VOI LUT Sequences are
//      not applied (an image that has only a VOI LUT Sequence gets the full stored range);
//   4. MONOCHROME1 (0 is white) is inverted: 1 - y; MONOCHROME2 is kept.
// An 8-bit (or 16-bit stored) DICOM without a window or rescale gives exactly the floats of a PNG of
// the same pixels (v/255). Refused, naming the source and the technical reason only (no value of
// the header, such as the patient's name, is ever put in a message, printed or logged):
// multi-frame images (Number of Frames > 1), no Pixel Data (float pixel data included), colour
// (RGB, YBR_*, PALETTE COLOR, ... or more than one sample per pixel), other bit depths, a High Bit
// other than Bits Stored - 1, a Window Width below 1 (LINEAR) or 0, a Rescale Slope of 0, other
// transfer syntaxes, sizes over `limits` (from the header's Rows and Columns, before any pixel data
// is decoded), truncated or corrupt files (every element, sequence, item and fragment is checked
// against PS3.5's encoding, and a compressed frame's own header against the image attributes,
// before GDCM sees the data), deflated data sets that inflate past what `limits` allow, and
// anything GDCM's reader or decoders fail on. The one output nn does not control: for corrupt JPEG
// or JPEG 2000 data, GDCM's JPEG decoder (its own IJG libjpeg) and its OpenJPEG error callback
// write their one-line technical message (e.g. "Corrupt JPEG data: ...") to stderr; it never holds
// a header value. GDCM's own logging (gdcm::Trace) is switched off for the process.
Image decode_image(const void* data, size_t size, const std::string& source = "<memory>",
                   const ImageLimits& limits = {});
// Reads the file and decodes it; errors name the path and the reason (missing, unreadable, ...).
Image load_image(const std::string& path, const ImageLimits& limits = {});
// True for names ending in .jpg, .jpeg, .png, .dcm or .dicom, in any letter case (DICOM files are
// listed whether or not nn was built with GDCM: without it each is refused by name when loaded).
bool is_image_file_name(const std::string& path);

// 1 channel -> replicated to 3, 2 -> gray replicated (alpha dropped), 3 -> copy, 4 -> alpha dropped.
Image to_rgb(const Image& image);
// ITU-R 601-2 luma, L = 0.299 R + 0.587 G + 0.114 B, like PIL's convert("L") without its uint8
// rounding; 1 channel. Alpha is dropped; a gray image is copied.
Image to_grayscale(const Image& image);

// Antialiased bilinear resize, PIL's BILINEAR = torchvision F.resize(antialias=True): for each
// output pixel a triangle filter centred on it in input coordinates, whose support widens by the
// scale factor when downscaling (every input pixel under the output pixel contributes) and is
// plain bilinear interpolation when upscaling; weights are normalised where the filter leaves the
// image. Separable: horizontal pass, then vertical pass (a pass is skipped when that side keeps
// its size); computed in float. Any channel count.
Image resize(const Image& image, int64_t height, int64_t width);
// torchvision Resize(int): the shorter side becomes `size`, the longer int(size * long / short).
Image resize_shorter_side(const Image& image, int64_t size);
// torchvision CenterCrop: top = int(round((H - height) / 2.0)) (Python's round, half to even),
// left likewise. Error if the crop is larger than the image.
Image center_crop(const Image& image, int64_t height, int64_t width);

enum class Preprocessing {
  torchvision,  // x in [0, 1], RGB, (x - mean) / std with ImageNet's mean and std
  caffe,        // Keras' "caffe" mode (VGG16 applications): x * 255, BGR, minus ImageNet's BGR means
};
// "torchvision" or "caffe"; an error listing the valid names otherwise.
Preprocessing parse_preprocessing(const std::string& name);
const char* preprocessing_name(Preprocessing p);

// RGB image (3 channels, error otherwise) -> float32 tensor [3, H, W]:
//  torchvision: (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225], RGB order
//  caffe (Keras): x * 255 in BGR order, minus [103.939, 116.779, 123.68] (B, G, R means)
Tensor to_tensor(const Image& rgb, Preprocessing p);
// The ImageNet evaluation transform: to_rgb; an image already input_size x input_size is used as
// it is (no resize); otherwise resize_shorter_side(resize_size) then center_crop(input_size);
// then to_tensor. resize_size 0 means input_size * 256 / 224 (256 for 224). Returns [3, S, S].
Tensor eval_transform(const Image& image, Preprocessing p, int64_t input_size = 224,
                      int64_t resize_size = 0);

// The inverse for display: a [C, H, W] tensor (C = 1 or 3; 2 and 4 also accepted; any float
// dtype, any device) with values in [0, 1] -> Image. Values are copied as they are (not clamped).
Image image_from_tensor(const Tensor& chw);
// 8-bit PNG of the image (values rounded to the nearest of v/255 and clamped to [0, 1]; NaN -> 0)
// at `compression_level` 0..9: 1 for speed (each row Up-filtered and compressed by nn's own
// run-length + Huffman deflate, as a server answering requests wants), 0 and 2..9 through zlib's
// deflate at that level, 6 (zlib's default) and up for small files (each row's filter chosen by the
// PNG specification's heuristic). save_png writes the file (not atomically) and throws
// nn::Error naming the path on failure.
void save_png(const std::string& path, const Image& image, int compression_level = 6);
std::vector<uint8_t> encode_png(const Image& image, int compression_level = 6);
// Baseline JPEG at `quality` 1..100 (libjpeg-turbo; values rounded to 8 bits as encode_png does):
// 1 channel as gray, 3 as RGB (YCbCr 4:2:0 in the file); the alpha of 2 and 4 channels is dropped.
std::vector<uint8_t> encode_jpeg(const Image& image, int quality = 90);

}  // namespace nn::data
