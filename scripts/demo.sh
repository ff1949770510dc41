#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job. For now: train a small CNN on synthetic
# images, evaluate it, save it as safetensors and check the reloaded model agrees.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_deps.sh

build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${NN_CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)" --target train-synthetic
mkdir -p runs
"$build/bin/train-synthetic" --out runs/synthetic_cnn.safetensors "$@"
