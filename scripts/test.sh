#!/usr/bin/env bash
# Installs what is missing, configures, builds and runs every test (CTest labels: cpu, golden,
# cuda (skips without a GPU), data (skips without ../shared/data)). CI runs this via .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_deps.sh

build=${BUILD_DIR:-build}
jobs=$(nproc)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${NN_CMAKE_ARGS:-}
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 900
