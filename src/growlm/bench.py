"""``growlm bench``: training throughput, MFU and memory of a preset on this machine.

One loop for every model, growlm's or the reference: fp32 master weights, bf16
autocast (CUDA), fused AdamW, ``torch.compile`` (unless ``--no-compile``), random token
ids, next-token loss on every position. After ``--warmup`` steps, ``--steps`` steps are
timed (CUDA-synchronised wall clock). Reported:

* tokens/s and seconds per step;
* MFU: model training FLOPs per token (``models/accounting.py``: ``6 N + 12 L H d T``)
  times tokens/s, over the bf16 matrix-multiply rate *measured in the same run*
  (an 8192^3 GEMM, ``system.measure_matmul_flops``) -- not a datasheet number;
* peak allocated memory.

With ``--reference`` and a ``qwen3``/``llama`` preset the same shape is also run as
transformers' own ``Qwen3ForCausalLM``/``LlamaForCausalLM`` (SDPA attention) in the
same loop, and the speed ratio is printed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from growlm.models import model_class_for
from growlm.models.accounting import model_cost
from growlm.models.presets import build_config


@dataclass
class BenchResult:
    name: str
    preset: str
    seq_len: int
    micro_batch: int
    compiled: bool
    steps: int
    seconds_per_step: float
    tokens_per_s: float
    train_flops_per_token: int
    achieved_tflops: float
    peak_tflops: float
    mfu: float
    max_memory_gb: float
    final_loss: float


def _reference_model(config) -> torch.nn.Module:
    """transformers' own implementation of a growlm qwen3/llama config."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from growlm.models.storage import GROWLM_TO_HF, hf_config_dict

    hf_config = AutoConfig.for_model(GROWLM_TO_HF[config.architecture], **hf_config_dict(config),
                                     attn_implementation="sdpa")
    return AutoModelForCausalLM.from_config(hf_config)


def time_training(model: torch.nn.Module, name: str, preset: str, flops_per_token: int, seq_len: int,
                  micro_batch: int, steps: int, warmup: int, compile_model: bool, peak: float,
                  device: torch.device, vocab: int, loss_chunk_tokens: int = 0) -> BenchResult:
    model = model.to(device).float().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    forward = torch.compile(model) if compile_model else model
    generator = torch.Generator(device="cpu").manual_seed(0)
    batches = [torch.randint(0, vocab, (micro_batch, seq_len + 1), generator=generator).to(device) for _ in range(4)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else None
    extra = {"loss_chunk_tokens": loss_chunk_tokens} if loss_chunk_tokens else {}

    def step(i: int) -> float:
        tokens = batches[i % len(batches)]
        with autocast if autocast is not None else torch.autocast("cpu", enabled=False):
            # labels and shift_labels: transformers' models compute a loss only when labels are given, and
            # then use the already aligned shift_labels, so both predict every one of the seq_len positions
            targets = tokens[:, 1:].contiguous()
            loss = forward(input_ids=tokens[:, :-1], labels=targets, shift_labels=targets, use_cache=False,
                           **extra).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for i in range(warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for i in range(steps):
        loss = step(i)
    final = float(loss.detach())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    tokens_per_s = micro_batch * seq_len / seconds
    achieved = flops_per_token * tokens_per_s
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return BenchResult(name, preset, seq_len, micro_batch, compile_model, steps, seconds, tokens_per_s,
                       flops_per_token, achieved / 1e12, peak / 1e12, achieved / peak if peak else 0.0, memory, final)


def bench(preset: str, seq_len: int = 4096, micro_batch: int = 8, steps: int = 20, warmup: int = 5,
          compile_model: bool | None = None, reference: bool = False, device: str = "auto",
          loss_chunk_tokens: int = 0, out: str | Path | None = None, say=print) -> list[dict[str, Any]]:
    from growlm.system import measure_matmul_flops

    run_device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                              ("cpu" if device == "auto" else device))
    compile_model = run_device.type == "cuda" if compile_model is None else compile_model
    config = build_config(preset)
    cost = model_cost(config, seq_len)
    peak = measure_matmul_flops(run_device) if run_device.type == "cuda" else 0.0
    if peak:
        say(f"measured bf16 matmul rate: {peak / 1e12:.1f} TFLOP/s")
    torch.manual_seed(0)
    results = [time_training(model_class_for(config)(config), "growlm", preset, cost.train_flops_per_token, seq_len,
                             micro_batch, steps, warmup, compile_model, peak, run_device, config.vocab_size,
                             loss_chunk_tokens)]
    say(_line(results[-1]))
    if reference:
        if config.architecture not in ("qwen3", "llama"):
            say(f"no transformers reference for {config.architecture}")
        else:
            torch.manual_seed(0)
            if run_device.type == "cuda":
                torch.cuda.empty_cache()
            results.append(time_training(_reference_model(config), "transformers", preset,
                                         cost.train_flops_per_token, seq_len, micro_batch, steps, warmup,
                                         compile_model, peak, run_device, config.vocab_size))
            say(_line(results[-1]))
            say(f"growlm / transformers tokens/s: {results[0].tokens_per_s / results[1].tokens_per_s:.3f}")
    rows = [asdict(r) for r in results]
    if out:
        Path(out).write_text(json.dumps(rows, indent=2))
    return rows


def _line(r: BenchResult) -> str:
    return (f"{r.name:<12} {r.preset} seq {r.seq_len} x {r.micro_batch}{' compiled' if r.compiled else ''}: "
            f"{r.tokens_per_s:,.0f} tok/s, {r.seconds_per_step * 1e3:.1f} ms/step, {r.achieved_tflops:.1f} TFLOP/s"
            + (f", MFU {100 * r.mfu:.1f}%" if r.mfu else "") + (f", {r.max_memory_gb:.1f} GiB" if r.max_memory_gb
                                                                   else "") + f", loss {r.final_loss:.3f}")
