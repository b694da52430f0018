#!/usr/bin/env bash
# Multi-GPU check of issue 5: the same qwen3-240m training (context 4096, micro-batch 8 per GPU,
# same global batch everywhere) run on one GPU with gradient accumulation, then on N GPUs through
# torchrun with DDP and with FSDP2. benchmarks/multi_gpu_summary.py compares the logged losses
# (loss agreement) and the steady-state tokens/s (scaling efficiency = tok/s on N / (N x tok/s on 1)).
# Usage (GPU machine, repository root):
#   DATA=<folder from `growlm data prepare`> OUT=<results dir> bash benchmarks/gpu_multi.sh [N] [steps]
# With N=1 it checks the NCCL code paths (DDP and FSDP2 at world size 1) on one GPU.
export PYTHONPATH=src PYTHONUNBUFFERED=1
N=${1:-2}
STEPS=${2:-30}
G="python3 -m growlm.cli.main"
CFG=benchmarks/multi-gpu-qwen3-240m.yaml
COMMON="--set data=$DATA --set max_steps=$STEPS $EXTRA"  # EXTRA: more --set overrides, e.g. another model
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
$G train $CFG --set grad_accum_steps=$N --set distributed=none --set out_dir=$OUT/one $COMMON 2>&1 | grep -v Warn | tail -3
for MODE in ddp fsdp; do
  torchrun --standalone --nproc_per_node $N -m growlm.cli.main train $CFG --set grad_accum_steps=1 \
    --set distributed=$MODE --set out_dir=$OUT/$MODE $COMMON 2>&1 | grep -v Warn | tail -3
done
python3 benchmarks/multi_gpu_summary.py $OUT $N | tee $OUT/summary.txt
