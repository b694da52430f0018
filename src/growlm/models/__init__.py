"""growlm's architectures and their registration with transformers.

Importing this package registers every architecture with ``AutoConfig`` and
``AutoModelForCausalLM``, so ``AutoModelForCausalLM.from_pretrained(folder)`` loads a
growlm checkpoint like any other transformers model; ``import growlm`` arranges for that
to happen as soon as transformers is imported (see ``growlm/__init__.py``).
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from growlm.errors import ConfigError, unknown_key_message
from growlm.models.base import GrowLMConfig, GrowLMForCausalLM, apply_runtime
from growlm.models.composite import CompositeConfig, CompositeForCausalLM
from growlm.models.llama import LlamaConfig, LlamaForCausalLM
from growlm.models.nexus import NexusConfig, NexusForCausalLM
from growlm.models.qwen3 import Qwen3Config, Qwen3ForCausalLM
from growlm.models.tokenformer import TokenFormerConfig, TokenFormerForCausalLM

# architecture name -> (config class, model class)
ARCHITECTURES: dict[str, tuple[type[GrowLMConfig], type[GrowLMForCausalLM]]] = {
    "nexus": (NexusConfig, NexusForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
    "llama": (LlamaConfig, LlamaForCausalLM),
    "tokenformer": (TokenFormerConfig, TokenFormerForCausalLM),
    # several experts on one substrate, logits mixed (growlm compose); not a preset architecture
    "composite": (CompositeConfig, CompositeForCausalLM),  # type: ignore[dict-item]
}


def register_with_transformers() -> None:
    for config_cls, model_cls in ARCHITECTURES.values():
        AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
        AutoModelForCausalLM.register(config_cls, model_cls, exist_ok=True)


def architecture_classes(name: str) -> tuple[type[GrowLMConfig], type[GrowLMForCausalLM]]:
    if name not in ARCHITECTURES:
        raise ConfigError(unknown_key_message("architecture", name, ARCHITECTURES))
    return ARCHITECTURES[name]


def model_class_for(config: GrowLMConfig) -> type[GrowLMForCausalLM]:
    return architecture_classes(config.architecture)[1]


def model_from_state(config: GrowLMConfig, state: dict[str, torch.Tensor], source: str) -> GrowLMForCausalLM:
    """Build the model of ``config`` around the tensors of ``state`` (no initialisation work).

    The model is created on the meta device and takes the given tensors as they are;
    with tied embeddings ``lm_head.weight`` may be absent. A missing or unexpected tensor
    raises :class:`CheckpointError` naming ``source``.
    """
    from growlm.errors import CheckpointError

    with torch.device("meta"):
        model = model_class_for(config)(config)
    tied = getattr(model, "all_tied_weights_keys", None) or {}  # heads tied to an embedding (an expert's too)
    state = {k: v for k, v in state.items() if k not in tied}
    result = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"{source} does not match a {config.architecture} model of its config: missing "
                              f"{missing[:5]}, unexpected {result.unexpected_keys[:5]}")
    model.tie_weights()
    return model.eval()


register_with_transformers()

__all__ = [
    "ARCHITECTURES",
    "CompositeConfig",
    "CompositeForCausalLM",
    "GrowLMConfig",
    "GrowLMForCausalLM",
    "LlamaConfig",
    "LlamaForCausalLM",
    "NexusConfig",
    "NexusForCausalLM",
    "Qwen3Config",
    "Qwen3ForCausalLM",
    "TokenFormerConfig",
    "TokenFormerForCausalLM",
    "apply_runtime",
    "architecture_classes",
    "model_class_for",
    "model_from_state",
    "register_with_transformers",
]
