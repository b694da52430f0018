"""``deterministic: true``: bit-identical GPU runs, and resumes, at some cost in speed.

On CPU growlm's training is already bit-reproducible (one thread order, no atomics) and
its resume is exact (``tests/training/test_resume.py``). On CUDA several kernels are not:
backward passes that accumulate with atomic adds (the embedding's gradient as Inductor compiles
it, FlashAttention's and memory-efficient attention's dQ), cuBLAS's choice of workspace per stream, and, under
``torch.compile``, Inductor's on-device autotuning of reduction configs (the fastest config
wins, and configs sum in different orders). Two identical runs then drift apart by ~1e-4 in
loss after a few dozen steps (docs/benchmarks.md). The switches, per PyTorch's
reproducibility notes:

* ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment before the first cuBLAS handle
  (cuBLAS reproducibility: one fixed workspace configuration);
* ``torch.use_deterministic_algorithms(True)``: deterministic kernels where PyTorch has them
  (the attention backward passes among them: they take their deterministic path under this
  flag), an error where it has none, so nothing nondeterministic runs silently;
* Inductor's deterministic mode (no numerics-changing autotuning; set explicitly too, for
  torch versions where the flag above does not imply it) and ``fallback_random`` (random ops
  in compiled graphs draw from the eager generators that checkpoints save);
* cuDNN deterministic, its benchmark mode off;
* every generator seeded from the config's ``seed`` before the model is built (Python,
  NumPy, torch on every device). growlm's data order is a function of the seed and the
  position (``WindowSampler``, the streams' seeded state), and it reads no data in
  background workers, so there are no worker seeds to fix.

The settings are process-wide; :func:`deterministic_mode` restores the previous ones when
the run ends, so one deterministic run does not slow down the next in the same process.
"""

from __future__ import annotations

import contextlib
import os
import random
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

CUBLAS_WORKSPACE = ":4096:8"


def _inductor_config() -> Any | None:
    try:
        import torch._inductor.config as inductor
    except ImportError:  # a torch build without Inductor
        return None
    return inductor


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's generators (CPU and every CUDA device) from ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device too


def current_settings() -> dict[str, Any]:
    """The process-wide settings :func:`enable` changes, to restore them afterwards."""
    inductor = _inductor_config()
    return {
        "algorithms": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "inductor": None if inductor is None else {name: getattr(inductor, name)
                                                   for name in ("deterministic", "fallback_random")
                                                   if hasattr(inductor, name)},
    }


def enable(seed: int) -> None:
    """Turn every switch above on and seed every generator."""
    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in (":4096:8", ":16:8"):
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            warnings.warn("deterministic: CUDA was initialised before CUBLAS_WORKSPACE_CONFIG could be set; "
                          "start the process with CUBLAS_WORKSPACE_CONFIG=:4096:8 to be sure cuBLAS uses it",
                          stacklevel=2)
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    inductor = _inductor_config()
    if inductor is not None:
        for name in ("deterministic", "fallback_random"):
            if hasattr(inductor, name):
                setattr(inductor, name, True)
    seed_everything(seed)


def restore(settings: dict[str, Any]) -> None:
    """Put back what :func:`current_settings` recorded."""
    torch.use_deterministic_algorithms(settings["algorithms"], warn_only=settings["warn_only"])
    if settings["cublas"] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = settings["cublas"]
    torch.backends.cudnn.deterministic = settings["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]
    inductor = _inductor_config()
    for name, value in (settings["inductor"] or {}).items():
        setattr(inductor, name, value)


@contextlib.contextmanager
def deterministic_mode(enabled: bool, seed: int) -> Iterator[None]:
    """Deterministic settings inside the block when ``enabled`` (nothing changes otherwise)."""
    if not enabled:
        yield
        return
    before = current_settings()
    enable(seed)
    try:
        yield
    finally:
        restore(before)
