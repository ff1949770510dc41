#!/usr/bin/env bash
# Installs the Debian packages nn needs to build and test, when any is missing (see
# docs/dependencies.md). Run as root (CI and the dev machines are root); prints what it installs.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libeigen3-dev libstb-dev libjpeg62-turbo-dev nlohmann-json3-dev libcli11-dev
  libgdcm-dev libgdcm-tools                     # DICOM decoding (GDCM); gdcmconv makes the compressed test files
  libonnx-dev libprotobuf-dev                   # ONNX export and import (nn::onnx, interop/)
  libplplot-dev plplot-driver-cairo             # pneumonia charts (PNG via cairo)
  libzip-dev zipcmp zipmerge ziptool libhdf5-dev  # nn-convert (libzip's CMake config names the zip tools)
  libgtest-dev libbenchmark-dev
  clang libclang-rt-14-dev                      # libFuzzer targets (tests/fuzz; scripts/fuzz.sh)
  libboost-dev zlib1g-dev                       # pneumonia-serve: Boost.Beast / Asio (header-only), fast PNG
  chromium chromium-driver python3-selenium     # the web app's browser test (headless)
  python3-torch python3-torchvision python3-h5py python3-numpy python3-sklearn python3-pydicom  # golden references, test files (/usr/bin/python3)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Test-only peer from PyPI: the official safetensors package reads and writes files in the interop
# test (tests/safetensors_interop.py), which skips when it is absent. Never needed at run time.
if ! python3 -c "import safetensors" >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check safetensors >/dev/null 2>&1 ||
    echo "warning: could not pip install safetensors; the interop test will skip"
fi
