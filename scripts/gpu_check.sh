#!/usr/bin/env bash
# The whole-project GPU check (docs/gpu.md, ../shared/docs/GPU.md), run on a GPU machine over a
# build made elsewhere:
#   here:  cmake -S . -B build-gpu -DNN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release
#          cmake --build build-gpu -j && scripts/gpu_check.sh --prepare build-gpu
#   there: scripts/gpu_check.sh RESULTS_DIR [BUILD_DIR]
# Prints the card, finds the CUDA libraries, runs the cuda tests, compute-sanitizer memcheck and
# racecheck on a subset, the CUDA benchmarks when they exist (JSON into RESULTS_DIR), then a table.
set -uo pipefail

if [ "${1:-}" = "--prepare" ]; then
  # Copy the shared libraries the GPU machine may lack next to the binaries.
  build=${2:-build-gpu}
  mkdir -p "$build/lib"
  for bin in "$build"/bin/*; do
    [ -x "$bin" ] || continue
    ldd "$bin" 2>/dev/null | awk '/=> \// {print $3}' | grep -E 'libgomp|libbenchmark|libgtest|libstdc\+\+|libgcc_s' |
      while read -r lib; do cp -Lu "$lib" "$build/lib/"; done
  done
  du -sh "$build"
  exit 0
fi

results=${1:?usage: gpu_check.sh RESULTS_DIR [BUILD_DIR]}
build=${2:-build-gpu}
mkdir -p "$results"
log="$results/gpu_check.log"
exec > >(tee "$log") 2>&1

echo "== card"
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,memory.total --format=csv || echo "nvidia-smi failed"
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader > "$results/card.txt" 2>/dev/null

echo "== libraries"
libdirs="$build/lib"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [ -d "$d" ] && libdirs="$libdirs:$d"; done
for pattern in 'nvidia/cudnn/lib' 'nvidia/cublas/lib' 'nvidia/cuda_runtime/lib'; do
  for d in $(find / -path "*$pattern" -type d 2>/dev/null | head -3); do libdirs="$libdirs:$d"; done
done
export LD_LIBRARY_PATH="$libdirs:${LD_LIBRARY_PATH:-}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

status=0
echo "== cuda tests"
"$build/bin/nn_tests" --gtest_filter='*Cuda*' --gtest_output="json:$results/cuda_tests.json" || status=1

echo "== compute-sanitizer"
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$sanitizer" ]; then
  for tool in memcheck racecheck; do
    "$sanitizer" --tool "$tool" --error-exitcode 3 "$build/bin/nn_tests" --gtest_filter='Cuda.*' >"$results/sanitizer_$tool.txt" 2>&1 \
      && echo "$tool: clean" || { echo "$tool: FAILED (see sanitizer_$tool.txt)"; status=1; }
  done
else
  echo "compute-sanitizer not found"
fi

echo "== benchmarks"
for bench in "$build"/bin/nn_bench_cuda*; do
  [ -x "$bench" ] || continue
  name=$(basename "$bench")
  "$bench" --benchmark_out="$results/$name.json" --benchmark_out_format=json --benchmark_min_time=0.2 || status=1
done
[ -e "$build"/bin/nn_bench_cuda ] || echo "(no CUDA benchmarks in this build yet)"

echo "== summary"
python3 - "$results" <<'PY' || true
import json, os, sys
d = sys.argv[1]
t = os.path.join(d, "cuda_tests.json")
if os.path.exists(t):
    j = json.load(open(t))
    print(f"cuda tests: {j.get('tests')} run, {j.get('failures')} failed, {j.get('disabled', 0)} disabled")
for f in sorted(os.listdir(d)):
    if f.startswith("nn_bench_cuda") and f.endswith(".json"):
        for b in json.load(open(os.path.join(d, f))).get("benchmarks", []):
            print(f"{b['name']:60s} {b.get('real_time', 0):10.3f} {b.get('time_unit', '')}")
PY
exit $status
