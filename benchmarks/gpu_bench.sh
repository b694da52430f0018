#!/usr/bin/env bash
# Single-GPU throughput of issue 5: growlm vs transformers' Qwen3 (same shape, same loop, compiled),
# Nexusformer and TokenFormer at the paper's 240M size, context 4096. Results land in $OUT.
# Usage (on the GPU machine, repository root): OUT=/some/dir bash benchmarks/gpu_bench.sh [micro_batch]
export PYTHONPATH=src PYTHONUNBUFFERED=1
MB=${1:-8}
G="python3 -m growlm.cli.main"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
$G bench qwen3-240m --seq-len 4096 --micro-batch $MB --steps 15 --warmup 6 --reference --out $OUT/qwen3-240m.json 2>&1 | grep -v Warning
$G bench nexus-240m --seq-len 4096 --micro-batch $MB --steps 15 --warmup 6 --out $OUT/nexus-240m.json 2>&1 | grep -v Warning
$G bench tokenformer-240m --seq-len 4096 --micro-batch $MB --steps 15 --warmup 6 --out $OUT/tokenformer-240m.json 2>&1 | grep -v Warning
