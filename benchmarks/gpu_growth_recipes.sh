#!/usr/bin/env bash
# `growlm experiment growth-recipes` (issue 19) on one GPU, in calls of at most LIMIT seconds.
#
#   GROWLM_SHARED=/path/to/shared LIMIT=500 bash benchmarks/gpu_growth_recipes.sh [--set KEY=VALUE ...]
#
# The experiment runs its units side by side (--set parallel=N, default 6) and is resumable:
# finished units are kept in DIR/units. The call ends after LIMIT seconds (SIGINT: running units
# checkpoint and stop) and writes $OUT/growth-recipes.tgz -- DIR without weights and without the
# run folders (units, runner.json, report, figures, log). To continue on a fresh machine, unpack
# it at the repository root and run the same command again: finished units are skipped,
# unfinished ones start over. When report.md is there, publish it:
#   growlm experiment publish --out runs/experiments/growth-recipes --results-md docs/results.md
source "$(dirname "$0")/gpu_common.sh"
OUT=${OUT:-runs/gpu-growth-recipes}
LIMIT=${LIMIT:-500}
DIR=${DIR:-runs/experiments/growth-recipes}
mkdir -p "$OUT" "$DIR"
gpu_name
sample_gpu "$DIR/gpu-util.csv" 10 csv,noheader
start=$(date +%s)
experiment_on_gpu growth-recipes 30 "$DIR" "$DIR/log-$start.txt" "$@"
rc=$?
stop_sampling
finished_line "$rc" "$start" "$DIR"
grep -v "^step \|Writing model\|^done: \|^stage \|optimizer moments" "$DIR/log-$start.txt" | tail -15
tar czf "$OUT/growth-recipes.tgz" --exclude="$DIR/runs" --exclude='*.safetensors' --exclude='*.pt' "$DIR"
ls -la "$OUT"
[ -f "$DIR/report.md" ] && head -c 6000 "$DIR/report.md"
exit 0
