#!/usr/bin/env bash
# The FULL form of `growlm experiment composition` (issue 21 item 8: experts, joint baseline, the mean, gate and
# mixture composites, and the fine-tune arms after merging: full and adapter) on one GPU, within 180 s on one H100.
#
#   GROWLM_SHARED=$PWD/.carry/shared OUT=/path/to/out bash benchmarks/gpu_composition.sh [--set KEY=VALUE ...]
#
# The full form trains its 9 runs side by side (Size.parallel = 9), then composes, fine-tunes and evaluates its
# 24 composites/models side by side; docs/composition.md gives its sizes. The experiment is stopped (SIGINT) after
# LIMIT seconds (default 170) so the call stays inside its budget; DIR keeps every finished unit, so running the
# script again on the same machine continues where it stopped. Results, md/json/png only, go to $OUT/composition/:
#   report.md, experiment.json, composition.png  (when the experiment finished)
#   runner.json   throughput of each side-by-side phase (tokens, seconds, tokens/s)
#   summary.json  exit status, wall seconds, units finished, GPU, peak GPU memory and mean utilisation
#   log.md        the last lines of the experiment's log
# Publish: growlm experiment publish --out $DIR --results-md docs/results.md
SHARED_DEFAULT=.carry/shared
source "$(dirname "$0")/gpu_common.sh"
OUT=${OUT:-runs/gpu-composition}
LIMIT=${LIMIT:-170}
DIR=${DIR:-runs/experiments/composition-gpu}
RES=$OUT/composition
mkdir -p "$RES" "$DIR"
gpu=$(gpu_name | head -1)
echo "$gpu"
sample_gpu "$DIR/gpu-util.csv" 5 csv,noheader,nounits --id=0  # the first GPU only
start=$(date +%s)
experiment_on_gpu composition 8 "$DIR" "$DIR/log.txt" "$@"
rc=$?
seconds=$(( $(date +%s) - start ))
stop_sampling
for f in report.md experiment.json composition.png runner.json; do
    [ -f "$DIR/$f" ] && cp "$DIR/$f" "$RES/"
done
{ echo '```'; grep -v "^step \|Writing model\|optimizer moments" "$DIR/log.txt" | tail -60; echo '```'; } > "$RES/log.md"
python - "$DIR" "$RES/summary.json" "$rc" "$seconds" "$gpu" "$LIMIT" <<'EOF'
import json
import sys
from pathlib import Path

folder, out, rc, seconds, gpu, limit = sys.argv[1:]
rows = []
for line in (Path(folder) / "gpu-util.csv").read_text().splitlines():
    try:
        rows.append([float(x) for x in line.split(",")])
    except ValueError:
        pass
units = Path(folder) / "units"
summary = {"rc": int(rc), "seconds": int(seconds), "limit_s": int(limit), "gpu": gpu,
           "finished": (Path(folder) / "report.md").exists(),
           "units_finished": len(list(units.rglob("*.json"))) if units.exists() else 0,
           "gpu_util_mean_pct": round(sum(r[0] for r in rows) / len(rows), 1) if rows else None,
           "gpu_mem_peak_mib": max((r[1] for r in rows), default=None)}
Path(out).write_text(json.dumps(summary, indent=2))
print(json.dumps(summary))
EOF
ls -la "$RES"
[ -f "$RES/report.md" ] && head -c 8000 "$RES/report.md"
exit 0
