r"""Depth growth by stacking (``--init stack``): G_stack (Du et al. 2024), L -> L + k blocks.

Every new block is an exact copy of an old block: all of its tensors (attention, FFN,
both norm gains) are copied bit for bit. The j-th new block, counting inserted
positions in increasing order, copies old block ``j mod L``. With ``layers_at: end``
(default) the new block at grown position ``p`` copies old block ``p mod L``: growing
L -> 2L gives the stack ``[0 .. L-1, 0 .. L-1]`` of the paper, L -> 4L four copies.
With ``start``, ``interleave`` or explicit positions the old blocks keep their order (as
in ``depth.py``) and the inserted blocks copy old blocks 0, 1, ..., L-1, 0, ... in the
order of their positions.

**Not function-preserving, by design.** A copied block is not the identity: it adds
``attn(norm(x)) + ffn(norm(.))`` of a trained block to the stream a second time, so the
logits and the loss change at once (the paper accepts this jump and reports that it is
recovered quickly). The verification therefore does not require the same function: it
records the logit deviation and the loss jump on the verification batch
(``verification.loss``, printed by ``growlm grow``) and checks only that every new block
receives gradient -- which it does at step 1, since a copied block computes non-zero
features and its residual writers are non-zero.

**Optimizer moments** (``moments: carry``): each new tensor's placement names the old
tensor it copies, so its first and second moments are copied from the source block,
with the source's step count.
"""

from __future__ import annotations

import torch

from growlm.growth.base import BlockFiller, GrowthStep, Placement, leading
from growlm.growth.depth import new_layer_positions
from growlm.models.base import GrowLMConfig


def stack_sources(old_layers: int, new_layers: int, layers_at: object = "end") -> dict[int, int]:
    """Grown position of each inserted block -> the old block it copies."""
    inserted = new_layer_positions(old_layers, new_layers, layers_at)
    return {p: j % old_layers for j, p in enumerate(inserted)}


def grow_stack(
    state: dict[str, torch.Tensor], old: GrowLMConfig, new: GrowLMConfig, filler: BlockFiller, options: dict
) -> GrowthStep:
    l0, l1 = old.num_hidden_layers, new.num_hidden_layers
    sources = stack_sources(l0, l1, options.get("layers_at", "end"))
    old_at = [p for p in range(l1) if p not in sources]  # new position of old layer i is old_at[i]
    out = {k: v for k, v in state.items() if not k.startswith("model.layers.")}
    placements: dict[str, Placement] = {}

    def copy_layer(i: int, p: int, record: bool) -> None:
        prefix = f"model.layers.{i}."
        for key, value in state.items():
            if key.startswith(prefix):
                name = f"model.layers.{p}." + key[len(prefix):]
                out[name] = value.clone()
                placements[name] = Placement(key, leading(value.shape))
                if record:
                    filler.record(name, f"stacked block: copy of layer {i}", leading(value.shape), "copy")

    for i, p in enumerate(old_at):
        copy_layer(i, p, record=False)
    for p, i in sources.items():
        copy_layer(i, p, record=True)
    return GrowthStep(out, placements)
