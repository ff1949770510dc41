// pneumonia-protocol: scores the fold models of a finished cross-validated pneumonia-train run
// under the current evaluation protocol (docs/evaluation_protocol.md), without training again.
//
//   pneumonia-protocol --run RUN_DIR --out OUT_DIR [--data DIR] [--threads N] [--tta]
//
// Reads RUN_DIR/summary.json (the run's settings: data, folds, seed, image size, threshold rule)
// and RUN_DIR/fold-<k>/model.safetensors, rebuilds the same folds, and writes protocol.json,
// oof.safetensors, curves.png, roc.png and reliability.png into OUT_DIR: the table of runs made
// before the protocol changed, comparable with today's. --tta scores each image as the mean logit
// of itself and four fixed resamplings (test-time augmentation; pneumonia::test_time_views): the
// measurement of that choice. Exit codes: 0 ok, 1 failure, 2 usage.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "cross_validation.h"

int main(int argc, char** argv) {
  CLI::App app{"pneumonia-protocol: score a cross-validated run's fold models under the evaluation protocol"};
  std::string run, out, data;
  int threads = 0;
  bool tta = false;
  app.add_option("--run", run, "a run folder of pneumonia-train --folds K")->required();
  app.add_option("--out", out, "folder for protocol.json, oof.safetensors and the charts")->required();
  app.add_option("--data", data, "the data folder (default: the run's)");
  app.add_option("--threads", threads, "compute threads");
  app.add_flag("--tta", tta, "test-time augmentation: the mean logit of the image and 4 fixed resamplings");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    pneumonia::rescore(run, out, data, threads, tta);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pneumonia-protocol: %s\n", e.what());
    return 1;
  }
}
