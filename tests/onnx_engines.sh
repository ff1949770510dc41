#!/usr/bin/env bash
# ONNX files from nn against onnxruntime and OpenVINO, and torchvision's VGGs exported by
# torch.onnx.export imported by nn (tests/onnx_engines.py). The peers are test-only: pinned, from
# PyPI, in a virtual environment over Debian's Python (which has torch and torchvision). Exit 77
# (CTest's skip) when they cannot be installed, e.g. without network.
#   usage: tests/onnx_engines.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
venv=${NN_ONNX_PEERS_VENV:-$build/venv-onnx-peers}
peers=("numpy<2" "onnxruntime==1.32.0" "openvino==2026.4.1")
if ! "$venv/bin/python" -c "import onnxruntime, openvino, torch, torchvision" >/dev/null 2>&1; then
  rm -rf "$venv"
  if ! /usr/bin/python3 -m venv --system-site-packages "$venv" >/dev/null 2>&1; then
    echo "SKIP: cannot create a virtual environment with /usr/bin/python3"; exit 77
  fi
  if ! "$venv/bin/pip" install -q --disable-pip-version-check "${peers[@]}" >/dev/null 2>&1; then
    rm -rf "$venv"
    echo "SKIP: pip could not install ${peers[*]}"; exit 77
  fi
fi
exec "$venv/bin/python" "$here/onnx_engines.py" "$build" "$@"
