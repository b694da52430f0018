"""Checkpoints: transformers model folders that also carry everything needed to resume.

A checkpoint ``RUN/checkpoints/step-00000200/`` holds

* ``config.json``, ``model.safetensors``, ``generation_config.json`` (``save_pretrained``)
  and the tokenizer, so ``AutoModelForCausalLM.from_pretrained`` (after ``import
  growlm``), ``growlm eval`` and ``growlm generate`` work from the folder alone;
* ``optimizer.pt`` (AdamW state), ``scheduler.pt``, ``rng.pt`` (Python, NumPy, torch
  and CUDA generators) and ``trainer_state.json`` (step, tokens seen, data position,
  the loss accumulator, the names of the optimised parameters in optimizer order);
* ``manifest.json``: size and SHA-256 of every other file, written last.

A checkpoint is written under a temporary name and renamed into place, so a crash
never leaves a partial folder under a real name. On resume, each candidate is
checked against its manifest, newest first; a missing, truncated or altered file is
reported by name and the previous checkpoint is used instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import AutoConfig

from growlm.errors import CheckpointError, read_json
from growlm.models import GrowLMConfig, GrowLMForCausalLM, model_from_state

CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
TRAINER_STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"


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


def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step-{step:08d}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders of a run, oldest first (temporary folders excluded)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and "." not in p.name)


def latest_good_checkpoint(run_dir: Path, warn: Callable[[str], None] = print) -> Path | None:
    """The newest checkpoint that passes :func:`verify`; each bad one is reported through ``warn``."""
    for folder in reversed(list_checkpoints(run_dir)):
        try:
            verify(folder)
            return folder
        except CheckpointError as exc:
            warn(f"warning: skipping checkpoint {folder.name}: {exc}")
    return None


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: GrowLMForCausalLM,
    tokenizer: Any,
    optimizer_state: dict[str, Any],
    scheduler: Any,
    state: dict[str, Any],
    keep_last: int = 0,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a complete, verified checkpoint for ``step`` and prune old ones.

    ``extra(folder)`` may add files (e.g. LoRA state) before the manifest is written.
    """
    final = step_dir(run_dir, step)
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp, tokenizer)
    torch.save(optimizer_state, tmp / OPTIMIZER)
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=1))
    if extra is not None:
        extra(tmp)
    write_manifest(tmp)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    if keep_last > 0:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def save_model(model: GrowLMForCausalLM, folder: Path, tokenizer: Any = None) -> None:
    """A transformers model folder (config, safetensors weights, tokenizer)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_model_dir(path: str | Path, warn: Callable[[str], None] = print) -> Path:
    """A model folder from a path that is either one or a run folder (its newest good checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / "config.json").exists():
        return path
    if (path / CHECKPOINTS).is_dir():
        found = latest_good_checkpoint(path, warn)
        if found is None:
            raise CheckpointError(f"run {path} has no usable checkpoint")
        return found
    raise CheckpointError(f"{path} is neither a model folder (no config.json) nor a run folder "
                          f"(no {CHECKPOINTS}/)")


def transformers_type(folder: Path) -> str | None:
    """The model_type of a transformers checkpoint growlm converts on load (qwen3, llama), else None."""
    from growlm.convert import HF_TO_GROWLM

    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: load_config names the file
    return model_type if model_type in HF_TO_GROWLM else None


def load_config(folder: Path) -> GrowLMConfig:
    if transformers_type(folder):
        from growlm.convert import config_from_hf

        return config_from_hf(json.loads((folder / "config.json").read_text()))
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {folder / 'config.json'}: {exc}") from exc
    if not isinstance(config, GrowLMConfig):
        raise CheckpointError(f"{folder} holds a '{config.model_type}' model, not a growlm architecture; "
                              "convert it first with `growlm convert`")
    return config


def load_model(path: str | Path, device: str | torch.device = "cpu",
               warn: Callable[[str], None] = print) -> GrowLMForCausalLM:
    """Load a growlm model folder (or a run's newest good checkpoint), checking every tensor.

    A transformers Qwen3 or Llama folder loads too (converted in memory, as `growlm convert`
    would), so evaluation, generation, growth and `init_from` take pretrained models directly."""
    folder = resolve_model_dir(path, warn)
    hf_type = transformers_type(folder)
    if hf_type:  # a transformers Qwen3/Llama checkpoint, converted in memory as `growlm convert` would
        from growlm.convert import HF_TO_GROWLM, model_from_hf

        warn(f"{folder} is a transformers {hf_type} checkpoint: loaded as growlm {HF_TO_GROWLM[hf_type]}")
        return model_from_hf(folder).to(device)
    config = load_config(folder)
    weights = folder / "model.safetensors"
    if not weights.exists():
        raise CheckpointError(f"{weights} is missing")
    try:
        state = load_file(weights, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"{weights} is corrupt or truncated: {exc}") from exc
    return model_from_state(config, state, str(weights))


def load_trainer_state(folder: Path) -> dict[str, Any]:
    path = folder / TRAINER_STATE
    if not path.exists():
        raise CheckpointError(f"{folder} holds no {TRAINER_STATE}; it is a model, not a training checkpoint")
    return json.loads(path.read_text())
