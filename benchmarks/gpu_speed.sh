#!/usr/bin/env bash
# Issue 14 on one GPU: throughput (fused vs unfused Nexus-Rank, growlm vs transformers' Qwen3), the
# profile of nexus-240m, the largest micro-batch with and without activation checkpointing, and the
# time from a plan stage's start to its first optimizer step with a cold and a warm compile cache.
# Every result is JSON under $OUT; benchmarks/gpu_speed_summary.py prints and writes the summary.
#
# Usage (GPU machine, repository root):
#   OUT=<results dir> [DATA=<prepared data folder>] [SECTIONS="..."] [BUDGET_S=470] bash benchmarks/gpu_speed.sh
# SECTIONS (default: all, in this order of priority):
#   nexus     nexus-240m fused (+ profile), seq 4096 x 8, compiled bf16
#   unfused   nexus-240m unfused (three D->M->A->D chains, + profile)
#   rotary    nexus-240m fused with the rotary tables inline (--rotary-inline), the state before the opaque op
#   qwen3     qwen3-240m with transformers' Qwen3ForCausalLM as the same-run reference (both profiled)
#   linears   qwen3-240m with Q/K/V and gate/up as separate products (--unfused-linears), vs qwen3's fused
#   token     tokenformer-240m (+ profile)
#   plan      tiny 2-stage plan: time to first step, compile cold vs warm cache, whole vs regional (needs DATA)
#   large     nexus-640m and qwen3-640m at seq 2048 x 8
#   pads      Nexus-Rank QKV micro-benchmark: unfused vs fused with M, A padded to 1 / 8 / 64
#   memory    --find-batch for the three 240m presets, with and without activation checkpointing
# A section starts only if its estimated time still fits in BUDGET_S (default 470 s); skipped
# sections are listed in the summary -- run them next with SECTIONS="...".
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
export GROWLM_COMMIT=${GROWLM_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
: "${OUT:?set OUT to the results folder}"
BUDGET_S=${BUDGET_S:-470}
SECTIONS=${SECTIONS:-"nexus rotary qwen3 token large memory plan unfused linears pads"}
DATA=${DATA:-.carry/data}
G="python3 -m growlm.cli.main"
mkdir -p "$OUT/logs"
: > "$OUT/skipped.txt"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee -a "$OUT/device.txt"
echo "commit $GROWLM_COMMIT" | tee -a "$OUT/device.txt"

# fits EST NAME: true when a step estimated at EST seconds still fits the budget; records a skip otherwise
fits() {
  if (( SECONDS + $1 > BUDGET_S )); then
    echo "skipped $2 (needs ~$1 s, $((BUDGET_S - SECONDS)) s left)" | tee -a "$OUT/skipped.txt"
    return 1
  fi
}
# run NAME TIMEOUT ARGS...: one growlm command, its log in $OUT/logs/NAME.log, the result lines shown;
# never past BUDGET_S + 60 s in all, so the whole script stays inside a 10-minute command
run() {
  local name=$1 limit=$2 left=$((BUDGET_S + 60 - SECONDS))
  (( left < limit )) && limit=$left
  shift 2
  echo "== $name ($SECONDS s)"
  timeout "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
  local rc=$?
  grep -E "tok/s|TFLOP|profile|largest|micro-batch|done:|stage|error|Error" "$OUT/logs/$name.log" \
    | grep -v -i "warn" | tail -20
  [ $rc -eq 0 ] || echo "$name exited with $rc (log: logs/$name.log)" | tee -a "$OUT/skipped.txt"
}
BENCH="--seq-len 4096 --micro-batch 8 --steps 10 --warmup 4"

for section in $SECTIONS; do
  case $section in
  nexus)
    fits 120 nexus-240m && run nexus-240m-fused 240 $G bench nexus-240m $BENCH --profile "$OUT/profile" \
      --out "$OUT/bench-nexus-240m-fused.json" ;;
  unfused)
    fits 80 nexus-240m-unfused && run nexus-240m-unfused 200 $G bench nexus-240m $BENCH --nexus-unfused \
      --profile "$OUT/profile" --profile-steps 2 --out "$OUT/bench-nexus-240m-unfused.json" ;;
  rotary)
    fits 80 nexus-240m-rotary-inline && run nexus-240m-rotary-inline 200 $G bench nexus-240m $BENCH --rotary-inline \
      --out "$OUT/bench-nexus-240m-rotary-inline.json" ;;
  qwen3)
    fits 150 qwen3-240m && run qwen3-240m 280 $G bench qwen3-240m $BENCH --reference \
      --profile "$OUT/profile" --profile-steps 2 --out "$OUT/bench-qwen3-240m.json" ;;
  linears)
    fits 100 qwen3-240m-unfused-linears && run qwen3-240m-unfused-linears 200 $G bench qwen3-240m $BENCH \
      --unfused-linears --out "$OUT/bench-qwen3-240m-unfused-linears.json" ;;
  token)
    fits 90 tokenformer-240m && run tokenformer-240m 200 $G bench tokenformer-240m $BENCH \
      --profile "$OUT/profile" --profile-steps 2 --out "$OUT/bench-tokenformer-240m.json" ;;
  plan)
    if [ ! -e "$DATA/meta.json" ]; then
      echo "skipped plan (no prepared data at DATA=$DATA)" | tee -a "$OUT/skipped.txt"
      continue
    fi
    for mode in true regional; do
      cat > "$OUT/plan-$mode.yaml" <<EOF
description: two tiny stages, to time stage start -> first optimizer step (issue 14)
out_dir: /tmp/speed-plan
defaults:
  data: $DATA
  seq_len: 1024
  micro_batch_size: 16
  lr: 1.0e-3
  warmup_steps: 5
  log_every: 10
  eval_every: 1000
  eval_batches: 2
  checkpoint_every: 1000
  progress: false
  compile: $mode
stages:
  - name: base
    model: nexus-tiny
    tokens: 327680
  - name: wider
    grow: {nexus_m: 192, nexus_a: 256}
    init: preserve
    tokens: 327680
EOF
      cache=/tmp/inductor-cache-$mode
      rm -rf "$cache"
      for temperature in cold warm; do
        fits 50 "plan-$mode-$temperature" || continue
        rm -rf /tmp/speed-plan
        TORCHINDUCTOR_CACHE_DIR=$cache run "plan-$mode-$temperature" 200 $G train "$OUT/plan-$mode.yaml"
        [ -f /tmp/speed-plan/ledger.json ] && cp /tmp/speed-plan/ledger.json "$OUT/plan-$mode-$temperature.json"
      done
    done ;;
  large)
    for preset in ${LARGE:-qwen3-640m nexus-640m}; do
      fits 110 "$preset" && run "$preset-2048" 240 $G bench "$preset" --seq-len 2048 --micro-batch 8 --steps 10 \
        --warmup 4 --out "$OUT/bench-$preset-2048.json"
    done ;;
  pads)
    fits 60 pads && run nexus-pads 150 python3 benchmarks/nexus_fusion.py --preset nexus-240m --tokens 32768 \
      --device cuda --compile --pads 1,8,64 --out "$OUT/nexus-pads.json" ;;
  memory)
    # regional compilation: one layer compiled (fast), batch sizes then recompile once with a dynamic batch
    for preset in nexus-240m qwen3-240m tokenformer-240m; do
      for ac in "" "--activation-checkpointing"; do
        tag=$preset${ac:+-ac}
        fits 55 "find-batch $tag" && run "find-batch-$tag" 100 $G bench "$preset" --seq-len 4096 --micro-batch 8 \
          --find-batch --find-batch-max 256 --find-batch-budget-s ${FIND_BATCH_S:-40} --compile regional $ac \
          --out "$OUT/find-batch-$tag.json"
      done
    done ;;
  *) echo "unknown section $section (choose from nexus rotary qwen3 token large memory plan unfused linears pads)" ;;
  esac
done
echo "== summary ($SECONDS s)"
python3 benchmarks/gpu_speed_summary.py "$OUT"
