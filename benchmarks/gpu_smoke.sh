#!/usr/bin/env bash
# GPU smoke test for issue 2: training on CUDA (bf16 autocast, fused AdamW, compile) and resume.
export PYTHONPATH=src PYTHONUNBUFFERED=1
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name())"
G="python3 -m growlm.cli.main"
COMMON="--set data=${DATA:-.carry/data} --set progress=false --set seq_len=512 --set micro_batch_size=32 --set log_every=10 --set eval_every=50 --set eval_batches=8"
$G train configs/nexus-tiny.yaml $COMMON --set max_steps=100 --set checkpoint_every=50 --set out_dir=/tmp/eager > $OUT/eager.json 2>$OUT/eager.err; echo eager rc=$?
cp /tmp/eager/metrics.jsonl $OUT/eager_metrics.jsonl
rm -rf /tmp/eager/checkpoints/step-00000100
$G train --resume /tmp/eager > /dev/null 2>$OUT/resume.err; echo resume rc=$?
cp /tmp/eager/metrics.jsonl $OUT/resumed_metrics.jsonl
$G train configs/nexus-tiny.yaml $COMMON --set max_steps=100 --set checkpoint_every=100 --set compile=true --set out_dir=/tmp/compiled > $OUT/compiled.json 2>$OUT/compiled.err; echo compiled rc=$?
cp /tmp/compiled/metrics.jsonl $OUT/compiled_metrics.jsonl
python3 -m pytest -q -p no:cacheprovider tests/models tests/growth 2>&1 | tail -3
