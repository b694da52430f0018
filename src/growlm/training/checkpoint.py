"""Checkpoints: transformers model folders that also carry everything needed to resume.

A checkpoint ``RUN/checkpoints/step-00000200/`` holds

* ``config.json``, ``model.safetensors``, ``generation_config.json`` (``save_pretrained``)
  and the tokenizer, so ``AutoModelForCausalLM.from_pretrained`` (after ``import
  growlm``), ``growlm eval`` and ``growlm generate`` work from the folder alone;
* ``optimizer.pt`` (AdamW state), ``scheduler.pt``, ``rng.pt`` (Python, NumPy, torch
  and CUDA generators) and ``trainer_state.json`` (step, tokens seen, data position,
  the loss accumulator, the names of the optimised parameters in optimizer order);
* ``manifest.json``: size and SHA-256 of every other file, written last.

A checkpoint is written under a temporary name and renamed into place
(:func:`growlm.folders.atomic_dir`), so a crash never leaves a partial folder under a
real name. On resume, each candidate is
checked against its manifest, newest first; a missing, truncated or altered file is
reported by name and the previous checkpoint is used instead.

Reading model folders (and finding a run's newest good checkpoint) is
``growlm.models.storage``'s job; this module only writes what resuming needs.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from growlm.folders import atomic_dir
from growlm.models import GrowLMForCausalLM
from growlm.models.storage import (
    CHECKPOINTS,
    OPTIMIZER,
    SNAPSHOT_INFO,
    SNAPSHOTS,
    TRAINER_STATE,
    copy_tokenizer_files,
    list_checkpoints,
    list_snapshots,
    save_model,
    write_manifest,
)


def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step-{step:08d}"


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
    with atomic_dir(final) as tmp:
        save_model(model, tmp, tokenizer)
        torch.save(optimizer_state, tmp / OPTIMIZER)
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=1))
        if extra is not None:
            extra(tmp)
        write_manifest(tmp)
    if keep_last > 0:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def save_snapshot(run_dir: Path, step: int, model: GrowLMForCausalLM, tokenizer: Any,
                  info: dict[str, Any]) -> Path:
    """A weights-only snapshot ``RUN/snapshots/step-NNNNNNNN/``: a model folder (config, safetensors,
    tokenizer, so ``growlm eval`` takes it) plus ``snapshot.json`` (step, tokens, ...), no optimizer
    or RNG state, so keeping a dozen of them costs a dozen model files and nothing more.

    Written under a temporary name and renamed, like checkpoints; a resumed run that passes the
    same step again rewrites it."""
    final = Path(run_dir) / SNAPSHOTS / f"step-{step:08d}"
    earlier = list_snapshots(run_dir)
    with atomic_dir(final) as tmp:
        if earlier and tokenizer is not None:  # the same tokenizer: copying its files beats serialising it again
            save_model(model, tmp)
            copy_tokenizer_files(earlier[0], tmp)
        else:
            save_model(model, tmp, tokenizer)
        (tmp / SNAPSHOT_INFO).write_text(json.dumps({"step": step, **info}, indent=1))
        write_manifest(tmp)
    return final


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
