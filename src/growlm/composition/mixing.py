"""A short fine-tune of a composite's mixing layer, its experts frozen (``growlm compose --mix-train``).

Only the :class:`~growlm.models.composite.LogitMixer` trains: ``requires_grad`` is off on
every expert parameter and the optimizer (torch's AdamW, no weight decay: the mixer
starts at zero, the mean) holds the mixer's parameters only, so the experts leave the
fine-tune bit-identical (the tests compare every tensor). The objective is the usual
next-token cross-entropy of the mixed logits on random windows of the data's ``train``
split (the same :class:`~growlm.data.dataset.WindowSampler` the trainer uses, seeded);
the loss before and after on the ``val`` split (``eval_batches`` batches of fixed, evenly
spread windows) is only measured and recorded in ``composition.json``: nothing is chosen
on it, so that split stays a fair place to report the composite's perplexity.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from growlm.composition.compose import read_record, write_record
from growlm.composition.substrate import CompositionError
from growlm.data.dataset import TokenSplit, WindowSampler
from growlm.evaluation.perplexity import evaluate_loss
from growlm.models import storage
from growlm.models.composite import CompositeForCausalLM
from growlm.system import pick_autocast, pick_device

logger = logging.getLogger(__name__)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def train_mixer(folder: str | Path, data: str | Path, steps: int, seq_len: int = 256, batch_size: int = 8,
                lr: float = 1e-2, seed: int = 0, device: str = "auto", eval_batches: int = 8) -> dict[str, Any]:
    """Train the mixer of the composite in ``folder`` in place; returns the ``mix_train`` record."""
    if steps < 1:
        raise CompositionError(f"--steps must be at least 1, got {steps}")
    folder = Path(folder)
    run_device = pick_device(device)
    model = storage.load_model(folder, run_device)
    if not isinstance(model, CompositeForCausalLM):
        raise CompositionError(f"{folder} is not a composite model (growlm compose makes one)")
    mixer = model.mixer
    if mixer is None:
        raise CompositionError(f"{folder} mixes with '{model.config.mixing}', which has nothing to train; "
                               "compose with --mixing weights, gate, prob_weights or prob_gate")
    for param in model.parameters():
        param.requires_grad_(False)
    params = list(mixer.parameters())
    fit = train_parameters(model, params, data, steps, seq_len, batch_size, lr, seed, run_device, eval_batches,
                           hint="lower --mix-lr")
    model.to("cpu")
    storage.save_model(model, folder)
    with torch.no_grad():
        weights = torch.softmax(mixer.bias.float(), -1).tolist()
    record = {"data": str(data), "steps": steps, "seq_len": fit["seq_len"], "batch_size": batch_size, "lr": lr,
              "seed": seed, "device": str(run_device), "val_loss_before": fit["val_loss_before"],
              "val_loss_after": fit["val_loss_after"], "train_loss_first": fit["train_loss_first"],
              "train_loss_last": fit["train_loss_last"], "bias_weights": weights, "seconds": fit["seconds"]}
    composition = read_record(folder)
    composition["mix_train"] = record
    write_record(folder, composition)
    return record


def train_parameters(model: Any, params: list[torch.nn.Parameter], data: str | Path, steps: int, seq_len: int,
                     batch_size: int, lr: float, seed: int, run_device: torch.device, eval_batches: int,
                     clip: float | None = None, hint: str = "lower the learning rate") -> dict[str, Any]:
    """``steps`` AdamW steps (no weight decay) on ``params`` only, on seeded random windows of DATA's train split;
    the val loss before and after is only measured. Every parameter not in ``params`` must already have
    ``requires_grad`` off. Returns the losses, the seconds and the sequence length used."""
    seq_len = min(seq_len, int(model.config.max_position_embeddings))
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    autocast = pick_autocast("auto", run_device)
    train = WindowSampler(TokenSplit(data, "train"), seq_len, seed)
    val = TokenSplit(data, "val")
    model.eval()
    before = evaluate_loss(model, val, seq_len, batch_size, eval_batches, run_device, autocast)["loss"]
    model.train()
    losses, started = [], time.time()
    for step in range(steps):
        x, y = train.batch(step * batch_size, batch_size)
        with _autocast(run_device, autocast):
            loss = model(input_ids=x.to(run_device), shift_labels=y.to(run_device), use_cache=False).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise CompositionError(f"the loss became {losses[-1]} at step {step + 1}; {hint}")
    model.eval()
    after = evaluate_loss(model, val, seq_len, batch_size, eval_batches, run_device, autocast)["loss"]
    for param in params:
        param.requires_grad_(False)
    return {"seq_len": seq_len, "val_loss_before": before, "val_loss_after": after, "train_loss_first": losses[0],
            "train_loss_last": losses[-1], "train_losses": losses, "seconds": round(time.time() - started, 2)}
