// pneumonia-predict: applies a model from pneumonia-train to chest X-rays.
//
//   pneumonia-predict --model RUN_DIR/model.safetensors [--json] [--threshold T] PATH...
//       label and probability of PNEUMONIA per image (PATH: files or folders, searched recursively)
//   pneumonia-predict --model M --eval DIR [--json]
//       on a NORMAL/ + PNEUMONIA/ folder: accuracy, sensitivity, specificity, PPV, NPV, F1, ROC AUC
//       with a bootstrap 95% interval, and the confusion matrix
//
// Unreadable images are listed on stderr and skipped; the exit code is then 1. Exit codes: 0 all
// went well, 1 a bad input (model, image), 2 usage error.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <nn/data/dataset.h>
#include <nn/data/image.h>
#include <nn/metrics.h>
#include <nn/nn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "chest_xray_folder.h"
#include "pneumonia_model.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Image files under the given paths: files as given, folders searched recursively (sorted).
std::vector<std::string> collect_images(const std::vector<std::string>& paths, std::vector<std::string>& problems) {
  std::vector<std::string> files;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::recursive_directory_iterator();
           it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (it->is_regular_file(ec) && nn::data::is_image_file_name(name) && name[0] != '.' &&
            it->path().string().find("__MACOSX") == std::string::npos)
          found.push_back(it->path().string());
      }
      if (ec) problems.push_back(p + ": " + ec.message());
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(p);  // a file (or a missing path, reported when it is read)
    }
  }
  return files;
}

std::string number(double v) {
  char buf[32];
  if (std::isnan(v)) return "n/a";
  std::snprintf(buf, sizeof buf, "%.4f", v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pneumonia-predict: PNEUMONIA/NORMAL for chest X-rays with a model from pneumonia-train"};
  std::string model_path, eval_dir;
  std::vector<std::string> paths;
  bool as_json = false;
  double threshold = -1;
  int64_t batch = 32;
  int threads = 0, bootstrap = 1000;
  app.add_option("--model", model_path, "model.safetensors written by pneumonia-train")->required();
  app.add_option("--eval", eval_dir, "evaluate on a folder with NORMAL/ and PNEUMONIA/ subfolders");
  app.add_flag("--json", as_json, "print JSON");
  app.add_option("--threshold", threshold, "decision threshold on the probability (default: the model's, chosen on validation)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--batch", batch, "images per forward pass")->check(CLI::Range(1, 4096));
  app.add_option("--threads", threads, "compute threads");
  app.add_option("--bootstrap", bootstrap, "bootstrap rounds for the AUC interval")->check(CLI::Range(0, 100000));
  app.add_option("paths", paths, "images or folders of images");
  try {
    app.parse(argc, argv);
    if (eval_dir.empty() == paths.empty())
      throw CLI::ValidationError("give either image paths or --eval DIR (not both)");
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  try {
    if (threads > 0) nn::set_num_threads(threads);
    pneumonia::PneumoniaModel loaded = pneumonia::load_model(model_path);
    const pneumonia::ModelSpec& spec = loaded.spec;
    if (threshold < 0) threshold = spec.threshold;
    const nn::data::Preprocessing preset = nn::data::parse_preprocessing(spec.preprocessing);

    // The images (and labels in --eval mode).
    std::vector<std::string> files, problems;
    std::vector<int64_t> labels;
    if (!eval_dir.empty()) {
      nn::data::ImageFolder folder = pneumonia::scan_xray_folder(eval_dir, spec.classes);
      for (const nn::data::Sample& s : folder.samples) {
        files.push_back(s.path);
        labels.push_back(s.label);
      }
    } else {
      files = collect_images(paths, problems);
    }
    std::vector<nn::Tensor> inputs;
    std::vector<std::string> used;
    std::vector<int64_t> used_labels;
    for (size_t i = 0; i < files.size(); ++i) {
      try {
        inputs.push_back(pneumonia::xray_to_input(pneumonia::prepare_xray(files[i], spec.input_size), preset));
        used.push_back(files[i]);
        if (!labels.empty()) used_labels.push_back(labels[i]);
      } catch (const nn::Error& e) {
        problems.push_back(e.what());
      }
    }
    if (inputs.empty()) {  // nothing to answer: one line per problem, each naming its file
      for (const std::string& p : problems) std::fprintf(stderr, "pneumonia-predict: %s\n", p.c_str());
      if (problems.empty()) std::fprintf(stderr, "pneumonia-predict: no images found\n");
      return 1;
    }
    for (const std::string& p : problems) std::fprintf(stderr, "skipped: %s\n", p.c_str());
    std::vector<double> probs = loaded.probabilities(inputs, batch);

    if (eval_dir.empty()) {
      json out = json::array();
      for (size_t i = 0; i < used.size(); ++i) {
        const bool positive = probs[i] >= threshold;
        const std::string& label = spec.classes[positive ? 1 : 0];
        if (as_json)
          out.push_back({{"path", used[i]}, {"label", label}, {"probability", probs[i]}});
        else
          std::printf("%-9s  %.4f  %s\n", label.c_str(), probs[i], used[i].c_str());
      }
      if (as_json) std::cout << out.dump(2) << "\n";
    } else {
      nn::metrics::BinaryMetrics m = nn::metrics::binary_metrics(probs, used_labels, threshold);
      nn::metrics::Interval ci{NAN, NAN};
      if (bootstrap > 0) ci = nn::metrics::bootstrap_auc_interval(probs, used_labels, bootstrap, 0);
      const nn::metrics::Confusion& c = m.confusion;
      if (as_json) {
        json j = json::parse(nn::metrics::to_json(m));
        j["auc_95ci"] = {ci.low, ci.high};
        j["confusion"]["matrix"] = {{c.tn, c.fp}, {c.fn, c.tp}};
        j["confusion"]["rows"] = "true NORMAL, true PNEUMONIA; columns predicted NORMAL, PNEUMONIA";
        std::cout << j.dump(2) << "\n";
      } else {
        std::printf("%s: %lld images, threshold %.3f\n", eval_dir.c_str(), static_cast<long long>(m.n), threshold);
        std::printf("  accuracy     %s\n  sensitivity  %s\n  specificity  %s\n  PPV          %s\n  NPV          %s\n"
                    "  F1           %s\n  ROC AUC      %s (95%% CI %s-%s)\n",
                    number(m.accuracy).c_str(), number(m.sensitivity).c_str(), number(m.specificity).c_str(),
                    number(m.ppv).c_str(), number(m.npv).c_str(), number(m.f1).c_str(), number(m.auc).c_str(),
                    number(ci.low).c_str(), number(ci.high).c_str());
        std::printf("  confusion matrix (rows: true, columns: predicted)\n");
        std::printf("  %-10s %9s %9s\n", "", spec.classes[0].c_str(), spec.classes[1].c_str());
        std::printf("  %-10s %9lld %9lld\n", spec.classes[0].c_str(), static_cast<long long>(c.tn), static_cast<long long>(c.fp));
        std::printf("  %-10s %9lld %9lld\n", spec.classes[1].c_str(), static_cast<long long>(c.fn), static_cast<long long>(c.tp));
      }
    }
    return problems.empty() ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pneumonia-predict: %s\n", e.what());
    return 1;
  }
}
