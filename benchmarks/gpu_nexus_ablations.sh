#!/usr/bin/env bash
# `growlm experiment nexus-ablations` (issue 21 item 4: Nexusformer Table 9 + Appendix I) on one H100.
#
#   GROWLM_SHARED=$PWD/.carry/shared bash benchmarks/gpu_nexus_ablations.sh [--set KEY=VALUE ...]
#
# Full form, 3 seeds: 3 bases side by side (1M tokens each), then 27 continuations (9 arms x 3
# seeds, 750k tokens each; the control ~5% more) 8 side by side: ~24M tokens of ~24M-parameter
# NexusFormers. Expected wall ~150 s on one H100 (estimate from the 367k tokens/s aggregate
# of 8 side-by-side 44M-parameter units, docs/benchmarks.md; not yet measured); the run stops
# after LIMIT (default 185) seconds. The experiment prepares its corpus itself (~55 MB of text,
# a few seconds) and is resumable: running the script again on the same machine redoes only
# unfinished units. Results (md/json/png only) go to $OUT/nexus-ablations/:
# report.md, experiment.json, runner.json, the figures, every unit's JSON (units/), the log
# and GPU utilisation samples. Publish with
#   growlm experiment publish --out $OUT/nexus-ablations --results-md docs/results.md
source "$(dirname "$0")/gpu_common.sh"
OUT=${OUT:-runs/gpu-nexus-ablations}
LIMIT=${LIMIT:-185}
DIR=${DIR:-runs/experiments/nexus-ablations}
mkdir -p "$OUT/nexus-ablations" "$DIR"
RES=$(cd "$OUT/nexus-ablations" && pwd)  # absolute: the copies below run from inside DIR
gpu_name | tee "$RES/gpu.md"
sample_gpu "$RES/gpu-util.md" 10 csv,noheader
start=$(date +%s)
experiment_on_gpu nexus-ablations 15 "$DIR" "$DIR/log.txt" "$@"
rc=$?
stop_sampling
finished_line "$rc" "$start" "$DIR" " of 30"
grep -v "^step \|Writing model\|^done: \|^stage \|optimizer moments\|warn" "$DIR/log.txt" | tail -15
grep -v "^step " "$DIR/log.txt" | tail -200 > "$RES/log.md"
# md/json/png only: the report, its data, the figures and every unit's JSON (no weights, no run folders)
(cd "$DIR" && find . -maxdepth 1 \( -name '*.md' -o -name '*.json' -o -name '*.png' \) -exec cp {} "$RES/" \;)
[ -d "$DIR/units" ] && (cd "$DIR" && find units -name '*.json' -exec cp --parents {} "$RES/" \;)
ls -la "$RES"
[ -f "$DIR/report.md" ] && head -c 8000 "$DIR/report.md"
exit 0
