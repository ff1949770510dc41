// pneumonia-predict: applies a model from pneumonia-train to chest X-rays.
//
//   pneumonia-predict --model RUN_DIR/model.safetensors [--json] [--threshold T] PATH...
//       label and probability of PNEUMONIA per image (PATH: files or folders, searched recursively)
//   pneumonia-predict --model M --eval DIR [--json]
//       on a NORMAL/ + PNEUMONIA/ folder: accuracy, sensitivity, specificity, PPV, NPV, F1, ROC AUC
//       with a bootstrap 95% interval, and the confusion matrix
//   pneumonia-predict --model M --eval DIR --card OUT.md
//       the same, and a model card (common/model_card.h) written to OUT.md
//
// Every image first goes through the model's out-of-distribution gate (common/ood_gate.h): an image
// that does not look like a frontal chest X-ray is answered REJECTED with the reason (text:
// "REJECTED  reason  path"; JSON: "label": "REJECTED", "reason"), without a probability. --eval
// scores the images the gate accepts and counts the refused ones; --no-gate diagnoses everything.
//
// Unreadable images are listed on stderr and skipped; the exit code is then 1 (a refusal is an
// answer, not an error). Exit codes: 0 all went well, 1 a bad input (model, image), 2 usage error.
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
#include "model_card.h"
#include "trainer.h"
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
  std::string model_path, eval_dir, card_path;
  std::vector<std::string> paths;
  bool as_json = false;
  double threshold = -1;
  int64_t batch = 32;
  int threads = 0, bootstrap = 1000;
  bool no_gate = false;
  app.add_option("--model", model_path, "model.safetensors written by pneumonia-train")->required();
  app.add_option("--eval", eval_dir, "evaluate on a folder with NORMAL/ and PNEUMONIA/ subfolders");
  app.add_flag("--json", as_json, "print JSON");
  app.add_option("--threshold", threshold, "decision threshold on the probability (default: the model's, chosen on validation)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--batch", batch, "images per forward pass")->check(CLI::Range(1, 4096));
  app.add_option("--threads", threads, "compute threads");
  app.add_option("--bootstrap", bootstrap, "bootstrap rounds for the AUC interval")->check(CLI::Range(0, 100000));
  app.add_option("--card", card_path, "with --eval: write a model card (Markdown) to this file");
  app.add_flag("--no-gate", no_gate, "diagnose every image, also those the out-of-distribution gate would refuse");
  app.add_option("paths", paths, "images or folders of images");
  try {
    app.parse(argc, argv);
    if (eval_dir.empty() == paths.empty())
      throw CLI::ValidationError("give either image paths or --eval DIR (not both)");
    if (!card_path.empty() && eval_dir.empty()) throw CLI::ValidationError("--card needs --eval DIR");
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  try {
    if (threads > 0) nn::set_num_threads(threads);
    pneumonia::PneumoniaModel loaded = pneumonia::load_model(model_path);
    loaded.fold_batch_norms();  // inference only: the same outputs up to rounding, faster
    nn::set_conv_weight_cache(true);  // the weights stay as loaded: transform them once
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
    // Each image: decoded, the gate's input checks, then prepared as the model's input.
    struct Answer {
      std::string path;
      int64_t label = -1;  // --eval: the true class
      pneumonia::Assessment assessment;
    };
    std::vector<Answer> answers;
    std::vector<nn::Tensor> inputs;
    std::vector<size_t> input_of;  // the answer of each input
    for (size_t i = 0; i < files.size(); ++i) {
      try {
        const nn::data::Image decoded = nn::data::load_image(files[i]);
        Answer a{files[i], labels.empty() ? -1 : labels[i], {}};
        const std::string reason = no_gate ? "" : pneumonia::check_input(pneumonia::input_stats(decoded), loaded.gate.input);
        if (!reason.empty()) {
          a.assessment.refused = true;
          a.assessment.reason = reason;
        } else {
          inputs.push_back(pneumonia::xray_to_input(pneumonia::prepare_decoded(decoded, spec.input_size), preset));
          input_of.push_back(answers.size());
        }
        answers.push_back(std::move(a));
      } catch (const nn::Error& e) {
        problems.push_back(e.what());
      }
    }
    if (answers.empty()) {  // nothing to answer: one line per problem, each naming its file
      for (const std::string& p : problems) std::fprintf(stderr, "pneumonia-predict: %s\n", p.c_str());
      if (problems.empty()) std::fprintf(stderr, "pneumonia-predict: no images found\n");
      return 1;
    }
    for (const std::string& p : problems) std::fprintf(stderr, "skipped: %s\n", p.c_str());
    if (!no_gate && !loaded.gate.has_features())
      std::fprintf(stderr, "pneumonia-predict: warning: %s has no feature stage in its out-of-distribution gate "
                   "(trained before the gate existed); only the input checks apply\n", model_path.c_str());
    for (size_t begin = 0; begin < inputs.size(); begin += static_cast<size_t>(batch)) {
      const size_t end = std::min(inputs.size(), begin + static_cast<size_t>(batch));
      std::vector<nn::Tensor> chunk;
      for (size_t i = begin; i < end; ++i) chunk.push_back(inputs[i].unsqueeze(0));
      const std::vector<pneumonia::Assessment> assessed = loaded.assess(nn::concat(chunk, 0));
      for (size_t i = begin; i < end; ++i) {
        pneumonia::Assessment a = assessed[i - begin];
        if (no_gate) a.refused = false, a.reason.clear();
        answers[input_of[i]].assessment = a;
      }
    }

    if (eval_dir.empty()) {
      json out = json::array();
      for (const Answer& a : answers) {
        const pneumonia::Assessment& r = a.assessment;
        if (r.refused) {
          if (as_json)
            out.push_back({{"path", a.path}, {"label", "REJECTED"}, {"reason", r.reason}});
          else
            std::printf("%-9s  %s  %s\n", "REJECTED", r.reason.c_str(), a.path.c_str());
          continue;
        }
        const bool positive = r.probability >= threshold;
        const std::string& label = spec.classes[positive ? 1 : 0];
        if (as_json) {
          json j = {{"path", a.path}, {"label", label}, {"probability", r.probability}};
          if (std::isfinite(r.ood_score)) j["ood_score"] = r.ood_score;
          out.push_back(j);
        } else {
          std::printf("%-9s  %.4f  %s\n", label.c_str(), r.probability, a.path.c_str());
        }
      }
      if (as_json) std::cout << out.dump(2) << "\n";
    } else {
      std::vector<double> probs;
      std::vector<int64_t> used_labels;
      int64_t refused[2] = {0, 0};
      for (const Answer& a : answers) {
        if (a.assessment.refused) {
          ++refused[a.label == 0 ? 0 : 1];
          continue;
        }
        probs.push_back(a.assessment.probability);
        used_labels.push_back(a.label);
      }
      NN_CHECK(!probs.empty(), "the gate refused all ", answers.size(), " images of ", eval_dir);
      nn::metrics::BinaryMetrics m = nn::metrics::binary_metrics(probs, used_labels, threshold);
      nn::metrics::Interval ci{NAN, NAN};
      if (bootstrap > 0) ci = nn::metrics::bootstrap_auc_interval(probs, used_labels, bootstrap, 0);
      const nn::metrics::Confusion& c = m.confusion;
      if (as_json) {
        json j = json::parse(nn::metrics::to_json(m));
        j["auc_95ci"] = {ci.low, ci.high};
        j["confusion"]["matrix"] = {{c.tn, c.fp}, {c.fn, c.tp}};
        j["confusion"]["rows"] = "true NORMAL, true PNEUMONIA; columns predicted NORMAL, PNEUMONIA";
        j["refused"] = {{spec.classes[0], refused[0]}, {spec.classes[1], refused[1]}, {"total", refused[0] + refused[1]},
                        {"of", answers.size()}, {"gate", !no_gate}};
        std::cout << j.dump(2) << "\n";
      } else {
        std::printf("%s: %lld images, threshold %.3f\n", eval_dir.c_str(), static_cast<long long>(m.n), threshold);
        std::printf("  refused by the gate: %lld of %zu (%lld %s, %lld %s)%s\n",
                    static_cast<long long>(refused[0] + refused[1]), answers.size(), static_cast<long long>(refused[0]),
                    spec.classes[0].c_str(), static_cast<long long>(refused[1]), spec.classes[1].c_str(),
                    no_gate ? " (--no-gate)" : "; the metrics are of the images it accepted");
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
      if (!card_path.empty()) {
        pneumonia::CardEvaluation card;
        card.folder = eval_dir;
        for (const Answer& a : answers) ++card.images[a.label == 0 ? 0 : 1];
        card.refused[0] = refused[0];
        card.refused[1] = refused[1];
        card.gate = !no_gate;
        card.threshold = threshold;
        card.probabilities = probs;
        card.labels = used_labels;
        card.metrics = m;
        card.auc_interval = ci;
        card.bootstrap = bootstrap;
        card.unreadable = static_cast<int64_t>(problems.size());
        pneumonia::run_files::save_text(card_path, pneumonia::model_card_markdown(model_path, loaded, card));
        std::fprintf(stderr, "wrote the model card %s\n", card_path.c_str());
      }
    }
    return problems.empty() ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pneumonia-predict: %s\n", e.what());
    return 1;
  }
}
