"""Tokens/s of one CPU training step of a preset, with and without growlm's allocator setting.

    python benchmarks/cpu_step.py nexus-tiny --batch 8 --seq-len 256            # growlm's setting
    python benchmarks/cpu_step.py nexus-tiny --batch 8 --seq-len 256 --default  # glibc defaults

Run each variant in its own process: the allocator setting cannot be undone.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from growlm.models import model_class_for
from growlm.models.presets import build_config
from growlm.system import tune_cpu_allocator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--default", action="store_true", help="keep glibc's allocator thresholds")
    args = parser.parse_args()
    if not args.default:
        tune_cpu_allocator()
    config = build_config(args.preset)
    torch.manual_seed(0)
    model = model_class_for(config)(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, config.vocab_size, (args.batch, args.seq_len))
    y = torch.randint(0, config.vocab_size, (args.batch, args.seq_len))

    def step() -> None:
        model(input_ids=x, shift_labels=y, use_cache=False).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    start = time.time()
    for _ in range(args.steps):
        step()
    seconds = (time.time() - start) / args.steps
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{args.preset} {'default' if args.default else 'tuned'} allocator: {seconds:.3f} s/step, "
          f"{args.batch * args.seq_len / seconds:,.0f} tokens/s, sys {usage.ru_stime:.1f} s, "
          f"minor faults {usage.ru_minflt:,}")


if __name__ == "__main__":
    main()
