#!/usr/bin/env bash
# GPU check of the paths CI cannot run: a growth plan (growth, freezing, LoRA through peft) with
# torch.compile on (the CUDA default), and benchmark evaluation / SQuAD generation with bf16 autocast.
# Usage (GPU machine, repository root): DATA=<prepared folder> BENCH=<benchmarks folder> OUT=... bash benchmarks/gpu_paths.sh
export PYTHONPATH=src PYTHONUNBUFFERED=1
G="python3 -m growlm.cli.main"
$G train plans/tiny-three-stage.yaml --set out_dir=/tmp/plan --set data=$DATA \
    --set progress=false --set seq_len=256 --set micro_batch_size=16 2>&1 | grep -v "Warning\|warn" | tail -8
$G eval /tmp/plan/stage-03-deeper/train --tasks paper5 lambada_openai squad --data-dir $BENCH --limit 200 \
    --out $OUT/eval 2>&1 | grep -v "it/s\]" | tail -10
