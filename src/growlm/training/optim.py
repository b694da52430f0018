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
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based) of this run.

    The schedule runs over ``schedule_total_steps`` (0: this run's ``max_steps``) and this run
    covers its steps from ``schedule_start_step`` on, so the stages of a plan with one
    ``schedule:`` each evaluate the same function at their global step; ``lr_factor`` scales
    the result (``x * 1.0 == x`` exactly, so an unscaled stage logs the same floats as one run).
    """
    return cfg.lr_factor * schedule_value(cfg.schedule_start_step + step, cfg)


def schedule_value(step: int, cfg: TrainConfig) -> float:
    """The schedule's multiplier at its own step ``step`` (0-based), ``lr_factor`` not applied."""
    total = cfg.schedule_total_steps or cfg.max_steps
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    floor = cfg.min_lr_ratio
    # The last update (step total - 1) is taken at exactly the floor; steps past the end stay there.
    if cfg.schedule == "cosine":
        span = max(1, total - 1 - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    # warmup-stable-decay: flat, then linear decay over the last decay_fraction of the steps
    decay_steps = max(1, round(cfg.decay_fraction * total))
    decay_start = total - decay_steps
    if step < decay_start:
        return 1.0
    return floor + (1 - floor) * max(0.0, 1 - (step - decay_start + 1) / decay_steps)


def warmup_warning(cfg: TrainConfig) -> str | None:
    """One line when the warm-up takes more than half of the schedule, else None.

    The schedule stays as configured (a warning, not a clip): the warm-up never depends on
    ``max_steps``, so a short trial run and the full run take their first steps at the same
    learning rates. The schedule is this run's (``max_steps``) or, for a plan stage under one
    plan ``schedule:``, the plan's (``schedule_total_steps``)."""
    total = cfg.schedule_total_steps or cfg.max_steps
    if not cfg.warmup_steps or 2 * cfg.warmup_steps <= total:
        return None
    name = "schedule_total_steps" if cfg.schedule_total_steps else "max_steps"
    hint = f"(e.g. --set warmup_steps={max(1, total // 10)})"
    if cfg.warmup_steps >= total:
        last = schedule_value(total - 1, cfg)
        return (f"warning: warmup_steps={cfg.warmup_steps} >= {name}={total}: the learning rate only "
                f"climbs and ends at {last:.2f} x its peak lr={cfg.lr:g}; lower warmup_steps {hint}")
    return (f"warning: warmup_steps={cfg.warmup_steps} is {cfg.warmup_steps / total:.0%} of "
            f"{name}={total}: the learning rate peaks at step {cfg.warmup_steps} and its {cfg.schedule} "
            f"schedule has {total - cfg.warmup_steps} steps left; consider a shorter warm-up {hint}")


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
