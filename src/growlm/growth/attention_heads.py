r"""Attention-head growth: ``num_attention_heads`` H -> H' and ``num_key_value_heads`` KV -> KV'.

Heads keep their width ``head_dim``; the attention width grows from ``H d`` to ``H' d``.
Query head ``h`` reads key/value head ``h // g`` with ``g = H / KV`` (transformers' GQA
layout). Growth keeps every old head attached to its own key/value head: old key/value
heads stay at positions ``0 .. KV-1`` (new ones are appended), and old query head ``h``
moves to position ``(h // g) g' + (h mod g)`` with ``g' = H' / KV'``. This needs
``g' >= g``; growing only KV (so that ``g' < g``) is refused with the reason.

For every layer, in the projections' own terms (``growth/interfaces.py``): the Q
projection's output features, the K and V projections' output features and the
output projection's input features are re-laid out by head, and

*preserve*: new Q/K/V output features random; new output-projection input features 0.

* Same function: attention is computed per head; each old head sees exactly the
  queries, keys and values it saw before (the same features, moved together), and
  every new head's output enters the output projection through zero weights.
  (For a Pattention output projection the new key-token columns are zero, so its
  scores are unchanged.) QK-norm is shared by all heads and unaffected.
* It trains: new heads produce non-zero outputs from their random Q/K/V features, so
  the output projection's new input features get gradient at step 1; once those have
  moved, the new heads' Q/K/V features get gradient at step 2.
"""

from __future__ import annotations

import torch

from growlm.errors import GrowthError
from growlm.growth.base import BlockFiller, GrowthStep, Placement, arange, grow_axis
from growlm.growth.interfaces import input_axes, output_axes
from growlm.models.base import GrowLMConfig

FIELDS = ("num_attention_heads", "num_key_value_heads")


def head_positions(h0: int, kv0: int, h1: int, kv1: int) -> torch.Tensor:
    """New position of each old query head, keeping it in its key/value group."""
    g0, g1 = h0 // kv0, h1 // kv1
    if g1 < g0:
        raise GrowthError(
            f"num_key_value_heads={kv1} with num_attention_heads={h1} gives {g1} query heads per key/value head, "
            f"fewer than the current {g0}: old query heads could not keep their key/value heads; grow "
            "num_attention_heads with it"
        )
    return torch.tensor([(h // g0) * g1 + h % g0 for h in range(h0)], dtype=torch.long)


def feature_positions(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Positions of the features of the given heads."""
    return (heads[:, None] * head_dim + arange(head_dim)[None, :]).flatten()


def grow_attention_heads(
    state: dict[str, torch.Tensor], old: GrowLMConfig, new: GrowLMConfig, filler: BlockFiller, options: dict
) -> GrowthStep:
    h0, kv0, h1, kv1, d = (old.num_attention_heads, old.num_key_value_heads, new.num_attention_heads,
                           new.num_key_value_heads, old.head_dim)
    if h1 % kv1:
        raise GrowthError(f"num_key_value_heads={kv1} must divide num_attention_heads={h1}")
    q_pos = feature_positions(head_positions(h0, kv0, h1, kv1), d)
    kv_pos = feature_positions(arange(kv0), d)
    out = dict(state)
    placements: dict[str, Placement] = {}
    for i in range(old.num_hidden_layers):
        attn = f"model.layers.{i}.self_attn"
        for proj, size, positions in (("q_proj", h1 * d, q_pos), ("k_proj", kv1 * d, kv_pos),
                                      ("v_proj", kv1 * d, kv_pos)):
            for name, axis in output_axes(out, f"{attn}.{proj}"):
                placements[name] = grow_axis(out, name, axis, size, filler, f"{proj} features of new heads",
                                             "random", positions)
        for name, axis in input_axes(out, f"{attn}.o_proj"):
            placements[name] = grow_axis(out, name, axis, h1 * d, filler, "o_proj inputs from new heads", "zero",
                                         q_pos)
    return GrowthStep(out, placements)
