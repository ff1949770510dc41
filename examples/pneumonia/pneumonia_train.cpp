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
// The work is pneumonia::Trainer's (common/trainer.h), which also describes the faults it survives
// (docs/reliability.md): an unusable run folder, a killed run, a full disk, NaN/inf steps.
#include <CLI/CLI.hpp>
#include <nn/metrics.h>

#include <cstdio>
#include <exception>
#include <string>

#include "trainer.h"

int main(int argc, char** argv) {
  CLI::App app{"pneumonia-train: train a VGG16 pneumonia classifier on NORMAL/ and PNEUMONIA/ chest X-rays"};
  pneumonia::TrainConfig cfg;
  // The no-flag recipe (docs/recipes.md): chosen by the protocol of docs/evaluation_protocol.md.
  // Every value is a flag's default, so any of them can be changed on the command line.
  cfg.folds = 3;
  cfg.depth = 11;
  cfg.batch_norm = true;
  cfg.optimizer = "adamw";
  cfg.weight_decay = 0.05;
  cfg.warmup_epochs = 1;
  cfg.ema_decay = 0.995;
  cfg.augment.aspect = 0.35;
  cfg.histogram_mix = 0.25;
  cfg.degrade.gamma_max = 1.8;
  cfg.augment.contrast = 0.4;
  cfg.degrade.blur_sigma_max = 1.5;
  cfg.degrade.noise_sigma_max = 0.05;
  cfg.degrade.downscale_min = 0.4;
  cfg.degrade.jpeg_quality_min = 20;
  app.add_option("--data", cfg.data, "folder with NORMAL/ and PNEUMONIA/ subfolders of JPEG/PNG images")->required();
  app.add_option("--out", cfg.out, "run folder for the model, checkpoint, metrics and charts")->required();
  app.add_option("--mode", cfg.mode, "scratch (train everything), head (frozen ImageNet VGG16 + new head), finetune (head + block 5)")
      ->check(CLI::IsMember({"scratch", "head", "finetune"}));
  app.add_option("--weights", cfg.weights, "VGG16 ImageNet weights (.safetensors from nn-convert) for head/finetune");
  app.add_option("--head", cfg.head, "mlp (Dense(256)+ReLU+Dropout -> Dense(1); default for head/finetune), linear, "
                 "or vgg (torchvision's classifier with 256 hidden units; default for scratch)")
      ->check(CLI::IsMember({"mlp", "linear", "vgg"}));
  app.add_option("--epochs", cfg.epochs, "epochs (default 8)");
  app.add_option("--batch-size", cfg.batch_size, "images per step")->check(CLI::Range(1, 4096));
  app.add_option("--image-size", cfg.image_size, "square input side (default 128 scratch, 224 head/finetune)")
      ->check(CLI::Range(32, 1024));
  app.add_option("--depth", cfg.depth, "VGG depth for scratch mode: 11 (default), 13, 16 or 19")->check(CLI::IsMember({11, 13, 16, 19}));
  app.add_flag("--batch-norm,!--no-batch-norm", cfg.batch_norm,
               "scratch mode: VGG with batch norm after every convolution (default; --no-batch-norm: without)");
  app.add_option("--width-mult", cfg.width, "VGG width multiplier for scratch mode")->check(CLI::Range(0.01, 4.0));
  app.add_option("--lr", cfg.lr, "learning rate (default 1e-3; 1e-4 for finetune), cosine-annealed");
  app.add_option("--optimizer", cfg.optimizer, "adamw (default: decoupled weight decay), adam or sgd (Nesterov momentum 0.9)")
      ->check(CLI::IsMember({"adam", "adamw", "sgd"}));
  app.add_option("--weight-decay", cfg.weight_decay, "weight decay (decoupled for adamw, default 0.05; L2 for adam "
                 "and sgd, default 0)");
  app.add_option("--warmup-epochs", cfg.warmup_epochs, "linear learning-rate warm-up before the cosine decay (default 1)")
      ->check(CLI::Range(0.0, 100.0));
  app.add_option("--label-smoothing", cfg.label_smoothing, "BCE targets y (1 - e) + e / 2")->check(CLI::Range(0.0, 0.5));
  app.add_option("--ema", cfg.ema_decay, "decay of an exponential moving average of the weights, validated and kept (default 0.995; 0: off)")
      ->check(CLI::Range(0.0, 0.99999));
  app.add_option("--select", cfg.select, "best (the epoch with the best validation AUC, early stopping) or last "
                 "(cross-validation always keeps the last)")->check(CLI::IsMember({"best", "last"}));
  app.add_option("--folds", cfg.folds, "cross-validation folds by patient (docs/evaluation_protocol.md): one model per "
                 "fold, the held-out folds scored under acquisition shifts, the ensemble written (default 3); 1: one "
                 "model on a validation split of --val-fraction")->check(CLI::Range(1, 20));
  app.add_option("--threshold-on", cfg.threshold_on, "with --folds: apply --threshold-rule to the clean out-of-fold "
                 "predictions, or to those under every shift of the protocol pooled")->check(CLI::IsMember({"clean", "shifts"}));
  app.add_option("--device", cfg.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--seed", cfg.seed, "seed of the split, initialisation, augmentation and order");
  app.add_option("--val-fraction", cfg.val_fraction, "validation fraction of each class")->check(CLI::Range(0.01, 0.9));
  app.add_option("--max-images", cfg.max_images, "use a stratified subset of at most N images");
  app.add_option("--patience", cfg.patience, "early stopping: epochs without a better validation AUC")->check(CLI::Range(1, 1000));
  app.add_option("--views", cfg.views, "head/finetune: cached augmented views per training image")->check(CLI::Range(1, 16));
  app.add_option("--workers", cfg.workers, "image decoding threads")->check(CLI::Range(1, 64));
  app.add_option("--threads", cfg.threads, "compute threads (default NN_NUM_THREADS or all cores)");
  app.add_flag("--balanced", cfg.balanced, "balanced sampling instead of a positive-class weight");
  app.add_flag("--no-augment", cfg.no_augment, "no augmentation and no acquisition shifts");
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
  app.add_option("--brightness", cfg.augment.brightness, "augmentation: brightness shift range (+-)");
  app.add_option("--contrast", cfg.augment.contrast, "augmentation: contrast factor range (1 +-; default 0.4)");
  app.add_option("--translate", cfg.augment.translate, "augmentation: translation range, fraction of the side (+-)");
  app.add_option("--aspect", cfg.augment.aspect, "augmentation: horizontal scale log-uniform in [1/(1+A), 1+A] (default 0.35)")
      ->check(CLI::Range(0.0, 3.0));
  app.add_option("--histogram-mix", cfg.histogram_mix, "augmentation: probability of taking another training "
                 "image's gray-level histogram (default 0.25; 0: off)")->check(CLI::Range(0.0, 1.0));
  app.add_option("--gamma", cfg.degrade.gamma_max, "acquisition shifts: gamma log-uniform in [1/G, G] (default 1.8; 1: off)")->check(CLI::Range(1.0, 5.0));
  app.add_option("--blur", cfg.degrade.blur_sigma_max, "acquisition shifts: Gaussian blur sigma up to S pixels, half of the images (default 1.5; 0: off)");
  app.add_option("--noise", cfg.degrade.noise_sigma_max, "acquisition shifts: Gaussian noise sigma up to S, half of the images (default 0.05; 0: off)");
  app.add_option("--downscale", cfg.degrade.downscale_min, "acquisition shifts: down to a factor in [F, 1] and back, half of the images (default 0.4; 1: off)")
      ->check(CLI::Range(0.05, 1.0));
  app.add_option("--jpeg", cfg.degrade.jpeg_quality_min, "acquisition shifts: JPEG quality in [Q, 95], half of the images (default 20; 95: off)")
      ->check(CLI::Range(1, 95));
  try {
    app.parse(argc, argv);
    // Weight decay's default belongs to adamw; as L2 in adam or sgd it would be another recipe.
    if (app.count("--weight-decay") == 0 && cfg.optimizer != "adamw") cfg.weight_decay = 0;
    // The transfer modes keep their own epochs, learning rate and resolution defaults (trainer.h).
    if (app.count("--epochs") == 0 && cfg.mode == "scratch") cfg.epochs = 8;
    // A degradation given a strength happens to half of the images.
    if (cfg.degrade.blur_sigma_max > 0) cfg.degrade.blur_probability = 0.5;
    if (cfg.degrade.noise_sigma_max > 0) cfg.degrade.noise_probability = 0.5;
    if (cfg.degrade.downscale_min < 1) cfg.degrade.downscale_probability = 0.5;
    if (cfg.degrade.jpeg_quality_min < 95) cfg.degrade.jpeg_probability = 0.5;
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    pneumonia::train(cfg);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pneumonia-train: %s\n", e.what());
    return 1;
  }
}
