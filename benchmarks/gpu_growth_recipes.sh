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
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export GROWLM_SHARED=${GROWLM_SHARED:-$PWD/../shared}
OUT=${OUT:-runs/gpu-growth-recipes}
LIMIT=${LIMIT:-500}
DIR=${DIR:-runs/experiments/growth-recipes}
mkdir -p "$OUT" "$DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
(while true; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> "$DIR/gpu-util.csv"; sleep 10; done) &
sampler=$!
start=$(date +%s)
timeout -s INT -k 30 "$LIMIT" python -m growlm.cli.main experiment growth-recipes --device cuda --out "$DIR" "$@" \
    > "$DIR/log-$start.txt" 2>&1
rc=$?
kill $sampler 2>/dev/null
echo "rc=$rc seconds=$(( $(date +%s) - start )) units finished: $(find "$DIR/units" -name final.json | wc -l)"
grep -v "^step \|Writing model\|^done: \|^stage \|optimizer moments" "$DIR/log-$start.txt" | tail -15
tar czf "$OUT/growth-recipes.tgz" --exclude="$DIR/runs" --exclude='*.safetensors' --exclude='*.pt' "$DIR"
ls -la "$OUT"
[ -f "$DIR/report.md" ] && head -c 6000 "$DIR/report.md"
exit 0
