"""How ``growlm train`` and ``growlm bench`` compile a model.

``compile`` (train config key; ``growlm bench --compile``):

* ``true`` -- ``torch.compile`` of the whole model: the fastest steady state, but the first
  step of every plan stage waits for a full compilation, since growth changes the
  parameter shapes and Dynamo specialises on parameter shapes
  (``torch._dynamo.config.force_parameter_static_shapes``).
* ``regional`` -- each decoder layer compiled in place (``nn.Module.compile``); the
  embedding, final norm, LM head and loss stay eager. All layers share one code object
  and the same shapes, so one layer's graph is compiled once and reused by every layer:
  compilation takes about one layer's time instead of the whole stack's, and a stage that
  only appends layers (depth growth) compiles nothing new. Whether it costs steady-state
  speed is measured by ``benchmarks/gpu_speed.sh``.
* ``graphs`` -- ``true`` plus CUDA graphs (``torch.compile(mode="reduce-overhead")``):
  each compiled forward and backward is recorded once per shape and replayed as one
  launch, which removes the per-kernel launch cost that dominates small models (the
  experiments' 20-44M models; docs/benchmarks.md, round three). Same Inductor kernels as ``true``, so the same
  training (``benchmarks/gpu_speed_round3.sh`` measures the loss difference); the
  optimizer step, gradient clipping and logging stay eager. Every call marks a new
  CUDA-graph step (``torch.compiler.cudagraph_mark_step_begin``), so gradient accumulation
  and a loss read after backward are safe; the caller must use a step's outputs before the
  next call (they live in the graph's memory pool). Without CUDA, or with a DDP/FSDP
  wrapper (whose communication hooks cannot be captured), it falls back to ``true`` with
  one message.
* ``autotune`` -- ``true`` with Inductor's matrix-product autotuning
  (``torch.compile(mode="max-autotune-no-cudagraphs")``): every matmul shape is timed against
  Inductor's own Triton GEMM templates besides cuBLAS, and where a template wins, the
  elementwise work that consumes its output (a GELU or SiLU-gate, their backward, a
  residual add) is fused into the template's epilogue instead of reading the product back
  from memory -- the elementwise time that stops nexus-240m short of its MFU target
  (docs/benchmarks.md, round three (b)). It costs compilation time (minutes at 240M, once
  per shape: the autotuning results sit in the Inductor cache). On the H100, cuBLAS beat every
  template on all nexus-240m products (by 1.24-1.40x), so nothing was fused there
  (docs/benchmarks.md, round three (b2)): an option for other GPUs and shapes, not a
  default. Without CUDA it falls back to ``true`` with one message.
* ``auto`` -- ``true`` on CUDA, off on CPU; ``false`` -- eager.

Caches and limits are the process's, not this module's: ``growlm.system.configure_process``
(which entry points call: the ``growlm`` command, experiment workers) turns on Inductor's
FX-graph cache and AOTAutograd's cache on disk (``$TORCHINDUCTOR_CACHE_DIR``, default
``/tmp/torchinductor_$USER``), which make a second compilation of the same graph (the same
shapes: a resumed run, a repeated stage, the same plan run again) load kernels instead of
generating and autotuning them, and raises Dynamo's per-function recompile limit from 8 to
64: Dynamo silently runs eagerly past it, and one process running a plan compiles the same
``forward`` for every stage, in train and eval mode. Compiling here changes no setting, so
a library caller that runs many plan stages in one process should call
``configure_process()`` (or ``growlm.system.configure_compiler()``) first, as ``growlm`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from growlm.errors import ConfigError

logger = logging.getLogger(__name__)

COMPILE_MODES = (True, False, "auto", "regional", "graphs", "autotune")
COMPILE_CHOICES = "true, false, auto, regional, graphs or autotune"


def check_mode(mode: Any) -> None:
    """Anything not in ``COMPILE_MODES`` is an error naming the choices."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile must be {COMPILE_CHOICES}, got {mode!r}")


def resolve_mode(mode: Any, device: torch.device, model: nn.Module | None = None) -> bool | str:
    """``auto`` -> on for CUDA; ``graphs`` -> ``true`` where CUDA graphs cannot run (no CUDA
    device, or ``model`` wrapped by DDP/FSDP), and ``autotune`` -> ``true`` without CUDA
    (Inductor's GEMM templates are Triton kernels), each logged."""
    check_mode(mode)
    if mode == "auto":
        return device.type == "cuda"
    if mode == "graphs":
        why = graphs_unavailable(device, model)
        if why:
            logger.info(f"compile: graphs needs {why}; compiling without CUDA graphs (compile: true)")
            return True
    if mode == "autotune":
        why = cuda_unavailable(device)
        if why:
            logger.info(f"compile: autotune needs {why}; compiling without autotuning (compile: true)")
            return True
    return mode


def cuda_unavailable(device: torch.device) -> str | None:
    """What is missing for a CUDA-only compile mode on ``device``, or None when nothing is."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return f"a CUDA device (this run is on {device.type})"
    return None


def graphs_unavailable(device: torch.device, model: nn.Module | None) -> str | None:
    """Why CUDA graphs cannot capture this model's step here, or None when they can."""
    why = cuda_unavailable(device)
    if why:
        return why
    if model is not None and (isinstance(model, nn.parallel.DistributedDataParallel)
                              or any(type(m).__name__.startswith("FSDP") for m in model.modules())):
        return "an unwrapped model (DDP/FSDP communication hooks cannot be captured)"
    return None


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a growlm or transformers model (also inside DDP, FSDP or peft wrappers)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] == "layers" and len(module):
            return module
    raise ConfigError(f"compile: regional found no decoder layers in {type(model).__name__}")


def compile_model(model: nn.Module, mode: Any, device: torch.device) -> Callable[..., Any]:
    """The callable a training step runs: the model compiled whole, by layer, with CUDA graphs,
    or not at all."""
    mode = resolve_mode(mode, device, model)
    if mode is False:
        return model
    if mode == "regional":
        for layer in decoder_layers(model):
            layer.compile()
        return model
    if mode == "graphs":
        return GraphedStep(torch.compile(model, mode="reduce-overhead"), model)
    if mode == "autotune":
        return torch.compile(model, mode="max-autotune-no-cudagraphs")
    return torch.compile(model)


class GraphedStep:
    """A model compiled with CUDA graphs, called once per micro-step.

    ``cudagraph_mark_step_begin`` tells the CUDA-graph trees that the previous call's
    outputs are no longer needed (the trainer has already added the loss to its total and
    run backward), so the next replay may reuse their memory. Gradients are outputs of the
    recorded backward too: with gradient accumulation, a parameter's ``.grad`` after the
    first micro-step *is* that memory, and the next replay would overwrite it before
    autograd adds the second micro-step's gradient to it. So a gradient still held when the
    next micro-step starts is first copied out of the graphs' pool (nothing to copy without
    accumulation: the optimizer step sets the gradients to None)."""

    def __init__(self, compiled: Callable[..., Any], model: nn.Module) -> None:
        self.compiled = compiled
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for p in self.params:
            if p.grad is not None:
                p.grad = p.grad.clone()
        torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(*args, **kwargs)
