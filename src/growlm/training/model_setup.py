"""The model a training run trains: resumed from its checkpoint, taken from ``init_from``, or new.

Loaded in fp32 on the run's device (autocast handles lower precision), checked against the
data's tokenizer, and wrapped with LoRA when the config asks for it; the caller marks what is
trainable and wraps it for DDP or FSDP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from growlm.errors import ConfigError
from growlm.models import GrowLMForCausalLM, model_class_for, storage
from growlm.models.presets import build_config
from growlm.models.storage import base_model
from growlm.substrate import install_substrate
from growlm.training.config import TrainConfig
from growlm.training.trainable import apply_lora, is_lora, load_lora


def new_model(cfg: TrainConfig, tokenizer: Any) -> GrowLMForCausalLM:
    """A freshly initialised model of the config's preset (seeded), with the tokenizer's special tokens."""
    overrides = dict(cfg.model_overrides)
    for field_name, token in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                              ("pad_token_id", "pad_token_id")):
        value = getattr(tokenizer, token, None)
        if value is not None:
            overrides.setdefault(field_name, int(value))
    if cfg.model is None:
        raise ConfigError("a new model needs `model` (a preset); or set init_from")
    config = build_config(cfg.model, overrides)
    torch.manual_seed(cfg.seed)
    model = model_class_for(config)(config)
    if config.frozen_embedding:  # a frozen substrate is built from the data's tokenizer (docs/substrate.md)
        install_substrate(model, tokenizer)
    return model


def model_to_train(cfg: TrainConfig, tokenizer: Any, device: torch.device,
                   resume_from: Path | None) -> tuple[torch.nn.Module, Path | None]:
    """The model to train, unwrapped, in fp32 on ``device``, with LoRA if configured: the checkpoint
    it resumes from, the model folder of ``init_from`` (returned too), or a new one."""
    source = None
    if resume_from is not None and (resume_from / "lora").is_dir():
        if cfg.lora is None:
            raise ConfigError(f"{resume_from} holds a LoRA adapter, but the training config sets no lora")
        model = load_lora(resume_from / "lora", storage.load_config(resume_from), cfg.lora, device)
    elif resume_from is not None:
        model = storage.load_model(resume_from, device)
    elif cfg.init_from is not None:
        source = storage.resolve_model_dir(cfg.init_from)
        model = storage.load_model(source, device)
    else:
        model = new_model(cfg, tokenizer)
    model = model.float().to(device)
    if base_model(model).config.frozen_embedding and bool(base_model(model).model.embed_tokens.weight.isnan().any()):
        raise ConfigError("the model's frozen substrate embedding was never built (its table is NaN): create "
                          "the model with `growlm init --tokenizer` or from a preset in the training config")
    vocab = len(tokenizer)
    vocab_size = base_model(model).config.vocab_size
    if vocab > vocab_size:
        raise ConfigError(f"the data's tokenizer has {vocab} tokens but the model's vocab_size is "
                          f"{vocab_size}; set model_overrides.vocab_size to at least {vocab}")
    if cfg.lora is not None and not is_lora(model):
        model = apply_lora(base_model(model), cfg.lora)
    return model, source
