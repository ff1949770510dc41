// The pneumonia trainer (trainer.h).
#include "trainer.h"

#include <fcntl.h>
#include <nn/finite.h>
#include <nn/io/safetensors.h>
#include <nn/named_layers.h>
#include <nn/nn.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <unordered_set>

#include "charts.h"
#include "chest_xray_folder.h"
#include "cross_validation.h"

namespace pneumonia {

namespace fs = std::filesystem;
using json = nlohmann::json;
using nn::Tensor;

namespace run_files {

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
const char* const kRunFiles[] = {"checkpoint.safetensors", "model.safetensors", "summary.json", "metrics.jsonl",
                                 "protocol.json"};

// Creates the run folder, makes sure a file can be written there (a read-only folder, a full disk
// or an --out under a regular file fails now, not after the first epoch) and removes the
// temporary files of an interrupted earlier run.
void prepare(const std::string& out) {
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

long peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024;
}

}  // namespace run_files

namespace {

using run_files::save_json;
using run_files::save_text;
using run_files::peak_rss_mib;

using run_files::format_duration;
using run_files::seconds_since;

// A one-line progress bar on stderr: redrawn in place on a terminal, every 10% otherwise; silent
// when disabled.
class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled)
      : label_(std::move(label)), total_(total), tty_(isatty(2)), enabled_(enabled) {}
  ~Progress() { finish(); }
  void update(int64_t done, int64_t images, double loss) {
    if (!enabled_) return;
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
    drawn_ = true;
  }
  void finish() {
    if (tty_ && drawn_) std::fprintf(stderr, "\r%*s\r", 100, "");
    drawn_ = false;
  }

 private:
  std::string label_;
  int64_t total_;
  bool tty_, enabled_, drawn_ = false;
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

// The loss the model trains on: mean BCE with logits, positives weighted by pos_weight, the targets
// smoothed towards 1/2 by `smoothing`.
Tensor weighted_bce(const Tensor& logits, const Tensor& labels, const Tensor& pos_weight, double smoothing = 0) {
  nn::BceWithLogitsOptions o;
  if (pos_weight.defined()) o.pos_weight = pos_weight;
  Tensor target = labels.to(nn::f32);
  if (smoothing > 0) target = nn::add(nn::mul(target, 1.0 - smoothing), 0.5 * smoothing);
  return nn::binary_cross_entropy_with_logits(logits.reshape({-1}), target, o);
}

// "nan", "inf", "-inf" or the number.
std::string number_text(double v) {
  if (std::isnan(v)) return "nan";  // not "-nan": the sign of a NaN means nothing
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string run_file(const TrainConfig& cfg, const char* name) { return (fs::path(cfg.out) / name).string(); }

}  // namespace

json TrainConfig::to_json() const {
  return {{"data", data},       {"mode", mode},           {"weights", weights},
          {"head", head},       {"optimizer", optimizer}, {"epochs", epochs},
          {"batch_size", batch_size}, {"image_size", image_size}, {"max_images", max_images},
          {"width", width},     {"depth", depth},         {"batch_norm", batch_norm}, {"lr", lr},
          {"val_fraction", val_fraction}, {"folds", folds},
          {"seed", seed},       {"patience", patience},   {"views", views},
          {"balanced", balanced}, {"augment", !no_augment}, {"patient_split", !image_split},
          {"weight_decay", weight_decay}, {"warmup_epochs", warmup_epochs},
          {"label_smoothing", label_smoothing}, {"ema_decay", ema_decay}, {"select", select},
          {"histogram_mix", histogram_mix},
          {"augment_options", {{"zoom", augment.zoom}, {"shear", augment.shear},
                               {"rotation_degrees", augment.rotation_degrees}, {"translate", augment.translate},
                               {"brightness", augment.brightness}, {"contrast", augment.contrast}, {"aspect", augment.aspect}}},
          {"degrade", {{"gamma_max", degrade.gamma_max}, {"blur_probability", degrade.blur_probability},
                       {"blur_sigma_max", degrade.blur_sigma_max}, {"noise_probability", degrade.noise_probability},
                       {"noise_sigma_max", degrade.noise_sigma_max},
                       {"downscale_probability", degrade.downscale_probability},
                       {"downscale_min", degrade.downscale_min}, {"jpeg_probability", degrade.jpeg_probability},
                       {"jpeg_quality_min", degrade.jpeg_quality_min}}},
          {"threshold_rule", threshold_rule}, {"threshold_on", threshold_on}};
}

// ---- data ----

std::shared_ptr<const XrayData> XrayData::load(const TrainConfig& cfg) {
  auto data = std::make_shared<XrayData>();
  data->root = cfg.data;
  data->image_size = cfg.image_size;
  nn::data::ImageFolder folder = scan_xray_folder(cfg.data);
  for (const std::string& s : folder.skipped) std::fprintf(stderr, "skipped: %s\n", s.c_str());
  data->samples = limit_samples(folder.samples, cfg.max_images, cfg.seed);
  const auto t_cache = std::chrono::steady_clock::now();
  const int64_t size = cfg.image_size;
  data->cache = nn::data::cache_images(data->samples, [size](const std::string& path) { return prepare_xray(path, size); },
                                       cfg.workers);
  for (const std::string& f : data->cache.failed) std::fprintf(stderr, "unreadable, skipped: %s\n", f.c_str());
  data->labels.assign(data->samples.size(), 0);
  data->cdfs.resize(data->samples.size());
  for (size_t i = 0; i < data->samples.size(); ++i) {
    data->labels[i] = data->samples[i].label;
    data->index_of_path.emplace(data->samples[i].path, i);
    if (data->cache.images[i].height > 0) data->cdfs[i] = nn::data::intensity_cdf(data->cache.images[i], 64);
  }
  int64_t pos = 0;
  for (int64_t l : data->labels) pos += l;
  std::printf("data: %s: %zu images (%s): %lld NORMAL, %lld PNEUMONIA; decoded in %.1f s (%zu unreadable)\n",
              cfg.data.c_str(), data->samples.size(), cfg.max_images > 0 ? "subset" : "all",
              static_cast<long long>(static_cast<int64_t>(data->samples.size()) - pos), static_cast<long long>(pos),
              seconds_since(t_cache), data->cache.failed.size());
  return data;
}

std::vector<int64_t> XrayData::usable(const std::vector<int64_t>& indices) const {
  std::vector<int64_t> out;
  for (int64_t i : indices)
    if (cache.images[static_cast<size_t>(i)].height > 0) out.push_back(i);
  return out;
}

// ---- setup ----

TrainConfig with_defaults(const TrainConfig& config) {
  TrainConfig cfg = config;
  NN_CHECK(cfg.mode == "scratch" || cfg.mode == "head" || cfg.mode == "finetune",
           "--mode must be scratch, head or finetune, got '", cfg.mode, "'");
  NN_CHECK(cfg.device == "cpu" || cfg.device == "cuda", "--device must be cpu or cuda");
  NN_CHECK(cfg.optimizer == "adam" || cfg.optimizer == "adamw" || cfg.optimizer == "sgd",
           "--optimizer must be adam, adamw or sgd");
  NN_CHECK(cfg.select == "best" || cfg.select == "last", "--select must be best or last");
  NN_CHECK(cfg.threshold_on == "clean" || cfg.threshold_on == "shifts", "--threshold-on must be clean or shifts");
  NN_CHECK(cfg.folds >= 1 && cfg.folds <= 20, "--folds must be 1..20");
  NN_CHECK(cfg.label_smoothing >= 0 && cfg.label_smoothing < 1, "--label-smoothing must be in [0, 1)");
  NN_CHECK(cfg.ema_decay >= 0 && cfg.ema_decay < 1, "--ema must be in [0, 1)");
  NN_CHECK(cfg.warmup_epochs >= 0, "--warmup-epochs must be >= 0");
  nn::metrics::parse_threshold_rule(cfg.threshold_rule);  // an error names the bad rule
  const bool transfer = cfg.mode != "scratch";
  if (cfg.epochs <= 0) cfg.epochs = transfer ? 8 : 10;
  if (cfg.image_size <= 0) cfg.image_size = transfer ? 224 : 128;
  if (cfg.lr <= 0) cfg.lr = cfg.mode == "finetune" ? 1e-4 : 1e-3;
  NN_CHECK(cfg.histogram_mix >= 0 && cfg.histogram_mix <= 1, "--histogram-mix must be in [0, 1]");
  if (cfg.no_augment) {
    cfg.augment = nn::data::AugmentOptions{0, 0, 0, 0, false, 0, 0};
    cfg.degrade = nn::data::DegradeOptions{};
    cfg.histogram_mix = 0;
  }
  return cfg;
}

Trainer::Trainer(const TrainConfig& config) : cfg_(config), start_(std::chrono::steady_clock::now()) {
  if (cfg_.threads > 0) nn::set_num_threads(cfg_.threads);
  cfg_ = with_defaults(cfg_);
  device_ = cfg_.device == "cuda" ? nn::Device::cuda() : nn::Device::cpu();
  transfer_ = cfg_.mode != "scratch";
  run_files::prepare(cfg_.out);
}

Trainer::Trainer(const TrainConfig& config, std::shared_ptr<const XrayData> data, const nn::data::Split& split)
    : Trainer(config) {
  NN_CHECK(data != nullptr && data->image_size == cfg_.image_size, "Trainer: the data were decoded at ",
           data ? data->image_size : 0, " pixels, the model takes ", cfg_.image_size);
  data_ = std::move(data);
  split_ = split;
  use_split();
}

Trainer::~Trainer() = default;

const std::vector<nn::data::Sample>& Trainer::samples() const {
  check_data_loaded("samples");
  return data_->samples;
}

void Trainer::check_data_loaded(const char* step) const {
  NN_CHECK(data_ != nullptr, "Trainer::", step, ": call load_data() first");
}

void Trainer::check_model_built(const char* step) const {
  NN_CHECK(model_ != nullptr, "Trainer::", step, ": call build_model() first");
}

void Trainer::load_data() {
  if (data_ != nullptr) return;  // given with the split
  data_ = XrayData::load(cfg_);
  split_ = nn::data::stratified_split(data_->samples, cfg_.val_fraction, cfg_.seed, !cfg_.image_split);
  use_split();
}

void Trainer::use_split() {
  split_.train = data_->usable(split_.train);
  split_.val = data_->usable(split_.val);
  NN_CHECK(!split_.train.empty() && !split_.val.empty(), "no readable images left for training or validation");
  n_pos_ = 0;
  for (int64_t i : split_.train) n_pos_ += data_->labels[static_cast<size_t>(i)];
  n_neg_ = static_cast<int64_t>(split_.train.size()) - n_pos_;
  NN_CHECK(n_pos_ > 0 && n_neg_ > 0, "the training split needs both classes");
  val_labels_.clear();
  for (int64_t i : split_.val) val_labels_.push_back(data_->labels[static_cast<size_t>(i)]);
  std::printf("split: train %zu (%lld NORMAL, %lld PNEUMONIA), validation %zu (%s, seed %llu)\n", split_.train.size(),
              static_cast<long long>(n_neg_), static_cast<long long>(n_pos_), split_.val.size(),
              cfg_.image_split ? "by image" : "by patient", static_cast<unsigned long long>(cfg_.seed));
}

Tensor Trainer::sample_input(int64_t index, bool augmented, nn::Generator& gen) const {
  const nn::data::Image& image = data_->cache.images[static_cast<size_t>(index)];
  return xray_to_input(augmented ? training_view(image, gen) : image, preset_);
}

nn::data::Image Trainer::training_view(const nn::data::Image& image, nn::Generator& gen) const {
  nn::data::Image out = image;
  if (cfg_.histogram_mix > 0) {
    uint32_t r[4];
    nn::philox4x32(gen.seed(), gen.reserve(1), 0, r);
    if (r[0] * (1.0 / 4294967296.0) < cfg_.histogram_mix) {
      const int64_t other = split_.train[static_cast<size_t>(r[1] % split_.train.size())];
      out = nn::data::match_histogram(out, data_->cdfs[static_cast<size_t>(other)]);
    }
  }
  return nn::data::degrade(nn::data::augment(out, cfg_.augment, gen), cfg_.degrade, gen);
}

nn::models::VGG& Trainer::kept_model() { return average_ ? *average_ : *model_; }

void Trainer::build_model() {
  check_data_loaded("build_model");
  spec_ = ModelSpec();
  spec_.mode = cfg_.mode;
  spec_.input_size = cfg_.image_size;
  nn::Generator gen(cfg_.seed * 7919 + 17);
  if (!transfer_) {
    spec_.width = cfg_.width;
    spec_.depth = cfg_.depth;
    spec_.batch_norm = cfg_.batch_norm;
    spec_.head = cfg_.head.empty() ? "vgg" : cfg_.head;
    model_ = pneumonia::build_model(spec_, gen);
  } else {
    NN_CHECK(!cfg_.weights.empty(), "--mode ", cfg_.mode,
             " needs --weights (VGG16 ImageNet weights converted by nn-convert; see weights/README.md)");
    nn::models::LoadedVGG base = nn::models::load_vgg(cfg_.weights);
    spec_.depth = base.model->options().depth;
    spec_.batch_norm = base.model->options().batch_norm;
    spec_.width = base.model->options().width_multiplier;
    spec_.head = cfg_.head.empty() ? "mlp" : cfg_.head;
    auto pre = base.metadata.find("preprocessing");
    NN_CHECK(pre != base.metadata.end(), cfg_.weights, ": no preprocessing in the metadata; convert it with nn-convert");
    spec_.preprocessing = pre->second;
    model_ = pneumonia::build_model(spec_, gen);
    nn::StateDict features;
    for (const auto& [name, t] : base.model->state_dict())
      if (name.rfind("features.", 0) == 0) features.emplace_back(name, t);
    model_->load_state_dict(features, /*strict=*/false);
    // Frozen: all of the features (head), or up to the fourth max-pool (finetune: block 5 trains).
    nn::Sequential& feats = *model_->features();
    feats.set_requires_grad(false);
    size_t frozen = feats.size();
    if (cfg_.mode == "finetune") {
      int pools = 0;
      for (size_t i = 0; i < feats.size(); ++i)
        if (std::dynamic_pointer_cast<nn::MaxPool2d>(feats[i]) && ++pools == 4) {
          frozen = i + 1;
          break;
        }
      for (size_t i = frozen; i < feats.size(); ++i) feats[i]->set_requires_grad(true);
    }
    frozen_end_ = "features." + std::to_string(frozen - 1);
  }
  model_->to(device_);
  average_.reset();
  if (cfg_.ema_decay > 0) {
    nn::Generator unused(0);
    average_ = pneumonia::build_model(spec_, unused);
    average_->load_state_dict(model_->state_dict());
    average_->to(device_);
    average_->eval();
    average_->set_requires_grad(false);
    // Copied rather than averaged: integer state, and frozen parameters (head and finetune modes:
    // averaging a constant would round it).
    std::unordered_set<std::string> frozen;
    for (const auto& [name, p] : model_->named_parameters())
      if (!p.requires_grad()) frozen.insert(name);
    average_copies_.clear();
    for (const auto& [name, t] : average_->state_dict())
      average_copies_.push_back(!nn::is_floating(t.dtype()) || frozen.count(name) != 0);
  }
  preset_ = nn::data::parse_preprocessing(spec_.preprocessing);
  std::printf("model: VGG%d%s %s, width %.4g, input %lldx%lld, head %s, %lld trainable of %lld parameters\n",
              spec_.depth, spec_.batch_norm ? "-BN" : "", cfg_.mode.c_str(), spec_.width,
              static_cast<long long>(spec_.input_size), static_cast<long long>(spec_.input_size), spec_.head.c_str(),
              static_cast<long long>(model_->num_parameters(true)), static_cast<long long>(model_->num_parameters()));

  // Transfer modes: the frozen prefix's outputs, computed once. Train: `views` versions per image
  // (view 0 plain, the others augmented); validation: plain. Stored as f16 for finetune (block-4
  // maps are large).
  train_cache_.clear();
  val_cache_.clear();
  if (transfer_) {
    const bool plain = nn::data::is_identity(cfg_.augment) && nn::data::is_identity(cfg_.degrade) &&
                       cfg_.histogram_mix == 0;
    const int views = plain ? 1 : std::max(1, cfg_.views);
    const nn::DType store = cfg_.mode == "finetune" ? nn::DType::f16 : nn::f32;
    auto t_feat = std::chrono::steady_clock::now();
    auto extract = [&](const std::vector<int64_t>& idx, int view, const std::string& label) {
      std::vector<Tensor> out;
      Progress progress(label, static_cast<int64_t>(idx.size()), cfg_.progress);
      nn::NoGradGuard no_grad;
      model_->eval();
      for (size_t b = 0; b < idx.size(); b += 16) {
        std::vector<Tensor> xs;
        for (size_t k = b; k < std::min(idx.size(), b + 16); ++k) {
          nn::Generator g(cfg_.seed * 1000003 + static_cast<uint64_t>(idx[k]) * 131 + static_cast<uint64_t>(view));
          xs.push_back(sample_input(idx[k], view > 0, g).unsqueeze(0));
        }
        Tensor h = nn::forward_to(*model_, nn::concat(xs, 0).to(device_), frozen_end_).to(nn::Device::cpu());
        for (int64_t k = 0; k < h.size(0); ++k) out.push_back(h.select(0, k).to(store).contiguous());
        progress.update(static_cast<int64_t>(out.size()), static_cast<int64_t>(out.size()), 0.0);
      }
      return out;
    };
    for (int v = 0; v < views; ++v)
      train_cache_.push_back(extract(split_.train, v, "features (train view " + std::to_string(v) + ")"));
    val_cache_ = extract(split_.val, 0, "features (validation)");
    std::printf("frozen features: %d view(s) of %zu train + %zu validation images in %.1f s\n", views,
                split_.train.size(), split_.val.size(), seconds_since(t_feat));
  }

  // Optimisation: the learning rate per step, a linear warm-up then a cosine to lr / 100.
  params_.clear();
  for (const Tensor& p : model_->parameters())
    if (p.requires_grad()) params_.push_back(p);
  if (cfg_.optimizer == "adam" || cfg_.optimizer == "adamw") {
    nn::optim::AdamOptions o;
    o.weight_decay = cfg_.weight_decay;
    if (cfg_.optimizer == "adamw")
      opt_ = std::make_unique<nn::optim::AdamW>(params_, cfg_.lr, o);
    else
      opt_ = std::make_unique<nn::optim::Adam>(params_, cfg_.lr, o);
  } else {
    nn::optim::SgdOptions o;
    o.momentum = 0.9;
    o.nesterov = true;
    o.weight_decay = cfg_.weight_decay;
    opt_ = std::make_unique<nn::optim::SGD>(params_, cfg_.lr, o);
  }
  const int64_t steps_per_epoch = (static_cast<int64_t>(split_.train.size()) + cfg_.batch_size - 1) / cfg_.batch_size;
  const int64_t total = std::max<int64_t>(1, steps_per_epoch * cfg_.epochs);
  const int64_t warmup = std::min<int64_t>(total - 1, std::llround(cfg_.warmup_epochs * steps_per_epoch));
  schedule_ = std::make_unique<nn::optim::WarmupCosineLR>(*opt_, warmup, total, cfg_.lr * 0.01);
  pos_weight_ = Tensor();
  if (!cfg_.balanced)
    pos_weight_ = nn::full({1}, static_cast<double>(n_neg_) / static_cast<double>(n_pos_)).to(device_);

  // Scratch mode streams augmented images through the loader; its workers read data_,
  // cfg_.augment, cfg_.degrade and preset_, members declared before it.
  loader_.reset();
  if (!transfer_) {
    nn::data::LoaderOptions lo;
    lo.batch_size = cfg_.batch_size;
    lo.shuffle = true;
    lo.balanced = cfg_.balanced;
    lo.workers = cfg_.workers;
    lo.seed = cfg_.seed;
    const bool plain = nn::data::is_identity(cfg_.augment) && nn::data::is_identity(cfg_.degrade) &&
                       cfg_.histogram_mix == 0;
    loader_ = std::make_unique<nn::data::DataLoader>(
        data_->samples, split_.train,
        [this, plain](const nn::data::Image& image, nn::Generator& g) {
          return xray_to_input(plain ? image : training_view(image, g), preset_);
        },
        lo, [this](const nn::data::Sample& s) { return data_->cache.images[data_->index_of_path.at(s.path)]; });
  }
}

bool Trainer::resume() {
  check_model_built("resume");
  const std::string checkpoint_path = run_file(cfg_, "checkpoint.safetensors");
  const std::string metrics_path = run_file(cfg_, "metrics.jsonl");
  if (!cfg_.resume || !fs::exists(checkpoint_path)) {
    if (fs::exists(metrics_path)) fs::remove(metrics_path);
    return false;
  }
  nn::io::SafetensorsFile ck = nn::io::load_safetensors(checkpoint_path);
  json saved = json::parse(ck.metadata.at("config"));
  for (const char* key : {"mode", "image_size", "width", "depth", "batch_norm", "head", "seed", "max_images",
                          "val_fraction", "folds", "ema_decay", "select"})
    NN_CHECK(!saved.contains(key) || saved[key] == cfg_.to_json()[key], "--resume: the checkpoint was made with ", key,
             " = ", saved[key].dump(), ", not ", cfg_.to_json()[key].dump());
  nn::StateDict model_state, average_state;
  nn::optim::OptimizerState opt_state;
  best_state_.clear();
  for (const auto& [name, t] : ck.tensors) {
    if (name.rfind("model.", 0) == 0) model_state.emplace_back(name.substr(6), t);
    if (name.rfind("average.", 0) == 0) average_state.emplace_back(name.substr(8), t);
    if (name.rfind("best.", 0) == 0) best_state_.emplace_back(name.substr(5), t.clone());
    if (name.rfind("optimizer.", 0) == 0) opt_state.emplace(name.substr(10), t);
  }
  model_->load_state_dict(model_state);
  if (average_) average_->load_state_dict(average_state);
  opt_->load_state_dict(opt_state);
  nn::optim::SchedulerState sched;
  const json saved_schedule = json::parse(ck.metadata.at("scheduler"));  // items() must not outlive it
  for (const auto& [k, v] : saved_schedule.items()) sched[k] = v.get<double>();
  schedule_->load_state_dict(sched);
  history_ = json::parse(ck.metadata.at("history"));
  next_epoch_ = std::stoi(ck.metadata.at("epoch")) + 1;
  best_epoch_ = std::stoi(ck.metadata.at("best_epoch"));
  best_auc_ = std::stod(ck.metadata.at("best_auc"));
  stale_ = std::stoi(ck.metadata.at("stale"));
  // Checkpoints written before steps were counted resume the count from 0.
  if (ck.metadata.count("step")) step_number_ = std::stoll(ck.metadata.at("step"));
  checkpoint_epoch_ = next_epoch_ - 1;
  current_epoch_ = next_epoch_;
  // metrics.jsonl again from the checkpoint's history: a run killed after appending an epoch's row
  // but before its checkpoint must not leave that row twice.
  std::string rows;
  for (const json& row : history_) rows += row.dump() + "\n";
  save_text(metrics_path, rows);
  std::printf("resumed from %s after epoch %d (best AUC %.4f at epoch %d)\n", checkpoint_path.c_str(),
              next_epoch_ - 1, best_auc_, best_epoch_);
  return true;
}

// ---- training ----

void Trainer::stop_on_non_finite(const std::string& what, const std::string& where) {
  const std::string checkpoint_path = run_file(cfg_, "checkpoint.safetensors");
  const std::string kept =
      checkpoint_epoch_ > 0
          ? checkpoint_path + " was not overwritten and still holds epoch " + std::to_string(checkpoint_epoch_)
          : "no checkpoint was written by this run (any earlier " + checkpoint_path + " is unchanged)";
  NN_CHECK(false, "epoch ", current_epoch_, ", step ", step_number_, ": ", what, "; first non-finite value: ", where,
           ". Training stopped (learning rate ", number_text(last_step_lr_ > 0 ? last_step_lr_ : opt_->lr()), "); ", kept);
  std::abort();  // not reached: NN_CHECK(false, ...) throws
}

Tensor Trainer::forward(nn::models::VGG& model, const Tensor& x) {
  return (transfer_ ? nn::forward_from(model, x, frozen_end_) : model(x)).reshape({-1});
}

void Trainer::refuse_step(const Tensor& x, bool loss_finite, double loss_value) {
  const std::string what = loss_finite ? "the loss (" + number_text(loss_value) + ") is finite but gradients are not"
                                       : "the loss is not finite (" + number_text(loss_value) + ")";
  std::string where;
  auto site = nn::first_non_finite_output(*model_, x, frozen_end_);
  if (site && site->layer.empty()) {
    where = transfer_ ? "the input batch itself (cached frozen features)" : "the input batch itself";
  } else if (site) {
    where = "the output of " + site->str() + " (the batch rerun layer by layer)";
  } else {
    const std::vector<std::string> bad = nn::parameters_with_non_finite_grad(*model_);
    where = bad.empty() ? "the loss itself (every layer's output is finite)"
                        : "the gradient of " + bad.front() + " (every layer's output is finite; " +
                              std::to_string(bad.size()) + " parameter(s) have non-finite gradients)";
  }
  stop_on_non_finite(what + "; the step was refused", where);
}

// The exponential moving average of every floating-point tensor of the state (parameters and batch
// norm statistics), with the usual ramp min(decay, (1 + t) / (10 + t)) so that early steps weigh in.
// What average_copies_ marks (integer state, frozen parameters) is copied instead.
void Trainer::update_average() {
  if (!average_) return;
  nn::NoGradGuard no_grad;
  const double d = std::min(cfg_.ema_decay, (1.0 + static_cast<double>(step_number_)) / (10.0 + step_number_));
  const nn::StateDict current = model_->state_dict(), avg = average_->state_dict();
  for (size_t i = 0; i < current.size(); ++i) {
    Tensor a = avg[i].second;  // an alias of the average's tensor
    if (average_copies_[i]) {
      a.copy_(current[i].second);
      continue;
    }
    a.mul_(d);
    a.add_(current[i].second, 1.0 - d);
  }
}

// One optimizer step; refused (an error) when the loss or a gradient is not finite, before the
// optimizer sees it. The batch is then rerun layer by layer to name where the NaN/inf appeared.
void Trainer::step(const Tensor& x, const Tensor& y) {
  ++step_number_;
  opt_->zero_grad();
  Tensor logits = forward(*model_, x);
  Tensor loss = weighted_bce(logits, y, pos_weight_, cfg_.label_smoothing);
  const double loss_value = loss.item<double>();
  if (!std::isfinite(loss_value)) refuse_step(x, false, loss_value);
  loss.backward();
  std::vector<Tensor> grads;
  for (const Tensor& p : params_) grads.push_back(p.grad());
  if (!nn::all_finite(grads)) refuse_step(x, true, loss_value);
  last_step_lr_ = opt_->lr();
  opt_->step();
  schedule_->step();
  update_average();
  const int64_t n = y.size(0);
  epoch_loss_ += loss_value * static_cast<double>(n);
  std::vector<float> l = logits.detach().to(nn::Device::cpu()).to_vector<float>();
  std::vector<int64_t> t = y.to(nn::Device::cpu()).to_vector<int64_t>();
  for (size_t i = 0; i < l.size(); ++i) epoch_correct_ += (l[i] >= 0) == (t[i] == 1);
  epoch_seen_ += n;
}

Evaluation Trainer::evaluate() {
  check_model_built("evaluate");
  nn::NoGradGuard no_grad;
  nn::models::VGG& model = kept_model();
  model.eval();
  Evaluation ev;
  std::vector<int64_t> y;
  double loss_sum = 0;
  for (size_t b = 0; b < split_.val.size(); b += static_cast<size_t>(cfg_.batch_size)) {
    std::vector<Tensor> xs;
    std::vector<int64_t> yb;
    for (size_t k = b; k < std::min(split_.val.size(), b + static_cast<size_t>(cfg_.batch_size)); ++k) {
      nn::Generator unused(0);
      xs.push_back(transfer_ ? val_cache_[k].to(nn::f32).unsqueeze(0)
                             : sample_input(split_.val[k], false, unused).unsqueeze(0));
      yb.push_back(data_->labels[static_cast<size_t>(split_.val[k])]);
    }
    Tensor x = nn::concat(xs, 0).to(device_);
    Tensor logits = forward(model, x);
    if (!nn::all_finite(logits)) {
      auto site = nn::first_non_finite_output(model, x, frozen_end_);
      stop_on_non_finite("validation after step " + std::to_string(step_number_) +
                             " produced non-finite outputs (every weight is finite)",
                         site ? "the output of " + site->str() : "the outputs");
    }
    Tensor target = nn::from_vector(yb, {static_cast<int64_t>(yb.size())}).to(device_);
    loss_sum += weighted_bce(logits, target, pos_weight_).item<double>() * static_cast<double>(yb.size());
    for (float z : logits.to(nn::Device::cpu()).to_vector<float>()) {
      ev.logits.push_back(z);
      ev.probs.push_back(1.0 / (1.0 + std::exp(-static_cast<double>(z))));
    }
    y.insert(y.end(), yb.begin(), yb.end());
  }
  ev.loss = loss_sum / static_cast<double>(y.size());
  ev.metrics = nn::metrics::binary_metrics(ev.probs, y, 0.5);
  return ev;
}

void Trainer::save_checkpoint() {
  std::vector<std::pair<std::string, Tensor>> ck;
  for (const auto& [name, t] : model_->state_dict()) ck.emplace_back("model." + name, t);
  if (average_)
    for (const auto& [name, t] : average_->state_dict()) ck.emplace_back("average." + name, t);
  for (const auto& [name, t] : best_state_) ck.emplace_back("best." + name, t);
  for (const auto& [name, t] : opt_->state_dict()) ck.emplace_back("optimizer." + name, t);
  json sched = schedule_->state_dict();
  nn::io::save_safetensors(run_file(cfg_, "checkpoint.safetensors"), ck,
                           {{"config", cfg_.to_json().dump()},
                            {"scheduler", sched.dump()},
                            {"history", history_.dump()},
                            {"epoch", std::to_string(next_epoch_)},
                            {"best_epoch", std::to_string(best_epoch_)},
                            {"best_auc", nlohmann::json(best_auc_).dump()},
                            {"stale", std::to_string(stale_)},
                            {"step", std::to_string(step_number_)}});
  checkpoint_epoch_ = next_epoch_;
}

bool Trainer::train_epoch() {
  check_model_built("train_epoch");
  NN_CHECK(next_epoch_ <= cfg_.epochs, "Trainer::train_epoch: all ", cfg_.epochs, " epochs are done");
  NN_CHECK(!stopped_early_, "Trainer::train_epoch: early stopping has ended training");
  const int epoch = next_epoch_;
  current_epoch_ = epoch;
  const auto t_epoch = std::chrono::steady_clock::now();
  model_->train();
  if (transfer_) model_->features()->eval();  // frozen features: batch norms keep their statistics
  epoch_loss_ = 0;
  epoch_seen_ = epoch_correct_ = 0;
  const double lr_start = opt_->lr();
  const int64_t total = static_cast<int64_t>(split_.train.size());
  {
    Progress progress("epoch " + std::to_string(epoch) + "/" + std::to_string(cfg_.epochs), total, cfg_.progress);
    if (transfer_) {
      std::vector<int64_t> positions(split_.train.size());
      for (size_t k = 0; k < positions.size(); ++k) positions[k] = static_cast<int64_t>(k);
      std::vector<int64_t> pos_labels;
      for (int64_t i : split_.train) pos_labels.push_back(data_->labels[static_cast<size_t>(i)]);
      std::vector<int64_t> order = nn::data::epoch_order(positions, pos_labels, cfg_.seed, epoch, true, cfg_.balanced);
      const auto& view = train_cache_[static_cast<size_t>(epoch - 1) % train_cache_.size()];
      for (size_t b = 0; b < order.size(); b += static_cast<size_t>(cfg_.batch_size)) {
        std::vector<Tensor> xs;
        std::vector<int64_t> yb;
        for (size_t k = b; k < std::min(order.size(), b + static_cast<size_t>(cfg_.batch_size)); ++k) {
          xs.push_back(view[static_cast<size_t>(order[k])].to(nn::f32).unsqueeze(0));
          yb.push_back(pos_labels[static_cast<size_t>(order[k])]);
        }
        // A last batch of one image cannot train batch norm (one value per channel).
        if (xs.size() < 2 && spec_.batch_norm && b > 0) break;
        step(nn::concat(xs, 0).to(device_), nn::from_vector(yb, {static_cast<int64_t>(yb.size())}).to(device_));
        progress.update(epoch_seen_, epoch_seen_, epoch_loss_ / static_cast<double>(epoch_seen_));
      }
    } else {
      loader_->start_epoch(epoch);
      while (std::optional<nn::data::Batch> batch = loader_->next()) {
        for (const std::string& f : batch->failed) std::fprintf(stderr, "unreadable, skipped: %s\n", f.c_str());
        // A last batch of one image cannot train batch norm (one value per channel).
        if (batch->images.size(0) < 2 && spec_.batch_norm) continue;
        step(batch->images.to(device_), batch->labels.to(device_));
        progress.update(epoch_seen_, epoch_seen_, epoch_loss_ / static_cast<double>(epoch_seen_));
      }
    }
  }
  // Finite gradients can still step a weight past the float range (a huge learning rate); such a
  // model is never validated or saved.
  if (!nn::all_finite(params_)) {
    const std::vector<std::string> bad = nn::non_finite_parameters(*model_);
    stop_on_non_finite("the optimizer step made " + std::to_string(bad.size()) + " weight tensor(s) non-finite",
                       bad.empty() ? "the weights" : "the weight " + bad.front());
  }
  const double train_seconds = seconds_since(t_epoch);
  Evaluation ev = evaluate();

  const nn::metrics::BinaryMetrics& m = ev.metrics;
  const double seen = static_cast<double>(std::max<int64_t>(epoch_seen_, 1));
  json row = {{"epoch", epoch},
              {"train_loss", epoch_loss_ / seen},
              {"train_accuracy", static_cast<double>(epoch_correct_) / seen},
              {"val_loss", ev.loss},
              {"val_accuracy", m.accuracy},
              {"val_sensitivity", m.sensitivity},
              {"val_specificity", m.specificity},
              {"val_auc", m.auc},
              {"lr", lr_start},
              {"train_seconds", train_seconds},
              {"epoch_seconds", seconds_since(t_epoch)},
              {"images_per_second", static_cast<double>(epoch_seen_) / train_seconds}};
  history_.push_back(row);
  {
    const std::string metrics_path = run_file(cfg_, "metrics.jsonl");
    std::ofstream out(metrics_path, std::ios::app);
    out << row.dump() << "\n";
    out.flush();
    NN_CHECK(out.good(), "cannot append to ", metrics_path, ": ", std::strerror(errno));
  }
  std::printf("epoch %2d/%d  train loss %.4f acc %.4f | val loss %.4f acc %.4f sens %.4f spec %.4f AUC %.4f | %.0f s, %.1f img/s\n",
              epoch, cfg_.epochs, row["train_loss"].get<double>(), row["train_accuracy"].get<double>(), ev.loss,
              m.accuracy, m.sensitivity, m.specificity, m.auc, train_seconds, row["images_per_second"].get<double>());
  std::fflush(stdout);

  // select = best: the best validation AUC so far is kept (and early stopping may end the run);
  // select = last: every epoch's model replaces the last, validation only reports.
  const bool keep = cfg_.select == "last" || m.auc > best_auc_;
  if (m.auc > best_auc_) {
    best_auc_ = m.auc;
    best_epoch_ = epoch;
    stale_ = 0;
  } else {
    ++stale_;
  }
  if (keep) {
    if (cfg_.select == "last") best_epoch_ = epoch;
    best_state_.clear();
    for (const auto& [name, t] : kept_model().state_dict())
      best_state_.emplace_back(name, t.to(nn::Device::cpu()).clone());
  }
  save_checkpoint();  // model, its average, the model kept, optimizer, schedule, history (atomic)
  ++next_epoch_;
  if (cfg_.select == "best" && stale_ >= cfg_.patience) {
    std::printf("early stop: validation AUC has not improved for %d epochs\n", cfg_.patience);
    stopped_early_ = true;
    return false;
  }
  return next_epoch_ <= cfg_.epochs;
}

// ---- the end ----

Tensor Trainer::gate_features(nn::models::VGG& model, const std::string& layer, const std::vector<int64_t>& indices,
                              const std::vector<Tensor>* cache) {
  nn::NoGradGuard no_grad;
  model.eval();
  std::vector<Tensor> rows;
  for (size_t b = 0; b < indices.size(); b += static_cast<size_t>(cfg_.batch_size)) {
    std::vector<Tensor> xs;
    for (size_t k = b; k < std::min(indices.size(), b + static_cast<size_t>(cfg_.batch_size)); ++k) {
      nn::Generator unused(0);
      xs.push_back(cache != nullptr ? (*cache)[k].to(nn::f32).unsqueeze(0) : sample_input(indices[k], false, unused).unsqueeze(0));
    }
    const Tensor x = nn::concat(xs, 0).to(device_);
    Tensor a;
    if (transfer_ && frozen_end_ == layer) {
      a = x;  // the cache is the layer's output
    } else {
      nn::ForwardHooks look(model, {{layer, [&a](const Tensor& out) {
                                       a = out;
                                       return out;
                                     }}});
      transfer_ ? nn::forward_from(model, x, frozen_end_) : model(x);
    }
    NN_CHECK(a.defined(), "the gate's layer '", layer, "' did not run");
    rows.push_back(pooled_features(a).to(nn::Device::cpu()));
  }
  return nn::concat(rows, 0);
}

OodGate Trainer::fit_gate(nn::models::VGG& model) {
  OodGate gate;
  gate.layer = last_feature_layer(model);
  std::vector<const nn::data::Image*> train_images;
  std::vector<int64_t> train_labels;
  for (int64_t i : split_.train) {
    train_images.push_back(&data_->cache.images[static_cast<size_t>(i)]);
    train_labels.push_back(data_->labels[static_cast<size_t>(i)]);
  }
  gate.input = fit_input_limits(train_images);
  const Tensor train = gate_features(model, gate.layer, split_.train, transfer_ ? &train_cache_[0] : nullptr);
  FeatureGate f;
  f.detector = nn::ood::MahalanobisDetector::fit(train, train_labels, 2);
  const std::vector<double> held_out = f.detector.distances(gate_features(model, gate.layer, split_.val, transfer_ ? &val_cache_ : nullptr));
  f.limit = nn::ood::quantile(held_out, gate.quantile);
  gate.members.push_back(std::move(f));
  return gate;
}

json Trainer::finish() {
  check_model_built("finish");
  NN_CHECK(!best_state_.empty(), "no epoch was trained (the checkpoint is already at --epochs?)");
  nn::models::VGG& model = kept_model();
  model.load_state_dict(best_state_);
  Evaluation best = evaluate();
  const nn::metrics::ThresholdRule rule = nn::metrics::parse_threshold_rule(cfg_.threshold_rule);
  spec_.threshold = nn::metrics::choose_threshold(best.probs, val_labels_, rule);
  nn::metrics::BinaryMetrics at_threshold = nn::metrics::binary_metrics(best.probs, val_labels_, spec_.threshold);
  nn::metrics::Interval ci = nn::metrics::bootstrap_auc_interval(best.probs, val_labels_, 1000, cfg_.seed);
  const auto t_gate = std::chrono::steady_clock::now();
  gate_ = fit_gate(model);
  int64_t input_refused = 0;
  for (int64_t i : split_.val)
    if (!check_input(input_stats(data_->cache.images[static_cast<size_t>(i)]), gate_.input).empty()) ++input_refused;
  std::printf("out-of-distribution gate: %lld-dimensional features of %s, limit %.1f (the %.3f quantile of the "
              "validation distances); input checks refuse %lld of %zu validation images (%.1f s)\n",
              static_cast<long long>(gate_.members[0].detector.dim()), gate_.layer.c_str(), gate_.members[0].limit,
              gate_.quantile, static_cast<long long>(input_refused), split_.val.size(), seconds_since(t_gate));
  model.to(nn::Device::cpu());
  if (average_) model_ = average_;  // model() is now the one kept
  const std::string model_path = run_file(cfg_, "model.safetensors");
  save_model(model_path, {&model}, spec_, gate_,
             {{"trained_on", cfg_.data}, {"best_epoch", std::to_string(best_epoch_)},
              {"val_auc", nlohmann::json(best.metrics.auc).dump()},
              {"threshold_rule", nn::metrics::to_string(rule)}});

  EpochCurves curves;
  for (const json& r : history_) {
    curves.train_loss.push_back(r["train_loss"]);
    curves.val_loss.push_back(r["val_loss"]);
    curves.train_accuracy.push_back(r["train_accuracy"]);
    curves.val_accuracy.push_back(r["val_accuracy"]);
  }
  // The charts come last and are not worth the run: without a working PLplot (e.g. its pngcairo
  // driver missing on a GPU server) the model, metrics and summary are still written, with a warning.
  std::string charts_error;
  try {
    plot_training_curves(run_file(cfg_, "curves.png"), curves,
                         "VGG" + std::to_string(spec_.depth) + (spec_.batch_norm ? "-BN " : " ") + cfg_.mode);
    nn::metrics::RocCurve roc = nn::metrics::roc_curve(best.probs, val_labels_);
    plot_roc(run_file(cfg_, "roc.png"), roc.fpr, roc.tpr, best.metrics.auc, 1.0 - at_threshold.specificity,
             at_threshold.sensitivity);
  } catch (const nn::Error& e) {
    charts_error = e.what();
    std::fprintf(stderr, "pneumonia-train: warning: curves.png/roc.png not written: %s\n", e.what());
  }

  double train_seconds = 0;
  for (const json& r : history_) train_seconds += r["epoch_seconds"].get<double>();
  json summary = {{"config", cfg_.to_json()},
                  {"model", json::parse(json(spec_.to_metadata()).dump())},
                  {"best_epoch", best_epoch_},
                  {"epochs_run", history_.size()},
                  {"threshold_rule", nn::metrics::to_string(rule)},
                  {"threshold", spec_.threshold},
                  {"validation_at_0.5", json::parse(nn::metrics::to_json(best.metrics))},
                  {"validation_at_threshold", json::parse(nn::metrics::to_json(at_threshold))},
                  {"validation_auc_95ci", {ci.low, ci.high}},
                  {"ood_gate", {{"layer", gate_.layer},
                                {"feature_dim", gate_.members[0].detector.dim()},
                                {"quantile", gate_.quantile},
                                {"limit", gate_.members[0].limit},
                                {"input_limits", gate_.input.to_json()},
                                {"validation_input_refused", input_refused}}},
                  {"seconds_per_epoch", train_seconds / std::max<size_t>(history_.size(), 1)},
                  {"total_seconds", seconds_since(start_)},
                  {"peak_memory_mib", peak_rss_mib()},
                  {"threads", nn::get_num_threads()}};
  if (device_.is_cuda())
    summary["cuda_peak_allocated_mib"] = nn::cuda::memory_stats(device_.index).peak_allocated_bytes >> 20;
  if (!charts_error.empty()) summary["charts_error"] = charts_error;
  save_json(run_file(cfg_, "summary.json"), summary);
  std::printf("%s epoch %d: validation AUC %.4f (95%% CI %.4f-%.4f); threshold %.3f (%s): accuracy %.4f, "
              "sensitivity %.4f, specificity %.4f\n",
              cfg_.select == "best" ? "best" : "last", best_epoch_, best.metrics.auc, ci.low, ci.high, spec_.threshold,
              nn::metrics::to_string(rule).c_str(), at_threshold.accuracy, at_threshold.sensitivity,
              at_threshold.specificity);
  std::printf("wrote %s, %smetrics.jsonl, summary.json (total %s, peak memory %ld MiB)\n", model_path.c_str(),
              charts_error.empty() ? "curves.png, roc.png, " : "", format_duration(seconds_since(start_)).c_str(),
              peak_rss_mib());
  return summary;
}

json train(const TrainConfig& config) {
  if (config.folds > 1) return cross_validate(config);
  Trainer trainer(config);
  trainer.load_data();
  trainer.build_model();
  trainer.resume();
  while (trainer.next_epoch() <= trainer.config().epochs && trainer.train_epoch()) {
  }
  return trainer.finish();
}

}  // namespace pneumonia
