#!/usr/bin/env bash
# Issue 10, item 5: with `deterministic: true`, are two identical GPU runs, and a run SIGKILLed mid-way
# and resumed, bit-identical? And what does it cost in tokens/s? Five training processes of the same
# config (benchmarks/gpu_determinism.py says which); the JSON summary goes to $OUT/determinism.json
# and to stdout.
# Usage (GPU machine, repository root; no editable install needed):
#   OUT=<results dir> [DATA=<folder from `growlm data prepare`> | GROWLM_SHARED=<shared folder>] \
#     bash benchmarks/gpu_determinism.sh [steps] [micro_batch] [seq_len]
# Without DATA, a slice of the shared corpus (200 documents per source file) is prepared into $WORK/data.
# The runs (checkpoints) go to WORK (default /tmp/growlm-determinism, emptied first); only logs, metrics
# and the summary go to OUT.
# CUBLAS_WORKSPACE_CONFIG is deliberately NOT set here: growlm sets it itself when deterministic is on.
# MODEL (default nexus-tiny) and EXTRA (more --set overrides) change the model and settings.
set -euo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
: "${OUT:?set OUT to a results folder}"
STEPS=${1:-400}
MB=${2:-32}
SEQ=${3:-512}
MODEL=${MODEL:-nexus-tiny}
G="python3 -m growlm.cli.main"
WORK=${WORK:-/tmp/growlm-determinism}
rm -rf "$WORK/det-a" "$WORK/det-b" "$WORK/det-killed" "$WORK/off-a" "$WORK/off-b"
mkdir -p "$OUT" "$WORK"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
if [ -z "${DATA:-}" ]; then
  SHARED=${GROWLM_SHARED:-../shared}
  [ -d "$SHARED/corpus/train" ] || { echo "no DATA and no shared corpus at $SHARED (set DATA or GROWLM_SHARED)" >&2; exit 2; }
  DATA=$WORK/data
  if [ ! -f "$DATA/meta.json" ]; then
    $G data prepare "$SHARED/corpus/train" --val "$SHARED/corpus/val" --overwrite --max-docs-per-file 200 \
      --tokenizer "$SHARED/tokenizers/mistral-v1-32k/tokenizer.model" --out "$DATA" > "$OUT/prepare.log" 2>&1 \
      || { tail -20 "$OUT/prepare.log" >&2; exit 1; }
  fi
fi
python3 benchmarks/gpu_determinism.py configs/nexus-tiny.yaml "$WORK" "$OUT" \
  --set "model=$MODEL" --set "data=$DATA" --set "max_steps=$STEPS" --set "checkpoint_every=$((STEPS / 4))" \
  --set "seq_len=$SEQ" --set "micro_batch_size=$MB" --set warmup_steps=20 --set log_every=10 \
  --set "eval_every=$((STEPS / 4))" --set eval_batches=8 --set progress=false --set tensorboard=false \
  --set keep_last=2 ${EXTRA:-}
