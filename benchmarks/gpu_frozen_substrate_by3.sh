#!/usr/bin/env bash
# Issue 21 item 7 on one GPU: the frozen-substrate experiment's full form (now with the
# constructive-by2 arm, two blocks per stage) at the published size, and the paper's later
# form (three blocks per stage to depth 6: constructive-by3) beside it, both on one GPU
# (small models leave most of it idle). Each is stopped after LIMIT seconds; finished units
# are kept under ROOT, so running this again continues what did not finish. Neither size
# has been timed on a GPU yet: the published full form (depth 4, 64 steps per block) took
# 5-7 minutes beside five other experiments on one H200.
#
#   GROWLM_SHARED=$PWD/.carry/shared OUT=/tmp/out bash benchmarks/gpu_frozen_substrate_by3.sh
#
# Writes $OUT/frozen-substrate-by3/{full,paper-by3}/ (report.md, experiment.json, PNGs, log)
# and status.txt (exit code and seconds of each).
SHARED_DEFAULT=.carry/shared
source "$(dirname "$0")/gpu_common.sh"
export GROWLM_BENCHMARKS=${GROWLM_BENCHMARKS:-$GROWLM_SHARED/benchmarks}
OUT=${OUT:-runs/gpu-out}
LIMIT=${LIMIT:-540}
ROOT=${ROOT:-runs/experiments-by3}
DEST="$OUT/frozen-substrate-by3"
mkdir -p "$DEST" "$ROOT"
gpu_name | tee "$DEST/gpu.txt"
start=$(date +%s)
run() {  # NAME OPTIONS...
  local name=$1; shift
  experiment_on_gpu frozen-substrate 20 "$ROOT/$name" "$ROOT/$name.log" "$@"
  echo "$name $* rc=$? seconds=$(( $(date +%s) - start ))" >> "$DEST/status.txt"
}
run full --set steps_per_block=64 &
run paper-by3 --set layers_per_stage=3 --set depth=6 --set steps_per_block=32 &
wait
for name in full paper-by3; do
  mkdir -p "$DEST/$name"
  cp "$ROOT/$name.log" "$DEST/$name/run.log.md" 2>/dev/null
  for f in report.md experiment.json score-vs-depth.png; do
    [ -f "$ROOT/$name/$f" ] && cp "$ROOT/$name/$f" "$DEST/$name/"
  done
done
cat "$DEST/status.txt"
