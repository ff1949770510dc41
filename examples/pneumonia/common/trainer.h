// The pneumonia trainer behind pneumonia-train, as a class that programs and tests can drive step
// by step: load the data, build the model, resume, train an epoch, evaluate, finish.
//
//   pneumonia::Trainer t(config);   // checks the config, prepares the run folder
//   t.load_data();                  // scan, split by patient, decode every image once
//   t.build_model();                // scratch or transfer (frozen prefix cached), optimizer, schedule
//   t.resume();                     // from RUN/checkpoint.safetensors when config.resume
//   while (t.next_epoch() <= config.epochs && t.train_epoch()) {}   // train, validate, checkpoint
//   t.finish();                     // the best model, its threshold, charts, summary.json
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
  int epochs = 0;  // 0: the mode's default
  int64_t batch_size = 32, image_size = 0, max_images = 0;
  double width = 0.25, lr = 0, val_fraction = 0.1, weight_decay = 0;
  uint64_t seed = 0;
  int depth = 16, patience = 5, views = 2, workers = 2, threads = 0;
  bool batch_norm = false;  // scratch: VGG with batch norm
  bool resume = false, balanced = false, no_augment = false, image_split = false;
  bool progress = true;  // a progress bar on stderr
  nn::data::AugmentOptions augment;

  // The settings as JSON (summary.json, and the checkpoint, which --resume checks against).
  nlohmann::json to_json() const;
};

// Validation of the current model: the loss, each image's probability, metrics at 0.5.
struct Evaluation {
  double loss = 0;
  std::vector<double> probs;
  nn::metrics::BinaryMetrics metrics;
};

class Trainer {
 public:
  // Checks the config, fills in the mode's defaults (epochs, image size, learning rate), sets the
  // thread count and prepares the run folder (created, probed, an interrupted run's temporary files
  // removed). Throws nn::Error naming the problem.
  explicit Trainer(const TrainConfig& config);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Scans config.data (NORMAL/, PNEUMONIA/), takes a stratified subset when max_images is set,
  // splits validation off by patient (or by image), decodes every image once (grayscale,
  // image_size square).
  void load_data();
  // Builds the model (scratch: a fresh VGG; head/finetune: ImageNet features from config.weights,
  // frozen up to block 5 or entirely, the frozen outputs computed once per image and view), the
  // optimizer, the cosine schedule and the class weighting.
  void build_model();
  // Continues from RUN/checkpoint.safetensors when config.resume and the file exists (weights,
  // optimizer, schedule, history, step count; metrics.jsonl rewritten from the checkpoint). True
  // when it resumed. The checkpoint must come from the same settings.
  bool resume();

  // The epoch train_epoch() runs next (1-based).
  int next_epoch() const { return next_epoch_; }
  // One epoch: training steps (each refused when its loss or gradients are not finite), then
  // validation, metrics.jsonl, the best model so far and the checkpoint. False when early stopping
  // ends training.
  bool train_epoch();
  // The current model on the validation images.
  Evaluation evaluate();
  // The best epoch's model: its threshold (config.threshold_rule on validation), model.safetensors,
  // curves.png, roc.png and summary.json. Returns the summary.
  nlohmann::json finish();

  const TrainConfig& config() const { return cfg_; }
  const nn::data::Split& split() const { return split_; }
  const std::vector<nn::data::Sample>& samples() const { return samples_; }
  nn::models::VGG& model() { return *model_; }
  const nlohmann::json& history() const { return history_; }

 private:
  void check_data_loaded(const char* step) const;
  void check_model_built(const char* step) const;
  nn::Tensor sample_input(int64_t index, bool augmented, nn::Generator& gen) const;
  nn::Tensor forward(const nn::Tensor& x);  // logits (N) of the trainable part
  void step(const nn::Tensor& x, const nn::Tensor& y);
  [[noreturn]] void refuse_step(const nn::Tensor& x, bool loss_finite, double loss_value);
  [[noreturn]] void stop_on_non_finite(const std::string& what, const std::string& where);
  void save_checkpoint();

  TrainConfig cfg_;
  std::chrono::steady_clock::time_point start_;
  nn::Device device_;
  bool transfer_ = false;

  // The data: samples, the split, every image decoded once, labels and the loader's path index.
  std::vector<nn::data::Sample> samples_;
  nn::data::Split split_;
  nn::data::ImageCache cache_;
  std::vector<int64_t> labels_, val_labels_;
  int64_t n_pos_ = 0, n_neg_ = 0;
  std::unordered_map<std::string, size_t> index_of_path_;

  // The model and its optimisation.
  ModelSpec spec_;
  std::shared_ptr<nn::models::VGG> model_;
  std::string frozen_end_;  // transfer: the last frozen layer ("" for scratch)
  nn::data::Preprocessing preset_ = nn::data::Preprocessing::torchvision;
  std::vector<std::vector<nn::Tensor>> train_cache_;  // transfer: [view][k] frozen outputs of split.train[k]
  std::vector<nn::Tensor> val_cache_;
  std::vector<nn::Tensor> params_;  // the trainable parameters
  std::unique_ptr<nn::optim::Optimizer> opt_;
  std::unique_ptr<nn::optim::CosineAnnealingLR> schedule_;
  nn::Tensor pos_weight_;

  // Progress of the run.
  int next_epoch_ = 1, best_epoch_ = 0, stale_ = 0, checkpoint_epoch_ = 0;
  int current_epoch_ = 1;  // the epoch being trained, or the last one (for error messages)
  int64_t step_number_ = 0;  // optimizer steps over the whole run, resumes included
  double best_auc_ = -1;
  bool stopped_early_ = false;
  nlohmann::json history_ = nlohmann::json::array();
  nn::StateDict best_state_;
  // The epoch in progress: its loss sum, images seen, correct predictions.
  double epoch_loss_ = 0;
  int64_t epoch_seen_ = 0, epoch_correct_ = 0;

  // Last: its workers read cache_, index_of_path_, cfg_.augment and preset_ (see the file comment).
  std::unique_ptr<nn::data::DataLoader> loader_;
};

// The whole of pneumonia-train: a Trainer from load_data to finish. Returns the summary.
nlohmann::json train(const TrainConfig& config);

}  // namespace pneumonia
