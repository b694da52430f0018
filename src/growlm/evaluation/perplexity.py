"""Validation loss, perplexity and bits per byte on a prepared split.

The split is read as consecutive non-overlapping windows of ``seq_len + 1`` tokens
from its start (the same windows every time, so numbers are comparable across
checkpoints); every token of a window after the first is predicted once.

Bits per byte normalises the loss by text length rather than token count, so models
with different tokenizers compare: ``bpb = (mean loss in nats / ln 2) * tokens / bytes``,
where tokens/bytes is the ratio over the whole split as recorded by ``data prepare``
(document bytes in UTF-8; the end-of-document tokens are counted as tokens).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.nn.functional as F

from growlm.data.dataset import WindowSplit, evaluation_batches


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module,
    split: WindowSplit,
    seq_len: int,
    batch_size: int,
    max_batches: int | None = None,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    progress: Any = None,
    runtime: Any = None,
) -> dict[str, float]:
    """Mean next-token loss over the split (or its first ``max_batches`` batches).

    Under several processes (``runtime``) each rank scores every ``world``-th batch and
    the sums are all-reduced, so every rank returns the same numbers.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # nats, tokens
    world, rank = (runtime.world, runtime.rank) if runtime is not None else (1, 0)
    for index, (x, y) in enumerate(evaluation_batches(split, seq_len, batch_size, max_batches)):
        if index % world != rank:
            continue
        x, y = x.to(device), y.to(device)
        with autocast_context(device, autocast_dtype):
            logits = model(input_ids=x, use_cache=False).logits
        sums[0] += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").double()
        sums[1] += y.numel()
        if progress is not None:
            progress.update(1)
    if runtime is not None:
        sums = runtime.total(sums)
    total_nats, total_tokens = float(sums[0]), int(sums[1])
    model.train(was_training)
    loss = total_nats / max(1, total_tokens)
    tokens_per_byte = split.num_tokens / split.num_bytes if split.num_bytes else float("nan")
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "bits_per_byte": loss / math.log(2) * tokens_per_byte,
        "tokens": total_tokens,
    }
