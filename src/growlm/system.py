"""The machine: which device and precision to run on, and the process-wide settings of a growlm program.

Importing growlm changes nothing about the process. The settings that are process-wide
by nature -- glibc's allocator, matplotlib's backend, torch's compiler caches and recompile
limit -- are made by :func:`configure_process`, which only entry points call: the
``growlm`` command (``cli/main.py``), the worker processes experiments start, benchmark
scripts, and a library user's own script if it wants what ``growlm`` does. This module
imports torch only inside the functions that use it, so ``growlm --help`` and
:func:`configure_process` stay free of it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from growlm.errors import ConfigError

if TYPE_CHECKING:
    import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_tuned = False
RECOMPILE_LIMIT = 64


def configure_process(cpu_allocator: bool = True) -> None:
    """Make the process-wide settings a growlm program runs with (module doc). Idempotent.

    * ``cpu_allocator``: glibc keeps large freed blocks for reuse (:func:`tune_cpu_allocator`):
      CPU training 1.4-1.7x faster. It changes only when freed host memory goes back to the
      system (the heap keeps up to 2 GiB free at its top), not how much a run allocates; the
      trainer and evaluator used to make this call themselves on CPU runs.
    * ``MPLBACKEND=agg`` unless the environment names a backend: any pyplot use in the
      process (a library's, a user's) stays headless. growlm's own figures need no backend
      at all (``growlm.plotting``: a ``matplotlib.figure.Figure`` written by Agg).
    * Compiler (:func:`configure_compiler`): Inductor's FX-graph and AOTAutograd's caches
      on, Dynamo's recompile limit raised to ``RECOMPILE_LIMIT``. Set for the whole process
      rather than around each compiled call because Dynamo reads the limit at every cache
      miss wherever it happens -- the training step, the validation pass (eval mode), each
      layer under ``compile: regional``, a later stage of a plan compiling the same
      ``forward`` -- and a limit that held only around some of those calls would let the
      others fall back to eager silently. Applied when torch's compiler modules are first
      imported, so a command that never compiles never imports them.
    """
    if cpu_allocator:
        tune_cpu_allocator()
    os.environ.setdefault("MPLBACKEND", "agg")
    from wrapt import register_post_import_hook

    # each hook runs at once if its module is already imported, else right after its import
    register_post_import_hook(_configure_dynamo, "torch._dynamo.config")
    register_post_import_hook(_configure_inductor, "torch._inductor.config")
    register_post_import_hook(_configure_functorch, "torch._functorch.config")


def configure_compiler() -> None:
    """The compiler part of :func:`configure_process`, now: caches on, recompile limit raised."""
    import torch._dynamo.config
    import torch._functorch.config
    import torch._inductor.config

    _configure_dynamo(torch._dynamo.config)
    _configure_inductor(torch._inductor.config)
    _configure_functorch(torch._functorch.config)


def _configure_dynamo(config: ModuleType) -> None:
    # Dynamo keeps at most this many graphs per code object, then runs that code eagerly without
    # a word; a plan compiles the same forward for every stage, in train and eval mode
    for name in ("recompile_limit", "cache_size_limit"):  # the newer name, then the older one
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
            break


# torch's compiler config modules make their attributes at import (install_config_module): Any here
def _configure_inductor(config: Any) -> None:
    config.fx_graph_cache = True


def _configure_functorch(config: Any) -> None:
    if hasattr(config, "enable_autograd_cache"):
        config.enable_autograd_cache = True


def tune_cpu_allocator() -> bool:
    """Keep large tensors in glibc's heap instead of fresh ``mmap`` pages.

    A CPU training step allocates and frees several buffers of hundreds of MB (the
    logits of a 32k vocabulary). glibc serves each from a new ``mmap`` and returns it
    with ``munmap``, so every step page-faults and zero-fills the same memory again.
    Raising the mmap and trim thresholds lets freed blocks be reused: on a
    2-core machine nexus-tiny trains 1.4-1.7x faster (docs/benchmarks.md,
    ``benchmarks/cpu_step.py``). Linux/glibc only; elsewhere this does nothing.
    """
    global _tuned
    if _tuned or not sys.platform.startswith("linux"):
        return _tuned
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        _tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 31))
    except (OSError, AttributeError):
        _tuned = False
    return _tuned


def measure_matmul_flops(device, dtype=None, size: int = 8192, repeats: int = 20) -> float:
    """The bf16 matrix-multiply rate of ``device`` in FLOP/s: the ceiling MFU is measured against.

    A ``size``^3 GEMM, timed with CUDA events after a warm-up, median of ``repeats``.
    """
    import torch

    dtype = dtype or torch.bfloat16
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return 2 * size**3 / times[len(times) // 2]


def pick_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def pick_autocast(name: str, device: torch.device) -> torch.dtype | None:
    import torch

    if name == "bf16" or (name == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None
