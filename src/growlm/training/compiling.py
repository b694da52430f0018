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

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from growlm.errors import ConfigError

COMPILE_MODES = (True, False, "auto", "regional")


def resolve_mode(mode: Any, device: torch.device) -> bool | str:
    """``auto`` -> on for CUDA; anything not in ``COMPILE_MODES`` is an error naming the choices."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile must be true, false, auto or regional, got {mode!r}")
    return device.type == "cuda" if mode == "auto" else mode


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a growlm or transformers model (also inside DDP, FSDP or peft wrappers)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] == "layers" and len(module):
            return module
    raise ConfigError(f"compile: regional found no decoder layers in {type(model).__name__}")


def compile_model(model: nn.Module, mode: Any, device: torch.device) -> Callable[..., Any]:
    """The callable a training step runs: the model compiled whole, by layer, or not at all."""
    mode = resolve_mode(mode, device)
    if mode is False:
        return model
    if mode == "regional":
        for layer in decoder_layers(model):
            layer.compile()
        return model
    return torch.compile(model)
