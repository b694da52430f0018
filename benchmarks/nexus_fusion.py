"""Micro-benchmark: one layer's Q/K/V Nexus-Rank maps, forward + backward, unfused vs fused.

Times ``NexusAttention.project_qkv`` (the three D->M->A->out chains) on random input, the
unfused path (three modules one by one) against the fused one (``models/nexus.py``:
one D->3M product, batched M->A and A->out) for several padding multiples of M and A.
This is what decided the default (fused on CUDA only): on a 2-core CPU the fused path
measured no faster (docs/training.md, "Speed").

    PYTHONPATH=src python benchmarks/nexus_fusion.py --preset nexus-240m --tokens 512          # CPU
    PYTHONPATH=src python benchmarks/nexus_fusion.py --preset nexus-240m --tokens 32768 --device cuda --compile
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from growlm.models.nexus import NexusAttention, NexusRank
from growlm.models.presets import build_config


def layer(preset: str) -> NexusAttention:
    config = build_config(preset)

    def projection(i: int, o: int, role: str) -> torch.nn.Module:
        return torch.nn.Linear(i, o, bias=False) if role == "o" else NexusRank(i, o, config)

    return NexusAttention(config, 0, projection)


def time_variant(att: NexusAttention, x: torch.Tensor, fused: bool, pad: int, repeats: int, compile_fn: bool,
                 autocast: bool) -> float:
    att.fused, att.pad = fused, pad

    def step() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            q, k, v = att.project_qkv(x)
            loss = q.float().sum() + k.float().sum() + v.float().sum()
        loss.backward()

    fn = torch.compile(step) if compile_fn else step
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if x.is_cuda:
            torch.cuda.synchronize()
        tic = time.perf_counter()
        fn()
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tic)
    times.sort()
    return times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="nexus-240m")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pads", default="1,8,64")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", help="write the timings as JSON")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    att = layer(args.preset).to(device)
    x = torch.randn(1, args.tokens, att.q_proj.m_proj.in_features, device=device, requires_grad=True)
    autocast = device.type == "cuda"
    rows = [{"variant": "unfused", "pad": None,
             "seconds": time_variant(att, x, False, 1, args.repeats, args.compile, autocast)}]
    for pad in (int(p) for p in args.pads.split(",")):
        rows.append({"variant": "fused", "pad": pad,
                     "seconds": time_variant(att, x, True, pad, args.repeats, args.compile, autocast)})
    base = rows[0]["seconds"]
    for row in rows:
        row.update(preset=args.preset, tokens=args.tokens, device=str(device), compiled=args.compile,
                   speedup=base / row["seconds"])
        print(f"{args.preset} {args.tokens} tokens {device}{' compiled' if args.compile else ''}: {row['variant']}"
              f"{'' if row['pad'] is None else ' pad ' + str(row['pad'])}: {1e3 * row['seconds']:.2f} ms "
              f"({row['speedup']:.2f}x)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
