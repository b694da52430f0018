"""``growlm bench``: training throughput, MFU, memory and profile of a preset on this machine.

One loop for every model, growlm's or the reference: fp32 master weights, bf16
autocast (CUDA), fused AdamW, ``torch.compile`` (unless ``--compile off``), random token
ids, next-token loss on every position. After ``--warmup`` steps, ``--steps`` steps are
timed (CUDA-synchronised wall clock). Reported:

* tokens/s and seconds per step; the seconds of the first step (compilation included);
* MFU: model training FLOPs per token (``models/accounting.py``: ``6 N + 12 L H d T``)
  times tokens/s, over the bf16 matrix-multiply rate *measured in the same run*
  (an 8192^3 GEMM, ``system.measure_matmul_flops``) -- not a datasheet number;
* peak allocated memory.

With ``--reference`` and a ``qwen3``/``llama`` preset the same shape is also run as
transformers' own ``Qwen3ForCausalLM``/``LlamaForCausalLM`` (SDPA attention) in the
same loop, and the speed ratio is printed.

Options for issue 14:

* ``--activation-checkpointing``: recompute each decoder layer in backward (growlm's
  ``DecoderStack.gradient_checkpointing``; transformers' ``gradient_checkpointing_enable``).
* ``--compile regional``: compile each decoder layer instead of the whole model
  (``training/compiling.py``): compilation is one layer's, the steady state may be slower.
* ``--nexus-unfused`` / ``--nexus-pad N``: run Nexusformer's Q/K/V maps one by one instead
  of fused, or pad M and A to another multiple (``models/nexus.py``).
* ``--unfused-linears``: run Q/K/V and SwiGLU's gate/up linears one by one instead of as one
  product each (``models/layers.py``, ``fused_linears``).
* ``--rotary-inline``: rotary tables computed where the compiler sees them (``models/layers.py``).
  These flags (over the ``GROWLM_*`` variables, read by the CLI) make one
  :class:`~growlm.runtime.RuntimeOptions`, applied to growlm's model only; the row's
  ``variant`` records what it ran with.
* ``--profile DIR``: after the timed steps, ``--profile-steps`` more steps under
  ``torch.profiler``; writes ``DIR/profile-<preset>.json`` (top kernels by GPU time, top
  operators, and the GPU time grouped into matrix products / attention / compiler-fused
  elementwise / copies / other) and ``DIR/profile-<preset>.txt`` (the profiler's table).
  Profiled steps are not part of the timing. The profile also records every attention call
  (``attention`` in the JSON, ``attention_spy``): for each SDPA-family operator that ran
  (``aten::scaled_dot_product_attention`` in eager mode; the backend operator the compiler
  chose, e.g. ``aten::_scaled_dot_product_cudnn_attention`` and its ``_backward``, in a
  compiled graph), the inputs it got (shapes, strides, contiguity, dtypes, mask present or
  not, ``is_causal``, ``enable_gqa``, scale), how often, its device time per call, and the
  kernels it launched -- so two models calling "the same" attention can be compared.
* ``--find-batch``: the largest micro-batch that trains at ``--seq-len``: doubling from
  ``--micro-batch`` until a step runs out of memory, then bisection between the last
  size that fitted and the first that did not (``largest_fitting``). Each try runs two
  optimizer steps (so the AdamW moments exist) and catches ``torch.cuda.OutOfMemoryError``;
  gradients and cached blocks are freed between tries. ``--find-batch-max`` caps the
  size and ``--find-batch-budget-s`` the seconds spent (the answer is then a lower bound,
  marked ``bounded``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from growlm.models import GrowLMForCausalLM, model_class_for
from growlm.models.accounting import model_cost
from growlm.models.presets import build_config
from growlm.runtime import RuntimeOptions
from growlm.training.compiling import compile_model as compile_model_for_training

logger = logging.getLogger(__name__)


@dataclass
class BenchSettings:
    """What ``growlm bench`` measures and how: one field per flag of the command (its ``--help``
    says what each does); :func:`bench` also takes them as keywords."""

    seq_len: int = 4096
    micro_batch: int = 8
    steps: int = 20
    warmup: int = 5
    compile_model: bool | str | None = None  # None: on for CUDA, off elsewhere
    reference: bool = False
    device: str = "auto"
    loss_chunk_tokens: int = 0
    out: str | Path | None = None
    activation_checkpointing: bool = False
    options: RuntimeOptions | None = None  # the fused paths and kernels growlm's model takes (None: auto)
    profile: str | Path | None = None
    profile_steps: int = 3
    find: bool = False
    find_batch_max: int = 1024
    find_batch_budget_s: float | None = None
    commit: str | None = None  # what the rows record as the code's commit (the CLI: $GROWLM_COMMIT)


@dataclass
class BenchResult:
    name: str
    preset: str
    seq_len: int
    micro_batch: int
    compiled: bool | str  # True, False or 'regional' (training/compiling.py)
    steps: int
    seconds_per_step: float
    tokens_per_s: float
    train_flops_per_token: int
    achieved_tflops: float
    peak_tflops: float
    mfu: float
    max_memory_gb: float
    final_loss: float
    first_step_s: float = 0.0
    activation_checkpointing: bool = False
    variant: dict[str, Any] = field(default_factory=dict)


def _reference_model(config) -> torch.nn.Module:
    """transformers' own implementation of a growlm qwen3/llama config."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from growlm.models.storage import GROWLM_TO_HF, hf_config_dict

    hf_config = AutoConfig.for_model(GROWLM_TO_HF[config.architecture], **hf_config_dict(config),
                                     attn_implementation="sdpa")
    return AutoModelForCausalLM.from_config(hf_config)


def set_activation_checkpointing(model: torch.nn.Module, on: bool) -> None:
    """Recompute each decoder layer's activations in backward: growlm's own switch (what ``growlm
    train`` sets for ``activation_checkpointing``), or transformers' for the reference model."""
    if isinstance(model, GrowLMForCausalLM):
        model.model.gradient_checkpointing = on
    elif on and isinstance(model, PreTrainedModel):  # transformers renamed the switch (activation_... from
        # 5.x; the old name warns)
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


class TrainLoop:
    """The benchmark's training step: bf16 autocast on CUDA, fused AdamW, optionally compiled."""

    def __init__(self, model: torch.nn.Module, device: torch.device, compile_model: bool | str,
                 loss_chunk_tokens: int = 0) -> None:
        self.model = model.to(device).float().train()
        self.device = device
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
        self.forward = compile_model_for_training(self.model, compile_model, device)
        self.extra = {"loss_chunk_tokens": loss_chunk_tokens} if loss_chunk_tokens else {}

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        with autocast:
            # labels and shift_labels: transformers' models compute a loss only when labels are given, and
            # then use the already aligned shift_labels, so both predict every one of the seq_len positions
            targets = tokens[:, 1:].contiguous()
            loss = self.forward(input_ids=tokens[:, :-1], labels=targets, shift_labels=targets, use_cache=False,
                                **self.extra).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def random_batches(vocab: int, micro_batch: int, seq_len: int, device: torch.device, count: int = 4
                   ) -> list[torch.Tensor]:
    generator = torch.Generator(device="cpu").manual_seed(0)
    return [torch.randint(0, vocab, (micro_batch, seq_len + 1), generator=generator).to(device) for _ in range(count)]


def time_training(model: torch.nn.Module, name: str, preset: str, flops_per_token: int, settings: BenchSettings, *,
                  peak: float, device: torch.device, vocab: int, variant: dict[str, Any] | None = None
                  ) -> BenchResult:
    """Time ``settings.steps`` training steps of ``model`` after ``settings.warmup`` (``compile_model``
    already resolved to on or off, as :func:`bench` does)."""
    seq_len, micro_batch, steps, warmup = settings.seq_len, settings.micro_batch, settings.steps, settings.warmup
    compile_model, loss_chunk_tokens = settings.compile_model, settings.loss_chunk_tokens
    assert compile_model is not None, "bench resolves compile_model (auto) before timing"
    activation_checkpointing, profile = settings.activation_checkpointing, settings.profile
    set_activation_checkpointing(model, activation_checkpointing)
    loop = TrainLoop(model, device, compile_model, loss_chunk_tokens)
    batches = random_batches(vocab, micro_batch, seq_len, device)
    tic = time.perf_counter()
    loop.step(batches[0])
    loop.synchronize()
    first = time.perf_counter() - tic
    for i in range(1, warmup):
        loop.step(batches[i % len(batches)])
    loop.synchronize()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for i in range(steps):
        loss = loop.step(batches[i % len(batches)])
    final = float(loss.detach())
    loop.synchronize()
    seconds = (time.perf_counter() - start) / steps
    tokens_per_s = micro_batch * seq_len / seconds
    achieved = flops_per_token * tokens_per_s
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    result = BenchResult(name, preset, seq_len, micro_batch, compile_model, steps, seconds, tokens_per_s,
                         flops_per_token, achieved / 1e12, peak / 1e12, achieved / peak if peak else 0.0, memory,
                         final, first, activation_checkpointing, dict(variant or {}))
    if profile is not None:
        summary = profile_steps_of(loop, batches, settings.profile_steps, Path(profile), f"{preset}-{name}"
                                   + "".join(f"-{k}-{v}" for k, v in sorted((variant or {}).items())))
        logger.info(profile_line(summary))
    return result


# -- profile -----------------------------------------------------------------------------------
# Kernel names -> where the time goes. Matched in order, lower case, first hit wins.
KERNEL_GROUPS = (
    ("attention", ("flash", "fmha", "attention", "sdpa", "cudnn_generated_fort_native_sdpa")),
    ("matmul", ("gemm", "cutlass", "xmma", "nvjet", "cublas", "sm90_", "sm80_", "wgmma", "ampere_", "hopper_",
                "::mm", "bmm", "addmm")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("fused elementwise (compiler)", ("triton",)),
    ("copies", ("memcpy", "memset", "copy", "cat", "pad")),
    ("loss", ("cross_entropy", "log_softmax", "nll")),
)


def kernel_group(name: str) -> str:
    low = name.lower()
    for group, keys in KERNEL_GROUPS:
        if any(k in low for k in keys):
            return group
    return "other"


def _device_self(event: Any, cuda: bool) -> float:
    """Self time in microseconds of a profiler row on the device that ran (GPU when there is one)."""
    if cuda:
        return float(getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)))
    return float(event.self_cpu_time_total)


def _device_total(event: Any, cuda: bool) -> float:
    if cuda:
        return float(getattr(event, "device_time_total", getattr(event, "cuda_time_total", 0.0)))
    return float(event.cpu_time_total)


# Operators of the SDPA family: the public one (eager) and the backends a compiled graph calls directly.
ATTENTION_OPS = ("scaled_dot_product", "flash_attention", "efficient_attention", "cudnn_attention")


def describe_value(value: Any) -> Any:
    """A JSON-able description of an operator argument: a tensor's layout, a scalar as is."""
    if isinstance(value, torch.Tensor):
        return {"shape": list(value.shape), "stride": list(value.stride()),
                "dtype": str(value.dtype).removeprefix("torch."), "contiguous": value.is_contiguous(),
                "device": value.device.type}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [describe_value(v) for v in value]
    return type(value).__name__


@contextlib.contextmanager
def attention_spy(calls: dict[str, dict[str, int]], functional: bool = True) -> Iterator[None]:
    """Record (into ``calls``: operator -> description JSON -> count) every attention operator called
    through Python while active: ``torch._ops.OpOverload.__call__`` (how a compiled graph's wrapper
    calls the backend Inductor kept as an extern kernel, forward and backward) and, with
    ``functional``, ``F.scaled_dot_product_attention`` (eager models look it up at call time).
    Never active while compiling: patching ``F`` under a compiled model could change its guards,
    so callers pass ``functional=False`` for compiled loops."""
    import torch.nn.functional as F

    def record(name: str, args: tuple, kwargs: dict) -> None:
        key = json.dumps({"args": describe_value(args), "kwargs": {k: describe_value(v) for k, v in kwargs.items()}},
                         sort_keys=True)
        calls.setdefault(name, {})
        calls[name][key] = calls[name].get(key, 0) + 1

    overload_call = torch._ops.OpOverload.__call__
    sdpa = F.scaled_dot_product_attention

    def spy_overload(self, /, *args, **kwargs):
        name = self.name()
        if any(k in name for k in ATTENTION_OPS):
            record(name, args, kwargs)
        return overload_call(self, *args, **kwargs)

    def spy_sdpa(*args, **kwargs):
        record("F.scaled_dot_product_attention", args, kwargs)
        return sdpa(*args, **kwargs)

    torch._ops.OpOverload.__call__ = spy_overload  # type: ignore[method-assign]  # counting every op call
    if functional:
        F.scaled_dot_product_attention = spy_sdpa
    try:
        yield
    finally:
        torch._ops.OpOverload.__call__ = overload_call  # type: ignore[method-assign]
        F.scaled_dot_product_attention = sdpa


def _subtree_kernels(event: Any, into: dict[str, dict[str, float]]) -> None:
    for kernel in getattr(event, "kernels", []):
        row = into.setdefault(kernel.name, {"launches": 0, "time_us": 0.0})
        row["launches"] += 1
        row["time_us"] += float(kernel.duration)
    for child in getattr(event, "cpu_children", []):
        _subtree_kernels(child, into)


def attention_summary(events: Any, calls: dict[str, dict[str, int]], steps: int) -> dict[str, Any]:
    """The attention operators of a profile: per operator its calls, device time per call and kernels
    (from the profiler's events) and the argument layouts it got (from ``attention_spy``)."""
    ops: dict[str, dict[str, Any]] = {}
    for event in events:
        if not any(k in event.name for k in ATTENTION_OPS):
            continue
        parent = getattr(event, "cpu_parent", None)
        if parent is not None and any(k in parent.name for k in ATTENTION_OPS):
            continue  # counted in its parent's subtree
        row = ops.setdefault(event.name, {"op": event.name, "calls": 0, "kernels": {}})
        row["calls"] += 1
        _subtree_kernels(event, row["kernels"])
    for row in ops.values():
        row["device_time_us"] = sum(k["time_us"] for k in row["kernels"].values())
        row["device_us_per_call"] = row["device_time_us"] / row["calls"]
        row["calls_per_step"] = row["calls"] / steps
        row["kernels"] = dict(sorted(row["kernels"].items(), key=lambda kv: -kv[1]["time_us"]))
    signatures = [{"op": name, "count": count, **json.loads(key)}
                  for name, by_key in calls.items() for key, count in by_key.items()]
    return {"ops": sorted(ops.values(), key=lambda r: -r["device_time_us"]), "signatures": signatures}


def is_eager(loop: TrainLoop) -> bool:
    """Nothing of the loop's model compiled: neither whole (``torch.compile``) nor by layer
    (``nn.Module.compile`` sets ``_compiled_call_impl``)."""
    return loop.forward is loop.model and not any(getattr(m, "_compiled_call_impl", None) is not None
                                                  for m in loop.model.modules())


def profile_steps_of(loop: TrainLoop, batches: list[torch.Tensor], steps: int, out_dir: Path, label: str,
                     top: int = 30) -> dict[str, Any]:
    """Run ``steps`` training steps under ``torch.profiler`` and write the summary (module doc)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = loop.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    calls: dict[str, dict[str, int]] = {}
    with profile(activities=activities) as prof, attention_spy(calls, functional=is_eager(loop)):
        for i in range(steps):
            loop.step(batches[i % len(batches)])
        loop.synchronize()
    averages = prof.key_averages()
    if cuda:  # the GPU's own rows (kernels, copies); the CPU rows that launched them would count twice
        kernels = [e for e in averages if e.device_type == DeviceType.CUDA and _device_self(e, cuda) > 0
                   and not getattr(e, "is_user_annotation", False)]
    else:  # on CPU the operators are the kernels; self time does not count nested operators twice
        kernels = [e for e in averages if e.key.startswith("aten::") and _device_self(e, cuda) > 0]
    total = sum(_device_self(e, cuda) for e in kernels) or 1.0
    groups: dict[str, float] = {}
    for e in kernels:
        groups[kernel_group(e.key)] = groups.get(kernel_group(e.key), 0.0) + _device_self(e, cuda)
    kernel_rows = sorted(({"name": e.key, "group": kernel_group(e.key), "calls": e.count,
                           "time_us": _device_self(e, cuda), "share": _device_self(e, cuda) / total}
                          for e in kernels), key=lambda r: -r["time_us"])
    op_rows = sorted(({"name": e.key, "calls": e.count, "time_us": _device_total(e, cuda),
                       "share": _device_total(e, cuda) / total}
                      for e in averages if e.key.startswith("aten::") and e.device_type == DeviceType.CPU
                      and _device_total(e, cuda) > 0),
                     key=lambda r: -r["time_us"])
    summary = {"label": label, "steps": steps, "device": "cuda" if cuda else "cpu",
               "time_per_step_ms": total / steps / 1e3,
               "groups": {g: {"time_us": t, "share": t / total} for g, t in sorted(groups.items(), key=lambda x: -x[1])},
               "top_kernels": kernel_rows[:top], "top_ops": op_rows[:top],
               "attention": attention_summary(prof.events(), calls, steps)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"profile-{label}.json").write_text(json.dumps(summary, indent=2))
    sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    (out_dir / f"profile-{label}.txt").write_text(averages.table(sort_by=sort_by, row_limit=60, max_name_column_width=90))
    return summary


def profile_line(summary: dict[str, Any]) -> str:
    parts = ", ".join(f"{g} {100 * v['share']:.0f}%" for g, v in summary["groups"].items())
    return f"profile {summary['label']}: {summary['time_per_step_ms']:.1f} ms {summary['device']} time/step: {parts}"


# -- largest micro-batch ----------------------------------------------------------------------
def largest_fitting(fits: Callable[[int], bool], start: int = 1, limit: int = 1024,
                    budget_s: float | None = None, clock: Callable[[], float] = time.monotonic
                    ) -> tuple[int, list[tuple[int, bool]], bool]:
    """The largest ``n`` in ``[1, limit]`` with ``fits(n)``, assuming fitting is monotone (what fits
    at n fits below n): doubling from ``start``, then bisection. Returns (n or 0 if even 1 fails,
    the tries in order, whether the budget cut the search short -- then n is a lower bound)."""
    tries: list[tuple[int, bool]] = []
    began = clock()

    def attempt(n: int) -> bool:
        ok = fits(n)
        tries.append((n, ok))
        return ok

    def out_of_time() -> bool:
        return budget_s is not None and clock() - began > budget_s

    n = max(1, min(start, limit))
    if attempt(n):  # double up to the first failure (or the limit)
        low, high = n, 0
        while not high:
            if low == limit:
                return low, tries, False
            if out_of_time():
                return low, tries, True
            n = min(2 * low, limit)
            if attempt(n):
                low = n
            else:
                high = n
    else:  # the start is already too large: halve down to a size that fits
        high = n
        while True:
            if high == 1:
                return 0, tries, False
            if out_of_time():
                return 0, tries, True
            n = high // 2
            if attempt(n):
                low = n
                break
            high = n
    return _bisect(attempt, low, high, tries, out_of_time)


def _bisect(attempt: Callable[[int], bool], low: int, high: int, tries: list[tuple[int, bool]],
            out_of_time: Callable[[], bool]) -> tuple[int, list[tuple[int, bool]], bool]:
    while high - low > 1:
        if out_of_time():
            return low, tries, True
        mid = (low + high) // 2
        if attempt(mid):
            low = mid
        else:
            high = mid
    return low, tries, False


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def find_batch(model: torch.nn.Module, preset: str, seq_len: int, device: torch.device, compile_model: bool | str,
               vocab: int, start: int = 1, limit: int = 1024, budget_s: float | None = None,
               activation_checkpointing: bool = False, loss_chunk_tokens: int = 0) -> dict[str, Any]:
    """The largest micro-batch of ``model`` that trains at ``seq_len`` on ``device`` (module doc)."""
    set_activation_checkpointing(model, activation_checkpointing)
    loop = TrainLoop(model, device, compile_model, loss_chunk_tokens)
    details: list[dict[str, Any]] = []

    def fits(micro_batch: int) -> bool:
        tic = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ok = True
        try:
            tokens = torch.randint(0, vocab, (micro_batch, seq_len + 1), device=device)
            for _ in range(2):
                loop.step(tokens)
            loop.synchronize()
        except (torch.cuda.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            ok = False
        tokens = None
        loop.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
        if device.type == "cuda":
            torch.cuda.empty_cache()
        details.append({"micro_batch": micro_batch, "fits": ok, "peak_memory_gb": round(peak, 2),
                        "seconds": round(time.perf_counter() - tic, 2)})
        logger.info(f"  micro-batch {micro_batch}: {'fits' if ok else 'out of memory'} "
                    f"(peak {peak:.1f} GiB, {details[-1]['seconds']:.1f} s)")
        return ok

    best, _, bounded = largest_fitting(fits, start, limit, budget_s)
    total = torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else 0.0
    return {"preset": preset, "seq_len": seq_len, "compiled": compile_model,
            "activation_checkpointing": activation_checkpointing, "max_micro_batch": best, "bounded": bounded,
            "limit": limit, "device_memory_gb": round(total, 1), "tries": details,
            "peak_memory_gb_at_max": next((d["peak_memory_gb"] for d in reversed(details)
                                           if d["micro_batch"] == best and d["fits"]), None)}


# -- the command -------------------------------------------------------------------------------
def run_environment(device: torch.device, commit: str | None = None) -> dict[str, Any]:
    """What a figure needs beside it: device, versions, date, the commit the caller names (the CLI
    takes ``$GROWLM_COMMIT``), and growlm's version and source hash (:mod:`growlm.provenance`: they
    name the code even where ``.git`` is stale)."""
    import transformers

    from growlm.provenance import provenance

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device_name": name, "torch": torch.__version__, "transformers": transformers.__version__,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit or "unknown", "growlm": provenance().version,
            "source_hash": provenance().source_hash}


def _variant(model: torch.nn.Module, options: RuntimeOptions, device: torch.device) -> dict[str, Any]:
    """Apply ``options`` to a growlm model and record how it computes: fused sibling linears, rotary
    tables, the Pattention kernel, fused Nexus-Rank."""
    import torch._inductor.config

    from growlm.models import apply_runtime
    from growlm.models.nexus import NexusAttention
    from growlm.models.pattention_norm import kernel_applies
    from growlm.models.tokenformer import Pattention

    if not type(model).__module__.startswith("growlm."):
        return {}
    apply_runtime(model, options)
    fuse = options.fuse_linears
    variant: dict[str, Any] = {"fused_linears": device.type == "cuda" if fuse is None else fuse}
    if not options.rotary_opaque:
        variant["rotary_inline"] = True
    if getattr(torch._inductor.config, "coordinate_descent_tuning", False):  # TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1
        variant["coordinate_descent_tuning"] = True
    norms = [m for m in model.modules() if isinstance(m, Pattention) and m.norm == "l2_norm_gelu"]
    if norms:
        scores = torch.empty(0, norms[0].key_tokens.shape[0], device=device)
        variant["pattention_kernel"] = kernel_applies(scores, norms[0].kernel)
    layer = next((m for m in model.modules() if isinstance(m, NexusAttention)), None)
    if layer is None:
        return variant
    on = device.type == "cuda" if layer.fused is None else layer.fused
    return {**variant, "nexus_fused": bool(on), "nexus_pad": layer.pad if on else 1}


def bench(preset: str, settings: BenchSettings | None = None, **fields: Any) -> list[dict[str, Any]]:
    """Time (or, with ``find``, size the micro-batch of) ``preset``'s training step (module doc):
    ``settings``, or :class:`BenchSettings`' fields as keywords (``bench("nexus-tiny", seq_len=16,
    device="cpu")``). ``options``: the fused paths and kernels growlm's model takes (default: auto;
    ``growlm/runtime.py``); ``commit``: what the rows record as the code's commit."""
    from growlm.system import measure_matmul_flops

    o = replace(settings or BenchSettings(), **fields)
    seq_len, micro_batch, device = o.seq_len, o.micro_batch, o.device
    activation_checkpointing = o.activation_checkpointing
    options = o.options or RuntimeOptions()
    run_device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                              ("cpu" if device == "auto" else device))
    compile_model = run_device.type == "cuda" if o.compile_model is None else o.compile_model
    o = replace(o, compile_model=compile_model, profile=Path(o.profile) if o.profile else None)
    config = build_config(preset)
    environment = run_environment(run_device, o.commit)
    torch.manual_seed(0)
    model = model_class_for(config)(config)
    variant = _variant(model, options, run_device)
    if o.find:
        logger.info(f"largest micro-batch of {preset} at sequence {seq_len}"
                    f"{' with activation checkpointing' if activation_checkpointing else ''}"
                    f"{' (compiled)' if compile_model else ''}:")
        row = find_batch(model, preset, seq_len, run_device, compile_model, config.vocab_size, micro_batch,
                         o.find_batch_max, o.find_batch_budget_s, activation_checkpointing, o.loss_chunk_tokens)
        row.update(variant=variant, **environment)
        logger.info(f"{preset} seq {seq_len}: largest micro-batch {row['max_micro_batch']}"
                    f"{' (lower bound: time budget reached)' if row['bounded'] else ''}")
        if o.out:
            Path(o.out).write_text(json.dumps([row], indent=2))
        return [row]
    cost = model_cost(config, seq_len)
    peak = measure_matmul_flops(run_device) if run_device.type == "cuda" else 0.0
    if peak:
        logger.info(f"measured bf16 matmul rate: {peak / 1e12:.1f} TFLOP/s")
    results = [time_training(model, "growlm", preset, cost.train_flops_per_token, o, peak=peak, device=run_device,
                             vocab=config.vocab_size, variant=variant)]
    logger.info(_line(results[-1]))
    if o.reference:
        if config.architecture not in ("qwen3", "llama"):
            logger.info(f"no transformers reference for {config.architecture}")
        else:
            del model
            torch.manual_seed(0)
            if run_device.type == "cuda":
                gc.collect()
                torch.cuda.empty_cache()
            # the reference computes its loss at once (transformers' model has no chunked loss)
            results.append(time_training(_reference_model(config), "transformers", preset,
                                         cost.train_flops_per_token, replace(o, loss_chunk_tokens=0), peak=peak,
                                         device=run_device, vocab=config.vocab_size))
            logger.info(_line(results[-1]))
            logger.info(f"growlm / transformers tokens/s: {results[0].tokens_per_s / results[1].tokens_per_s:.3f}")
    rows = [{**asdict(r), **environment} for r in results]
    if o.out:
        Path(o.out).write_text(json.dumps(rows, indent=2))
    return rows


def _line(r: BenchResult) -> str:
    variant = "".join(f" {k}={v}" for k, v in r.variant.items())
    compiled = " compiled" if r.compiled is True else "" if r.compiled is False else f" compiled {r.compiled}"
    return (f"{r.name:<12} {r.preset} seq {r.seq_len} x {r.micro_batch}{compiled}"
            f"{' AC' if r.activation_checkpointing else ''}{variant}: "
            f"{r.tokens_per_s:,.0f} tok/s, {r.seconds_per_step * 1e3:.1f} ms/step, {r.achieved_tflops:.1f} TFLOP/s"
            + (f", MFU {100 * r.mfu:.1f}%" if r.mfu else "") + (f", {r.max_memory_gb:.1f} GiB" if r.max_memory_gb
                                                                   else "")
            + f", loss {r.final_loss:.3f}, first step {r.first_step_s:.1f} s")
