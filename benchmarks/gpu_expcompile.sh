#!/usr/bin/env bash
# Experiments eager vs compiled (issue 23 item 2): the experiments' `compile` setting
# (src/growlm/experiments/compiling.py) on one GPU, before (`--set compile=false`, what the
# experiments ran until now) and after (`--set compile=graphs`; `auto` picks it from 16M tokens per run).
#
#   GROWLM_SHARED=$PWD/.carry/shared OUT=/tmp/out bash benchmarks/gpu_expcompile.sh
#
# Two experiments' full (GPU) forms, cut to one seed, one unit and a few steps with --set:
#   architectures      one NexusFormer run (21M), 120 steps of 64 x 256 tokens (a single training run)
#   growth-vs-scratch  Qwen3 grown in width + its scratch run, 60 + 60 steps (growth plans: a stage
#                      compiles again after growth)
# Each runs once with compile=false and once with the default, under `timeout`; a failed or
# timed-out run is recorded and the script goes on. Results: $OUT/expcompile/summary.md (table:
# steady and wall tokens/s, first step (holds the compilation), final train/val loss of every
# run or plan stage), summary.json, each run's report.md/experiment.json and log tail; then
# packed as $OUT/expcompile.tgz. About 5 minutes on one H100 (the timeouts add up to 280 s).
#
# CPU dry run of the plumbing (tiny models, compile=false both times):
#   DEVICE=cpu FORM=--quick ARCH_SETS="architectures=nexus" GVS_SETS="architectures=nexus" \
#   DEFAULT_COMPILE=false SCALE=6 GROWLM_SHARED=... OUT=/tmp/x bash benchmarks/gpu_expcompile.sh
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
export GROWLM_SHARED=${GROWLM_SHARED:-$PWD/.carry/shared}
OUT=${OUT:-runs/gpu-expcompile}
DEVICE=${DEVICE:-cuda}
FORM=${FORM:-}
DEFAULT_COMPILE=${DEFAULT_COMPILE:-graphs}  # what `auto` picked before its 16M-token threshold (docs/benchmarks.md (d2))
PY=${PYTHON:-python}
SCALE=${SCALE:-1}  # multiplies every run's time limit (a CPU dry run needs more)
RES=$OUT/expcompile
WORK=${WORK:-runs/expcompile}
DATA_ROOT=$WORK/data
mkdir -p "$RES" "$WORK"
rm -rf "$WORK"/architectures-* "$WORK"/growth-vs-scratch-* "$RES/runs.md"  # every call measures afresh (data kept)
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    | tee "$RES/gpu.md"
git log -1 --format='commit %H %cd' > "$RES/commit.md" 2>/dev/null || true

# small slices of the corpus (prepared once, by the first run) and small evaluations
ARCH_SETS=${ARCH_SETS:-"architectures=nexus base_tokens=1966080 docs_per_file=400 val_docs_per_file=20 eval_every=40 eval_batches=4 bench_limit=4 bench_batch_size=16 ppl_batches=2"}
GVS_SETS=${GVS_SETS:-"architectures=qwen3 base_tokens=983040 grow_tokens=983040 docs_per_file=400 val_docs_per_file=20 eval_every=20 eval_batches=2 ppl_batches=2"}

run() {  # run NAME EXPERIMENT SECONDS COMPILE SETS
    local name=$1 experiment=$2 seconds=$3 mode=$4 sets=$5 args=() s start rc
    for s in $sets; do args+=(--set "$s"); done
    args+=(--set "compile=$mode")
    start=$(date +%s)
    echo "== $name: growlm experiment $experiment $FORM --seeds 1 ${args[*]} (limit ${seconds}s)"
    # shellcheck disable=SC2086  # FORM is empty or one flag
    timeout -k 10 "$(( seconds * SCALE ))" "$PY" -m growlm.cli.main experiment "$experiment" $FORM --seeds 1 --device "$DEVICE" \
        --out "$WORK/$name" --data-root "$DATA_ROOT" "${args[@]}" > "$WORK/$name.log" 2>&1
    rc=$?
    echo "$name rc=$rc seconds=$(( $(date +%s) - start ))" | tee -a "$RES/runs.md"
    { echo '```'; tail -n 40 "$WORK/$name.log"; echo '```'; } > "$RES/log-$name.md"
    for f in report.md experiment.json runner.json; do
        if [ -f "$WORK/$name/$f" ]; then cp "$WORK/$name/$f" "$RES/$name-$f"; fi
    done
    return 0
}

run architectures-eager architectures 70 false "$ARCH_SETS"
run architectures-default architectures 85 "$DEFAULT_COMPILE" "$ARCH_SETS"
run growth-vs-scratch-eager growth-vs-scratch 45 false "$GVS_SETS"
run growth-vs-scratch-default growth-vs-scratch 80 "$DEFAULT_COMPILE" "$GVS_SETS"

"$PY" - "$WORK" "$RES" <<'EOF' || echo "summary failed"
import json, statistics, sys
from pathlib import Path
from growlm.experiments.compiling import trained_units

work, res = Path(sys.argv[1]), Path(sys.argv[2])
rows, speeds = [], {}
for exp in ("architectures", "growth-vs-scratch"):
    for form in ("eager", "default"):
        name = f"{exp}-{form}"
        units = trained_units(work / name) if (work / name).is_dir() else []
        if not units:
            rows.append({"run": name, "unit": f"(no finished unit: see log-{name}.md)"})
        for unit in units:
            parts = Path(unit["run"]).parts
            tail = parts[-5:]
            label = "/".join(tail[tail.index("runs") + 1:-1]) if "runs" in tail else unit["run"]
            stages = unit.get("stages") or [unit["summary"]]
            for i, st in enumerate(stages):
                where = label + (f" stage {i + 1} ({st.get('stage', st.get('name', ''))})" if "stages" in unit else "")
                first = st.get("stage_to_first_step_s", st.get("time_to_first_step_s"))
                rows.append({"run": name, "unit": where, "compile": st.get("compile"),
                             "steady_tokens_per_s": st.get("steady_tokens_per_s"),
                             "wall_tokens_per_s": st.get("wall_tokens_per_s"), "first_step_s": first,
                             "steps": st.get("steps"), "final_train_loss": st.get("final_train_loss"),
                             "final_val_loss": st.get("final_val_loss")})
                if st.get("steady_tokens_per_s"):
                    speeds.setdefault(name, []).append(st["steady_tokens_per_s"])


def cell(v, fmt):
    return "" if v is None else fmt.format(v)


lines = ["# Experiments: eager (compile=false) vs the default compile setting", "",
         "| run | unit / stage | compile | steps | steady tok/s | wall tok/s | first step (s) | final train loss | final val loss |",
         "|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    lines.append(f"| {r['run']} | {r['unit']} | {cell(r.get('compile'), '{}')} | {cell(r.get('steps'), '{}')} | "
                 f"{cell(r.get('steady_tokens_per_s'), '{:,.0f}')} | {cell(r.get('wall_tokens_per_s'), '{:,.0f}')} | "
                 f"{cell(r.get('first_step_s'), '{:.1f}')} | {cell(r.get('final_train_loss'), '{:.4f}')} | "
                 f"{cell(r.get('final_val_loss'), '{:.4f}')} |")
lines += ["", "| experiment | eager steady tok/s (median) | default steady tok/s (median) | speed-up |",
          "|---|---|---|---|"]
summary = {"rows": rows, "speedup": {}}
for exp in ("architectures", "growth-vs-scratch"):
    a, b = speeds.get(f"{exp}-eager"), speeds.get(f"{exp}-default")
    ma, mb = (statistics.median(a) if a else None), (statistics.median(b) if b else None)
    up = mb / ma if ma and mb else None
    summary["speedup"][exp] = {"eager": ma, "default": mb, "speedup": up}
    lines.append(f"| {exp} | {cell(ma, '{:,.0f}')} | {cell(mb, '{:,.0f}')} | {cell(up, '{:.2f}x')} |")
lines += ["", "Steady tok/s leaves out the first steps (compilation); wall tok/s counts everything from the "
          "trainer's start (loading, compiling, evaluating, saving). A plan stage's first step holds its "
          "compilation. The compile column is what the run summary recorded (plan stages leave it empty)."]
(res / "summary.md").write_text("\n".join(lines) + "\n")
(res / "summary.json").write_text(json.dumps(summary, indent=2))
EOF
cat "$RES/runs.md" 2>/dev/null
cat "$RES/summary.md" 2>/dev/null
tar czf "$OUT/expcompile.tgz" -C "$OUT" expcompile
exit 0
