#!/usr/bin/env bash
# Issue 23 on one H100 (speed, round three): throughput and MFU of the 240m presets and the
# transformers reference, their profiles (top kernels grouped matmul / attention / elementwise /
# other), the attention probe (every SDPA call's layouts, flags, backend kernels, time per call,
# replayed standalone), small-model speed eager / compile: true / compile: graphs, growlm train
# with compile: graphs, data prepare at 256 MB, the time from start to first step with a warm
# compile cache, and the determinism runs. Everything lands in $OUT/speed3/ (json, md, txt);
# $OUT/speed3/summary.md is the digest (benchmarks/speed_round3.py summary).
#
# Usage (GPU machine, repository root):
#   GROWLM_SHARED=$PWD/.carry/shared OUT=<dir> [SECTIONS="..."] [BUDGET_S=515] bash benchmarks/gpu_speed_round3.sh
# SECTIONS (default, in this order of priority; a section starts only if its estimate fits the budget):
#   qwen3    growlm bench qwen3-240m --reference --profile   (a, b, c: the 1.448x loop, both models profiled)
#   nexus    growlm bench nexus-240m --profile               (a, b)
#   token    growlm bench tokenformer-240m --profile         (a, b)
#   replay   the recorded attention calls replayed standalone, + F.sdpa per backend (c)
#   small    experiments' 21-44M models: eager / compile true / compile graphs, tokens/s and loss diffs (d)
#   prep     data prepare, 256 MB (repeated shared text), 16 workers; 1 worker on 32 MB (f)
#   dtrain   growlm train, recipe-nexus shape, compile: true vs graphs (steady tokens/s, loss diff) (d)
#   first    growlm train 240m presets: start -> first step, cold then warm cache; nexus also regional (g)
#   det      benchmarks/gpu_determinism.sh whole (e; DET_STEPS=400 steps, as its default)
#   graphs240  growlm bench nexus-240m / tokenformer-240m --compile graphs (CUDA graphs at 240m)
#   autotune growlm bench PRESET --compile autotune (Inductor max-autotune: Triton GEMM templates with
#            fused epilogues; AUTOTUNE="nexus-240m tokenformer-240m qwen3-240m"), profiled
#   n640     growlm bench nexus-640m --seq-len 2048 (after the rotary change; round two's 58.2%)
#   tokoff   growlm bench tokenformer-240m with GROWLM_PATTENTION_KERNEL=0 (the compiled normalisation instead of
#            the Triton kernel, which took 22.6% of the step in (h)), beside the default (profiled) in the same call
#   pkernel  benchmarks/pattention_kernel.py: the normalisation kernels alone at tokenformer-240m's row lengths,
#            contiguous and padded rows, every warp count, against LEGACY (an earlier pattention_norm.py with its
#            ops renamed growlm_legacy::) and the compiled torch expression; then the kernel's GPU tests
#            (pytest from WHEELS, a folder of wheels, when the machine has no pytest)
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
export GROWLM_COMMIT=${GROWLM_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
: "${OUT:?set OUT to the results folder}"
R=$OUT/speed3
BUDGET_S=${BUDGET_S:-515}
SECTIONS=${SECTIONS:-"qwen3 nexus token replay small prep dtrain first det graphs240"}
SHARED=${GROWLM_SHARED:-.carry/shared}
WORK=${WORK:-/tmp/speed3}
G="python3 -m growlm.cli.main"
PY=benchmarks/speed_round3.py
mkdir -p "$R/logs" "$WORK"
: > "$R/skipped.txt"
: > "$R/sections.txt"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee "$R/device.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee -a "$R/device.txt"
echo "commit $GROWLM_COMMIT; $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPU cores" | tee -a "$R/device.txt"
export TORCHINDUCTOR_CACHE_DIR=$WORK/inductor-bench

# fits EST NAME: true when EST more seconds still fit the budget; records a skip otherwise
fits() {
  if (( SECONDS + $1 > BUDGET_S )); then
    echo "skipped $2 (needs ~$1 s, $((BUDGET_S - SECONDS)) s left): rerun with SECTIONS=\"$2\"" | tee -a "$R/skipped.txt"
    return 1
  fi
}
# run NAME LIMIT CMD...: one command under `timeout`, never past the budget; log in logs/NAME.txt
run() {
  local name=$1 limit=$2 left=$((BUDGET_S - SECONDS))
  (( left < limit )) && limit=$left
  (( limit < 5 )) && { echo "no time left for $name" | tee -a "$R/skipped.txt"; return 1; }
  shift 2
  local t0=$SECONDS
  echo "== $name ($SECONDS s, limit $limit s)"
  # -k: growlm train answers SIGTERM by finishing its step and saving a checkpoint, which can take
  # minutes (a compilation, a 3 GB save); SIGKILL 10 s later keeps the section inside its limit
  timeout -k 10 "$limit" "$@" > "$R/logs/$name.txt" 2>&1
  local rc=$?
  echo "$name: $((SECONDS - t0)) s (rc $rc)" >> "$R/sections.txt"
  grep -E "tok/s|TFLOP|profile|done:|error|Error|rc=|first step|MB/s" "$R/logs/$name.txt" | grep -v -i warn | tail -8
  [ $rc -eq 0 ] || echo "$name exited with $rc (log: logs/$name.txt)" | tee -a "$R/skipped.txt"
  return $rc
}
# a prepared slice of the shared corpus (200 documents per source file) for the growlm train sections
DATA=${DATA:-$WORK/data}
ensure_data() {
  [ -f "$DATA/meta.json" ] && return 0
  [ -d "$SHARED/corpus/train" ] || { echo "no shared corpus at $SHARED" | tee -a "$R/skipped.txt"; return 1; }
  run data-slice 90 $G data prepare "$SHARED/corpus/train" --val "$SHARED/corpus/val" --overwrite \
    --max-docs-per-file 200 --tokenizer "$SHARED/tokenizers/mistral-v1-32k/tokenizer.model" --out "$DATA"
}
# train_yaml FILE MODEL SEQ MB STEPS COMPILE [EXTRA YAML LINES]: a growlm train config
train_yaml() {
  cat > "$1" <<EOF
model: $2
data: $DATA
seq_len: $3
micro_batch_size: $4
max_steps: $5
compile: $6
lr: 2.0e-3
warmup_steps: 10
log_every: 1
eval_every: 100000
eval_batches: 2
checkpoint_every: 100000
keep_last: 1
progress: false
tensorboard: false
${7:-}
EOF
}
BENCH="--seq-len 4096 --micro-batch 8 --steps 10 --warmup 4"

for section in $SECTIONS; do
  case $section in
  qwen3)
    fits 150 qwen3 && run bench-qwen3-240m 230 $G bench qwen3-240m $BENCH --reference --profile "$R/profile" \
      --profile-steps 2 --out "$R/bench-qwen3-240m.json" ;;
  nexus)
    fits 75 nexus && run bench-nexus-240m 140 $G bench nexus-240m $BENCH --profile "$R/profile" \
      --profile-steps 2 --out "$R/bench-nexus-240m.json" ;;
  token)
    fits 80 token && run bench-tokenformer-240m 140 $G bench tokenformer-240m $BENCH --profile "$R/profile" \
      --profile-steps 2 --out "$R/bench-tokenformer-240m.json" ;;
  replay)
    if ls "$R"/profile/profile-*.json > /dev/null 2>&1; then
      fits 25 replay && run attention-replay 60 python3 $PY replay "$R/profile" --out "$R/attention-replay.json"
    else
      echo "skipped replay (no profiles yet: run qwen3 first)" | tee -a "$R/skipped.txt"
    fi ;;
  small)
    # graphs vs true vs eager on the experiments' shapes; no new shape/mode after SMALL_BUDGET_S
    # TORCH_LOGS=perf_hints: Inductor says why, if it declines to record a CUDA graph
    fits 100 small && run small 150 env TORCH_LOGS=perf_hints python3 $PY small --out "$R/small.json" --budget-s "${SMALL_BUDGET_S:-75}" \
      --shapes "${SMALL_SHAPES:-recipe-nexus,growth-llama,growth-tokenformer,recipe-qwen3,growth-nexus}" ;;
  dtrain)
    fits 70 dtrain && ensure_data || continue
    # the recipe's nexus (21M) at the experiments' 256 x 64; eval once in the middle (eager, between replays)
    for mode in true graphs; do
      train_yaml "$WORK/dtrain-$mode.yaml" nexus-tiny 256 "${DTRAIN_MB:-64}" "${DTRAIN_STEPS:-120}" "$mode" "model_overrides: {num_hidden_layers: 4, hidden_size: 256, intermediate_size: 768, nexus_m: 192, nexus_a: 256, num_attention_heads: 4, head_dim: 64}
seed: 0
out_dir: $WORK/dtrain-$mode"
      sed -i "s/^eval_every: 100000/eval_every: $(( ${DTRAIN_STEPS:-120} / 2 ))/" "$WORK/dtrain-$mode.yaml"
      rm -rf "$WORK/dtrain-$mode"
      run "train-$mode" 80 $G train "$WORK/dtrain-$mode.yaml" || continue
      cp "$WORK/dtrain-$mode/summary.json" "$R/train-$mode.summary.json"
      python3 $PY losses "$WORK/dtrain-$mode" --out "$R/train-$mode.losses.json"
    done
    [ -f "$WORK/dtrain-graphs/metrics.jsonl" ] && [ -f "$WORK/dtrain-true/metrics.jsonl" ] && \
      python3 $PY compare "$WORK/dtrain-true" "$WORK/dtrain-graphs" --out "$R/train-graphs-diff.json" ;;
  prep)
    # 16 workers on 256 MB (the shared corpus's ~55 MB of text repeated); 1 worker on 32 MB (its rate
    # does not depend on the size; 256 MB would take ~100 s at ~2.6 MB/s)
    fits 70 prep || continue
    export GROWLM_SHARED=$SHARED
    run prep-many 100 python3 benchmarks/data_prepare.py --out "$R/data-prepare-many.json" --mb "${PREP_MB:-256}" \
      --repeat --workers "$(nproc)" --no-baseline --corpora small --work "$WORK/prep-many" --shared "$SHARED"
    rm -rf "$WORK/prep-many"
    run prep-one 45 python3 benchmarks/data_prepare.py --out "$R/data-prepare-one.json" --mb 32 --workers 1 \
      --no-baseline --corpora small --work "$WORK/prep-one" --shared "$SHARED"
    rm -rf "$WORK/prep-one" ;;
  first)
    ensure_data || continue
    # each preset twice with its own fresh cache: cold (compiles) then warm (loads); 2 steps of 4096 x 8
    for spec in ${FIRST_RUNS:-nexus-240m:true nexus-240m:regional tokenformer-240m:true qwen3-240m:true}; do
      preset=${spec%%:*} mode=${spec##*:}
      cache=$WORK/inductor-first-$preset-$mode
      rm -rf "$cache"
      for temperature in cold warm; do
        est=$([ $temperature = cold ] && echo 70 || echo 35)
        fits $est "first ($preset $mode $temperature; FIRST_RUNS=$spec)" || continue 2
        train_yaml "$WORK/first.yaml" "$preset" "${FIRST_SEQ:-4096}" "${FIRST_MB:-8}" 2 "$mode" "out_dir: $WORK/first-run"
        rm -rf "$WORK/first-run"
        t0=$SECONDS
        run "first-$preset-$mode-$temperature" 120 env TORCHINDUCTOR_CACHE_DIR="$cache" $G train "$WORK/first.yaml" \
          || continue
        python3 - "$WORK/first-run/summary.json" "$R/first-step-$preset-$mode-$temperature.json" $((SECONDS - t0)) <<'EOF'
import json, sys
summary = json.load(open(sys.argv[1]))
keep = {k: summary.get(k) for k in ("time_to_first_step_s", "first_step_s", "steady_tokens_per_s", "wall_seconds")}
json.dump({**keep, "process_s": int(sys.argv[3])}, open(sys.argv[2], "w"), indent=2)
EOF
      done
    done
    rm -rf "$WORK/first-run" ;;
  det)
    fits 190 det && ensure_data || continue
    # metrics.jsonl files stay in WORK (the results folder takes json/md/txt); the summary comes back
    run determinism 260 env OUT="$WORK/det-out" DATA="$DATA" WORK="$WORK/det" bash benchmarks/gpu_determinism.sh \
      "${DET_STEPS:-400}" "${DET_MB:-32}" "${DET_SEQ:-512}"
    cp "$WORK/det-out/determinism.json" "$R/determinism.json" 2>/dev/null || true
    for f in "$WORK"/det-out/*.log; do [ -f "$f" ] && tail -40 "$f" > "$R/logs/det-$(basename "$f" .log).txt"; done ;;
  graphs240)
    # the 240m presets with CUDA graphs (the ~1.8 ms/step launch gap of issue 14's profile)
    for preset in ${GRAPHS240:-nexus-240m tokenformer-240m}; do
      fits 80 "graphs240 ($preset)" && run "bench-$preset-graphs" 140 $G bench "$preset" $BENCH --compile graphs \
        --out "$R/bench-$preset-graphs.json"
    done ;;
  autotune)
    # compilation autotunes every matmul shape (minutes); the profile shows what got fused
    for preset in ${AUTOTUNE:-nexus-240m tokenformer-240m qwen3-240m}; do
      fits 200 "autotune ($preset; AUTOTUNE=$preset)" && run "bench-$preset-autotune" "${AUTOTUNE_LIMIT:-420}" \
        $G bench "$preset" $BENCH --compile autotune --profile "$R/profile-autotune" --profile-steps 2 \
        --out "$R/bench-$preset-autotune.json"
    done ;;
  n640)
    fits 90 n640 && run bench-nexus-640m 160 $G bench nexus-640m --seq-len 2048 --micro-batch 8 --steps 10 \
      --warmup 4 --out "$R/bench-nexus-640m.json" ;;
  tokoff)
    fits 150 tokoff || continue
    run bench-tokenformer-240m-kernel 130 $G bench tokenformer-240m $BENCH --profile "$R/profile" --profile-steps 2 \
      --out "$R/bench-tokenformer-240m-kernel.json"
    run bench-tokenformer-240m-nokernel 110 env GROWLM_PATTENTION_KERNEL=0 $G bench tokenformer-240m $BENCH \
      --out "$R/bench-tokenformer-240m-nokernel.json" ;;
  pkernel)
    fits 60 pkernel || continue
    run pattention-kernel 150 python3 benchmarks/pattention_kernel.py --out "$R/pattention-kernel.json" \
      ${LEGACY:+--legacy "$LEGACY"}
    if ! python3 -c "import pytest" 2> /dev/null && [ -d "${WHEELS:-}" ]; then
      pip install -q --no-index --target "$WORK/pytest" "$WHEELS"/*.whl > /dev/null 2>&1
    fi
    run pattention-tests 90 env PYTHONPATH="src:$WORK/pytest" python3 -m pytest -q -p no:cacheprovider \
      tests/models/test_pattention_norm.py ;;
  *) echo "unknown section $section" | tee -a "$R/skipped.txt" ;;
  esac
done
echo "== summary ($SECONDS s)"
python3 $PY summary "$R" > /dev/null 2> "$R/logs/summary.txt" || cat "$R/logs/summary.txt"
head -60 "$R/summary.md" 2>/dev/null
echo "total $SECONDS s"
# the device returns a limited number of files: everything in one archive, the digest beside it
tar czf "$OUT/speed3.tgz" -C "$OUT" speed3 && cp "$R/summary.md" "$OUT/speed3-summary.md" 2>/dev/null && rm -rf "$R"
