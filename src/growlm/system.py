"""The machine: which device and precision to run on, and process-level settings that make CPU work faster."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

from growlm.errors import ConfigError

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_tuned = False


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
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def pick_autocast(name: str, device: torch.device) -> torch.dtype | None:
    if name == "bf16" or (name == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None
