#!/usr/bin/env bash
# The full forms of the experiments, side by side on one GPU machine (small models leave
# most of an H100/H200 idle, so several processes share it), each stopped after LIMIT
# seconds. Finished units are kept (OUT/units/*.json), so running this again with the
# same runs/experiments folder redoes only what did not finish.
#
#   GROWLM_SHARED=/path/to/shared bash benchmarks/gpu_experiments.sh ["NAME [--set KEY=VALUE ...]" ...]
#
# Each argument is one experiment, optionally with its sizing options (one quoted word).
#
# Writes $OUT/experiments.tgz (reports, units, figures, logs; no weights) and a summary.
source "$(dirname "$0")/gpu_common.sh"
export GROWLM_BENCHMARKS=${GROWLM_BENCHMARKS:-$GROWLM_SHARED/benchmarks}
OUT=${OUT:-runs/gpu-experiments}
LIMIT=${LIMIT:-500}
ROOT=${ROOT:-runs/experiments}
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(architectures growth-vs-scratch init-schemes growth-dynamics frozen-substrate composition)
mkdir -p "$OUT" "$ROOT/logs"
gpu_name | tee "$ROOT/logs/gpu.txt"
sample_gpu "$ROOT/logs/gpu-util.csv" 10 csv,noheader
start=$(date +%s)
for spec in "${names[@]}"; do
  read -r -a words <<< "$spec"
  name=${words[0]}
  ( experiment_on_gpu "$name" 20 "$ROOT/$name" "$ROOT/logs/$name.log" "${words[@]:1}"
    echo "$spec rc=$? seconds=$(( $(date +%s) - start ))" >> "$ROOT/logs/status.txt" ) &
done
wait $(jobs -p | grep -v "^$GPU_SAMPLER$") 2>/dev/null
stop_sampling
cat "$ROOT/logs/status.txt"
tar czf "$OUT/experiments.tgz" --exclude='*.safetensors' --exclude='*.pt' --exclude='*.bin' --exclude='*.npy' \
    --exclude='*.model' --exclude='tokenizer*.json' "$ROOT"
ls -la "$OUT"
