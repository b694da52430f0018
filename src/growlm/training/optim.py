"""AdamW construction, learning-rate schedules, and optimizer state addressed by parameter name.

torch keys optimizer state by parameter position; growth changes positions and
shapes, so growlm stores the parameter names in optimizer order next to every
optimizer state and converts between the two forms here.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from growlm.models.storage import named_trainable, parameter_groups
from growlm.training.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> tuple[torch.optim.AdamW, list[str]]:
    """AdamW with weight decay on matrices only (norm gains are not decayed); fused on CUDA.

    Returns the optimizer and the parameter names in the order its state uses.
    """
    params = dict(named_trainable(model))
    decay, no_decay = parameter_groups(model)
    groups = [
        {"params": [params[n] for n in decay], "weight_decay": cfg.weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=device.type == "cuda"
    )
    return optimizer, decay + no_decay


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    floor = cfg.min_lr_ratio
    # The last update (step max_steps - 1) is taken at exactly the floor.
    if cfg.schedule == "cosine":
        span = max(1, cfg.max_steps - 1 - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    # warmup-stable-decay: flat, then linear decay over the last decay_fraction of the steps
    decay_steps = max(1, round(cfg.decay_fraction * cfg.max_steps))
    decay_start = cfg.max_steps - decay_steps
    if step < decay_start:
        return 1.0
    return floor + (1 - floor) * max(0.0, 1 - (step - decay_start + 1) / decay_steps)


def warmup_warning(cfg: TrainConfig) -> str | None:
    """One line when the warm-up takes more than half of the run, else None.

    The schedule stays as configured (a warning, not a clip): the same ``warmup_steps``
    give the same learning rates whatever ``max_steps`` is, so a run that is extended
    later, or compared with a longer one, follows the same curve up to where it stops."""
    if not cfg.warmup_steps or 2 * cfg.warmup_steps <= cfg.max_steps:
        return None
    hint = f"(e.g. --set warmup_steps={max(1, cfg.max_steps // 10)})"
    if cfg.warmup_steps >= cfg.max_steps:
        last = lr_factor(cfg.max_steps - 1, cfg)
        return (f"warning: warmup_steps={cfg.warmup_steps} >= max_steps={cfg.max_steps}: the learning rate only "
                f"climbs and ends at {last:.2f} x its peak lr={cfg.lr:g}; lower warmup_steps {hint}")
    return (f"warning: warmup_steps={cfg.warmup_steps} is {cfg.warmup_steps / cfg.max_steps:.0%} of "
            f"max_steps={cfg.max_steps}: the learning rate peaks at step {cfg.warmup_steps} and its {cfg.schedule} "
            f"schedule has {cfg.max_steps - cfg.warmup_steps} steps left; consider a shorter warm-up {hint}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))


def load_state_by_name(
    optimizer: torch.optim.Optimizer, names: list[str], by_name: dict[str, dict[str, Any]],
    group_settings: list[dict[str, Any]] | None = None,
) -> tuple[list[str], list[str]]:
    """Put per-parameter moments into ``optimizer`` where names and shapes match.

    Hyperparameters (learning rate, betas, decay) stay those of ``optimizer`` unless
    ``group_settings`` (saved param groups, as in a state dict) are given to restore.
    Returns the names that were loaded and those that were skipped.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    current = optimizer.state_dict()
    if group_settings is not None:
        current["param_groups"] = [{**{k: v for k, v in saved.items() if k != "params"}, "params": group["params"]}
                                   for group, saved in zip(current["param_groups"], group_settings, strict=True)]
    loaded, skipped = [], []
    for index, (name, param) in enumerate(zip(names, params, strict=True)):
        entry = by_name.get(name)
        if entry is None or entry["exp_avg"].shape != param.shape:
            skipped.append(name)
            continue
        current["state"][index] = {k: (v.to(param.device) if k != "step" else v) for k, v in entry.items()}
        loaded.append(name)
    optimizer.load_state_dict(current)
    return loaded, skipped
