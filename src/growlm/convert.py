"""``growlm convert``: transformers Qwen3 and Llama checkpoints to growlm and back.

growlm's Qwen3 and Llama use transformers' parameter names, so conversion maps config
fields and copies tensors unchanged (the mapping, and what is refused, lives in
``growlm.models.storage``, which every command uses to read such folders directly).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from growlm.errors import CheckpointError, ConfigError
from growlm.models import GrowLMConfig
from growlm.models.storage import (
    CHECKPOINTS,
    GROWLM_EMBEDDING,
    GROWLM_TO_HF,
    copy_tokenizer_files,
    hf_config_dict,
    load_config,
    load_model,
    model_from_hf,
    resolve_model_dir,
    transformers_type,
)

logger = logging.getLogger(__name__)

CONVERTIBLE = "Qwen3- and Llama-shaped models (growlm architectures qwen3, llama)"


def from_hf(src: str | Path, out: str | Path) -> GrowLMConfig:
    """Convert a transformers checkpoint folder into a growlm model folder."""
    src, out = Path(src), Path(out)
    if not (src / "config.json").exists():
        if (src / CHECKPOINTS).is_dir():
            raise CheckpointError(f"{src} is a growlm run, already in growlm's format; "
                                  "`growlm convert RUN --out DIR --to-hf` turns it into a transformers checkpoint")
        raise CheckpointError(f"{src} holds no config.json")
    model_type = json.loads((src / "config.json").read_text()).get("model_type", "")
    if str(model_type).startswith("growlm_"):
        raise CheckpointError(f"{src} is already a growlm model ({model_type}); add --to-hf to convert it "
                              "into a transformers checkpoint")
    model = model_from_hf(src)
    config = model.config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    copied = copy_tokenizer_files(src, out)
    logger.info(f"converted {GROWLM_TO_HF[config.architecture]} {src} -> growlm {config.architecture} {out}"
                + (f" (tokenizer: {', '.join(copied)})" if copied else " (no tokenizer files found)"))
    return config


def to_hf(src: str | Path, out: str | Path) -> None:
    """Convert a growlm model folder back into a transformers checkpoint."""
    from transformers import AutoConfig, AutoModelForCausalLM

    out = Path(out)
    src = resolve_model_dir(src)  # a model folder, or a run's newest good checkpoint
    if transformers_type(src):
        raise CheckpointError(f"{src} is already a transformers {transformers_type(src)} checkpoint; "
                              "drop --to-hf to convert it into growlm")
    config = load_config(src)
    if config.architecture not in GROWLM_TO_HF:
        raise ConfigError(f"{src} is a growlm {config.architecture} model, which transformers has no class for "
                          f"(--to-hf converts {CONVERTIBLE}); the folder itself loads in transformers after "
                          "`import growlm`")
    model = load_model(src, "cpu")
    hf_config = AutoConfig.for_model(GROWLM_TO_HF[config.architecture], **hf_config_dict(config))
    with torch.device("meta"):
        hf_model = AutoModelForCausalLM.from_config(hf_config)
    state = model.state_dict()
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    hf_model.load_state_dict(state, strict=not config.tie_word_embeddings, assign=True)
    hf_model.tie_weights()
    out.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(out)
    copy_tokenizer_files(src, out)
    logger.info(f"converted growlm {config.architecture} {src} -> transformers {GROWLM_TO_HF[config.architecture]} {out}")
    if config.frozen_embedding:
        logger.info(f"note: transformers trains every parameter of this model; its frozen {config.embedding} substrate is "
                    f"kept in config.json ({GROWLM_EMBEDDING}) and is frozen again wherever growlm reads the folder")
