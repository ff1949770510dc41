#!/usr/bin/env bash
# Installs the nn build in BUILD_DIR into a temporary prefix, builds examples/consumer against it
# out of tree twice - with find_package(nn) (CMake) and with its plain Makefile through pkg-config
# (the installed lib/pkgconfig/nn.pc) - and runs both builds' programs: an MLP on nn::nn (exits 1 if
# it did not learn), a small VGG on nn::models (exits 1 on a wrong shape) and, when nn was built
# with ONNX, an export / import round trip on nn::onnx (nn-onnx.pc for the Makefile).
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
if [ -f "$build/nn-onnx.pc" ]; then "$tmp/build/onnx_round_trip"; fi
# pkg-config and make, no CMake.
pc_dir=$(dirname "$(find "$tmp/prefix" -name nn.pc | head -1)")
[[ -f "$pc_dir/nn.pc" ]] || { echo "no nn.pc installed under $tmp/prefix"; exit 1; }
mkdir -p "$tmp/make"
PKG_CONFIG_PATH="$pc_dir" make -s -C "$src/examples/consumer" OUT="$tmp/make" -j 2
"$tmp/make/xor_mlp"
"$tmp/make/vgg_shapes"
if [ -f "$build/nn-onnx.pc" ]; then "$tmp/make/onnx_round_trip"; fi
