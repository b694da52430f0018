"""``growlm convert``: transformers Qwen3 and Llama checkpoints to growlm and back.

growlm's Qwen3 and Llama use transformers' parameter names, so conversion maps config
fields and copies tensors unchanged. Features growlm does not implement (attention or
MLP biases, sliding-window layers, scaled RoPE, activations other than SiLU, Llama's
``pretraining_tp > 1``) are refused with a message rather than converted into a
different model.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from growlm.errors import CheckpointError, ConfigError
from growlm.models import GrowLMConfig, GrowLMForCausalLM, architecture_classes, model_from_state
from growlm.training.checkpoint import load_config, load_model

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja")

# transformers model_type -> growlm architecture
HF_TO_GROWLM = {"qwen3": "qwen3", "llama": "llama"}
GROWLM_TO_HF = {v: k for k, v in HF_TO_GROWLM.items()}

_SHARED_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps",
                  "initializer_range", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id")


def _rope_theta(hf: dict[str, Any]) -> float:
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in (None, "default"):
        raise ConfigError(f"RoPE type '{rope_type}' is not supported by growlm (only default RoPE)")
    return float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))


def config_from_hf(hf: dict[str, Any]) -> GrowLMConfig:
    model_type = hf.get("model_type")
    if model_type not in HF_TO_GROWLM:
        raise ConfigError(f"cannot convert model_type '{model_type}'; supported: {', '.join(HF_TO_GROWLM)}")
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            raise ConfigError(f"{flag}=true is not supported by growlm's {model_type}")
    if hf.get("use_sliding_window"):
        raise ConfigError("sliding-window attention is not supported by growlm")
    if hf.get("pretraining_tp", 1) != 1:
        raise ConfigError(f"pretraining_tp={hf['pretraining_tp']} is not supported (only 1)")
    if hf.get("hidden_act", "silu") != "silu":
        raise ConfigError(f"hidden_act '{hf['hidden_act']}' is not supported (growlm uses SiLU/SwiGLU)")
    eos = hf.get("eos_token_id")
    if isinstance(eos, list):
        eos = eos[0]
    fields = {k: hf[k] for k in _SHARED_FIELDS if k in hf and hf[k] is not None}
    fields["eos_token_id"] = eos
    fields["rope_theta"] = _rope_theta(hf)
    config_cls, _ = architecture_classes(HF_TO_GROWLM[model_type])
    config = config_cls(**fields)
    config.validate()
    return config


def load_hf_state(folder: Path) -> dict[str, torch.Tensor]:
    """Tensors of a transformers checkpoint: single or sharded safetensors, or pytorch_model.bin."""
    index = folder / "model.safetensors.index.json"
    try:
        if (folder / "model.safetensors").exists():
            return load_file(folder / "model.safetensors")
        if index.exists():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for name in files:
                state.update(load_file(folder / name))
            return state
        if (folder / "pytorch_model.bin").exists():
            return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read the weights in {folder}: {exc}") from exc
    raise CheckpointError(f"{folder} holds no model.safetensors, sharded safetensors or pytorch_model.bin")


def copy_tokenizer_files(src: Path, dst: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy(src / name, dst / name)
            copied.append(name)
    return copied


def model_from_hf(src: Path) -> GrowLMForCausalLM:
    """A transformers checkpoint folder as a growlm model: config fields mapped, tensors as they are."""
    config = config_from_hf(json.loads((src / "config.json").read_text()))
    return model_from_state(config, load_hf_state(src), f"the weights in {src}")


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


def hf_config_dict(config: GrowLMConfig) -> dict[str, Any]:
    if config.architecture not in GROWLM_TO_HF:
        raise ConfigError(f"growlm architecture '{config.architecture}' has no transformers equivalent; "
                          f"convertible: {', '.join(GROWLM_TO_HF)}")
    fields = {k: getattr(config, k) for k in _SHARED_FIELDS}
    fields["rope_parameters"] = {"rope_type": "default", "rope_theta": config.rope_theta}
    fields["hidden_act"] = "silu"
    return fields


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
