#!/usr/bin/env bash
# Issue 22 item 4 on one GPU: run options are one value handed to each model (growlm/runtime.py),
# and nothing about the speed changed. Four `growlm bench` rows, each a fresh process:
#   default      nexus-240m, seq 4096 x 8, compiled bf16: tokens/s to compare with docs/benchmarks.md
#   env-unfused  the same with GROWLM_NEXUS_FUSED=0: the variable still switches the path (at the entry
#                point): variant nexus_fused false, slower
#   token        tokenformer-240m, seq 2048 x 4: variant pattention_kernel true (CUDA + Triton)
#   token-off    the same with GROWLM_PATTENTION_KERNEL=0: variant pattention_kernel false
# and a check that the option reaches the model on CUDA in one process with two models (fused and not).
# About 5 minutes on one H100; results under $OUT/options/ (JSON + summary.md).
#
# Usage (GPU machine, repository root):  OUT=<results dir> bash benchmarks/gpu_options.sh
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
export GROWLM_COMMIT=${GROWLM_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
: "${OUT:?set OUT to the results folder}"
R="$OUT/options"
mkdir -p "$R"
G="python3 -m growlm.cli.main"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$R/device.txt"

run() {  # NAME LIMIT_S ENV... -- ARGS...
  local name=$1 limit=$2; shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  echo "== $name"
  env "${envs[@]}" timeout "$limit" $G bench "$@" --out "$R/$name.json" 2>&1 | tail -3
}

run default 150 X=1 -- nexus-240m --seq-len 4096 --micro-batch 8 --steps 10 --warmup 4
run env-unfused 150 GROWLM_NEXUS_FUSED=0 -- nexus-240m --seq-len 4096 --micro-batch 8 --steps 10 --warmup 4
run token 120 X=1 -- tokenformer-240m --seq-len 2048 --micro-batch 4 --steps 5 --warmup 2
run token-off 120 GROWLM_PATTENTION_KERNEL=0 -- tokenformer-240m --seq-len 2048 --micro-batch 4 --steps 5 --warmup 2

echo "== two models, one process"
timeout 120 python3 - > "$R/two-models.json" <<'EOF'
import json

import torch

from growlm.models import apply_runtime, model_class_for, nexus
from growlm.models.presets import build_config
from growlm.runtime import RuntimeOptions

config = build_config("nexus-tiny")
calls = []
real = nexus.fused_nexus_qkv
nexus.fused_nexus_qkv = lambda *a: calls.append(a[2]) or real(*a)
ids = torch.randint(0, config.vocab_size, (2, 64), device="cuda")
result = {}
for label, options in (("auto", RuntimeOptions()), ("unfused", RuntimeOptions(nexus_fused=False)),
                       ("pad16", RuntimeOptions(nexus_pad=16))):
    torch.manual_seed(0)
    model = model_class_for(config)(config).cuda().eval()
    apply_runtime(model, options)
    calls.clear()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(input_ids=ids).logits.float()
    result[label] = {"fused_calls": len(calls), "pads": sorted(set(calls)), "logit_sum": float(logits.sum())}
print(json.dumps(result, indent=2))
EOF
cat "$R/two-models.json"

python3 - "$R" <<'EOF' | tee "$R/summary.md"
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
print("| row | preset | tok/s | MFU | variant |\n|---|---|---|---|---|")
for name in ("default", "env-unfused", "token", "token-off"):
    path = out / f"{name}.json"
    if not path.exists():
        print(f"| {name} | (no result) | | | |")
        continue
    row = json.loads(path.read_text())[0]
    print(f"| {name} | {row['preset']} | {row['tokens_per_s']:,.0f} | {100 * row['mfu']:.1f}% | {row['variant']} |")
EOF
