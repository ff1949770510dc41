#!/usr/bin/env bash
# Installs what is missing, configures, builds and runs every test (CTest labels: cpu, golden,
# cuda (skips without a GPU), data (skips without ../shared/data)), then, when clang is present
# (install_deps.sh installs it), the deterministic fuzzing smoke run of every libFuzzer target
# (scripts/fuzz.sh --smoke: the committed regression inputs and seeds, then a fixed number of
# executions from a fixed seed; FUZZ_SMOKE=0 skips it; see tests/fuzz/README.md). CI runs this via
# .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_deps.sh

build=${BUILD_DIR:-build}
jobs=$(nproc)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${NN_CMAKE_ARGS:-}
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 900

if [ "${FUZZ_SMOKE:-1}" != 0 ] && command -v clang++ > /dev/null; then
  BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz} scripts/fuzz.sh --smoke
else
  echo "fuzz smoke run skipped (FUZZ_SMOKE=${FUZZ_SMOKE:-1}, clang++ $(command -v clang++ || echo absent))"
fi
