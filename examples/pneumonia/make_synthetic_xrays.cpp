// make-synthetic-xrays: writes a SYNTHETIC chest X-ray data set in the layout of the Kermany data
// (DIR/NORMAL/*.png, DIR/PNEUMONIA/*.png), for demos and tests without the real images.
// Exit codes: 0 success, 1 failure, 2 usage error.
#include <CLI/CLI.hpp>
#include <nn/parallel.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "synthetic_xray.h"

int main(int argc, char** argv) {
  CLI::App app{"make-synthetic-xrays: write SYNTHETIC chest X-rays (NORMAL/ and PNEUMONIA/ PNGs) for demos and tests"};
  std::string out;
  int64_t normal = 100, pneumonia = 100;
  pneumonia::SyntheticXrayOptions options;
  bool overwrite = false;
  int threads = 0;
  app.add_option("--out", out, "output folder (created; must be empty unless --overwrite)")->required();
  app.add_option("--normal", normal, "number of NORMAL images")->check(CLI::Range(int64_t{0}, int64_t{10'000'000}));
  app.add_option("--pneumonia", pneumonia, "number of PNEUMONIA images")->check(CLI::Range(int64_t{0}, int64_t{10'000'000}));
  app.add_option("--size", options.size, "image side in pixels")->check(CLI::Range(int64_t{16}, int64_t{4096}));
  app.add_option("--seed", options.seed, "seed: the same seed gives the same images");
  app.add_option("--threads", threads, "threads (default: NN_NUM_THREADS or all)")->check(CLI::Range(0, 1024));
  app.add_flag("--overwrite", overwrite, "write into a non-empty folder (replaces earlier synthetic images there)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    if (threads > 0) nn::set_num_threads(threads);
    const auto start = std::chrono::steady_clock::now();
    const int64_t written = pneumonia::write_synthetic_dataset(out, normal, pneumonia, options, overwrite);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("wrote %lld SYNTHETIC chest X-rays (%lld NORMAL, %lld PNEUMONIA), %lldx%lld grayscale PNG, seed %llu, "
                "to %s in %.1f s\n",
                static_cast<long long>(written), static_cast<long long>(normal), static_cast<long long>(pneumonia),
                static_cast<long long>(options.size), static_cast<long long>(options.size),
                static_cast<unsigned long long>(options.seed), out.c_str(), seconds);
    std::printf("NOTE: these images are SYNTHETIC (procedurally drawn); results on them say nothing about real X-rays.\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make-synthetic-xrays: %s\n", e.what());
    return 1;
  }
}
