"""A brief fine-tune of a merged composite (``growlm compose --finetune full|adapter``), as the paper does after merging.

Bochkov (../shared/papers/NOTES.md section 2) merges experts on one frozen substrate by averaging their
logits and then fine-tunes briefly, "the whole composite, or a small adapter over the
concatenated logits". Two modes, beside the frozen-expert mixer of :mod:`.mixing`:

* ``full``: every parameter of the composite trains (each expert's blocks, norms and LM
  head, the mixer and the adapter where there are ones) **except the substrate**: each
  expert's input embedding table keeps ``requires_grad=False`` and is left out of the
  optimizer, so the experts still share one table byte for byte afterwards (and an expert
  whose head is tied to that table keeps its head as it was: it *is* the table).
* ``adapter``: the experts stay frozen (bit-identical); a
  :class:`~growlm.models.composite.HiddenAdapter` (a linear map over the experts'
  concatenated final hidden states, added to each expert's own, zero at init) is added
  to the composite if it has none, and it trains, together with the mixer where the
  mixing has one (``weights``, ``gate``, ``prob_*``).

Both start from exactly the composite as merged: ``full`` changes nothing before its first
step, and a zero adapter returns every hidden state unchanged (``h + 0``), so the
fine-tune's first loss is the merged composite's (tested to 1e-6). The loop is the mixer's
(:func:`growlm.composition.mixing.train_parameters`: AdamW without weight decay on
seeded random windows of DATA's ``train`` split), with gradients clipped at norm 1 (the
experts' own updates can be large at a fresh optimizer); the ``val`` loss before and
after is only measured and recorded under ``finetune`` in ``composition.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from growlm.composition.compose import read_record, write_record
from growlm.composition.mixing import train_parameters
from growlm.composition.substrate import CompositionError
from growlm.errors import ConfigError, unknown_key_message
from growlm.models import storage
from growlm.system import pick_device

logger = logging.getLogger(__name__)

FINETUNES = {
    "none": "no fine-tune (the merge as composed)",
    "full": "every weight of the composite trains, the substrate embedding tables stay frozen",
    "adapter": "a zero-initialised linear adapter over the experts' concatenated hidden states (and the mixer) "
               "trains, the experts stay frozen",
}
# A brief fine-tune of trained experts wants a smaller step than a fresh zero-initialised adapter.
DEFAULT_LR = {"full": 3e-4, "adapter": 1e-3}


def trainable_parameters(model: Any, mode: str) -> list[Any]:
    """Switch ``requires_grad`` on ``model`` for ``mode`` and return the parameters that train.

    Every parameter is switched off first; ``full`` switches on everything but the experts'
    input embedding tables (the frozen substrate), ``adapter`` the adapter and the mixer."""
    if mode not in ("full", "adapter"):
        raise ConfigError(unknown_key_message("finetune", mode, [m for m in FINETUNES if m != "none"]))
    for param in model.parameters():
        param.requires_grad_(False)
    if mode == "adapter":
        model.add_hidden_adapter()
        modules = [m for m in (model.adapter, model.mixer) if m is not None]
        params = [p for m in modules for p in m.parameters()]
    else:
        tables = {id(e.get_input_embeddings().weight) for e in model.experts}
        params = [p for p in model.parameters() if id(p) not in tables]  # parameters() yields tied ones once
    for param in params:
        param.requires_grad_(True)
    return params


def finetune(folder: str | Path, data: str | Path, steps: int, mode: str = "full", lr: float | None = None,
             seq_len: int = 256, batch_size: int = 8, seed: int = 0, device: str = "auto", eval_batches: int = 8) -> dict[str, Any]:
    """Fine-tune the composite in ``folder`` in place (``mode`` full or adapter); returns the ``finetune`` record."""
    if mode not in ("full", "adapter"):
        raise ConfigError(unknown_key_message("finetune", mode, [m for m in FINETUNES if m != "none"]))
    if steps < 1:
        raise CompositionError(f"--finetune-steps must be at least 1, got {steps}")
    lr = DEFAULT_LR[mode] if lr is None else lr
    folder = Path(folder)
    run_device = pick_device(device)
    model = storage.load_model(folder, run_device)
    if getattr(model.config, "architecture", None) != "composite":
        raise CompositionError(f"{folder} is not a composite (architecture {model.config.architecture}); "
                               "--finetune fine-tunes what growlm compose wrote")
    params = trainable_parameters(model, mode)
    frozen = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in params)
    fit = train_parameters(model, params, data, steps, seq_len, batch_size, lr, seed, run_device, eval_batches,
                           clip=1.0, hint="lower --finetune-lr")
    storage.save_model(model.cpu(), folder)
    record = {"mode": mode, "data": str(data), "steps": steps, "seq_len": fit["seq_len"], "batch_size": batch_size,
              "lr": lr, "seed": seed, "device": str(run_device), "clip": 1.0,
              "trainable_params": sum(p.numel() for p in params), "frozen_params": frozen,
              "val_loss_before": fit["val_loss_before"], "val_loss_after": fit["val_loss_after"],
              "train_loss_first": fit["train_loss_first"], "train_loss_last": fit["train_loss_last"],
              "seconds": fit["seconds"]}
    composition = read_record(folder)
    composition["finetune"] = record
    write_record(folder, composition)
    return record
