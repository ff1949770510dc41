#!/usr/bin/env bash
# Runs the CPU benchmark (nn_bench_cpu, built beforehand: this script builds nothing), saves its
# Google Benchmark JSON as bench/results/cpu-<date>.json, then prints ours vs PyTorch with
# bench/torch_bench.py (and saves that table as bench/results/cpu-<date>-torch.json).
#   BUILD_DIR=build  NN_NUM_THREADS=2  [PYTHON=python3]  bench/run_cpu_bench.sh [extra nn_bench_cpu flags, e.g.
#   --benchmark_filter=BM_Conv2dForward/]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${BUILD_DIR:-$root/build}"
bench="$build_dir/bin/nn_bench_cpu"
if [[ ! -x "$bench" ]]; then
  echo "run_cpu_bench.sh: $bench not found; build it first: cmake --build $build_dir --target nn_bench_cpu" >&2
  exit 2
fi
export NN_NUM_THREADS="${NN_NUM_THREADS:-2}"
mkdir -p "$root/bench/results"
# OUT_NAME names the result files (default cpu-<date>), so a filtered run does not overwrite a full one.
out="$root/bench/results/${OUT_NAME:-cpu-$(date +%F)}.json"
"$bench" --benchmark_out="$out" --benchmark_out_format=json "$@"
# The first python3 that has torch (a pyenv python3 may shadow Debian's, which has it).
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c "import torch" 2>/dev/null; then python="$candidate"; break; fi
  done
fi
if [[ -z "$python" ]]; then
  echo "run_cpu_bench.sh: no python3 with torch found (Debian: apt-get install python3-torch); set PYTHON=" >&2
  exit 1
fi
"$python" "$root/bench/torch_bench.py" "$out" --threads "$NN_NUM_THREADS" --json "${out%.json}-torch.json"
