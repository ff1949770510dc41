#!/usr/bin/env bash
# The whole-project GPU check (docs/gpu.md, ../shared/docs/GPU.md), run on a GPU machine over a
# build made elsewhere:
#   here:  cmake -S . -B build-gpu -DNN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release
#          cmake --build build-gpu -j && scripts/gpu_check.sh --prepare build-gpu
#   there: scripts/gpu_check.sh RESULTS_DIR build-gpu/gpu-carry.tar.xz   (or a build dir)
# Prints the card, finds the CUDA libraries, runs the cuda tests and the cuBLAS/cuDNN peer tests,
# the kernel benchmarks (JSON into RESULTS_DIR), VGG16 against PyTorch on the GPU, compute-sanitizer
# memcheck and racecheck on a subset, a short pneumonia-train run on the GPU, then a table.
# Each step runs under a time limit; the benchmarks come before the slow sanitizers so that a run
# cut short by the device's time limit still has its numbers.
set -uo pipefail

if [ "${1:-}" = "--prepare" ]; then
  # Copy every shared library the binaries need except glibc's and the CUDA driver's into lib/ beside them:
  # the GPU machine has a bare system (no HDF5, libzip, GoogleTest, Google Benchmark). cuBLAS and
  # cuDNN (needed only by the peer tests and benchmarks) are too big to carry and are looked up on
  # the GPU machine below. Then strip the binaries into $build/gpu-carry.tar.xz (29 MB on 2026-11-26; the
  # device tool carries at most 64 MiB), the file to carry.
  build=${2:-build-gpu}
  # Staged afresh each time, so libraries of programs no longer carried do not travel.
  stage=$(mktemp -d)
  mkdir -p "$stage/bin" "$stage/lib"
  # Only the programs this check runs: all fifteen would be about 52 MB of xz, near the limit.
  bins=()
  for name in nn_tests nn_cuda_peer_tests vgg16-bench pneumonia-train make-synthetic-xrays; do
    [ -x "$build/bin/$name" ] && bins+=("$build/bin/$name")
  done
  for bin in "$build"/bin/nn_bench_cuda_*; do [ -x "$bin" ] && bins+=("$bin"); done
  for bin in "${bins[@]}"; do
    ldd "$bin" 2>/dev/null | awk '/=> \// {print $1, $3}' |
      grep -vE '^(libc|libm|libdl|librt|libpthread|ld-linux[^ ]*|libcuda|libcublas[^ ]*|libcudnn[^ ]*|libnvrtc[^ ]*)\.so' |
      while read -r _ lib; do cp -L "$lib" "$stage/lib/"; done
    strip -o "$stage/bin/$(basename "$bin")" "$bin"
  done
  tar -C "$stage" -cf - bin lib | xz -T0 -6 > "$build/gpu-carry.tar.xz"
  rm -rf "$stage"
  du -sh "$build/gpu-carry.tar.xz"
  exit 0
fi

results=${1:?usage: gpu_check.sh RESULTS_DIR [BUILD_DIR | BUILD_DIR/gpu-carry.tar.xz]}
build=${2:-build-gpu}
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -f "$build" ]; then  # the --prepare tarball: unpack it
  unpacked=$(mktemp -d)
  tar -xJf "$build" -C "$unpacked" || { echo "cannot unpack $build"; exit 2; }
  build=$unpacked
fi
mkdir -p "$results"
log="$results/gpu_check.log"
exec > >(tee "$log") 2>&1
status=0
skip=${NN_GPU_CHECK_SKIP:-}  # e.g. "sanitizer vgg pneumonia nn_bench_cuda_conv": sections to leave out
# step NAME SECONDS CMD...: runs CMD under a time limit, so one hang cannot use up the device time.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  echo "-- $name: exit $rc in $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || status=1
  return $rc
}

echo "== card"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.sm,power.limit,memory.total --format=csv || echo "nvidia-smi failed"
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader > "$results/card.txt" 2>/dev/null

echo "== libraries"
# Our binaries carry their own libraries in lib/ of the unpacked tarball. cuBLAS and cuDNN come from the machine:
# the CUDA toolkit's directory, the system's cuDNN (ldconfig), else those inside a Python package.
libdirs="$build/lib"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [ -d "$d" ] && libdirs="$libdirs:$d"; done
if ! ldconfig -p | grep -q 'libcudnn.so.9'; then
  for pattern in 'nvidia/cudnn/lib' 'nvidia/cublas/lib' 'nvidia/cu13/lib'; do
    for d in $(find / -path "*$pattern" -type d 2>/dev/null | head -3); do libdirs="$libdirs:$d"; done
  done
fi
export LD_LIBRARY_PATH="$libdirs:${LD_LIBRARY_PATH:-}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
for bin in "$build"/bin/nn_cuda_peer_tests "$build"/bin/nn_bench_cuda_conv; do
  [ -x "$bin" ] && ldd "$bin" | grep -E 'cublas|cudnn'
done

echo "== cuda tests"
step "nn_tests *Cuda*" 150 "$build/bin/nn_tests" --gtest_filter='*Cuda*' --gtest_brief=1 --gtest_output="json:$results/cuda_tests.json"
if [ -x "$build/bin/nn_cuda_peer_tests" ]; then
  step "nn_cuda_peer_tests (vs cuBLAS/cuDNN)" 100 "$build/bin/nn_cuda_peer_tests" --gtest_brief=1 --gtest_output="json:$results/cuda_peer_tests.json"
fi

echo "== kernel benchmarks (ours vs cuBLAS/cuDNN)"
found=0
for bench in "$build"/bin/nn_bench_cuda_*; do
  [ -x "$bench" ] || continue
  found=1
  name=$(basename "$bench")
  [[ " $skip " == *" $name "* ]] && { echo "($name skipped)"; continue; }
  step "$name" 200 "$bench" --benchmark_out="$results/$name.json" --benchmark_out_format=json
done
[ $found = 1 ] || echo "(no CUDA benchmarks in this build)"

echo "== VGG16 on the GPU vs PyTorch (cuDNN/cuBLAS, FP32, no TF32)"
py=""
for cand in /opt/torch/.venv/bin/python3 python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    py=$cand; break
  fi
done
if [[ " $skip " == *" vgg "* ]]; then
  echo "(skipped)"
elif [ -n "$py" ] && [ -x "$build/bin/vgg16-bench" ]; then
  step "VGG16 forward, batch 64" 150 "$py" "$repo/bench/vgg16_vs_pytorch.py" --bench "$build/bin/vgg16-bench" --device cuda \
    --batch 64 --warmup 2 --runs 5 --json "$results/vgg16_cuda_forward.json"
  step "VGG16 training step, batch 64" 200 "$py" "$repo/bench/vgg16_vs_pytorch.py" --bench "$build/bin/vgg16-bench" --device cuda \
    --train --head imagenet --batch 64 --warmup 2 --runs 5 --json "$results/vgg16_cuda_train.json"
else
  echo "(no Python with CUDA torch, or no vgg16-bench: skipped)"
fi

echo "== compute-sanitizer"
# Caching off, so every tensor is its own exact-size cudaMalloc and memcheck sees overruns.
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
# A subset that reaches every kernel family with edge tiles, strides and broadcasting (the OOM
# test is left out: memcheck reports the failed cudaMalloc it provokes).
memcheck_filter=${NN_MEMCHECK_FILTER:-'Cuda.*:CudaMemory.FreedBlocks*:CudaConv.OneByOne:CudaConv.NonSquareKernelsAndStrides:CudaConv.OddSizesAcrossTiles:CudaGemm.TransposedOperandsAllFourCases:CudaGemm.StridedAndMisalignedOperands:CudaGemm.BatchedWithBroadcastOperand:CudaOps.BinaryBroadcastAndStridedMatchCpu:CudaOps.SumAndMaxOverEachDimOf3dMatchCpu:CudaOps.SoftmaxAndLogSoftmaxRowsMatchCpu:CudaOps.MaxPoolForwardBackwardMatchCpu:CudaOps.AvgPoolPaddingAndCeilModeMatchCpu:CudaLoss.*:CudaOptim.*:CudaRandom.UniformStaysBelowHigh:CudaModel.*'}
racecheck_filter=${NN_RACECHECK_FILTER:-'CudaGemm.TransposedOperandsAllFourCases:CudaConv.OddSizesAcrossTiles:CudaOps.SoftmaxAndLogSoftmaxRowsMatchCpu:CudaOps.SumAndMaxOverEachDimOf3dMatchCpu'}
if [[ " $skip " == *" sanitizer "* ]]; then
  echo "(skipped)"
elif [ -n "$sanitizer" ]; then
  export NN_CUDA_CACHING=0
  for tool in memcheck racecheck; do
    filter=$memcheck_filter
    [ $tool = racecheck ] && filter=$racecheck_filter
    step "$tool" 150 "$sanitizer" --tool "$tool" --error-exitcode 3 "$build/bin/nn_tests" \
      --gtest_filter="$filter" --gtest_brief=1 >"$results/sanitizer_$tool.txt" 2>&1 \
      && echo "$tool: clean" || echo "$tool: FAILED (see sanitizer_$tool.txt)"
    tail -5 "$results/sanitizer_$tool.txt"
  done
  unset NN_CUDA_CACHING
else
  echo "compute-sanitizer not found"; status=1
fi

echo "== the pneumonia trainer on the GPU (synthetic images: mechanics and speed, not clinical)"
if [[ " $skip " == *" pneumonia "* ]]; then
  echo "(skipped)"
elif [ -x "$build/bin/pneumonia-train" ] && [ -x "$build/bin/make-synthetic-xrays" ]; then
  work=$(mktemp -d)
  "$build/bin/make-synthetic-xrays" --out "$work/train" --normal 500 --pneumonia 500 --size 128 --seed 1 >/dev/null
  step "pneumonia-train --device cuda (scratch, 1000 images, 6 epochs)" 100 "$build/bin/pneumonia-train" \
    --data "$work/train" --out "$work/run" --mode scratch --device cuda --epochs 6 --lr 3e-4 --image-size 64 \
    --width-mult 0.25 --seed 3 --folds 1
  cp "$work/run/summary.json" "$results/pneumonia_cuda_summary.json" 2>/dev/null
  tail -3 "$work/run/metrics.jsonl" 2>/dev/null
  rm -rf "$work"
else
  echo "(no pneumonia-train in this build)"
fi

echo "== summary"
python3 - "$results" <<'PY' || true
import json, os, sys
d = sys.argv[1]
for t in ("cuda_tests.json", "cuda_peer_tests.json"):
    p = os.path.join(d, t)
    if os.path.exists(p):
        j = json.load(open(p))
        print(f"{t}: {j.get('tests')} run, {j.get('failures')} failed, {j.get('disabled', 0)} disabled")
for f in sorted(os.listdir(d)):
    if f.startswith("nn_bench_cuda") and f.endswith(".json"):
        for b in json.load(open(os.path.join(d, f))).get("benchmarks", []):
            extra = "  ".join(f"{k} {b[k]:.3f}" for k in ("TFLOPs", "vs_cublas", "vs_cudnn") if k in b)
            err = "  ERROR " + b.get("error_message", "") if b.get("error_occurred") else ""
            print(f"{b['name']:58s} {b.get('real_time', 0):10.4f} {b.get('time_unit', '')}  {extra}{err}")
p = os.path.join(d, "pneumonia_cuda_summary.json")
if os.path.exists(p):
    j = json.load(open(p))
    print("pneumonia-train on cuda:", {k: v for k, v in j.items() if isinstance(v, (int, float, str))})
for f in ("vgg16_cuda_forward.json", "vgg16_cuda_train.json"):
    p = os.path.join(d, f)
    if os.path.exists(p):
        j = json.load(open(p))
        print(f"{f}: ours {j['nn']['images_per_second']:.1f} img/s, PyTorch ({j['pytorch_best_format']}) "
              f"{1 / j['pytorch'][j['pytorch_best_format']]['seconds_per_image']:.1f} img/s, ratio {j['ratio_images_per_second']:.3f}")
PY
exit $status
