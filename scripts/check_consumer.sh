#!/usr/bin/env bash
# Installs the nn build in BUILD_DIR into a temporary prefix, builds examples/consumer against it
# out of tree with find_package(nn), and runs its programs: an MLP on nn::nn (exits 1 if it did not
# learn) and a small VGG on nn::models (exits 1 on a wrong shape).
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/examples/consumer" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/build" -j 2 >/dev/null
"$tmp/build/xor_mlp"
"$tmp/build/vgg_shapes"
