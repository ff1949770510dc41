#!/usr/bin/env bash
# The main job: installs what is missing, builds, trains the pneumonia classifier and evaluates it.
#
#   scripts/demo.sh                      # real data if found, else a SYNTHETIC set (a few minutes)
#   DATA=path/to/chest_xray scripts/demo.sh
#
# Data: $DATA (a folder with NORMAL/ and PNEUMONIA/, or one holding train/), else
# data/chest_xray/train or ../shared/data/chest_xray/train when present; otherwise the project's
# synthetic chest-X-ray generator makes a small training set and a separate test set.
# Mode: head (frozen ImageNet VGG16 + new head) when weights/vgg16_imagenet.safetensors exists
# (see weights/README.md), otherwise scratch. Extra arguments go to pneumonia-train.
# Results: runs/demo/ (model.safetensors, summary.json, curves.png, roc.png; with the default
# cross-validation also protocol.json, reliability.png and a folder per fold; a model card).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_deps.sh

build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${NN_CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)" --target pneumonia-train pneumonia-predict make-synthetic-xrays
bin="$build/bin"
mkdir -p runs

data="${DATA:-}"
if [[ -z "$data" ]]; then
  for candidate in data/chest_xray/train ../shared/data/chest_xray/train; do
    if [[ -d "$candidate/NORMAL" && -d "$candidate/PNEUMONIA" ]]; then data="$candidate"; break; fi
  done
fi
if [[ -n "$data" && -d "$data/train" && ! -d "$data/NORMAL" ]]; then data="$data/train"; fi

synthetic=0
test_dir=""
if [[ -z "$data" ]]; then
  synthetic=1
  echo "=================================================================="
  echo " No chest X-ray folder found (set DATA=...): using SYNTHETIC images"
  echo " made by make-synthetic-xrays. The numbers below are NOT clinical."
  echo "=================================================================="
  "$bin/make-synthetic-xrays" --out runs/synthetic-train --normal 500 --pneumonia 500 --size 128 --seed 1 --overwrite
  "$bin/make-synthetic-xrays" --out runs/synthetic-test --normal 150 --pneumonia 150 --size 128 --seed 2 --overwrite
  data=runs/synthetic-train
  test_dir=runs/synthetic-test
fi

weights=weights/vgg16_imagenet.safetensors
if [[ -f "$weights" ]]; then
  mode=(--mode head --weights "$weights")
else
  echo "note: $weights not found, so this run trains from scratch. For transfer learning from"
  echo "      ImageNet, convert torchvision's VGG16 once (weights/README.md):"
  echo "        $bin/nn-convert torchvision vgg16-397923af.pth -o $weights"
  mode=(--mode scratch)
fi
if ((synthetic)); then
  # A short run (about 3-5 minutes on 2 cores): small images, 20 epochs, a lower learning rate
  # (at 1e-3 the VGG without batch norm can die on this small set). The from-scratch VGG needs a
  # few epochs before it starts to learn; measured 2026-11-25: test AUC 0.997.
  extra=(--epochs 20 --patience 10 --lr 3e-4 --image-size 64 --width-mult 0.25 --folds 1)
else
  extra=()
fi

"$bin/pneumonia-train" --data "$data" --out runs/demo "${mode[@]}" "${extra[@]}" "$@"
if [[ -n "$test_dir" ]]; then
  echo "evaluation on a separate synthetic test set ($test_dir):"
  "$bin/pneumonia-predict" --model runs/demo/model.safetensors --eval "$test_dir"
fi
card_data="${test_dir:-$data}"
"$bin/pneumonia-predict" --model runs/demo/model.safetensors --eval "$card_data" --card runs/demo/model_card.md > /dev/null
echo "results in runs/demo/: model.safetensors, summary.json, curves.png, roc.png, model_card.md"
echo "(protocol.json and reliability.png too when cross-validated; the card's numbers are on $card_data)"
if [[ -z "$test_dir" ]]; then
  echo "note: that is the training folder, so the card's metrics flatter; protocol.json holds the out-of-fold numbers"
fi
if ((synthetic)); then echo "(trained and evaluated on SYNTHETIC data)"; fi
