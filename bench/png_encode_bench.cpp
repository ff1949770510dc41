// png-encode-bench: how long pneumonia-serve's heatmap PNG takes to encode, and how large it is.
//
//   png-encode-bench [--size S] [--repeat R] [--limit N] PATH...
//
// PATHs are image files or folders (searched recursively for .jpg/.jpeg/.png; the first N files in
// name order, 100 by default). Each image is made what the server encodes per request: grayscale,
// resized to S x S (256 by default), and blended with a jet-coloured Grad-CAM-like map (a smooth
// bump over a 4x4 grid of the model's last features, upsampled) by nn::explain::colorize_blend.
// Then, per encoder, the best of R passes over all images (R = 5):
//   nn_level1:   nn::data::encode_png(rgb, 1), the server's call (Up filter, nn's deflate_rle);
//   zlib1_sub:   the same PNG rows Sub-filtered and compressed by zlib's compress2 at level 1, what
//                encode_png's level 1 was before deflate_rle (written out here as the peer);
//   zlib1_up:    the Up-filtered rows through zlib at level 1 (the filter's share of the change);
//   nn_level6:   encode_png(rgb, 6), the default (best filter per row, zlib level 6).
// Prints one JSON object: per encoder the mean milliseconds and bytes per image, and the ratios.
#include <nn/data/image.h>
#include <nn/explain.h>
#include <nn/tensor.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;

// The 8-bit rows of the image, each filtered by `sub` (else Up) with its filter byte, deflated by
// zlib at level 1 (the IDAT payload only: the PNG framing is the same for every encoder and costs
// two CRCs).
Bytes zlib_level1_rows(const nn::data::Image& im, bool sub) {
  const size_t w = static_cast<size_t>(im.width), h = static_cast<size_t>(im.height), bpp = static_cast<size_t>(im.channels);
  const size_t stride = w * bpp;
  std::vector<uint8_t> rows(h * stride), filtered(h * (stride + 1));
  for (size_t i = 0; i < rows.size(); ++i) {
    const float x = im.pixels[i] * 255.0f;
    rows[i] = x > 0.0f ? (x >= 255.0f ? 255 : static_cast<uint8_t>(x + 0.5f)) : 0;
  }
  for (size_t y = 0; y < h; ++y) {
    uint8_t* out = &filtered[y * (stride + 1)];
    const uint8_t* cur = &rows[y * stride];
    out[0] = sub ? 1 : 2;
    for (size_t i = 0; i < stride; ++i) {
      const uint8_t predictor = sub ? (i >= bpp ? cur[i - bpp] : 0) : (y > 0 ? cur[i - stride] : 0);
      out[1 + i] = static_cast<uint8_t>(cur[i] - predictor);
    }
  }
  uLongf size = compressBound(static_cast<uLong>(filtered.size()));
  Bytes packed(size);
  if (compress2(packed.data(), &size, filtered.data(), static_cast<uLong>(filtered.size()), 1) != Z_OK) std::abort();
  packed.resize(size);
  return packed;
}

std::vector<std::filesystem::path> image_files(const std::vector<std::string>& paths) {
  std::vector<std::filesystem::path> files;
  auto is_image = [](const std::filesystem::path& p) {
    std::string e = p.extension().string();
    std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return e == ".jpg" || e == ".jpeg" || e == ".png";
  };
  for (const std::string& p : paths) {
    if (std::filesystem::is_directory(p)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(p))
        if (entry.is_regular_file() && is_image(entry.path())) files.push_back(entry.path());
    } else {
      files.emplace_back(p);
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t size = 256, limit = 100;
  int repeat = 5;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> long {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "png-encode-bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::strtol(argv[++i], nullptr, 10);
    };
    if (a == "--size") size = value();
    else if (a == "--repeat") repeat = static_cast<int>(value());
    else if (a == "--limit") limit = value();
    else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "usage: png-encode-bench [--size S] [--repeat R] [--limit N] PATH...\n");
      return 2;
    } else paths.push_back(a);
  }
  std::vector<std::filesystem::path> files = image_files(paths);
  if (static_cast<int64_t>(files.size()) > limit) files.resize(static_cast<size_t>(limit));
  if (files.empty() || size < 8 || repeat < 1) {
    std::fprintf(stderr, "png-encode-bench: no images (or a bad --size/--repeat)\n");
    return 2;
  }

  // The heatmaps: the image's gray levels under a jet-coloured bump whose centre moves per image.
  std::vector<nn::data::Image> heatmaps;
  for (size_t f = 0; f < files.size(); ++f) {
    std::ifstream in(files[f], std::ios::binary);
    const Bytes bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const nn::data::Image gray = nn::data::resize(nn::data::to_grayscale(nn::data::decode_image(bytes.data(), bytes.size())), size, size);
    nn::Tensor cam = nn::zeros({4, 4});
    float* c = cam.data<float>();
    const double cy = 1.0 + static_cast<double>(f % 3), cx = 1.0 + static_cast<double>((f / 3) % 3);
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) c[y * 4 + x] = static_cast<float>(std::exp(-((y - cy) * (y - cy) + (x - cx) * (x - cx)) / 2.0));
    heatmaps.push_back(nn::explain::colorize_blend(cam, gray, 0.4));
  }

  struct Encoder {
    const char* name;
    std::function<size_t(const nn::data::Image&)> encode;
    double best_s = 1e30;
    size_t bytes = 0;
  };
  std::vector<Encoder> encoders = {
      {"nn_level1", [](const nn::data::Image& im) { return nn::data::encode_png(im, 1).size(); }},
      {"zlib1_sub", [](const nn::data::Image& im) { return zlib_level1_rows(im, true).size(); }},
      {"zlib1_up", [](const nn::data::Image& im) { return zlib_level1_rows(im, false).size(); }},
      {"nn_level6", [](const nn::data::Image& im) { return nn::data::encode_png(im, 6).size(); }},
  };
  for (int r = 0; r < repeat; ++r) {
    for (Encoder& e : encoders) {  // interleaved, so that a slow spell of the machine hits them all
      size_t bytes = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (const nn::data::Image& im : heatmaps) bytes += e.encode(im);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      e.best_s = std::min(e.best_s, s);
      e.bytes = bytes;
    }
  }
  const double n = static_cast<double>(heatmaps.size());
  std::printf("{\"images\": %zu, \"size\": %lld, \"repeat\": %d, \"encoders\": {", heatmaps.size(), static_cast<long long>(size), repeat);
  for (size_t i = 0; i < encoders.size(); ++i)
    std::printf("%s\"%s\": {\"ms_per_image\": %.4f, \"bytes_per_image\": %.0f}", i ? ", " : "", encoders[i].name,
                encoders[i].best_s / n * 1e3, static_cast<double>(encoders[i].bytes) / n);
  std::printf("}, \"nn_level1_speedup_vs_zlib1_sub\": %.3f, \"nn_level1_size_vs_zlib1_sub\": %.3f}\n",
              encoders[1].best_s / encoders[0].best_s, static_cast<double>(encoders[0].bytes) / static_cast<double>(encoders[1].bytes));
  return 0;
}
