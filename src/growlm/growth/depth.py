r"""Depth growth: insert or append k identity blocks, ``num_hidden_layers`` L -> L + k.

A pre-norm block computes ``x + attn(norm(x))`` and then ``+ ffn(norm(.))``. A new block
whose two residual writers (the attention output projection and the FFN's output
weights, in each projection's own terms: ``growth/interfaces.py``) are zero adds
nothing: it is the identity, wherever it is inserted.

Where the new blocks go (option ``layers_at``, positions in the grown model):
``end`` (default: append), ``start``, ``interleave`` (spread evenly between the old
blocks), or an explicit list such as ``[0, 5, 9]``. Old blocks keep their order.

*preserve*: every other tensor of a new block is drawn like its nearest old
neighbour's -- matrices from N(0, sigma^2) with sigma the neighbour's standard
deviation, norm gains copied -- so the new block reads the stream at the scale its
neighbours do; the residual writers are 0.

* Same function: the new block adds ``attn(...) = 0`` and ``ffn(...) = 0`` to the stream.
* It trains: the new block's attention and FFN compute non-zero features from the
  random weights, so ``dL/dW_out = delta * features^T != 0`` for both writers at step 1;
  once they have moved, gradient flows into the rest of the block at step 2.

*zero* zeroes the whole new block (gains too): the block's features are then 0 and no
gradient reaches any of it. *noise:F* and *random* as in ``base.py``.

*fresh*: each new block is the block a model built from scratch with the grown config
would have (its own ``_init_weights``, seeded from ``grow_seed``), residual writers
included, so the new block changes the function at once. Used by the layer-wise
constructive recipe (``training/layerwise.py``), which trains a fresh block on top of a
frozen stack rather than opening an identity block.
"""

from __future__ import annotations

import copy

import torch

from growlm.errors import GrowthError
from growlm.growth.base import BlockFiller, GrowthStep, Placement, leading, matrix_std
from growlm.growth.interfaces import output_axes
from growlm.models.base import GrowLMConfig


def fresh_block(config: GrowLMConfig, seed: int) -> dict[str, torch.Tensor]:
    """The tensors of one decoder block, initialised as ``model_class_for(config)(config)`` would.

    Built as block 0 of a one-block copy of ``config`` under a forked RNG (the caller's
    global RNG state is untouched), so the draw depends on ``seed`` only. The copy uses
    learned embeddings: a frozen substrate is not rebuilt just to draw one block."""
    from growlm.models import model_class_for

    one = copy.deepcopy(config)
    one.num_hidden_layers = 1
    if getattr(one, "embedding", "learned") != "learned":
        one.embedding = "learned"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class_for(one)(one)
    prefix = "model.layers.0."
    return {k[len(prefix):]: v.detach().float().clone() for k, v in model.state_dict().items()
            if k.startswith(prefix)}

FIELDS = ("num_hidden_layers",)
OPTIONS = ("layers_at",)


def new_layer_positions(old_layers: int, new_layers: int, layers_at: object = "end") -> list[int]:
    """Positions (in the grown model) of the inserted blocks."""
    k = new_layers - old_layers
    if layers_at in (None, "end"):
        return list(range(old_layers, new_layers))
    if layers_at == "start":
        return list(range(k))
    if layers_at == "interleave":
        # new block j goes after round((j + 1) L / (k + 1)) old blocks
        return [round((j + 1) * old_layers / (k + 1)) + j for j in range(k)]
    if isinstance(layers_at, str):
        try:
            layers_at = [int(p) for p in layers_at.split(",") if p.strip()]
        except ValueError:
            layers_at = None
    if not isinstance(layers_at, (list, tuple)) or not all(isinstance(p, int) for p in layers_at):
        raise GrowthError(f"layers_at must be end, start, interleave or a list of positions, got {layers_at!r}")
    positions = sorted(set(layers_at))
    if len(positions) != k or len(layers_at) != k:
        raise GrowthError(f"layers_at lists {len(layers_at)} position(s) but num_hidden_layers grows by {k}")
    if positions[0] < 0 or positions[-1] >= new_layers:
        raise GrowthError(f"layers_at positions must be in 0..{new_layers - 1}, got {layers_at}")
    return positions


def grow_depth(
    state: dict[str, torch.Tensor], old: GrowLMConfig, new: GrowLMConfig, filler: BlockFiller, options: dict
) -> GrowthStep:
    l0, l1 = old.num_hidden_layers, new.num_hidden_layers
    inserted = new_layer_positions(l0, l1, options.get("layers_at", "end"))
    old_at = [p for p in range(l1) if p not in inserted]  # new position of old layer i is old_at[i]
    out = {k: v for k, v in state.items() if not k.startswith("model.layers.")}
    placements: dict[str, Placement] = {}
    for i, p in enumerate(old_at):
        for key, value in state.items():
            prefix = f"model.layers.{i}."
            if key.startswith(prefix):
                name = f"model.layers.{p}." + key[len(prefix):]
                out[name] = value
                placements[name] = Placement(key, leading(value.shape))
    for p in inserted:
        if filler.scheme.kind == "fresh":
            seed = int(torch.randint(0, 2**62, (1,), generator=filler.generator))
            for suffix, value in fresh_block(new, seed).items():
                name = f"model.layers.{p}.{suffix}"
                out[name] = value
                placements[name] = Placement(None)
                whole = leading(value.shape)
                if value.dim() == 1:
                    filler.fill_gain(value, name, "new block: norm gain (fresh init)", whole, value.clone())
                else:
                    filler.record(name, "new block: weights (fresh init)", whole, "random")
            continue
        neighbour = max((i for i, q in enumerate(old_at) if q < p), default=0)
        prefix = f"model.layers.{neighbour}."
        writers = {name for proj in ("self_attn.o_proj", "mlp")
                   for name, _ in output_axes(state, f"model.layers.{neighbour}.{proj}")}
        for key, value in state.items():
            if not key.startswith(prefix):
                continue
            name = f"model.layers.{p}." + key[len(prefix):]
            tensor = torch.empty_like(value)
            out[name] = tensor
            placements[name] = Placement(None)
            whole = leading(value.shape)
            if value.dim() == 1 and filler.scheme.kind != "zero":  # norm gains: the neighbour's
                filler.fill_gain(tensor, name, "new block: norm gain (copied from its neighbour)", whole, value)
            else:
                role = "zero" if key in writers else "random"
                label = f"new block: {'residual writer' if role == 'zero' else 'weights'}"
                filler.fill(tensor, name, label, whole, role, matrix_std(value))
    return GrowthStep(out, placements)
