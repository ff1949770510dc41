// Images: decoding (JPEG through libjpeg-turbo, PNG through stb_image compiled inside the library),
// PNG writing, resizing, cropping and the preprocessing that turns an image into a model's input
// tensor.
//
// An Image is interleaved HWC float32 with values in [0, 1] (8-bit samples v/255, 16-bit v/65535),
// with 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) channels, as stored in the file. The
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

struct Image {  // interleaved HWC, values in [0, 1] (8-bit v/255, 16-bit v/65535)
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
// and settings), or a PNG (1, 2, 4, 8 or 16 bits per sample; gray, gray + alpha, RGB, RGBA or
// palette, interlaced or not; a tRNS chunk adds an alpha channel). `source` names the data in error
// messages. Refused, with the reason: empty data, other formats (named by their magic bytes: GIF,
// BMP, WEBP, TIFF, DICOM, ...), images over `limits`, truncated data (a JPEG must reach its
// end-of-image marker, a PNG its IEND chunk), corrupt data (a PNG's critical chunks must match
// their CRCs; a JPEG whose entropy-coded data is corrupt, 12-bit and lossless JPEGs, more than 256
// scans; a decoder's reason otherwise), a PNG that inflates past what its size needs. Data after
// the end of the image is ignored.
Image decode_image(const void* data, size_t size, const std::string& source = "<memory>",
                   const ImageLimits& limits = {});
// Reads the file and decodes it; errors name the path and the reason (missing, unreadable, ...).
Image load_image(const std::string& path, const ImageLimits& limits = {});
// True for names ending in .jpg, .jpeg or .png, in any letter case.
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
// with zlib's deflate at `compression_level` 0..9: 1 for speed (each row Sub-filtered, as a server
// answering requests wants), 6 (zlib's default) and up for small files (each row's filter chosen
// by the PNG specification's heuristic). save_png writes the file (not atomically) and throws
// nn::Error naming the path on failure.
void save_png(const std::string& path, const Image& image, int compression_level = 6);
std::vector<uint8_t> encode_png(const Image& image, int compression_level = 6);
// Baseline JPEG at `quality` 1..100 (libjpeg-turbo; values rounded to 8 bits as encode_png does):
// 1 channel as gray, 3 as RGB (YCbCr 4:2:0 in the file); the alpha of 2 and 4 channels is dropped.
std::vector<uint8_t> encode_jpeg(const Image& image, int quality = 90);

}  // namespace nn::data
