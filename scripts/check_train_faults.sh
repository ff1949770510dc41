#!/usr/bin/env bash
# End-to-end faults of pneumonia-train (docs/reliability.md items 12 and 14), run by CTest
# (pneumonia_train_faults) on tiny generated images:
#   1. an --out that cannot be a folder fails at once, before the data is read, with the reason;
#   2. a run whose loss goes NaN (--optimizer sgd --lr 1e30; then a resumed run whose checkpoint's
#      learning rate was set to 1e30) is refused: exit 1, a message with the epoch, the step and the
#      first non-finite layer; the checkpoint already in the folder stays byte-identical; and a
#      resumed run whose loss stays finite while a gradient overflows (a checkpoint with a crafted
#      head) is refused the same way, naming the parameter;
#   3. kill -9 in the middle of training: the checkpoint on disk is whole and consistent, --resume
#      removes the temporary file a killed save leaves and finishes, counting steps on;
#   4. a full disk (a file-size limit: writes fail with EFBIG) at a checkpoint write: exit 1, a
#      message naming the file and the reason; checkpoint and model byte-identical, no temporary file.
#   check_train_faults.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
bin="$build/bin"
work=$(mktemp -d "${TMPDIR:-/tmp}/nn_train_faults.XXXXXX")
trap 'rm -rf "$work"' EXIT
py=python3
command -v "$py" >/dev/null || py=/usr/bin/python3

fail() { echo "FAIL: $*"; exit 1; }
# Runs pneumonia-train with the given arguments, output in $work/$name.out/.err; sets $rc.
train() {
  local name=$1
  shift
  set +e
  "$bin/pneumonia-train" "$@" > "$work/$name.out" 2> "$work/$name.err"
  rc=$?
  set -e
}
# Asserts that file $1 contains the extended regular expression $2.
expect_in() { grep -Eq -- "$2" "$1" || { cat "$1"; fail "$1 lacks /$2/"; }; }
# Fills tensors of safetensors file $1 in place, every element of each: fill_tensors FILE NAME=VALUE...
# (F32 and F64 tensors only; the file keeps its size and layout).
fill_tensors() {
  "$py" - "$@" <<'PY'
import json, struct, sys
formats = {"F32": "<f", "F64": "<d"}
with open(sys.argv[1], "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    for arg in sys.argv[2:]:
        name, value = arg.split("=")
        entry = header[name]
        assert entry["dtype"] in formats, entry
        fmt = formats[entry["dtype"]]
        begin, end = entry["data_offsets"]
        f.seek(8 + n + begin)
        f.write(struct.pack(fmt, float(value)) * ((end - begin) // struct.calcsize(fmt)))
PY
}
# Whole-file check of a checkpoint: header, offsets tiling the data exactly, and "epoch"/"step"
# metadata; prints "epoch step".
checkpoint_epoch_step() {
  "$py" - "$1" <<'PY'
import json, os, struct, sys
path = sys.argv[1]
size = os.path.getsize(path)
with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    assert 8 + n <= size, f"{path}: header length {n} past the end ({size} bytes)"
    header = json.loads(f.read(n))
meta = header.pop("__metadata__")
spans = sorted(tuple(v["data_offsets"]) for v in header.values())
end = 0
for begin, stop in spans:
    assert begin == end, f"{path}: gap or overlap at {begin}"
    end = stop
assert 8 + n + end == size, f"{path}: data ends at {8 + n + end}, file has {size} bytes"
assert any(k.startswith("optimizer.") for k in header), f"{path}: no optimizer state"
print(meta["epoch"], meta["step"])
PY
}

"$bin/make-synthetic-xrays" --out "$work/data" --normal 24 --pneumonia 24 --size 32 --seed 11 >/dev/null
# 36 training images in batches of 8: 5 steps per epoch.
args=(--data "$work/data" --folds 1 --image-size 32 --width-mult 0.0625 --depth 11 --batch-size 8 --val-fraction 0.25
      --threads 2 --workers 1 --seed 3 --patience 100)
steps_per_epoch=5

# ---- 1. unusable --out: at once, before the data is read ----
echo "a regular file" > "$work/file"
train enotdir "${args[@]}" --out "$work/file/run" --epochs 1
[[ $rc -eq 1 ]] || fail "--out under a regular file: exit $rc, expected 1"
expect_in "$work/enotdir.err" "cannot create the run folder $work/file/run: Not a directory"
grep -q "^data:" "$work/enotdir.out" && fail "--out under a regular file: the data was read before failing"
train isfile "${args[@]}" --out "$work/file" --epochs 1
[[ $rc -eq 1 ]] || fail "--out naming a regular file: exit $rc, expected 1"
expect_in "$work/isfile.err" "--out $work/file exists and is not a directory"
if [[ $(id -u) -ne 0 ]]; then  # root writes into read-only folders
  mkdir "$work/readonly" && chmod 555 "$work/readonly"
  train readonly "${args[@]}" --out "$work/readonly" --epochs 1
  chmod 755 "$work/readonly"
  [[ $rc -eq 1 ]] || fail "read-only --out: exit $rc, expected 1"
  expect_in "$work/readonly.err" "the run folder $work/readonly is not writable: cannot create .*Permission denied"
fi
echo "1. unusable --out: fails before training with the reason"

# ---- 2. NaN loss: the step is refused, the checkpoint in the folder is kept ----
run="$work/nan"
train good "${args[@]}" --out "$run" --epochs 1
[[ $rc -eq 0 ]] || { cat "$work/good.err"; fail "the first run failed"; }
cp -r "$run" "$work/grad_first_epoch"
sha_checkpoint=$(sha256sum < "$run/checkpoint.safetensors")
sha_model=$(sha256sum < "$run/model.safetensors")
train nan "${args[@]}" --out "$run" --epochs 2 --optimizer sgd --lr 1e30
[[ $rc -eq 1 ]] || { cat "$work/nan.err"; fail "the NaN run: exit $rc, expected 1"; }
expect_in "$work/nan.err" "^pneumonia-train: epoch 1, step [0-9]+: the loss is not finite \((nan|inf|-inf)\); the step was refused; first non-finite value: the output of (features|classifier)\.[0-9]+ \([A-Za-z0-9]+\) \(the batch rerun layer by layer\)\. Training stopped"
expect_in "$work/nan.err" "no checkpoint was written by this run \(any earlier $run/checkpoint.safetensors is unchanged\)"
[[ $(sha256sum < "$run/checkpoint.safetensors") == "$sha_checkpoint" ]] || fail "the NaN run changed checkpoint.safetensors"
[[ $(sha256sum < "$run/model.safetensors") == "$sha_model" ]] || fail "the NaN run changed model.safetensors"
# The same in the middle of a resumed run, once a checkpoint exists: the checkpoint's learning rate
# set to 1e30 in place (as if the run had diverged on its own), then --resume for epoch 2 (steps 6-10).
fill_tensors "$run/checkpoint.safetensors" optimizer.param_groups.lr=1e30
sha_checkpoint=$(sha256sum < "$run/checkpoint.safetensors")
train nan_resumed "${args[@]}" --out "$run" --epochs 2 --resume
[[ $rc -eq 1 ]] || { cat "$work/nan_resumed.err"; fail "the resumed NaN run: exit $rc, expected 1"; }
expect_in "$work/nan_resumed.err" "^pneumonia-train: epoch 2, step ([6-9]|10): the loss is not finite \((nan|inf|-inf)\); the step was refused; first non-finite value: the output of (features|classifier)\.[0-9]+ \([A-Za-z0-9]+\)"
expect_in "$work/nan_resumed.err" "Training stopped \(learning rate 1e\+30\); $run/checkpoint.safetensors was not overwritten and still holds epoch 1$"
[[ $(sha256sum < "$run/checkpoint.safetensors") == "$sha_checkpoint" ]] || fail "the resumed NaN run changed checkpoint.safetensors"
[[ $(sha256sum < "$run/model.safetensors") == "$sha_model" ]] || fail "the resumed NaN run changed model.safetensors"
echo "2. NaN loss refused: $(sed -n 's/^pneumonia-train: //p' "$work/nan.err" | cut -c1-150)..."
echo "   and after --resume: $(sed -n 's/^pneumonia-train: //p' "$work/nan_resumed.err" | cut -c1-60)..."
# Finite loss, non-finite gradient: the good run's checkpoint with its head rewritten so that every
# forward value stays finite and small (the logit is about 0.03 for any image) while one gradient
# overflows: fc6 outputs 1e20 (zero weights, bias 1e20), fc7 outputs 1e-24 (zero weights, bias
# 1e-24) and the output layer's weights are 1e20. Then dL/d(fc7 output) is about 1e19 per image
# and dL/d(fc7 weight) = that * 1e20, past the float range, whatever the labels and dropout masks.
run="$work/grad"
cp -r "$work/grad_first_epoch" "$run"
fill_tensors "$run/checkpoint.safetensors" model.classifier.0.weight=0 model.classifier.0.bias=1e20 \
  model.classifier.3.weight=0 model.classifier.3.bias=1e-24 model.classifier.6.weight=1e20 model.classifier.6.bias=0
sha_checkpoint=$(sha256sum < "$run/checkpoint.safetensors")
sha_model=$(sha256sum < "$run/model.safetensors")
train grad "${args[@]}" --out "$run" --epochs 2 --resume
[[ $rc -eq 1 ]] || { cat "$work/grad.err"; fail "the run with an overflowing gradient: exit $rc, expected 1"; }
expect_in "$work/grad.err" "^pneumonia-train: epoch 2, step 6: the loss \(0\.[0-9]+\) is finite but gradients are not; the step was refused; first non-finite value: the gradient of classifier\.3\.weight \(every layer's output is finite; 1 parameter\(s\) have non-finite gradients\)\. Training stopped"
expect_in "$work/grad.err" "$run/checkpoint.safetensors was not overwritten and still holds epoch 1$"
[[ $(sha256sum < "$run/checkpoint.safetensors") == "$sha_checkpoint" ]] || fail "the refused step changed checkpoint.safetensors"
[[ $(sha256sum < "$run/model.safetensors") == "$sha_model" ]] || fail "the refused step changed model.safetensors"
echo "   finite loss, overflowing gradient: $(sed -n 's/^pneumonia-train: //p' "$work/grad.err" | cut -c1-170)..."

# ---- 3. kill -9 during training, then --resume ----
run="$work/kill"
epochs=20
"$bin/pneumonia-train" "${args[@]}" --out "$run" --epochs $epochs > "$work/kill.out" 2>&1 &
pid=$!
# Kill once two epochs are checkpointed, at a moment that varies from run to run.
for _ in $(seq 1 600); do
  [[ -f "$run/metrics.jsonl" && $(wc -l < "$run/metrics.jsonl") -ge 2 ]] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.02
done
sleep "$(printf '0.%03d' $((RANDOM % 200)))"
kill -9 $pid 2>/dev/null || fail "pneumonia-train finished before it could be killed"
wait $pid 2>/dev/null || true
read -r killed_epoch killed_step < <(checkpoint_epoch_step "$run/checkpoint.safetensors")
[[ $killed_step -eq $((killed_epoch * steps_per_epoch)) ]] || fail "checkpoint of epoch $killed_epoch has step $killed_step"
# A kill inside a save leaves its temporary file; make sure there is one, as after such a kill.
leftovers=$(find "$run" -name 'checkpoint.safetensors.tmp.*' | wc -l)
[[ $leftovers -gt 0 ]] || head -c 100000 /dev/urandom > "$run/checkpoint.safetensors.tmp.999999.0"
train resume "${args[@]}" --out "$run" --epochs $epochs --resume
[[ $rc -eq 0 ]] || { cat "$work/resume.err"; fail "--resume after kill -9: exit $rc"; }
expect_in "$work/resume.out" "^removed [0-9]+ unfinished file\(s\) an interrupted run left in $run: checkpoint.safetensors.tmp."
expect_in "$work/resume.out" "^resumed from $run/checkpoint.safetensors after epoch $killed_epoch "
[[ -z $(find "$run" -name '*.tmp*') ]] || fail "temporary files left in $run: $(ls "$run")"
read -r final_epoch final_step < <(checkpoint_epoch_step "$run/checkpoint.safetensors")
[[ $final_epoch -eq $epochs && $final_step -eq $((epochs * steps_per_epoch)) ]] ||
  fail "after --resume the checkpoint holds epoch $final_epoch, step $final_step"
"$py" - "$run" $epochs <<'PY'
import json, sys
run, epochs = sys.argv[1], int(sys.argv[2])
rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
assert [r["epoch"] for r in rows] == list(range(1, epochs + 1)), [r["epoch"] for r in rows]
s = json.load(open(f"{run}/summary.json"))
assert s["epochs_run"] == epochs, s["epochs_run"]
PY
echo "3. kill -9 after epoch $killed_epoch: checkpoint whole; --resume finished epochs $((killed_epoch + 1))-$epochs"

# ---- 4. full disk at a checkpoint write ----
sha_checkpoint=$(sha256sum < "$run/checkpoint.safetensors")
sha_model=$(sha256sum < "$run/model.safetensors")
limit_kib=$(( $(stat -c %s "$run/checkpoint.safetensors") / 2048 ))  # half a checkpoint
set +e
( trap '' XFSZ; ulimit -f $limit_kib; exec "$bin/pneumonia-train" "${args[@]}" --out "$run" --epochs $((epochs + 2)) --resume ) \
  > "$work/full.out" 2> "$work/full.err"
rc=$?
set -e
[[ $rc -eq 1 ]] || { cat "$work/full.err"; fail "full disk: exit $rc, expected 1"; }
expect_in "$work/full.err" "^pneumonia-train: cannot save safetensors file $run/checkpoint.safetensors: writing $run/checkpoint.safetensors.tmp.[0-9.]+ failed: File too large"
[[ $(sha256sum < "$run/checkpoint.safetensors") == "$sha_checkpoint" ]] || fail "the failed save changed checkpoint.safetensors"
[[ $(sha256sum < "$run/model.safetensors") == "$sha_model" ]] || fail "the failed save changed model.safetensors"
[[ -z $(find "$run" -name '*.tmp*') ]] || fail "the failed save left a temporary file: $(ls "$run")"
# With space again, --resume carries on from the last whole checkpoint.
train after_full "${args[@]}" --out "$run" --epochs $((epochs + 2)) --resume
[[ $rc -eq 0 ]] || { cat "$work/after_full.err"; fail "--resume after the full disk: exit $rc"; }
expect_in "$work/after_full.out" "^resumed from $run/checkpoint.safetensors after epoch $epochs "
[[ $(wc -l < "$run/metrics.jsonl") -eq $((epochs + 2)) ]] || fail "metrics.jsonl: $(wc -l < "$run/metrics.jsonl") rows"
echo "4. full disk: $(sed -n 's/^pneumonia-train: //p' "$work/full.err")"
echo "pneumonia-train fault checks passed"
