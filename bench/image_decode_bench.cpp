// image-decode-bench: how long decoding a folder of images takes, the step pneumonia-train runs
// once before training (its image cache).
//
//   image-decode-bench [--workers N] [--size S] [--repeat R] [--stb-jpeg] PATH...
//
// PATHs are image files or folders (searched recursively for .jpg/.jpeg/.png). Two measurements,
// each the best of R passes over every file (the files are read into memory first, so the disk is
// not measured):
//   decode:  nn::data::decode_image on one thread;
//   cache:   nn::data::cache_images with N workers, each image decoded, made grayscale and resized
//            to S x S (what pneumonia-train's cache does; S = 128 by default);
//   stb_jpeg (with --stb-jpeg): the JPEG files only, decoded on one thread by stb_image 2.27 (Debian's
//            libstb-dev), nn's JPEG decoder before libjpeg-turbo replaced it (issue 18), and by nn's
//            decode_image in the same pass, for the before/after ratio in one run. A peer for this
//            benchmark only: stb's JPEG path has undefined behaviour on crafted input.
// Prints one JSON object.
#include <nn/data/image.h>
#include <nn/data/loader.h>
#include <nn/error.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <unordered_map>
#include <vector>

// stb_image's JPEG decoder, compiled into this benchmark alone with internal linkage (libnn's own
// copy in stb_impl.cpp is built for PNG only). Its directory is a SYSTEM include here, so its
// warnings stay quiet without pragmas.
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#include <stb_image.h>

namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

int usage() {
  std::fprintf(stderr, "usage: image-decode-bench [--workers N] [--size S] [--repeat R] [--stb-jpeg] PATH...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int workers = 2, repeat = 3;
  int64_t size = 128;
  bool stb_jpeg = false;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> long {
      if (i + 1 >= argc) std::exit(usage());
      return std::strtol(argv[++i], nullptr, 10);
    };
    if (a == "--workers") workers = static_cast<int>(value());
    else if (a == "--size") size = value();
    else if (a == "--repeat") repeat = static_cast<int>(value());
    else if (a == "--stb-jpeg") stb_jpeg = true;
    else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    }
    else if (!a.empty() && a[0] == '-') return usage();
    else paths.push_back(a);
  }
  if (paths.empty() || workers < 1 || size < 1 || repeat < 1) return usage();

  std::vector<std::string> files;
  for (const std::string& p : paths) {
    if (fs::is_directory(p)) {
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file() && nn::data::is_image_file_name(e.path().string())) files.push_back(e.path().string());
    } else {
      files.push_back(p);
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "image-decode-bench: no images under the given paths\n");
    return 1;
  }
  std::unordered_map<std::string, std::vector<char>> bytes;
  size_t total_bytes = 0;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    bytes[f].assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    total_bytes += bytes[f].size();
  }

  // decode, one thread
  double decode_best = 1e30;
  size_t failed = 0;
  int64_t pixels = 0;
  for (int r = 0; r < repeat; ++r) {
    failed = 0;
    pixels = 0;
    auto t = std::chrono::steady_clock::now();
    for (const std::string& f : files) {
      const std::vector<char>& b = bytes[f];
      try {
        nn::data::Image im = nn::data::decode_image(b.data(), b.size(), f);
        pixels += im.height * im.width;
      } catch (const nn::Error&) {
        ++failed;
      }
    }
    decode_best = std::min(decode_best, seconds_since(t));
  }

  // the trainer's cache step
  std::vector<nn::data::Sample> samples;
  for (const std::string& f : files) samples.push_back({f, 0, ""});
  double cache_best = 1e30;
  for (int r = 0; r < repeat; ++r) {
    auto t = std::chrono::steady_clock::now();
    nn::data::ImageCache cache = nn::data::cache_images(
        samples,
        [&](const std::string& path) {
          const std::vector<char>& b = bytes.at(path);
          nn::data::Image gray = nn::data::to_grayscale(nn::data::decode_image(b.data(), b.size(), path));
          return gray.height == size && gray.width == size ? gray : nn::data::resize(gray, size, size);
        },
        workers);
    cache_best = std::min(cache_best, seconds_since(t));
  }

  // the old JPEG decoder against the new one, on the same JPEG files
  std::string stb_json;
  if (stb_jpeg) {
    std::vector<const std::string*> jpegs;
    for (const std::string& f : files) {
      const std::vector<char>& b = bytes[f];
      if (b.size() >= 3 && static_cast<unsigned char>(b[0]) == 0xFF && static_cast<unsigned char>(b[1]) == 0xD8 &&
          static_cast<unsigned char>(b[2]) == 0xFF)
        jpegs.push_back(&f);
    }
    double stb_best = 1e30, nn_best = 1e30;
    size_t stb_failed = 0, nn_failed = 0;
    int64_t stb_pixels = 0, nn_pixels = 0;
    for (int r = 0; r < repeat; ++r) {
      stb_failed = 0;
      stb_pixels = 0;
      auto t = std::chrono::steady_clock::now();
      for (const std::string* f : jpegs) {
        const std::vector<char>& b = bytes[*f];
        int w = 0, h = 0, c = 0;
        unsigned char* px = stbi_load_from_memory(reinterpret_cast<const unsigned char*>(b.data()),
                                                  static_cast<int>(b.size()), &w, &h, &c, 0);
        if (px == nullptr) {
          ++stb_failed;
          continue;
        }
        stb_pixels += static_cast<int64_t>(w) * h;
        stbi_image_free(px);
      }
      stb_best = std::min(stb_best, seconds_since(t));
      nn_failed = 0;
      nn_pixels = 0;
      t = std::chrono::steady_clock::now();
      for (const std::string* f : jpegs) {
        const std::vector<char>& b = bytes[*f];
        try {
          nn::data::Image im = nn::data::decode_image(b.data(), b.size(), *f);
          nn_pixels += im.height * im.width;
        } catch (const nn::Error&) {
          ++nn_failed;
        }
      }
      nn_best = std::min(nn_best, seconds_since(t));
    }
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  ",\n \"jpegs\": %zu, \"stb_jpeg_seconds\": %.4f, \"stb_jpeg_failed\": %zu, "
                  "\"stb_jpeg_megapixels\": %.3f,\n \"nn_jpeg_seconds\": %.4f, \"nn_jpeg_failed\": %zu, "
                  "\"nn_jpeg_megapixels\": %.3f, \"stb_over_nn\": %.3f",
                  jpegs.size(), stb_best, stb_failed, static_cast<double>(stb_pixels) / 1e6, nn_best, nn_failed,
                  static_cast<double>(nn_pixels) / 1e6, stb_best / nn_best);
    stb_json = buf;
  }

  std::printf(
      "{\"images\": %zu, \"bytes\": %zu, \"megapixels\": %.3f, \"failed\": %zu, \"repeat\": %d,\n"
      " \"decode_seconds\": %.4f, \"decode_images_per_second\": %.1f,\n"
      " \"cache_workers\": %d, \"cache_size\": %lld, \"cache_seconds\": %.4f, \"cache_images_per_second\": %.1f%s}\n",
      files.size(), total_bytes, static_cast<double>(pixels) / 1e6, failed, repeat, decode_best,
      static_cast<double>(files.size()) / decode_best, workers, static_cast<long long>(size), cache_best,
      static_cast<double>(files.size()) / cache_best, stb_json.c_str());
  return 0;
}
