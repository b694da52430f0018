#!/usr/bin/env bash
# `growlm experiment paper5-growth` (issue 21 items 1-2: Nexusformer Tables 2 and 8, Figure 2) on ONE GPU,
# full form, within 240 s of wall time (data preparation included).
#
#   GROWLM_SHARED=$PWD/.carry/shared OUT=/path/to/results bash benchmarks/gpu_paper5_growth.sh [--set KEY=VALUE ...]
#
# Budget (defaults): 3 seeds x (3 bases on 0.9M tokens, 3 Qwen3 on 1.2M, 6 grown on 0.3M) = 24.3M training
# tokens in 36 units of ~21-32M parameters, 6 side by side (9 ran out of memory on an H100, 2026-12-06). At the 46k tokens/s per
# process measured for 44M-parameter units side by side (docs/benchmarks.md: 8 processes, 367k tokens/s
# aggregate) that is ~75 s for the bases and Qwen3, ~55 s for the grown models (paper5 evaluation
# included), plus ~20 s to prepare the shared corpus with the 32k tokenizer on a fresh machine.
# A guard stops the experiment at LIMIT seconds (SIGINT: it is resumable; run the script again on the
# same checkout to finish). Writes $OUT/paper5-growth/: report.md, experiment.json, runner.json,
# units/**.json, the PNG, log.txt -- no checkpoints.
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} SHARED_DEFAULT=.carry/shared
source "$(dirname "$0")/gpu_common.sh"
export GROWLM_BENCHMARKS=${GROWLM_BENCHMARKS:-$GROWLM_SHARED/benchmarks}
OUT=${OUT:-runs/gpu-paper5-growth}
LIMIT=${LIMIT:-225}
DIR=${DIR:-runs/experiments/paper5-growth}
DEST="$OUT/paper5-growth"
mkdir -p "$DEST" "$DIR"
gpu_name
start=$(date +%s)
experiment_on_gpu paper5-growth 10 "$DIR" "$DIR/log.txt" "$@"
rc=$?
finished_line "$rc" "$start" "$DIR" /36 2>/dev/null
grep -v "^step \|Writing model\|^done: \|^stage \|optimizer moments\|^note: \|split, " "$DIR/log.txt" | tail -15
# md/json/png only (no weights, no run folders)
(cd "$DIR" && find . \( -name '*.md' -o -name '*.png' -o -name '*.json' -o -name 'log.txt' \) -not -path './runs/*') |
    while read -r f; do mkdir -p "$DEST/$(dirname "$f")"; cp "$DIR/$f" "$DEST/$f"; done
du -sh "$DEST"
[ -f "$DIR/report.md" ] && head -c 8000 "$DIR/report.md"
exit 0
