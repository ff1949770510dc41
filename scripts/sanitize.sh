#!/usr/bin/env bash
# Builds nn with AddressSanitizer + UndefinedBehaviorSanitizer (gcc, CPU only) and runs the CTest
# suite under them; any ASan error, leak or UBSan report fails its test. See docs/sanitizers.md.
#   scripts/sanitize.sh [LABEL...]     default label: cpu (e.g. "scripts/sanitize.sh cpu golden")
# Environment: BUILD_DIR (default build-asan), JOBS (default: nproc), NN_SANITIZE (default
# address,undefined), NN_CMAKE_ARGS (extra configure arguments).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${BUILD_DIR:-build-asan}
jobs=${JOBS:-$(nproc)}
labels=("$@")
[[ ${#labels[@]} -gt 0 ]] || labels=(cpu)

t0=$SECONDS
# shellcheck disable=SC2086
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNN_CUDA=OFF \
  -DNN_SANITIZE="${NN_SANITIZE:-address,undefined}" -DNN_BUILD_BENCH=OFF ${NN_CMAKE_ARGS:-} || exit 1
cmake --build "$build" -j "$jobs" || exit 1
build_s=$((SECONDS - t0))

# Leaks are errors; the first report of any kind aborts the process (so the test fails).
sup="$root/tests/sanitizer"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$sup/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$sup/ubsan.supp${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

status=0
summary=()
for label in "${labels[@]}"; do
  t1=$SECONDS
  log="$build/sanitize-$label.log"
  ctest --test-dir "$build" -L "$label" -j "$jobs" --timeout 900 --output-on-failure 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  [[ $rc -eq 0 ]] || status=1
  line=$(grep -E '^[0-9]+% tests passed' "$log" | tail -1)
  summary+=("$label: ${line:-no tests ran} ($((SECONDS - t1)) s, ctest exit $rc)")
done

echo
echo "== sanitizers: ${NN_SANITIZE:-address,undefined}; build $build ($build_s s incl. configure)"
for s in "${summary[@]}"; do echo "   $s"; done
reports=$(grep -l -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$build"/Testing/Temporary/LastTest*.log 2>/dev/null)
[[ -z $reports ]] || echo "   sanitizer reports in: $reports"
exit $status
