// The pneumonia trainer behind pneumonia-train, as classes that programs and tests can drive step
// by step.
//
//   XrayData     the X-rays of a NORMAL/ + PNEUMONIA/ folder, decoded once (grayscale, square) and
//                shared by every model trained on them;
//   Trainer      one model on one split: build it, resume, train an epoch, evaluate, finish;
//   train()      all of pneumonia-train: with config.folds > 1 the cross-validated ensemble of
//                cross_validation.h, otherwise one Trainer on a validation split.
//
//   pneumonia::Trainer t(config);   // checks the config, prepares the run folder
//   t.load_data();                  // scan, split by patient, decode every image once
//   t.build_model();                // scratch or transfer (frozen prefix cached), optimizer, schedule
//   t.resume();                     // from RUN/checkpoint.safetensors when config.resume
//   while (t.next_epoch() <= config.epochs && t.train_epoch()) {}   // train, validate, checkpoint
//   t.finish();                     // the model, its threshold, charts, summary.json
//
// The members are declared in the order their lifetimes need: the data loader last, because its
// worker threads read the decoded images, the path index and the augmentation settings above it;
// destroyed first, it joins them before any of those is freed (also when an error ends training in
// the middle of an epoch).
//
// Faults (docs/reliability.md): the run folder is created and probed for writing before any work;
// temporary files a killed run left there are removed; checkpoints are written atomically, so a kill
// or a full disk leaves the previous one loadable. A step whose loss or gradients are NaN/inf is
// refused before the optimizer applies it: training stops with the epoch, the step number and the
// first layer whose output went non-finite (the batch rerun layer by layer), and the last checkpoint
// is not overwritten.
#pragma once

#include <nlohmann/json.hpp>
#include <nn/data/augment.h>
#include <nn/data/dataset.h>
#include <nn/data/degrade.h>
#include <nn/data/loader.h>
#include <nn/metrics.h>
#include <nn/models/vgg.h>
#include <nn/optim.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "pneumonia_model.h"

namespace pneumonia {

struct TrainConfig {
  std::string data, out, mode = "scratch", weights, head, optimizer = "adam", device = "cpu";
  std::string threshold_rule = "sensitivity:0.95";
  // folds > 1: the threshold rule applied to the out-of-fold predictions of the clean images, or of
  // the images under every acquisition shift of the protocol pooled.
  std::string threshold_on = "clean";
  // Cross-validation folds: each trains one member of the ensemble that is written (and the
  // held-out folds are scored under acquisition shifts, docs/evaluation_protocol.md); 1: one model
  // on a validation split of val_fraction.
  int folds = 1;
  int epochs = 0;  // 0: the mode's default
  int64_t batch_size = 32, image_size = 0, max_images = 0;
  double width = 0.25, lr = 0, val_fraction = 0.1, weight_decay = 0;
  double warmup_epochs = 0;    // linear learning-rate warm-up, then a cosine to lr / 100 (per step)
  double label_smoothing = 0;  // BCE targets y (1 - e) + e / 2
  double ema_decay = 0;        // exponential moving average of the weights (0: off); the EMA is what
                               // is validated and kept
  std::string select = "best";  // best: the epoch with the best validation AUC (early stopping with
                                // patience); last: the last epoch (the validation data stay unseen)
  uint64_t seed = 0;
  int depth = 16, patience = 5, views = 2, workers = 2, threads = 0;
  bool batch_norm = false;  // scratch: VGG with batch norm
  bool resume = false, balanced = false, no_augment = false, image_split = false;
  bool progress = true;  // a progress bar on stderr
  nn::data::AugmentOptions augment;
  nn::data::DegradeOptions degrade;  // acquisition shifts drawn for each training image
  // The probability that a training image takes the gray-level histogram of another, random,
  // training image (nn::data::match_histogram): the classes' gray levels then say nothing of the
  // class, whatever processing each collection had.
  double histogram_mix = 0;
  // pneumonia-protocol --tta: score the held-out images as the mean logit of the image and four
  // fixed resamplings from the middle of the training augmentation's range (test_time_views()).
  // An evaluation of test-time augmentation; predict and serve do not apply it.
  bool tta = false;

  // The settings as JSON (summary.json, and the checkpoint, which --resume checks against).
  nlohmann::json to_json() const;
};

// The config with the mode's defaults filled in (epochs, image size, learning rate), checked.
TrainConfig with_defaults(const TrainConfig& config);

// The X-rays of a data folder, each decoded once: grayscale, squashed to image_size square (as
// Keras' flow_from_directory does); unreadable files are listed and left out of every split.
struct XrayData {
  std::string root;
  int64_t image_size = 0;
  std::vector<nn::data::Sample> samples;  // the folder's (a stratified subset with max_images)
  nn::data::ImageCache cache;             // cache.images[i] is samples[i]'s; empty when unreadable
  std::vector<int64_t> labels;            // samples[i].label
  std::vector<std::vector<double>> cdfs;  // nn::data::intensity_cdf of each cached image (64 bins)
  std::unordered_map<std::string, size_t> index_of_path;

  // Scans config.data, takes the subset, decodes with config.workers threads; prints a summary.
  static std::shared_ptr<const XrayData> load(const TrainConfig& config);
  // The indices of `indices` whose image is readable.
  std::vector<int64_t> usable(const std::vector<int64_t>& indices) const;
};

// Validation of the current model: the loss, each image's logit and probability, metrics at 0.5.
struct Evaluation {
  double loss = 0;
  std::vector<double> logits, probs;
  nn::metrics::BinaryMetrics metrics;
};

class Trainer {
 public:
  // Checks the config, fills in the mode's defaults (epochs, image size, learning rate), sets the
  // thread count and prepares the run folder config.out (created, probed, an interrupted run's
  // temporary files removed). load_data() then reads and splits the data. Throws nn::Error naming
  // the problem.
  explicit Trainer(const TrainConfig& config);
  // A model on data already loaded and a given split (a cross-validation fold), in the run folder
  // config.out. load_data() is then a no-op.
  Trainer(const TrainConfig& config, std::shared_ptr<const XrayData> data, const nn::data::Split& split);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Scans config.data (NORMAL/, PNEUMONIA/), takes a stratified subset when max_images is set,
  // splits validation off by patient (or by image), decodes every image once (grayscale,
  // image_size square).
  void load_data();
  // Builds the model (scratch: a fresh VGG; head/finetune: ImageNet features from config.weights,
  // frozen up to block 5 or entirely, the frozen outputs computed once per image and view), the
  // optimizer, the learning-rate schedule and the class weighting.
  void build_model();
  // Continues from RUN/checkpoint.safetensors when config.resume and the file exists (weights, the
  // weight average, optimizer, schedule, history, step count; metrics.jsonl rewritten from the
  // checkpoint). True when it resumed. The checkpoint must come from the same settings.
  bool resume();

  // The epoch train_epoch() runs next (1-based).
  int next_epoch() const { return next_epoch_; }
  // One epoch: training steps (each refused when its loss or gradients are not finite), then
  // validation, metrics.jsonl, the best model so far and the checkpoint. False when training is
  // over (the last epoch, or early stopping).
  bool train_epoch();
  // The model that would be kept (the weight average when config.ema_decay > 0) on the validation
  // images.
  Evaluation evaluate();
  // The model kept (select = best: the best epoch's; last: the last one): its threshold
  // (config.threshold_rule on validation), model.safetensors, curves.png, roc.png and summary.json.
  // Returns the summary.
  nlohmann::json finish();

  const TrainConfig& config() const { return cfg_; }
  const nn::data::Split& split() const { return split_; }
  const std::vector<nn::data::Sample>& samples() const;
  std::shared_ptr<const XrayData> data() const { return data_; }
  // The network being trained; after finish(), the one kept.
  nn::models::VGG& model() { return *model_; }
  const ModelSpec& spec() const { return spec_; }
  const nlohmann::json& history() const { return history_; }
  // The out-of-distribution gate finish() fitted (ood_gate.h): input limits from the training
  // images, the feature detector fitted on them, its limit the gate's quantile of the validation
  // images' distances.
  const OodGate& gate() const { return gate_; }

 private:
  void use_split();  // the readable images of split_, the class counts
  void check_data_loaded(const char* step) const;
  void check_model_built(const char* step) const;
  nn::Tensor sample_input(int64_t index, bool augmented, nn::Generator& gen) const;
  // The training transform of a cached image: histogram mix, augmentation, degradation.
  nn::data::Image training_view(const nn::data::Image& image, nn::Generator& gen) const;
  nn::models::VGG& kept_model();                   // the EMA when on, else the model
  nn::Tensor forward(nn::models::VGG& model, const nn::Tensor& x);  // logits (N) of the trainable part
  void step(const nn::Tensor& x, const nn::Tensor& y);
  void update_average();
  [[noreturn]] void refuse_step(const nn::Tensor& x, bool loss_finite, double loss_value);
  [[noreturn]] void stop_on_non_finite(const std::string& what, const std::string& where);
  void save_checkpoint();
  // The gate's pooled features (N, C) of split images (train: their plain view).
  nn::Tensor gate_features(nn::models::VGG& model, const std::string& layer, const std::vector<int64_t>& indices,
                           const std::vector<nn::Tensor>* cache);
  OodGate fit_gate(nn::models::VGG& model);

  TrainConfig cfg_;
  std::chrono::steady_clock::time_point start_;
  nn::Device device_;
  bool transfer_ = false;

  // The data (shared between the folds of a cross-validation) and this model's split.
  std::shared_ptr<const XrayData> data_;
  nn::data::Split split_;
  std::vector<int64_t> val_labels_;
  int64_t n_pos_ = 0, n_neg_ = 0;

  // The model and its optimisation.
  ModelSpec spec_;
  std::shared_ptr<nn::models::VGG> model_;
  std::shared_ptr<nn::models::VGG> average_;  // the EMA of the weights (config.ema_decay > 0)
  std::vector<bool> average_copies_;  // per state entry of average_: copied, not averaged (update_average)
  std::string frozen_end_;  // transfer: the last frozen layer ("" for scratch)
  nn::data::Preprocessing preset_ = nn::data::Preprocessing::torchvision;
  std::vector<std::vector<nn::Tensor>> train_cache_;  // transfer: [view][k] frozen outputs of split.train[k]
  std::vector<nn::Tensor> val_cache_;
  std::vector<nn::Tensor> params_;  // the trainable parameters
  std::unique_ptr<nn::optim::Optimizer> opt_;
  std::unique_ptr<nn::optim::WarmupCosineLR> schedule_;
  nn::Tensor pos_weight_;

  // Progress of the run.
  int next_epoch_ = 1, best_epoch_ = 0, stale_ = 0, checkpoint_epoch_ = 0;
  int current_epoch_ = 1;  // the epoch being trained, or the last one (for error messages)
  int64_t step_number_ = 0;  // optimizer steps over the whole run, resumes included
  double last_step_lr_ = 0;  // the learning rate of the last step applied (error messages); 0: none yet
  double best_auc_ = -1;
  bool stopped_early_ = false;
  nlohmann::json history_ = nlohmann::json::array();
  nn::StateDict best_state_;
  OodGate gate_;
  // The epoch in progress: its loss sum, images seen, correct predictions.
  double epoch_loss_ = 0;
  int64_t epoch_seen_ = 0, epoch_correct_ = 0;

  // Last: its workers read data_, cfg_.augment, cfg_.degrade and preset_ (see the file comment).
  std::unique_ptr<nn::data::DataLoader> loader_;
};

// The whole of pneumonia-train: the cross-validated ensemble (config.folds > 1,
// cross_validation.h) or a Trainer from load_data to finish. Returns the summary.
nlohmann::json train(const TrainConfig& config);

// Shared by the trainer and the cross-validation.
namespace run_files {
// Creates the run folder, probes it for writing, removes an interrupted run's temporary files.
void prepare(const std::string& out);
// `text` to PATH.tmp, then renamed over PATH (a reader never sees half a file).
void save_text(const std::string& path, const std::string& text);
void save_json(const std::string& path, const nlohmann::json& j);
long peak_rss_mib();
std::string format_duration(double seconds);
double seconds_since(std::chrono::steady_clock::time_point t);
}  // namespace run_files

}  // namespace pneumonia
