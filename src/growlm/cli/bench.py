"""``growlm bench``: training throughput, MFU and memory of a preset."""

from __future__ import annotations

import argparse
import os
from typing import Any

from growlm.cli.common import runtime_options
from growlm.errors import ConfigError


def add_parsers(sub: Any) -> None:
    """The ``bench`` subcommands: their parsers, each with its handler."""
    p = sub.add_parser("bench", help="training tokens/s, MFU and memory of a preset (vs transformers with --reference)")
    p.add_argument("preset", help="a preset name (growlm models lists them)")
    p.add_argument("--seq-len", type=int, default=4096, help="tokens per sequence")
    p.add_argument("--micro-batch", type=int, default=8, help="sequences per step")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, allocator)")
    p.add_argument("--compile", choices=("auto", "on", "off", "regional", "graphs", "autotune"),
                   default="auto", help="auto: on for CUDA; regional: each decoder layer compiled (faster to "
                                        "compile); graphs: on, with CUDA graphs; autotune: on, matmuls autotuned "
                                        "against Triton templates with fused epilogues (slow to compile)")
    p.add_argument("--reference", action="store_true", help="also time transformers' own model (qwen3, llama)")
    p.add_argument("--loss-chunk-tokens", type=int, default=0, help="compute the loss in chunks of this many "
                                                                    "tokens (0: at once)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--out", help="write the results as JSON")
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="recompute each decoder layer in backward (less memory, ~1/3 more compute)")
    p.add_argument("--nexus-unfused", action="store_true",
                   help="Nexusformer: run the Q/K/V Nexus-Rank maps one by one (default: fused on CUDA)")
    p.add_argument("--unfused-linears", action="store_true",
                   help="run Q/K/V and SwiGLU gate/up linears one by one (default: one product each on CUDA)")
    p.add_argument("--rotary-inline", action="store_true",
                   help="compute rotary tables where the compiler can see (and inline, i.e. recompute) them "
                        "(default: behind an opaque op, computed once per forward; growlm.models.layers)")
    p.add_argument("--nexus-pad", type=int, help="Nexusformer: pad M and A to this multiple in the fused path "
                                                 "(default $GROWLM_NEXUS_PAD or 8; 1 = none)")
    p.add_argument("--profile", metavar="DIR", help="profile --profile-steps more steps with torch.profiler; "
                                                    "write DIR/profile-*.json and .txt (top kernels by GPU time)")
    p.add_argument("--profile-steps", type=int, default=3, help="steps profiled with --profile")
    p.add_argument("--find-batch", action="store_true",
                   help="find the largest micro-batch that trains at --seq-len (doubling from --micro-batch, "
                        "then bisection) instead of timing")
    p.add_argument("--find-batch-max", type=int, default=1024, help="largest micro-batch --find-batch tries")
    p.add_argument("--find-batch-budget-s", type=float,
                   help="stop --find-batch after this many seconds (the answer is then a lower bound)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> None:
    from growlm.bench import BenchSettings, bench

    compile_model = {"auto": None, "on": True, "off": False, "regional": "regional", "graphs": "graphs",
                     "autotune": "autotune"}[args.compile]
    if args.nexus_pad is not None and args.nexus_pad < 1:
        raise ConfigError(f"--nexus-pad must be a positive integer, got {args.nexus_pad}")
    options = runtime_options(nexus_fused=False if args.nexus_unfused else None, nexus_pad=args.nexus_pad,
                              fuse_linears=False if args.unfused_linears else None,
                              rotary_opaque=False if args.rotary_inline else None)
    bench(args.preset, BenchSettings(
        seq_len=args.seq_len, micro_batch=args.micro_batch, steps=args.steps, warmup=args.warmup,
        compile_model=compile_model, reference=args.reference, device=args.device,
        loss_chunk_tokens=args.loss_chunk_tokens, out=args.out, activation_checkpointing=args.activation_checkpointing,
        options=options, profile=args.profile, profile_steps=args.profile_steps, find=args.find_batch,
        find_batch_max=args.find_batch_max, find_batch_budget_s=args.find_batch_budget_s,
        commit=os.environ.get("GROWLM_COMMIT")))
