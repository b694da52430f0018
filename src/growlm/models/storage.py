"""Model folders on disk: reading and writing them, in growlm's format and in transformers'.

Everything that opens or writes a model folder goes through this module: training
(checkpoints), growth, evaluation, generation, conversion and the experiments. It
sits directly above the architectures (``growlm.models``) and imports nothing from
the packages that use it, so the package has one way down for model loading.

A growlm model folder is a transformers folder (``config.json``, ``model.safetensors``,
the tokenizer). A *training* checkpoint adds ``optimizer.pt`` (AdamW state keyed by
position in :func:`parameter_order`), ``trainer_state.json`` (with the parameter names
in that order, so moments can be addressed by name) and ``manifest.json`` (size and
SHA-256 of every file, written last; :func:`verify` checks it). A *run* folder holds
such checkpoints under ``checkpoints/step-NNNNNNNN/``; wherever a model folder is
expected, a run folder stands for its newest checkpoint that passes :func:`verify`, and
a plan run folder (``plan.yaml`` and ``stage-NN-NAME/`` folders) for the newest good
checkpoint of its last completed stage (:func:`resolve_model_dir`).

transformers' own Qwen3 and Llama folders (single or sharded safetensors, or
``pytorch_model.bin``) load directly: growlm's Qwen3 and Llama use transformers'
parameter names, so only config fields are mapped. Features growlm does not
implement (biases, sliding windows, scaled RoPE, other activations,
``pretraining_tp > 1``) are refused with a message instead of being converted into
a different model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, PreTrainedModel

from growlm.errors import CheckpointError, ConfigError, read_json
from growlm.folders import state_by_name  # noqa: F401  (its home was here; kept importable)
from growlm.models import GrowLMConfig, GrowLMForCausalLM, architecture_classes, model_from_state

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
SNAPSHOTS = "snapshots"  # weights-only snapshots of a run (training config `snapshots`)
SNAPSHOT_INFO = "snapshot.json"
MANIFEST = "manifest.json"
TRAINER_STATE = "trainer_state.json"
PLAN_FILE = "plan.yaml"  # a plan run folder (growlm.training.plan) holds its plan ...
STAGE_FILE = "stage.json"  # ... and a stage-NN-NAME/ folder per stage, this file once the stage completed
PLAN_STAGE_RUN = "train"  # the stage's training run folder
OPTIMIZER = "optimizer.pt"
WEIGHTS = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja")


# -- integrity ------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))


def verify(folder: Path) -> None:
    """Raise :class:`CheckpointError` naming the first file that does not match the manifest."""
    manifest = read_json(folder / MANIFEST, CheckpointError,
                         f"{folder} has no {MANIFEST}: the checkpoint is incomplete")
    for name, entry in manifest.items():
        path = folder / name
        if not path.exists():
            raise CheckpointError(f"{path} is missing")
        if path.stat().st_size != entry["bytes"]:
            raise CheckpointError(f"{path} is truncated or altered ({path.stat().st_size} bytes, "
                                  f"expected {entry['bytes']})")
        if _sha256(path) != entry["sha256"]:
            raise CheckpointError(f"{path} is corrupt (checksum mismatch)")


# -- finding model folders ------------------------------------------------------------------------
def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders of a run, oldest first (temporary folders excluded)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and "." not in p.name)


def list_snapshots(run_dir: Path) -> list[Path]:
    """Weights-only snapshot folders of a run (``RUN/snapshots/step-NNNNNNNN``), oldest first."""
    root = Path(run_dir) / SNAPSHOTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and "." not in p.name
                  and (p / SNAPSHOT_INFO).exists())


def latest_good_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that passes :func:`verify`; each bad one is logged as a warning."""
    for folder in reversed(list_checkpoints(run_dir)):
        try:
            verify(folder)
            return folder
        except CheckpointError as exc:
            logger.warning(f"warning: skipping checkpoint {folder.name}: {exc}")
    return None


def completed_stages(plan_dir: Path) -> list[Path]:
    """The stage folders of a plan run that completed, in stage order."""
    return sorted(p.parent for p in Path(plan_dir).glob(f"stage-*/{STAGE_FILE}"))


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder from a path that is one, a run folder (its newest good checkpoint) or a
    plan run folder (the newest good checkpoint of its last completed stage)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / "config.json").exists():
        return path
    if (path / PLAN_FILE).exists() and not (path / CHECKPOINTS).is_dir():
        stages = completed_stages(path)
        if not stages:
            raise CheckpointError(f"plan run {path} has no completed stage yet (no stage-*/{STAGE_FILE})")
        path = stages[-1] / PLAN_STAGE_RUN
    if (path / CHECKPOINTS).is_dir():
        found = latest_good_checkpoint(path)
        if found is None:
            raise CheckpointError(f"run {path} has no usable checkpoint")
        return found
    raise CheckpointError(f"{path} is neither a model folder (no config.json), a run folder "
                          f"(no {CHECKPOINTS}/) nor a plan run folder (no {PLAN_FILE})")


# -- growlm folders -------------------------------------------------------------------------------
def save_model(model: PreTrainedModel, folder: Path, tokenizer: Any = None) -> None:
    """A transformers model folder (config, safetensors weights, tokenizer)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def transformers_type(folder: Path) -> str | None:
    """The model_type of a transformers checkpoint growlm converts on load (qwen3, llama), else None."""
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: load_config names the file
    return model_type if model_type in HF_TO_GROWLM else None


def load_config(folder: Path) -> GrowLMConfig:
    if transformers_type(folder):
        return config_from_hf(json.loads((folder / "config.json").read_text()))
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {folder / 'config.json'}: {exc}") from exc
    if not isinstance(config, GrowLMConfig):
        raise CheckpointError(f"{folder} holds a '{config.model_type}' model, not a growlm architecture; "
                              "convert it first with `growlm convert`")
    return config


def load_state(folder: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a growlm folder's ``model.safetensors``, read without building a model."""
    weights = folder / WEIGHTS
    if not weights.exists():
        raise CheckpointError(f"{weights} is missing")
    try:
        return load_file(weights, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"{weights} is corrupt or truncated: {exc}") from exc


def load_model(path: str | Path, device: str | torch.device = "cpu") -> GrowLMForCausalLM:
    """Load a growlm model folder (or a run's newest good checkpoint), checking every tensor.

    A transformers Qwen3 or Llama folder loads too (converted in memory, as `growlm convert`
    would), so evaluation, generation, growth and `init_from` take pretrained models directly."""
    folder = resolve_model_dir(path)
    hf_type = transformers_type(folder)
    if hf_type:
        logger.info(f"{folder} is a transformers {hf_type} checkpoint: loaded as growlm {HF_TO_GROWLM[hf_type]}")
        model = model_from_hf(folder)
        cast(torch.nn.Module, model).to(device)  # in place (transformers' wrapped .to is mistyped)
        return model
    config = load_config(folder)
    return model_from_state(config, load_state(folder, device), str(folder / WEIGHTS))


def load_trainer_state(folder: Path) -> dict[str, Any]:
    path = folder / TRAINER_STATE
    if not path.exists():
        raise CheckpointError(f"{folder} holds no {TRAINER_STATE}; it is a model, not a training checkpoint")
    return json.loads(path.read_text())


# -- parameter names and optimizer order ----------------------------------------------------------
PEFT_PREFIX = "base_model.model."


def canonical_name(name: str) -> str:
    """growlm's name of a parameter seen through a peft wrapper."""
    if name.startswith(PEFT_PREFIX):
        name = name[len(PEFT_PREFIX):]
    return name.replace(".base_layer.", ".").replace(".default.", ".")


def base_model(model: nn.Module) -> GrowLMForCausalLM:
    """The growlm model inside a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return cast(GrowLMForCausalLM, get_base() if get_base is not None else model)


def named_trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters under growlm's names (peft wrappers see-through)."""
    return [(canonical_name(n), p) for n, p in model.named_parameters() if p.requires_grad]


def parameter_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of trainable matrices (weight-decayed) and vectors (norm gains, not decayed)."""
    named = named_trainable(model)
    return [n for n, p in named if p.dim() >= 2], [n for n, p in named if p.dim() < 2]


def parameter_order(model: nn.Module) -> list[str]:
    """Parameter names in the order growlm's AdamW holds their state (and ``optimizer.pt`` stores it)."""
    decay, no_decay = parameter_groups(model)
    return decay + no_decay


# -- transformers Qwen3 / Llama folders -----------------------------------------------------------
HF_TO_GROWLM = {"qwen3": "qwen3", "llama": "llama"}  # transformers model_type -> growlm architecture
GROWLM_TO_HF = {v: k for k, v in HF_TO_GROWLM.items()}

_SHARED_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps",
                  "initializer_range", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id")


# transformers' Qwen3 and Llama have no frozen-substrate input embedding: a substrate's settings
# (docs/substrate.md) travel as one extra config.json attribute, which transformers keeps and
# ignores, so that growlm gets the substrate back -- kind, options, frozen -- from its own export.
GROWLM_EMBEDDING = "growlm_embedding"
EMBEDDING_FIELDS = ("embedding", "embedding_dim", "embedding_scale", "embedding_cell", "embedding_seed")


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
    embedding = hf.get(GROWLM_EMBEDDING)
    if embedding is not None:
        if not isinstance(embedding, dict) or set(embedding) - set(EMBEDDING_FIELDS):
            raise ConfigError(f"{GROWLM_EMBEDDING} must be a mapping of {', '.join(EMBEDDING_FIELDS)}, "
                              f"got {embedding!r}")
        fields.update(embedding)
    config_cls, _ = architecture_classes(HF_TO_GROWLM[model_type])
    config = config_cls(**fields)
    config.validate()
    return config


def hf_config_dict(config: GrowLMConfig) -> dict[str, Any]:
    """The transformers config fields of a growlm Qwen3 or Llama config."""
    if config.architecture not in GROWLM_TO_HF:
        raise ConfigError(f"growlm architecture '{config.architecture}' has no transformers equivalent; "
                          f"convertible: {', '.join(GROWLM_TO_HF)}")
    fields = {k: getattr(config, k) for k in _SHARED_FIELDS}
    fields["rope_parameters"] = {"rope_type": "default", "rope_theta": config.rope_theta}
    fields["hidden_act"] = "silu"
    if config.frozen_embedding:
        fields[GROWLM_EMBEDDING] = {k: getattr(config, k) for k in EMBEDDING_FIELDS}
    return fields


def load_hf_state(folder: Path) -> dict[str, torch.Tensor]:
    """Tensors of a transformers checkpoint: single or sharded safetensors, or pytorch_model.bin."""
    index = folder / "model.safetensors.index.json"
    try:
        if (folder / WEIGHTS).exists():
            return load_file(folder / WEIGHTS)
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


def model_from_hf(src: Path) -> GrowLMForCausalLM:
    """A transformers checkpoint folder as a growlm model: config fields mapped, tensors as they are."""
    config = config_from_hf(json.loads((src / "config.json").read_text()))
    return model_from_state(config, load_hf_state(src), f"the weights in {src}")


def copy_tokenizer_files(src: Path, dst: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy(src / name, dst / name)
            copied.append(name)
    return copied
