"""Which parameters train: glob patterns to freeze or unfreeze, and LoRA adapters through peft.

Config keys (also usable per stage of a growth plan):

* ``trainable: [glob, ...]`` -- only parameters whose names match train; all others
  are frozen. ``frozen: [glob, ...]`` -- parameters to freeze (applied after
  ``trainable``). Names are growlm's parameter names (``growlm`` checkpoints list them),
  e.g. ``model.layers.3.*``, ``lm_head.weight``, ``*.mlp.*``.
* ``lora: {target_modules: [...], r: 8, alpha: 16, dropout: 0.0, layers: [0, 1]}`` -- LoRA
  adapters (peft) on the named linear modules, e.g. ``[q_proj, v_proj, o_proj]`` or, inside
  Nexus-Rank maps, ``[m_proj, a_proj, d_proj]``; ``layers`` (optional) restricts them to
  those blocks (peft's ``layers_to_transform``). peft freezes everything else unless
  ``trainable`` re-opens it (e.g. the newest block, trained fully beside adapters on
  the stack below it: the frozen-substrate paper's "holistic" step).

A LoRA run's checkpoints hold the *merged* weights as ``model.safetensors`` (so eval,
generate and transformers see what the model computes) and, under ``lora/``, the
unmerged base weights and the adapter (peft's own format), from which ``--resume``
continues exactly. Parameter names are always growlm's own (peft's ``base_model.model.``
prefix and ``.base_layer`` infix removed), so optimizer moments move between plain and
LoRA runs by name.

A frozen substrate embedding (model config ``embedding`` other than ``learned``,
docs/substrate.md) stays frozen whatever ``trainable`` says, so it never gets a
gradient or optimizer state.
"""

from __future__ import annotations

import fnmatch
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from growlm.errors import ConfigError
from growlm.models import GrowLMForCausalLM, model_from_state
from growlm.models.base import SUBSTRATE_PARAMETER
from growlm.models.storage import base_model, canonical_name

if TYPE_CHECKING:
    from peft import PeftModel

LORA_KEYS = {"target_modules": list, "r": int, "alpha": float, "dropout": float, "layers": list}


def check_lora_spec(spec: Any) -> dict[str, Any]:
    from growlm.overrides import check_fields

    if not isinstance(spec, dict):
        raise ConfigError(f"lora must be a mapping with keys {', '.join(LORA_KEYS)}, got {spec!r}")
    values = check_fields(spec, LORA_KEYS, "lora key")
    if not values.get("target_modules"):
        raise ConfigError("lora.target_modules must list the modules to adapt, e.g. [q_proj, v_proj]")
    if values.get("r", 8) <= 0:
        raise ConfigError(f"lora.r must be positive, got {values['r']}")
    layers = values.get("layers")
    if layers is not None and (not layers or not all(isinstance(i, int) and i >= 0 for i in layers)):
        raise ConfigError(f"lora.layers must be a non-empty list of block indices, got {layers!r}")
    return {"r": 8, "alpha": 2.0 * values.get("r", 8), "dropout": 0.0, **values}


def apply_lora(model: GrowLMForCausalLM, spec: dict[str, Any]) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    spec = check_lora_spec(spec)
    linear_names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in spec["target_modules"] if t.rsplit(".", 1)[-1] not in linear_names]
    if missing:
        raise ConfigError(f"lora.target_modules {missing} match no linear module of this "
                          f"{model.config.architecture} model; linear modules: {', '.join(sorted(linear_names))}")
    layers = spec.get("layers")
    if layers is not None and max(layers) >= model.config.num_hidden_layers:
        raise ConfigError(f"lora.layers {layers} names a block beyond this model's "
                          f"{model.config.num_hidden_layers} blocks")
    where: dict[str, Any] = ({"layers_to_transform": list(layers), "layers_pattern": "layers"}
                             if layers is not None else {})
    config = LoraConfig(target_modules=spec["target_modules"], r=spec["r"], lora_alpha=spec["alpha"],
                        lora_dropout=spec["dropout"], bias="none", **where)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, config)


def set_trainable(model: nn.Module, trainable: list[str] | None, frozen: list[str] | None,
                  lora: bool) -> tuple[int, int]:
    """Apply the patterns; returns (trainable, total) parameter counts. Unmatched patterns are errors."""
    names = {canonical_name(n): p for n, p in model.named_parameters()}
    for patterns, kind in ((trainable, "trainable"), (frozen, "frozen")):
        for pattern in patterns or []:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise ConfigError(f"{kind} pattern '{pattern}' matches no parameter (names look like "
                                  f"{next(iter(names))})")
    for name, param in names.items():
        is_adapter = ".lora_" in name
        if trainable is not None and not is_adapter:
            param.requires_grad = any(fnmatch.fnmatchcase(name, p) for p in trainable)
        elif trainable is None and not lora:
            param.requires_grad = True
        if any(fnmatch.fnmatchcase(name, p) for p in frozen or []):
            param.requires_grad = False
        if name == SUBSTRATE_PARAMETER and getattr(base_model(model).config, "frozen_embedding", False):
            param.requires_grad = False  # a frozen substrate never trains, whatever the patterns say
    unique = {p.data_ptr(): p for p in names.values()}.values()
    return sum(p.numel() for p in unique if p.requires_grad), sum(p.numel() for p in unique)


def is_lora(model: nn.Module) -> bool:
    return hasattr(model, "peft_config")


def base_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Unmerged weights under growlm's names, adapters excluded."""
    return {canonical_name(n): t for n, t in base_model(model).state_dict().items()
            if ".lora_" not in n}


def merged_model(model: nn.Module) -> GrowLMForCausalLM:
    """A plain growlm model computing what the (possibly LoRA-wrapped) model computes."""
    if not is_lora(model):
        return cast(GrowLMForCausalLM, model)
    from peft.tuners.lora import Linear as LoraLinear  # apply_lora targets linear modules only

    state = {k: v.detach().clone() for k, v in base_state(model).items()}
    for name, module in base_model(model).named_modules():
        if isinstance(module, LoraLinear) and "default" in module.lora_A:
            key = canonical_name(f"{name}.weight")
            state[key] = state[key] + module.get_delta_weight("default").to(state[key].dtype)
    base = base_model(model)
    return model_from_state(base.config, state, "the merged LoRA model")


def save_lora(model: nn.Module, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in base_state(model).items()}, folder / "base.safetensors")
    cast("PeftModel", model).save_pretrained(str(folder / "adapter"))


def load_lora(folder: Path, config: Any, spec: dict[str, Any], device: torch.device) -> nn.Module:
    """Rebuild a LoRA-wrapped model exactly as it was saved by :func:`save_lora`."""
    from peft import set_peft_model_state_dict

    base = model_from_state(config, load_file(folder / "base.safetensors", device=str(device)),
                            str(folder / "base.safetensors"))
    cast(nn.Module, base).to(device)  # in place (transformers' wrapped .to is mistyped)
    model = apply_lora(base, spec)
    adapter = load_file(folder / "adapter" / "adapter_model.safetensors", device=str(device))
    set_peft_model_state_dict(model, adapter)
    return model
