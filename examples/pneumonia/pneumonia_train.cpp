// pneumonia-train: trains the pneumonia classifier on a NORMAL/ + PNEUMONIA/ folder of chest X-rays.
//
//   pneumonia-train --data DIR --out RUN_DIR [--mode scratch|head|finetune] [--weights W] ...
//
// Modes:
//   scratch   a small VGG16 (width --width-mult, --image-size input) trained from torchvision's
//             initialisation; the defaults are the project's CPU recipe.
//   head      VGG16 features with ImageNet weights (nn-convert's file), frozen; a new head
//             (Flatten -> Dense(256) + ReLU + Dropout(0.5) -> Dense(1), or --head linear). The
//             frozen features are computed once per image and view (--views augmented views), so
//             an epoch costs only the head.
//   finetune  as head, and block 5 (the last three convolutions) trains too; the output of block 4
//             is what is cached.
// Class imbalance: BCE with pos_weight = normal/pneumonia (or --balanced sampling). Validation: a
// stratified, patient-level split of DIR. Early stopping on validation AUC keeps the best model;
// the decision threshold is chosen on validation (--threshold-rule, default sensitivity:0.95: the
// highest threshold that keeps 95% of the validation positives; see docs/design.md).
//
// RUN_DIR gets model.safetensors (best model + metadata), checkpoint.safetensors (resume),
// metrics.jsonl, curves.png, roc.png, summary.json. Exit codes: 0 ok, 1 failure, 2 usage.
//
// Faults (RELIABILITY.md items 12 and 14): RUN_DIR is created and probed for writing before any
// work; temporary files a killed run left there are removed; checkpoints are written atomically,
// so a kill or a full disk leaves the previous one loadable. A step whose loss or gradients are
// NaN/inf is refused before the optimizer applies it: training stops with the epoch, the step
// number and the first layer whose output went non-finite (the batch rerun layer by layer), and
// the last checkpoint is not overwritten.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <nn/data/augment.h>
#include <nn/data/dataset.h>
#include <nn/data/image.h>
#include <nn/data/loader.h>
#include <nn/io/safetensors.h>
#include <nn/metrics.h>
#include <nn/named_layers.h>
#include <nn/nn.h>
#include <nn/optim.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <unordered_map>

#include "charts.h"
#include "chest_xray_folder.h"
#include "pneumonia_model.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using nn::Tensor;

namespace {

struct Config {
  std::string data, out, mode = "scratch", weights, head, optimizer = "adam", device = "cpu";
  std::string threshold_rule = "sensitivity:0.95";
  int epochs = 0;  // 0: the mode's default
  int64_t batch_size = 32, image_size = 0, max_images = 0;
  double width = 0.25, lr = 0, val_fraction = 0.1, weight_decay = 0;
  uint64_t seed = 0;
  int depth = 16, patience = 5, views = 2, workers = 2, threads = 0;
  bool resume = false, balanced = false, no_augment = false, image_split = false;
  nn::data::AugmentOptions augment;

  json to_json() const {
    return {{"data", data},       {"mode", mode},           {"weights", weights},
            {"head", head},       {"optimizer", optimizer}, {"epochs", epochs},
            {"batch_size", batch_size}, {"image_size", image_size}, {"max_images", max_images},
            {"width", width},     {"depth", depth},         {"lr", lr},               {"val_fraction", val_fraction},
            {"seed", seed},       {"patience", patience},   {"views", views},
            {"balanced", balanced}, {"augment", !no_augment}, {"patient_split", !image_split},
            {"weight_decay", weight_decay}, {"threshold_rule", threshold_rule}};
  }
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string format_duration(double s) {
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s / 3600), static_cast<int>(s / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  return buf;
}

// A one-line progress bar on stderr: redrawn in place on a terminal, every 10% otherwise.
class Progress {
 public:
  Progress(std::string label, int64_t total) : label_(std::move(label)), total_(total), tty_(isatty(2)) {}
  void update(int64_t done, int64_t images, double loss) {
    const double t = seconds_since(start_);
    const double rate = t > 0 ? images / t : 0;
    const double eta = done > 0 ? t / done * (total_ - done) : 0;
    const int decile = total_ > 0 ? static_cast<int>(10 * done / total_) : 10;
    if (!tty_ && decile == last_decile_ && done != total_) return;
    last_decile_ = decile;
    const int width = 24, filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
    std::string bar(static_cast<size_t>(filled), '=');
    bar.resize(width, ' ');
    std::fprintf(stderr, "%s%s [%s] %lld/%lld  %.1f img/s  ETA %s  loss %.4f%s", tty_ ? "\r" : "", label_.c_str(),
                 bar.c_str(), static_cast<long long>(done), static_cast<long long>(total_), rate,
                 format_duration(eta).c_str(), loss, tty_ ? "" : "\n");
    std::fflush(stderr);
  }
  void finish() {
    if (tty_) std::fprintf(stderr, "\r%*s\r", 100, "");
  }

 private:
  std::string label_;
  int64_t total_;
  bool tty_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// A stratified subset of at most `max` samples (for quick runs).
std::vector<nn::data::Sample> limit_samples(const std::vector<nn::data::Sample>& samples, int64_t max, uint64_t seed) {
  if (max <= 0 || max >= static_cast<int64_t>(samples.size())) return samples;
  const double fraction = static_cast<double>(max) / static_cast<double>(samples.size());
  nn::data::Split pick = nn::data::stratified_split(samples, fraction, seed ^ 0x5eed, false);
  std::vector<nn::data::Sample> out;
  for (int64_t i : pick.val) out.push_back(samples[static_cast<size_t>(i)]);
  return out;
}

struct EpochStats {
  double loss = 0, accuracy = 0;
};

// The loss the model trains on: mean BCE with logits, positives weighted by pos_weight.
Tensor weighted_bce(const Tensor& logits, const Tensor& labels, const Tensor& pos_weight) {
  nn::BceWithLogitsOptions o;
  if (pos_weight.defined()) o.pos_weight = pos_weight;
  return nn::binary_cross_entropy_with_logits(logits.reshape({-1}), labels.to(nn::f32), o);
}

// Evaluation of logits (N) against labels: loss, probabilities.
struct Evaluation {
  double loss = 0;
  std::vector<double> probs;
  nn::metrics::BinaryMetrics metrics;
};

// Writes `text` to PATH.tmp, then renames it over PATH (a reader never sees half a file).
void save_text(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    NN_CHECK(out.good(), "cannot write ", tmp, ": ", std::strerror(errno));
    out << text;
    out.flush();
    NN_CHECK(out.good(), "cannot write ", tmp, ": ", std::strerror(errno));
  }
  fs::rename(tmp, path);
}

void save_json(const std::string& path, const json& j) { save_text(path, j.dump(2) + "\n"); }

// The files the trainer writes by temporary file and rename; "NAME.tmp..." left in the run folder
// are what a killed run was writing.
const char* const kRunFiles[] = {"checkpoint.safetensors", "model.safetensors", "summary.json", "metrics.jsonl"};

// Creates the run folder, makes sure a file can be written there (a read-only folder, a full disk
// or an --out under a regular file fails now, not after the first epoch) and removes the
// temporary files of an interrupted earlier run.
void prepare_run_folder(const std::string& out) {
  NN_CHECK(!fs::exists(out) || fs::is_directory(out), "--out ", out, " exists and is not a directory");
  std::error_code ec;
  fs::create_directories(out, ec);
  NN_CHECK(!ec, "cannot create the run folder ", out, ": ", ec.message());
  const std::string probe = (fs::path(out) / (".write-probe." + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  NN_CHECK(fd >= 0, "the run folder ", out, " is not writable: cannot create ", probe, ": ", std::strerror(errno));
  const bool wrote = ::write(fd, "probe\n", 6) == 6 && ::fsync(fd) == 0;
  const int error = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  NN_CHECK(wrote, "the run folder ", out, " is not writable: writing ", probe, " failed: ", std::strerror(error));

  std::vector<std::string> stale;
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    for (const char* file : kRunFiles)
      if (name.rfind(std::string(file) + ".tmp", 0) == 0 && entry.is_regular_file()) stale.push_back(name);
  }
  if (stale.empty()) return;
  std::string names;
  for (const std::string& name : stale) {
    fs::remove(fs::path(out) / name);
    names += (names.empty() ? "" : ", ") + name;
  }
  std::printf("removed %zu unfinished file(s) an interrupted run left in %s: %s\n", stale.size(), out.c_str(),
              names.c_str());
}

// "nan", "inf", "-inf" or the number.
std::string number_text(double v) {
  if (std::isnan(v)) return "nan";  // not "-nan": the sign of a NaN means nothing
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

long peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024;
}

int run(const Config& cfg_in) {
  Config cfg = cfg_in;
  const auto t_start = std::chrono::steady_clock::now();
  if (cfg.threads > 0) nn::set_num_threads(cfg.threads);
  NN_CHECK(cfg.mode == "scratch" || cfg.mode == "head" || cfg.mode == "finetune",
           "--mode must be scratch, head or finetune, got '", cfg.mode, "'");
  NN_CHECK(cfg.device == "cpu" || cfg.device == "cuda", "--device must be cpu or cuda");
  const nn::Device device = cfg.device == "cuda" ? nn::Device::cuda() : nn::Device::cpu();
  const bool transfer = cfg.mode != "scratch";
  if (cfg.epochs <= 0) cfg.epochs = transfer ? 8 : 10;
  if (cfg.image_size <= 0) cfg.image_size = transfer ? 224 : 128;
  if (cfg.lr <= 0) cfg.lr = cfg.mode == "finetune" ? 1e-4 : 1e-3;
  if (cfg.no_augment) cfg.augment = nn::data::AugmentOptions{0, 0, 0, 0, false, 0, 0};
  prepare_run_folder(cfg.out);

  // ---- data ----
  nn::data::ImageFolder folder = pneumonia::scan_xray_folder(cfg.data);
  for (const std::string& s : folder.skipped) std::fprintf(stderr, "skipped: %s\n", s.c_str());
  std::vector<nn::data::Sample> samples = limit_samples(folder.samples, cfg.max_images, cfg.seed);
  nn::data::Split split = nn::data::stratified_split(samples, cfg.val_fraction, cfg.seed, !cfg.image_split);
  std::printf("data: %s: %zu images (%s), train %zu, validation %zu (%s split, seed %llu)\n", cfg.data.c_str(),
              samples.size(), cfg.max_images > 0 ? "subset" : "all", split.train.size(), split.val.size(),
              cfg.image_split ? "image-level" : "patient-level", static_cast<unsigned long long>(cfg.seed));

  // Decode every image once (grayscale, image_size square) and keep it in memory.
  auto t_cache = std::chrono::steady_clock::now();
  nn::data::ImageCache cache = nn::data::cache_images(
      samples, [&](const std::string& path) { return pneumonia::prepare_xray(path, cfg.image_size); }, cfg.workers);
  for (const std::string& f : cache.failed) std::fprintf(stderr, "unreadable, skipped: %s\n", f.c_str());
  auto usable = [&](const std::vector<int64_t>& idx) {
    std::vector<int64_t> out;
    for (int64_t i : idx)
      if (cache.images[static_cast<size_t>(i)].height > 0) out.push_back(i);
    return out;
  };
  split.train = usable(split.train);
  split.val = usable(split.val);
  NN_CHECK(!split.train.empty() && !split.val.empty(), "no readable images left for training or validation");
  std::vector<int64_t> labels(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) labels[i] = samples[i].label;
  int64_t n_pos = 0;
  for (int64_t i : split.train) n_pos += labels[static_cast<size_t>(i)];
  const int64_t n_neg = static_cast<int64_t>(split.train.size()) - n_pos;
  NN_CHECK(n_pos > 0 && n_neg > 0, "the training split needs both classes");
  std::printf("decoded %zu images in %.1f s (%zu unreadable); train: %lld NORMAL, %lld PNEUMONIA\n",
              samples.size(), seconds_since(t_cache), cache.failed.size(), static_cast<long long>(n_neg),
              static_cast<long long>(n_pos));

  // ---- model ----
  pneumonia::ModelSpec spec;
  spec.mode = cfg.mode;
  spec.input_size = cfg.image_size;
  nn::Generator gen(cfg.seed * 7919 + 17);
  std::shared_ptr<nn::models::VGG> model;
  int64_t frozen_modules = 0;  // features[0..frozen) are frozen and cached
  if (!transfer) {
    spec.width = cfg.width;
    spec.depth = cfg.depth;
    spec.head = cfg.head.empty() ? "vgg" : cfg.head;
    model = pneumonia::build_model(spec, gen);
  } else {
    NN_CHECK(!cfg.weights.empty(), "--mode ", cfg.mode,
             " needs --weights (VGG16 ImageNet weights converted by nn-convert; see weights/README.md)");
    nn::models::LoadedVGG base = nn::models::load_vgg(cfg.weights);
    spec.depth = base.model->options().depth;
    spec.width = base.model->options().width_multiplier;
    spec.head = cfg.head.empty() ? "mlp" : cfg.head;
    auto pre = base.metadata.find("preprocessing");
    NN_CHECK(pre != base.metadata.end(), cfg.weights, ": no preprocessing in the metadata; convert it with nn-convert");
    spec.preprocessing = pre->second;
    model = pneumonia::build_model(spec, gen);
    nn::StateDict features;
    for (const auto& [name, t] : base.model->state_dict())
      if (name.rfind("features.", 0) == 0) features.emplace_back(name, t);
    model->load_state_dict(features, /*strict=*/false);
    model->features()->set_requires_grad(false);
    frozen_modules = static_cast<int64_t>(model->features()->size());
    if (cfg.mode == "finetune") {
      // Block 5 = everything after the fourth max-pool.
      int pools = 0;
      for (size_t i = 0; i < model->features()->size(); ++i)
        if (std::dynamic_pointer_cast<nn::MaxPool2d>((*model->features())[i]) && ++pools == 4) {
          frozen_modules = static_cast<int64_t>(i) + 1;
          break;
        }
      for (size_t i = static_cast<size_t>(frozen_modules); i < model->features()->size(); ++i)
        (*model->features())[i]->set_requires_grad(true);
    }
  }
  model->to(device);
  const nn::data::Preprocessing preset = nn::data::parse_preprocessing(spec.preprocessing);
  std::printf("model: VGG%d %s, width %.4g, input %lldx%lld, head %s, %lld trainable of %lld parameters\n", spec.depth,
              cfg.mode.c_str(), spec.width, static_cast<long long>(spec.input_size),
              static_cast<long long>(spec.input_size), spec.head.c_str(),
              static_cast<long long>(model->num_parameters(true)), static_cast<long long>(model->num_parameters()));

  // The frozen prefix (up to and including the layer frozen_end), applied once per image and view in
  // transfer modes; the trainable rest runs on its cached output.
  const std::string frozen_end = frozen_modules > 0 ? "features." + std::to_string(frozen_modules - 1) : "";
  auto frozen_forward = [&](const Tensor& x) { return nn::forward_to(*model, x, frozen_end); };
  auto trainable_forward = [&](const Tensor& h) { return nn::forward_from(*model, h, frozen_end); };

  const nn::data::AugmentOptions augment = cfg.augment;
  auto sample_input = [&](int64_t index, bool augmented, nn::Generator& g) {
    const nn::data::Image& image = cache.images[static_cast<size_t>(index)];
    return pneumonia::xray_to_input(augmented ? nn::data::augment(image, augment, g) : image, preset);
  };

  // Transfer modes: cache frozen outputs. Train: `views` versions per image (view 0 plain, the
  // others augmented); validation: plain. Stored as f16 for finetune (block-4 maps are large).
  std::vector<std::vector<Tensor>> train_cache;  // [view][k] for split.train[k]
  std::vector<Tensor> val_cache;
  if (transfer) {
    const int views = nn::data::is_identity(augment) ? 1 : std::max(1, cfg.views);
    const nn::DType store = cfg.mode == "finetune" ? nn::DType::f16 : nn::f32;
    auto t_feat = std::chrono::steady_clock::now();
    auto extract = [&](const std::vector<int64_t>& idx, int view, const std::string& label) {
      std::vector<Tensor> out;
      Progress progress(label, static_cast<int64_t>(idx.size()));
      nn::NoGradGuard no_grad;
      model->eval();
      for (size_t b = 0; b < idx.size(); b += 16) {
        std::vector<Tensor> xs;
        for (size_t k = b; k < std::min(idx.size(), b + 16); ++k) {
          nn::Generator g(cfg.seed * 1000003 + static_cast<uint64_t>(idx[k]) * 131 + static_cast<uint64_t>(view));
          xs.push_back(sample_input(idx[k], view > 0, g).unsqueeze(0));
        }
        Tensor h = frozen_forward(nn::concat(xs, 0).to(device)).to(nn::Device::cpu());
        for (int64_t k = 0; k < h.size(0); ++k) out.push_back(h.select(0, k).to(store).contiguous());
        progress.update(static_cast<int64_t>(out.size()), static_cast<int64_t>(out.size()), 0.0);
      }
      progress.finish();
      return out;
    };
    for (int v = 0; v < views; ++v) train_cache.push_back(extract(split.train, v, "features (train view " + std::to_string(v) + ")"));
    val_cache = extract(split.val, 0, "features (validation)");
    std::printf("frozen features: %d view(s) of %zu train + %zu validation images in %.1f s\n", views,
                split.train.size(), split.val.size(), seconds_since(t_feat));
  }

  // ---- optimisation ----
  std::vector<Tensor> params;
  for (const Tensor& p : model->parameters())
    if (p.requires_grad()) params.push_back(p);
  std::unique_ptr<nn::optim::Optimizer> opt;
  if (cfg.optimizer == "adam") {
    nn::optim::AdamOptions o;
    o.weight_decay = cfg.weight_decay;
    opt = std::make_unique<nn::optim::Adam>(params, cfg.lr, o);
  } else if (cfg.optimizer == "sgd") {
    nn::optim::SgdOptions o;
    o.momentum = 0.9;
    o.nesterov = true;
    o.weight_decay = cfg.weight_decay;
    opt = std::make_unique<nn::optim::SGD>(params, cfg.lr, o);
  } else {
    NN_CHECK(false, "--optimizer must be adam or sgd");
  }
  nn::optim::CosineAnnealingLR schedule(*opt, cfg.epochs, cfg.lr * 0.01);
  Tensor pos_weight;
  if (!cfg.balanced)
    pos_weight = nn::full({1}, static_cast<double>(n_neg) / static_cast<double>(n_pos)).to(device);

  // ---- resume ----
  const std::string checkpoint_path = (fs::path(cfg.out) / "checkpoint.safetensors").string();
  const std::string model_path = (fs::path(cfg.out) / "model.safetensors").string();
  const std::string metrics_path = (fs::path(cfg.out) / "metrics.jsonl").string();
  int start_epoch = 1, best_epoch = 0, stale = 0;
  int64_t step_number = 0;       // optimizer steps over the whole run, resumes included
  int checkpoint_epoch = 0;      // the epoch checkpoint.safetensors holds; 0: none written by this run
  double best_auc = -1;
  json history = json::array();
  nn::StateDict best_state;
  if (cfg.resume && fs::exists(checkpoint_path)) {
    nn::io::SafetensorsFile ck = nn::io::load_safetensors(checkpoint_path);
    json saved = json::parse(ck.metadata.at("config"));
    for (const char* key : {"mode", "image_size", "width", "head", "seed", "max_images", "val_fraction"})
      NN_CHECK(saved[key] == cfg.to_json()[key], "--resume: the checkpoint was made with ", key, " = ",
               saved[key].dump(), ", not ", cfg.to_json()[key].dump());
    nn::StateDict model_state;
    nn::optim::OptimizerState opt_state;
    for (const auto& [name, t] : ck.tensors) {
      if (name.rfind("model.", 0) == 0) model_state.emplace_back(name.substr(6), t);
      if (name.rfind("best.", 0) == 0) best_state.emplace_back(name.substr(5), t.clone());
      if (name.rfind("optimizer.", 0) == 0) opt_state.emplace(name.substr(10), t);
    }
    model->load_state_dict(model_state);
    opt->load_state_dict(opt_state);
    nn::optim::SchedulerState sched;
    const json saved_schedule = json::parse(ck.metadata.at("scheduler"));  // items() must not outlive it
    for (const auto& [k, v] : saved_schedule.items()) sched[k] = v.get<double>();
    schedule.load_state_dict(sched);
    history = json::parse(ck.metadata.at("history"));
    start_epoch = std::stoi(ck.metadata.at("epoch")) + 1;
    best_epoch = std::stoi(ck.metadata.at("best_epoch"));
    best_auc = std::stod(ck.metadata.at("best_auc"));
    stale = std::stoi(ck.metadata.at("stale"));
    // Checkpoints written before steps were counted resume the count from 0.
    if (ck.metadata.count("step")) step_number = std::stoll(ck.metadata.at("step"));
    checkpoint_epoch = start_epoch - 1;
    // metrics.jsonl again from the checkpoint's history: a run killed after appending an epoch's
    // row but before its checkpoint must not leave that row twice.
    std::string rows;
    for (const json& row : history) rows += row.dump() + "\n";
    save_text(metrics_path, rows);
    std::printf("resumed from %s after epoch %d (best AUC %.4f at epoch %d)\n", checkpoint_path.c_str(),
                start_epoch - 1, best_auc, best_epoch);
  } else if (fs::exists(metrics_path)) {
    fs::remove(metrics_path);
  }

  // Throws the error that stops a run whose numbers went non-finite: what happened, where it was
  // seen first, and what became of the checkpoint.
  int current_epoch = start_epoch;
  auto stop_on_non_finite = [&](const std::string& what, const std::string& where) {
    const std::string kept =
        checkpoint_epoch > 0
            ? checkpoint_path + " was not overwritten and still holds epoch " + std::to_string(checkpoint_epoch)
            : "no checkpoint was written by this run (any earlier " + checkpoint_path + " is unchanged)";
    NN_CHECK(false, "epoch ", current_epoch, ", step ", step_number, ": ", what, "; first non-finite value: ", where,
             ". Training stopped (learning rate ", number_text(opt->lr()), "); ", kept);
  };

  // Validation: logits of every validation image, then metrics at 0.5.
  auto evaluate = [&]() {
    nn::NoGradGuard no_grad;
    model->eval();
    Evaluation ev;
    std::vector<int64_t> y;
    double loss_sum = 0;
    for (size_t b = 0; b < split.val.size(); b += static_cast<size_t>(cfg.batch_size)) {
      std::vector<Tensor> xs;
      std::vector<int64_t> yb;
      for (size_t k = b; k < std::min(split.val.size(), b + static_cast<size_t>(cfg.batch_size)); ++k) {
        nn::Generator unused(0);
        xs.push_back(transfer ? val_cache[k].to(nn::f32).unsqueeze(0) : sample_input(split.val[k], false, unused).unsqueeze(0));
        yb.push_back(labels[static_cast<size_t>(split.val[k])]);
      }
      Tensor x = nn::concat(xs, 0).to(device);
      Tensor logits = (transfer ? trainable_forward(x) : model->forward(x)).reshape({-1});
      if (!nn::all_finite(logits)) {
        auto site = nn::first_non_finite_output(*model, x, transfer ? frozen_end : "");
        stop_on_non_finite("validation after step " + std::to_string(step_number) +
                           " produced non-finite outputs (every weight is finite)",
                           site ? "the output of " + site->str() : "the outputs");
      }
      Tensor target = nn::from_vector(yb, {static_cast<int64_t>(yb.size())}).to(device);
      loss_sum += weighted_bce(logits, target, pos_weight).item<double>() * static_cast<double>(yb.size());
      for (float p : nn::sigmoid(logits).to(nn::Device::cpu()).to_vector<float>()) ev.probs.push_back(p);
      y.insert(y.end(), yb.begin(), yb.end());
    }
    ev.loss = loss_sum / static_cast<double>(y.size());
    ev.metrics = nn::metrics::binary_metrics(ev.probs, y, 0.5);
    return ev;
  };
  std::vector<int64_t> val_labels;
  for (int64_t i : split.val) val_labels.push_back(labels[static_cast<size_t>(i)]);

  // Scratch mode streams augmented images through the loader.
  nn::data::LoaderOptions lo;
  lo.batch_size = cfg.batch_size;
  lo.shuffle = true;
  lo.balanced = cfg.balanced;
  lo.workers = cfg.workers;
  lo.seed = cfg.seed;
  std::unordered_map<std::string, size_t> index_of_path;  // the loader's samples -> the cache
  for (size_t i = 0; i < samples.size(); ++i) index_of_path.emplace(samples[i].path, i);
  // Declared after everything its workers read (index_of_path, cache, augment, preset): locals are
  // destroyed in reverse order, so when an error ends the run in the middle of an epoch the loader
  // joins its workers before what they are still reading is freed.
  std::unique_ptr<nn::data::DataLoader> loader;
  if (!transfer) {
    loader = std::make_unique<nn::data::DataLoader>(
        samples, split.train,
        [&](const nn::data::Image& image, nn::Generator& g) {
          return pneumonia::xray_to_input(nn::data::is_identity(augment) ? image : nn::data::augment(image, augment, g), preset);
        },
        lo, [&](const nn::data::Sample& s) { return cache.images[index_of_path.at(s.path)]; });
  }

  // ---- epochs ----
  for (int epoch = start_epoch; epoch <= cfg.epochs; ++epoch) {
    current_epoch = epoch;
    const auto t_epoch = std::chrono::steady_clock::now();
    model->train();
    if (transfer) model->features()->eval();  // no dropout in features anyway; keeps it explicit
    double loss_sum = 0;
    int64_t seen = 0, correct = 0, batches = 0;
    const int64_t total = static_cast<int64_t>(split.train.size());
    Progress progress("epoch " + std::to_string(epoch) + "/" + std::to_string(cfg.epochs), total);
    // A step whose loss or gradients are not finite is refused before the optimizer sees it; the
    // batch is then rerun layer by layer to name where the NaN/inf appeared first.
    auto refuse_step = [&](const Tensor& x, bool loss_finite, double loss_value) {
      progress.finish();
      const std::string what = loss_finite ? "the loss (" + number_text(loss_value) + ") is finite but gradients are not"
                                           : "the loss is not finite (" + number_text(loss_value) + ")";
      std::string where;
      auto site = nn::first_non_finite_output(*model, x, transfer ? frozen_end : "");
      if (site && site->layer.empty()) {
        where = transfer ? "the input batch itself (cached frozen features)" : "the input batch itself";
      } else if (site) {
        where = "the output of " + site->str() + " (the batch rerun layer by layer)";
      } else {
        const std::vector<std::string> bad = nn::parameters_with_non_finite_grad(*model);
        where = bad.empty() ? "the loss itself (every layer's output is finite)"
                            : "the gradient of " + bad.front() + " (every layer's output is finite; " +
                                  std::to_string(bad.size()) + " parameter(s) have non-finite gradients)";
      }
      stop_on_non_finite(what + "; the step was refused", where);
    };
    auto step = [&](const Tensor& x, const Tensor& y) {
      ++step_number;
      opt->zero_grad();
      Tensor logits = (transfer ? trainable_forward(x) : model->forward(x)).reshape({-1});
      Tensor loss = weighted_bce(logits, y, pos_weight);
      const double loss_value = loss.item<double>();
      if (!std::isfinite(loss_value)) refuse_step(x, false, loss_value);
      loss.backward();
      std::vector<Tensor> grads;
      for (const Tensor& p : params) grads.push_back(p.grad());
      if (!nn::all_finite(grads)) refuse_step(x, true, loss_value);
      opt->step();
      const int64_t n = y.size(0);
      loss_sum += loss_value * static_cast<double>(n);
      std::vector<float> l = logits.detach().to(nn::Device::cpu()).to_vector<float>();
      std::vector<int64_t> t = y.to(nn::Device::cpu()).to_vector<int64_t>();
      for (size_t i = 0; i < l.size(); ++i) correct += (l[i] >= 0) == (t[i] == 1);
      seen += n;
      ++batches;
      progress.update(seen, seen, loss_sum / static_cast<double>(seen));
    };
    if (transfer) {
      std::vector<int64_t> positions(split.train.size());
      for (size_t k = 0; k < positions.size(); ++k) positions[k] = static_cast<int64_t>(k);
      std::vector<int64_t> pos_labels;
      for (int64_t i : split.train) pos_labels.push_back(labels[static_cast<size_t>(i)]);
      std::vector<int64_t> order = nn::data::epoch_order(positions, pos_labels, cfg.seed, epoch, true, cfg.balanced);
      const auto& view = train_cache[static_cast<size_t>(epoch - 1) % train_cache.size()];
      for (size_t b = 0; b < order.size(); b += static_cast<size_t>(cfg.batch_size)) {
        std::vector<Tensor> xs;
        std::vector<int64_t> yb;
        for (size_t k = b; k < std::min(order.size(), b + static_cast<size_t>(cfg.batch_size)); ++k) {
          xs.push_back(view[static_cast<size_t>(order[k])].to(nn::f32).unsqueeze(0));
          yb.push_back(pos_labels[static_cast<size_t>(order[k])]);
        }
        step(nn::concat(xs, 0).to(device), nn::from_vector(yb, {static_cast<int64_t>(yb.size())}).to(device));
      }
    } else {
      loader->start_epoch(epoch);
      while (std::optional<nn::data::Batch> batch = loader->next()) {
        for (const std::string& f : batch->failed) std::fprintf(stderr, "unreadable, skipped: %s\n", f.c_str());
        step(batch->images.to(device), batch->labels.to(device));
      }
    }
    progress.finish();
    // Finite gradients can still step a weight past the float range (a huge learning rate); such a
    // model is never validated or saved.
    if (!nn::all_finite(params)) {
      const std::vector<std::string> bad = nn::non_finite_parameters(*model);
      stop_on_non_finite("the optimizer step made " + std::to_string(bad.size()) + " weight tensor(s) non-finite",
                         bad.empty() ? "the weights" : "the weight " + bad.front());
    }
    const double train_seconds = seconds_since(t_epoch);
    Evaluation ev = evaluate();
    const double lr_used = opt->lr();
    schedule.step();

    const nn::metrics::BinaryMetrics& m = ev.metrics;
    json row = {{"epoch", epoch},
                {"train_loss", loss_sum / std::max<int64_t>(seen, 1)},
                {"train_accuracy", static_cast<double>(correct) / std::max<int64_t>(seen, 1)},
                {"val_loss", ev.loss},
                {"val_accuracy", m.accuracy},
                {"val_sensitivity", m.sensitivity},
                {"val_specificity", m.specificity},
                {"val_auc", m.auc},
                {"lr", lr_used},
                {"train_seconds", train_seconds},
                {"epoch_seconds", seconds_since(t_epoch)},
                {"images_per_second", static_cast<double>(seen) / train_seconds}};
    history.push_back(row);
    {
      std::ofstream out(metrics_path, std::ios::app);
      out << row.dump() << "\n";
      out.flush();
      NN_CHECK(out.good(), "cannot append to ", metrics_path, ": ", std::strerror(errno));
    }
    std::printf("epoch %2d/%d  train loss %.4f acc %.4f | val loss %.4f acc %.4f sens %.4f spec %.4f AUC %.4f | %.0f s, %.1f img/s\n",
                epoch, cfg.epochs, row["train_loss"].get<double>(), row["train_accuracy"].get<double>(), ev.loss,
                m.accuracy, m.sensitivity, m.specificity, m.auc, train_seconds, row["images_per_second"].get<double>());
    std::fflush(stdout);

    const bool improved = m.auc > best_auc;
    if (improved) {
      best_auc = m.auc;
      best_epoch = epoch;
      stale = 0;
      best_state.clear();
      for (const auto& [name, t] : model->state_dict()) best_state.emplace_back(name, t.to(nn::Device::cpu()).clone());
    } else {
      ++stale;
    }
    // Checkpoint (atomic): model, best model, optimizer, schedule, history.
    std::vector<std::pair<std::string, Tensor>> ck;
    for (const auto& [name, t] : model->state_dict()) ck.emplace_back("model." + name, t);
    for (const auto& [name, t] : best_state) ck.emplace_back("best." + name, t);
    for (const auto& [name, t] : opt->state_dict()) ck.emplace_back("optimizer." + name, t);
    json sched = schedule.state_dict();
    nn::io::save_safetensors(checkpoint_path, ck,
                             {{"config", cfg.to_json().dump()},
                              {"scheduler", sched.dump()},
                              {"history", history.dump()},
                              {"epoch", std::to_string(epoch)},
                              {"best_epoch", std::to_string(best_epoch)},
                              {"best_auc", nlohmann::json(best_auc).dump()},
                              {"stale", std::to_string(stale)},
                              {"step", std::to_string(step_number)}});
    checkpoint_epoch = epoch;
    if (stale >= cfg.patience) {
      std::printf("early stop: validation AUC has not improved for %d epochs\n", cfg.patience);
      break;
    }
  }

  // ---- the best model, its threshold, the charts ----
  NN_CHECK(!best_state.empty(), "no epoch was trained (the checkpoint is already at --epochs?)");
  model->load_state_dict(best_state);
  Evaluation best = evaluate();
  const nn::metrics::ThresholdRule rule = nn::metrics::parse_threshold_rule(cfg.threshold_rule);
  spec.threshold = nn::metrics::choose_threshold(best.probs, val_labels, rule);
  nn::metrics::BinaryMetrics at_threshold = nn::metrics::binary_metrics(best.probs, val_labels, spec.threshold);
  nn::metrics::Interval ci = nn::metrics::bootstrap_auc_interval(best.probs, val_labels, 1000, cfg.seed);
  model->to(nn::Device::cpu());
  pneumonia::save_model(model_path, *model, spec,
                        {{"trained_on", cfg.data}, {"best_epoch", std::to_string(best_epoch)},
                         {"val_auc", nlohmann::json(best.metrics.auc).dump()},
                         {"threshold_rule", nn::metrics::to_string(rule)}});

  pneumonia::EpochCurves curves;
  for (const json& r : history) {
    curves.train_loss.push_back(r["train_loss"]);
    curves.val_loss.push_back(r["val_loss"]);
    curves.train_accuracy.push_back(r["train_accuracy"]);
    curves.val_accuracy.push_back(r["val_accuracy"]);
  }
  // The charts come last and are not worth the run: without a working PLplot (e.g. its pngcairo
  // driver missing on a GPU server) the model, metrics and summary are still written, with a warning.
  std::string charts_error;
  try {
    pneumonia::plot_training_curves((fs::path(cfg.out) / "curves.png").string(), curves,
                                    "VGG" + std::to_string(spec.depth) + " " + cfg.mode);
    nn::metrics::RocCurve roc = nn::metrics::roc_curve(best.probs, val_labels);
    pneumonia::plot_roc((fs::path(cfg.out) / "roc.png").string(), roc.fpr, roc.tpr, best.metrics.auc,
                        1.0 - at_threshold.specificity, at_threshold.sensitivity);
  } catch (const nn::Error& e) {
    charts_error = e.what();
    std::fprintf(stderr, "pneumonia-train: warning: curves.png/roc.png not written: %s\n", e.what());
  }

  double train_seconds = 0;
  for (const json& r : history) train_seconds += r["epoch_seconds"].get<double>();
  json summary = {{"config", cfg.to_json()},
                  {"model", json::parse(json(spec.to_metadata()).dump())},
                  {"best_epoch", best_epoch},
                  {"epochs_run", history.size()},
                  {"threshold_rule", nn::metrics::to_string(rule)},
                  {"threshold", spec.threshold},
                  {"validation_at_0.5", json::parse(nn::metrics::to_json(best.metrics))},
                  {"validation_at_threshold", json::parse(nn::metrics::to_json(at_threshold))},
                  {"validation_auc_95ci", {ci.low, ci.high}},
                  {"seconds_per_epoch", train_seconds / std::max<size_t>(history.size(), 1)},
                  {"total_seconds", seconds_since(t_start)},
                  {"peak_memory_mib", peak_rss_mib()},
                  {"threads", nn::get_num_threads()}};
  if (device.is_cuda())
    summary["cuda_peak_allocated_mib"] = nn::cuda::memory_stats(device.index).peak_allocated_bytes >> 20;
  if (!charts_error.empty()) summary["charts_error"] = charts_error;
  save_json((fs::path(cfg.out) / "summary.json").string(), summary);
  std::printf("best epoch %d: validation AUC %.4f (95%% CI %.4f-%.4f); threshold %.3f (%s): accuracy %.4f, "
              "sensitivity %.4f, specificity %.4f\n",
              best_epoch, best.metrics.auc, ci.low, ci.high, spec.threshold, nn::metrics::to_string(rule).c_str(),
              at_threshold.accuracy,
              at_threshold.sensitivity, at_threshold.specificity);
  std::printf("wrote %s, %smetrics.jsonl, summary.json (total %s, peak memory %ld MiB)\n", model_path.c_str(),
              charts_error.empty() ? "curves.png, roc.png, " : "", format_duration(seconds_since(t_start)).c_str(),
              peak_rss_mib());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pneumonia-train: train a VGG16 pneumonia classifier on NORMAL/ and PNEUMONIA/ chest X-rays"};
  Config cfg;
  app.add_option("--data", cfg.data, "folder with NORMAL/ and PNEUMONIA/ subfolders of JPEG/PNG images")->required();
  app.add_option("--out", cfg.out, "run folder for the model, checkpoint, metrics and charts")->required();
  app.add_option("--mode", cfg.mode, "scratch (train everything), head (frozen ImageNet VGG16 + new head), finetune (head + block 5)")
      ->check(CLI::IsMember({"scratch", "head", "finetune"}));
  app.add_option("--weights", cfg.weights, "VGG16 ImageNet weights (.safetensors from nn-convert) for head/finetune");
  app.add_option("--head", cfg.head, "mlp (Dense(256)+ReLU+Dropout -> Dense(1); default for head/finetune), linear, "
                 "or vgg (torchvision's classifier with 256 hidden units; default for scratch)")
      ->check(CLI::IsMember({"mlp", "linear", "vgg"}));
  app.add_option("--epochs", cfg.epochs, "epochs (default 10 scratch, 8 head/finetune)");
  app.add_option("--batch-size", cfg.batch_size, "images per step")->check(CLI::Range(1, 4096));
  app.add_option("--image-size", cfg.image_size, "square input side (default 128 scratch, 224 head/finetune)")
      ->check(CLI::Range(32, 1024));
  app.add_option("--depth", cfg.depth, "VGG depth for scratch mode: 11, 13, 16 or 19")->check(CLI::IsMember({11, 13, 16, 19}));
  app.add_option("--width-mult", cfg.width, "VGG width multiplier for scratch mode")->check(CLI::Range(0.01, 4.0));
  app.add_option("--lr", cfg.lr, "learning rate (default 1e-3; 1e-4 for finetune), cosine-annealed");
  app.add_option("--optimizer", cfg.optimizer, "adam or sgd (Nesterov momentum 0.9)")->check(CLI::IsMember({"adam", "sgd"}));
  app.add_option("--weight-decay", cfg.weight_decay, "L2 weight decay");
  app.add_option("--device", cfg.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--seed", cfg.seed, "seed of the split, initialisation, augmentation and order");
  app.add_option("--val-fraction", cfg.val_fraction, "validation fraction of each class")->check(CLI::Range(0.01, 0.9));
  app.add_option("--max-images", cfg.max_images, "use a stratified subset of at most N images");
  app.add_option("--patience", cfg.patience, "early stopping: epochs without a better validation AUC")->check(CLI::Range(1, 1000));
  app.add_option("--views", cfg.views, "head/finetune: cached augmented views per training image")->check(CLI::Range(1, 16));
  app.add_option("--workers", cfg.workers, "image decoding threads")->check(CLI::Range(1, 64));
  app.add_option("--threads", cfg.threads, "compute threads (default NN_NUM_THREADS or all cores)");
  app.add_flag("--balanced", cfg.balanced, "balanced sampling instead of a positive-class weight");
  app.add_flag("--no-augment", cfg.no_augment, "no augmentation");
  app.add_flag("--image-split", cfg.image_split, "split validation by image instead of by patient");
  app.add_flag("--resume", cfg.resume, "continue from RUN_DIR/checkpoint.safetensors");
  app.add_option("--threshold-rule", cfg.threshold_rule,
                 "how the decision threshold is chosen on validation: sensitivity:X (the highest threshold "
                 "keeping validation sensitivity >= X; default sensitivity:0.95, which keeps the most "
                 "specificity when test NORMALs score higher than validation ones), balanced (the middle, in "
                 "logit space, of the cut maximising balanced accuracy: a separable validation set gets the "
                 "middle of the gap), or youden (Youden's J, at a validation score: the gap's edge)")
      ->check([](const std::string& text) {
        try {
          nn::metrics::parse_threshold_rule(text);
          return std::string();
        } catch (const std::exception& e) {
          return std::string(e.what());
        }
      });
  app.add_option("--zoom", cfg.augment.zoom, "augmentation: zoom range (+-)");
  app.add_option("--shear", cfg.augment.shear, "augmentation: shear range in radians (+-)");
  app.add_option("--rotation", cfg.augment.rotation_degrees, "augmentation: rotation range in degrees (+-)");
  app.add_flag("--hflip", cfg.augment.horizontal_flip, "augmentation: random horizontal flips (off: the heart is on the left)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    return run(cfg);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pneumonia-train: %s\n", e.what());
    return 1;
  }
}
