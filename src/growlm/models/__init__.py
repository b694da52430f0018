"""growlm's architectures and their registration with transformers.

``import growlm`` registers every architecture with ``AutoConfig`` and
``AutoModelForCausalLM``, so ``AutoModelForCausalLM.from_pretrained(folder)`` loads a
growlm checkpoint like any other transformers model.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForCausalLM

from growlm.errors import ConfigError, unknown_key_message
from growlm.models.base import GrowLMConfig, GrowLMForCausalLM
from growlm.models.nexus import NexusConfig, NexusForCausalLM
from growlm.models.qwen3 import Qwen3Config, Qwen3ForCausalLM

# architecture name -> (config class, model class)
ARCHITECTURES: dict[str, tuple[type[GrowLMConfig], type[GrowLMForCausalLM]]] = {
    "nexus": (NexusConfig, NexusForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
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


__all__ = [
    "ARCHITECTURES",
    "GrowLMConfig",
    "GrowLMForCausalLM",
    "NexusConfig",
    "NexusForCausalLM",
    "Qwen3Config",
    "Qwen3ForCausalLM",
    "architecture_classes",
    "model_class_for",
    "register_with_transformers",
]
