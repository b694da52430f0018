"""A run's checkpoints: where it resumes from, what it starts from, and writing them in any process count.

A checkpoint holds the full (unsharded) weights and the optimizer moments keyed by
parameter position in growlm's order, written by rank 0 (``checkpoint.py`` writes the
folder); under FSDP both are gathered first and re-keyed (``distributed.py``). Restoring
puts everything back that decides what the run does next -- moments, scheduler, RNG,
:class:`~growlm.training.state.TrainState`, the data stream's position -- so a resumed
run continues exactly. A run started with ``init_from`` takes the weights of a model
folder and, where it has them, its moments (by name: growth changes positions) and data
position.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from growlm.data.loader import TrainingData
from growlm.data.sources import combined_state
from growlm.errors import CheckpointError
from growlm.folders import load_moments
from growlm.models import model_from_state, storage
from growlm.models.storage import base_model, canonical_name
from growlm.training import checkpoint as ckpt
from growlm.training.config import TrainConfig
from growlm.training.distributed import (
    Runtime,
    full_state,
    inner,
    load_moments_by_name,
    positional_optimizer_state,
)
from growlm.training.metrics import RunFacts
from growlm.training.state import TrainState
from growlm.training.trainable import apply_lora, is_lora, merged_model, save_lora

logger = logging.getLogger(__name__)


def resume_point(out: Path, runtime: Runtime) -> Path | None:
    """The newest good checkpoint of the run in ``out`` (rank 0 checks, every rank gets the answer)."""
    found = storage.latest_good_checkpoint(out) if runtime.main else None
    found = runtime.broadcast(str(found) if found else None)
    if found is None and runtime.main:
        logger.info(f"no usable checkpoint in {out}; starting from step 0")
    return Path(found) if found else None


class CheckpointManager:
    """Saves and restores one run's training state; :meth:`save` and :meth:`snapshot` are
    collective under FSDP (every rank calls them)."""

    def __init__(self, cfg: TrainConfig, runtime: Runtime, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, param_names: list[str], data: TrainingData,
                 state: TrainState, facts: RunFacts) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        self.runtime = runtime
        self.model = model  # as trained: wrapped by DDP, or sharded in place by FSDP
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.param_names = param_names
        self.data = data
        self.state = state
        self.facts = facts

    # -- reading -------------------------------------------------------------------------------
    def load_moments(self, by_name: dict[str, dict[str, Any]],
                     group_settings: list[dict[str, Any]] | None = None) -> tuple[list[str], list[str]]:
        return load_moments_by_name(self.model, self.optimizer, self.param_names, self.runtime, by_name,
                                    group_settings)

    def restore(self, folder: Path) -> None:
        """Continue from checkpoint ``folder`` of this run."""
        saved_state = storage.load_trainer_state(folder)
        if saved_state.get("param_names") != self.param_names:
            raise CheckpointError(f"{folder}: the optimizer state was saved for different parameters")
        saved = load_moments(folder / storage.OPTIMIZER, self.param_names)
        self.load_moments(saved.by_name, saved.param_groups)
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=False))
        ckpt.set_rng_state(torch.load(folder / "rng.pt", weights_only=False))
        self.state.load_state_dict(saved_state)
        if self.data.stream is not None:
            self.data.stream.load_state(saved_state["data_state"])

    def start_from(self, source: Path) -> None:
        """A new run from model folder ``source``: its moments (config ``init_optimizer``) and its
        data position (``continue_data``) where it is a training checkpoint that has them."""
        self.state.init_from = str(source)
        if not (source / storage.TRAINER_STATE).exists():
            return
        init_state = storage.load_trainer_state(source)
        if self.cfg.init_optimizer and (source / storage.OPTIMIZER).exists():
            moments = load_moments(source / storage.OPTIMIZER, init_state["param_names"])
            loaded, skipped = self.load_moments(moments.by_name)
            if self.runtime.main:
                logger.info(f"optimizer moments from {self.cfg.init_from}: {len(loaded)} tensors loaded, "
                            f"{len(skipped)} started fresh")
        if self.cfg.continue_data:
            self.state.data_position = int(init_state.get("data_position", 0))
            if self.data.stream is not None and init_state.get("data_state"):
                self.data.stream.load_state(init_state["data_state"])

    # -- writing -------------------------------------------------------------------------------
    def save(self) -> Path | None:
        """A checkpoint of the full (unsharded) state at the current step, written by rank 0."""
        runtime = self.runtime
        weights, fsdp_optimizer = full_state(self.model, self.optimizer, runtime)
        stream = self.data.stream
        data_state = combined_state(runtime.gather(stream.state())) if stream is not None else None
        if not runtime.main:
            runtime.barrier()
            return None
        if fsdp_optimizer is not None:
            optimizer_state = positional_optimizer_state(fsdp_optimizer, self.param_names)
            unsharded = self._unsharded(weights)
        else:
            optimizer_state = self.optimizer.state_dict()
            unsharded = inner(self.model)
        plain = merged_model(unsharded)
        state = {**self.state.state_dict(), "param_names": self.param_names, "seq_len": self.cfg.seq_len,
                 "data_dir": str(self.data.data_dir) if self.data.data_dir else None, "config": self.cfg.to_dict(),
                 "world_size": runtime.world,
                 **({"data_state": data_state} if data_state is not None else {}),
                 "trainable_params": self.facts.trainable_parameters,
                 "train_flops_per_token": self.facts.train_flops_per_token}
        extra = (lambda folder: save_lora(unsharded, folder / "lora")) if is_lora(unsharded) else None
        path = ckpt.save_checkpoint(self.out, self.state.step, plain, self.data.tokenizer, optimizer_state,
                                    self.scheduler, state, self.cfg.keep_last, extra)
        runtime.barrier()
        return path

    def snapshot(self) -> Path | None:
        """A weights-only snapshot of the current step (training config ``snapshots``); the weights
        are gathered under FSDP, the optimizer state is not."""
        runtime = self.runtime
        weights, _ = full_state(self.model, None, runtime)
        if not runtime.main:
            runtime.barrier()
            return None
        unsharded = self._unsharded(weights) if runtime.strategy == "fsdp" else inner(self.model)
        info = {"tokens": self.state.tokens, "init_from": self.state.init_from}
        path = ckpt.save_snapshot(self.out, self.state.step, merged_model(unsharded), self.data.tokenizer, info)
        growth = Path(self.state.init_from) / "growth.json" if self.state.init_from else None
        if self.state.step == 0 and growth is not None and growth.exists():
            # the growth point travels with the run: `growlm analyze` reads which entries are new here
            shutil.copy(growth, self.out / storage.SNAPSHOTS / "growth.json")
        runtime.barrier()
        return path

    def _unsharded(self, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        """A CPU replica of the FSDP-sharded model from its gathered full state (rank 0): the plain
        model, or the same LoRA wrapping, so that merging and adapter saving work as without FSDP."""
        config = base_model(inner(self.model)).config
        if not is_lora(inner(self.model)):
            return model_from_state(config, weights, "the gathered FSDP state")
        base = {canonical_name(k): v for k, v in weights.items() if ".lora_" not in k}
        assert self.cfg.lora is not None  # a LoRA-wrapped model trains under a lora config
        replica = apply_lora(model_from_state(config, base, "the gathered FSDP state"), self.cfg.lora)
        replica.load_state_dict(weights)
        return replica
