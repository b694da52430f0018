"""Checks run on every grown model: same function, and new parameters that train.

1. **Same function**: the original and the grown model, both in fp32 and eval mode,
   score one fixed batch of random token ids; we report the largest absolute logit
   difference and the relative difference ``max|Δ| / max|logits|``, and the next-token
   loss of both on the batch (``loss.jump``: what a function-changing scheme such as
   *stack* costs at once).
2. **New parameters train**: a copy of the grown model takes two AdamW steps (weight
   decay 0, so nothing moves without gradient) on a random batch. For every new block
   we record the largest absolute gradient at each step and whether the block moved.
   Under the *preserve* scheme every block must receive a non-zero gradient within two
   steps; under *zero* no block may move (they stay exactly as initialised: zero).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from growlm.growth.base import NewBlock, take
from growlm.growth.report import BlockReach, GradientReach, LogitCheck, LossCheck


def random_batch(vocab_size: int, seed: int, batch: int = 2, seq_len: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, seq_len), generator=generator)


@torch.no_grad()
def compare_logits(reference: torch.nn.Module, candidate: torch.nn.Module, input_ids: torch.Tensor) -> LogitCheck:
    reference, candidate = reference.float().eval(), candidate.float().eval()
    a = reference(input_ids=input_ids, use_cache=False).logits
    b = candidate(input_ids=input_ids, use_cache=False).logits
    max_abs = float((a - b).abs().max())
    scale = float(a.abs().max())
    return LogitCheck(max_abs, max_abs / scale if scale else max_abs, scale)


@torch.no_grad()
def compare_loss(reference: torch.nn.Module, candidate: torch.nn.Module, input_ids: torch.Tensor) -> LossCheck:
    """Next-token loss of both models on the batch: ``jump = after - before`` (the loss jump of a growth
    that changes the function, e.g. stacking; ~0 for a lossless one)."""
    reference, candidate = reference.float().eval(), candidate.float().eval()
    before = float(reference(input_ids=input_ids, labels=input_ids, use_cache=False).loss)
    after = float(candidate(input_ids=input_ids, labels=input_ids, use_cache=False).loss)
    return LossCheck(before, after, after - before)


def gradient_reach(
    model: torch.nn.Module, blocks: Sequence[NewBlock], input_ids: torch.Tensor, steps: int = 2, lr: float = 1e-3
) -> GradientReach:
    """Per new block: max |grad| at each step, whether it moved, whether it is still all zero."""
    work = copy.deepcopy(model).float().train()
    params = dict(work.named_parameters())
    before = {b.param: params[b.param].detach().clone() for b in blocks}
    optimizer = torch.optim.AdamW(work.parameters(), lr=lr, weight_decay=0.0)
    grads: list[list[float]] = [[] for _ in blocks]
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = work(input_ids=input_ids, labels=input_ids, use_cache=False).loss
        loss.backward()
        for i, block in enumerate(blocks):
            grad = params[block.param].grad
            grads[i].append(float(take(grad, block.index).abs().max()) if grad is not None else 0.0)
        optimizer.step()
    report = []
    for i, block in enumerate(blocks):
        after = take(params[block.param].detach(), block.index)
        report.append(BlockReach(
            block.record(), grads[i],
            first_step_with_gradient=next((s + 1 for s, g in enumerate(grads[i]) if g > 0), None),
            moved=bool((after != take(before[block.param], block.index)).any()),
            all_zero_after=bool((after == 0).all()),
        ))
    return GradientReach.of(steps, lr, report)
