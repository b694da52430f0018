"""``growlm convert``: transformers Qwen3 and Llama checkpoints to growlm and back.

growlm's Qwen3 and Llama use transformers' parameter names, so conversion maps config
fields and copies tensors unchanged (the mapping, and what is refused, lives in
``growlm.models.storage``, which every command uses to read such folders directly).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from growlm.errors import CheckpointError
from growlm.models import GrowLMConfig
from growlm.models.storage import (
    GROWLM_TO_HF,
    copy_tokenizer_files,
    hf_config_dict,
    load_config,
    load_model,
    model_from_hf,
)


def from_hf(src: str | Path, out: str | Path, say: Callable[[str], None] = print) -> GrowLMConfig:
    """Convert a transformers checkpoint folder into a growlm model folder."""
    src, out = Path(src), Path(out)
    if not (src / "config.json").exists():
        raise CheckpointError(f"{src} holds no config.json")
    model = model_from_hf(src)
    config = model.config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    copied = copy_tokenizer_files(src, out)
    say(f"converted {GROWLM_TO_HF[config.architecture]} {src} -> growlm {config.architecture} {out}"
        + (f" (tokenizer: {', '.join(copied)})" if copied else " (no tokenizer files found)"))
    return config


def to_hf(src: str | Path, out: str | Path, say: Callable[[str], None] = print) -> None:
    """Convert a growlm model folder back into a transformers checkpoint."""
    from transformers import AutoConfig, AutoModelForCausalLM

    src, out = Path(src), Path(out)
    config = load_config(src)
    model = load_model(src, "cpu", say)
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
    say(f"converted growlm {config.architecture} {src} -> transformers {GROWLM_TO_HF[config.architecture]} {out}")
