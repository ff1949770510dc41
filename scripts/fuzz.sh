#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz (see tests/fuzz/README.md).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    open-ended fuzzing, to find new inputs
#   scripts/fuzz.sh --smoke [TARGET...]                 CI's check: the same verdict on every run
#
# SECONDS_PER_TARGET defaults to 600; TARGETs default to all (fuzz_safetensors fuzz_image
# fuzz_torch_checkpoint fuzz_keras_h5 fuzz_multipart fuzz_dicom fuzz_onnx fuzz_png_encode).
#
# --smoke (what scripts/test.sh and so CI run) is deterministic: per target it first replays every
# file of tests/fuzz/regressions/<target>/ (inputs that once broke a reader; a new finding is
# committed there together with its fix) and every seed, one execution each, then fuzzes from the
# seeds into a fresh corpus with a fixed -seed and a fixed number of executions (-runs, below),
# with address-space randomisation off, so the same commit gives the same verdict. Its per-target
# executions can be scaled with SMOKE_SCALE (a percentage, default 100).
# Configures and builds build-fuzz (clang, -DNN_FUZZ=ON) when needed, writes the seed corpora
# (tests/fuzz/make_corpus.py) to build-fuzz/seeds/<target>/, grows build-fuzz/corpus/<target>/,
# and writes crashing, leaking, timing-out or over-allocating inputs to build-fuzz/crashes/<target>/.
# Each target runs as one process (one worker, one job) under nice, with the memory limits of the
# fuzzing issue: no input may make a reader allocate more than 1 GiB (-malloc_limit_mb) or grow the
# process past 2 GiB (-rss_limit_mb). Prints, per target: executions, exec/s, coverage (cov, ft)
# and crashes found. Exits 1 when any target found something.
#
# Environment: BUILD_DIR (default build-fuzz), FUZZ_ARGS (extra libFuzzer flags), NICE (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
if [ "${1:-}" = "--smoke" ]; then
  smoke=1
  shift
  seconds=0
else
  seconds=${1:-600}
  shift || true
fi
targets=("$@")
all_targets=(fuzz_safetensors fuzz_image fuzz_torch_checkpoint fuzz_keras_h5 fuzz_multipart fuzz_dicom fuzz_onnx fuzz_png_encode)
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
build=${BUILD_DIR:-build-fuzz}
nice_level=${NICE:-10}

for t in "${targets[@]}"; do
  case $t in
    fuzz_safetensors | fuzz_image | fuzz_torch_checkpoint | fuzz_keras_h5 | fuzz_multipart | fuzz_dicom | fuzz_onnx | fuzz_png_encode) ;;
    *) echo "fuzz.sh: unknown target '$t' (${all_targets[*]})" >&2; exit 2 ;;
  esac
done

if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ nice -n "$nice_level" cmake -S . -B "$build" -DNN_FUZZ=ON -DNN_CUDA=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNN_BUILD_TESTS=OFF -DNN_BUILD_BENCH=OFF -DNN_BUILD_EXAMPLES=OFF
fi
nice -n "$nice_level" cmake --build "$build" --target "${targets[@]}" -j "$(nproc)"

python3 tests/fuzz/make_corpus.py "$build/seeds" > /dev/null

# Per-target input size limits: larger inputs add nothing but time (fuzz_keras_h5's input is a
# recipe for a file, not the file).
max_len() {
  case $1 in
    fuzz_safetensors | fuzz_torch_checkpoint | fuzz_dicom | fuzz_onnx) echo 16384 ;;
    fuzz_image) echo 65536 ;;
    fuzz_png_encode) echo 4096 ;;  # its loops run per byte; the multi-block path is in the unit tests
    fuzz_keras_h5) echo 2048 ;;
    fuzz_multipart) echo 8192 ;;
  esac
}
dict_flag() {
  case $1 in
    fuzz_safetensors) echo -dict=tests/fuzz/safetensors.dict ;;
    fuzz_image) echo -dict=tests/fuzz/image.dict ;;
    fuzz_torch_checkpoint) echo -dict=tests/fuzz/torch_checkpoint.dict ;;
    fuzz_multipart) echo -dict=tests/fuzz/multipart.dict ;;
    fuzz_dicom) echo -dict=tests/fuzz/dicom.dict ;;
    fuzz_onnx) echo -dict=tests/fuzz/onnx.dict ;;
  esac
}

# ASan's quarantine (256 MiB by default) holds freed blocks back from reuse to catch use after free.
# fuzz_keras_h5 frees megabytes per execution inside libhdf5 (uninstrumented), so a full quarantine
# only made every block a fresh mapping: 16 MiB still outlasts any one execution and runs the target
# about 1.5x faster. An ASAN_OPTIONS from the caller wins.
asan_options() {
  case $1 in
    fuzz_keras_h5) echo "${ASAN_OPTIONS:-quarantine_size_mb=16}" ;;
    *) echo "${ASAN_OPTIONS:-}" ;;
  esac
}

# The smoke run's executions per target, sized to about a minute each on the 2-core development
# machine (measured 2026-12-06: 23-30 s for half these numbers).
smoke_runs() {
  local n
  case $1 in
    fuzz_safetensors) n=300000 ;;
    fuzz_image) n=80000 ;;
    fuzz_torch_checkpoint) n=400000 ;;
    fuzz_keras_h5) n=16000 ;;
    fuzz_multipart) n=1200000 ;;
    fuzz_dicom) n=600000 ;;  # measured 2026-12-07: 300000 in 20 s beside a training run
    fuzz_onnx) n=200000 ;;
    fuzz_png_encode) n=60000 ;;  # measured 2026-12-07: 100000 in 98 s
  esac
  echo $((n * ${SMOKE_SCALE:-100} / 100))
}

# LeakSanitizer suppressions: fuzz_dicom's (tests/fuzz/fuzz_dicom.lsan.supp) cover GDCM's leak of
# OpenJPEG's image header when a JPEG 2000 codestream fails to decode. An LSAN_OPTIONS from the
# caller wins.
lsan_options() {
  case $1 in
    fuzz_dicom) echo "${LSAN_OPTIONS:-suppressions=tests/fuzz/fuzz_dicom.lsan.supp}" ;;
    *) echo "${LSAN_OPTIONS:-}" ;;
  esac
}

# Address-space randomisation off (setarch -R) where the system allows it: where blocks lie must
# not steer the run.
no_aslr=()
if setarch "$(uname -m)" -R true 2> /dev/null; then no_aslr=(setarch "$(uname -m)" -R); fi

summary=()
found_any=0
if [ "$smoke" -eq 1 ]; then
  for t in "${targets[@]}"; do
    log=$build/logs/$t.smoke.$(date -u +%Y%m%dT%H%M%SZ).log
    mkdir -p "$(dirname "$log")"
    corpus=$build/smoke/$t
    rm -rf "$corpus" "$build/smoke-crashes/$t"
    mkdir -p "$corpus" "$build/smoke-crashes/$t"
    replay=()
    [ -d "tests/fuzz/regressions/$t" ] && while IFS= read -r f; do replay+=("$f"); done < <(find "tests/fuzz/regressions/$t" -type f | sort)
    n_regressions=${#replay[@]}
    while IFS= read -r f; do replay+=("$f"); done < <(find "$build/seeds/$t" -type f | sort)
    runs=$(smoke_runs "$t")
    echo "== $t: replay of $n_regressions regression input(s) and $((${#replay[@]} - n_regressions)) seeds, then $runs executions from -seed=1 (log: $log)"
    set +e
    {
      ASAN_OPTIONS=$(asan_options "$t") LSAN_OPTIONS=$(lsan_options "$t") NN_NUM_THREADS=1 OMP_NUM_THREADS=1 \
        "${no_aslr[@]}" "$build/bin/$t" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=120 "${replay[@]}"
      rc_replay=$?
      echo "replay exit $rc_replay"
      rc_fuzz=0
      if [ "$rc_replay" -eq 0 ]; then
        ASAN_OPTIONS=$(asan_options "$t") LSAN_OPTIONS=$(lsan_options "$t") NN_NUM_THREADS=1 OMP_NUM_THREADS=1 \
          "${no_aslr[@]}" "$build/bin/$t" "$corpus" "$build/seeds/$t" $(dict_flag "$t") -max_len="$(max_len "$t")" -seed=1 -runs="$runs" \
          -reload=0 -timeout=120 -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
          -artifact_prefix="$build/smoke-crashes/$t/"
        rc_fuzz=$?
      fi
      echo "fuzz exit $rc_fuzz"
      [ "$rc_replay" -eq 0 ] && [ "$rc_fuzz" -eq 0 ]
    } > "$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
    if [ "$rc" -ne 0 ]; then
      found_any=1
      echo "-- last lines of $log:"
      tail -n 60 "$log" || true
    fi
    line=$(printf '%-22s replayed %4s  %9s execs  cov %6s  ft %6s  %s' "$t" "${#replay[@]}" "${execs:-?}" \
      "${cov:-?}" "${ft:-?}" "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)")
    echo "$line"
    summary+=("$line")
  done
  echo
  echo "== smoke summary ($(date -u +%Y-%m-%d); logs under $build/logs/)"
  printf '%s\n' "${summary[@]}"
  exit "$found_any"
fi

for t in "${targets[@]}"; do
  corpus=$build/corpus/$t
  crashes=$build/crashes/$t
  # The process id too: two runs started in the same second (side by side on one corpus) would
  # otherwise write one log file.
  log=$build/logs/$t.$(date -u +%Y%m%dT%H%M%SZ).$$.log
  mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
  # slow-unit-* files (an input over 10 s, libFuzzer's -report_slow_units, while fuzzing goes on)
  # are listed but not counted: on a loaded machine a fast input can take that long. A real hang
  # is a timeout-* crash (-timeout=10 stops the run), which counts.
  before=$(find "$crashes" -type f ! -name 'slow-unit-*' | wc -l)
  slow_before=$(find "$crashes" -type f -name 'slow-unit-*' | wc -l)
  echo "== $t: ${seconds} s (log: $log)"
  # The library's own threads (OpenMP) would only slow a single fuzzing process down: libnn sizes
  # its pool from NN_NUM_THREADS (it overrides OMP_NUM_THREADS with the core count otherwise), and
  # an idle OpenMP worker spinning in sched_yield took half a core from the other target.
  set +e
  ASAN_OPTIONS=$(asan_options "$t") LSAN_OPTIONS=$(lsan_options "$t") NN_NUM_THREADS=1 OMP_NUM_THREADS=1 \
    nice -n "$nice_level" "$build/bin/$t" "$corpus" "$build/seeds/$t" \
    $(dict_flag "$t") -max_len="$(max_len "$t")" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$crashes/" \
    ${FUZZ_ARGS:-} > "$log" 2>&1
  rc=$?
  set -e
  after=$(find "$crashes" -type f ! -name 'slow-unit-*' | wc -l)
  slow=$(( $(find "$crashes" -type f -name 'slow-unit-*' | wc -l) - slow_before ))
  [ "$slow" -eq 0 ] || echo "note: $slow slow unit(s) written to $crashes (see the log); not counted as crashes"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
  units=$(find "$corpus" -type f | wc -l)
  new=$((after - before))
  if [ "$rc" -ne 0 ] || [ "$new" -gt 0 ]; then
    found_any=1
    echo "-- last lines of $log:"
    tail -n 60 "$log" || true
  fi
  line=$(printf '%-22s %6s s  %10s execs  %7s exec/s  cov %6s  ft %6s  corpus %6s  crashes %s (exit %s)' \
    "$t" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$units" "$new" "$rc")
  echo "$line"
  summary+=("$line")
done

echo
echo "== summary ($(date -u +%Y-%m-%d), crashes under $build/crashes/)"
printf '%s\n' "${summary[@]}"
exit "$found_any"
