#!/usr/bin/env bash
# End-to-end check of pneumonia-serve (run by CTest as pneumonia_serve_api):
#   check_serve.sh BUILD_DIR
# Trains a tiny model on generated X-rays (as check_pneumonia.sh's synthetic mode, 1 epoch), starts
# pneumonia-serve on a free port (--port 0, --read-timeout-s 4 for the slow-client test) and a
# second one with --threads 1 --queue 1 (the queue-full test), runs tests/serve/test_serve_api.py
# against them over loopback, then the browser test tests/serve/test_serve_browser.py when it
# exists (its exit 77 = skipped is not a failure), and stops the servers with SIGTERM (they must
# exit 0). The servers are killed on any exit.
set -euo pipefail
build=$(cd "$1" && pwd)
bin="$build/bin"
root="$(cd "$(dirname "$0")/.." && pwd)"
py=python3
command -v "$py" >/dev/null || py=/usr/bin/python3
[[ -x "$bin/pneumonia-serve" ]] || { echo "skipped: $bin/pneumonia-serve is not built"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/nn_serve.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/make-synthetic-xrays" --out "$work/train" --normal 40 --pneumonia 40 --size 64 --seed 21 >/dev/null
"$bin/pneumonia-train" --data "$work/train" --out "$work/run" --epochs 1 --image-size 64 --width-mult 0.125 \
  --batch-size 16 --threads 2 --seed 5 --folds 1 >"$work/train.log" 2>&1 || { cat "$work/train.log"; exit 1; }
model="$work/run/model.safetensors"
# The model card beside the model, which the server then serves at /model-card.
"$bin/pneumonia-predict" --model "$model" --eval "$work/train" --card "$work/run/model_card.md" --bootstrap 50 \
  --threads 2 >"$work/card.log" 2>&1 || { cat "$work/card.log"; exit 1; }
image="$work/train/PNEUMONIA/pneumonia_0000.png"

# Starts a server in the background; sets $port from its "listening on http://HOST:PORT" line.
start_server() {
  local log=$1
  shift
  # NN_SERVE_ARGS: extra server options for every server, e.g. "--device cuda" on a GPU machine.
  # The log exists before the server starts: the background job's redirection may run after the
  # first sed below (a race that once failed CI with "sed: can't read busy.log").
  : >"$log"
  # shellcheck disable=SC2086
  "$bin/pneumonia-serve" --model "$model" --port 0 "$@" ${NN_SERVE_ARGS:-} >>"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$log")
    [[ -n $port ]] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "pneumonia-serve exited:"; cat "$log"; exit 1; }
    sleep 0.1
  done
  echo "pneumonia-serve did not start in 30 s:"; cat "$log"; exit 1
}

start_server "$work/serve.log" --read-timeout-s 4 --threads 2
main_port=$port
start_server "$work/busy.log" --threads 1 --queue 1
busy_port=$port

status=0
"$py" "$root/tests/serve/test_serve_api.py" --url "http://127.0.0.1:$main_port" --png "$image" \
  --busy-url "http://127.0.0.1:$busy_port" || status=1

if [[ -f "$root/tests/serve/test_serve_browser.py" ]]; then
  set +e
  "$py" "$root/tests/serve/test_serve_browser.py" --url "http://127.0.0.1:$main_port" --image "$image" \
    --screenshot "$build/serve_screenshot.png"
  rc=$?
  set -e
  if [[ $rc -eq 77 ]]; then echo "browser test skipped"; elif [[ $rc -ne 0 ]]; then echo "browser test failed ($rc)"; status=1; fi
fi

# Both servers must still be alive, and stop cleanly (exit 0) on SIGTERM.
for pid in "${pids[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "a server died during the tests:"; cat "$work/serve.log" "$work/busy.log"; exit 1; }
  kill -TERM "$pid"
  rc=0
  wait "$pid" || rc=$?
  [[ $rc -eq 0 ]] || { echo "pneumonia-serve exited with $rc on SIGTERM"; status=1; }
done
pids=()
[[ $status -eq 0 ]] && echo "pneumonia-serve check passed"
exit $status
