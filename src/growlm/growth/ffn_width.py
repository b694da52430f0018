r"""FFN width growth for the SwiGLU feed-forward block: ``intermediate_size`` F -> F'.

The block computes ``down(silu(gate(x)) * up(x))``. Growth appends F' - F hidden units:

    W_gate' = [ W_gate ]     W_up' = [ W_up ]     W_down' = [ W_down  B_down ]
              [ B_gate ]             [ B_up ]

*preserve*: ``B_gate``, ``B_up`` random (at the scale of the pretrained matrices),
``B_down = 0``.

* Same function: the old units compute what they did, and the new units' outputs
  ``h_new = silu(B_gate x) * (B_up x)`` reach the residual stream only through
  ``B_down = 0``.
* It trains: ``dL/dB_down = delta h_new^T`` is non-zero at step 1 because ``h_new != 0``;
  once ``B_down`` has moved, ``dL/dh_new = B_down^T delta != 0`` gives ``B_gate`` and ``B_up``
  gradients at step 2.

*zero* makes ``h_new = silu(0) * 0 = 0`` and every path into a new block pass through a
zero weight: no gradient ever. *noise:F* and *random* as in ``base.py``.
"""

from __future__ import annotations

import torch

from growlm.growth.base import BlockFiller, GrowthStep, grow_axis
from growlm.models.base import GrowLMConfig

FIELDS = ("intermediate_size",)


def grow_ffn_width(
    state: dict[str, torch.Tensor], old: GrowLMConfig, new: GrowLMConfig, filler: BlockFiller, options: dict
) -> GrowthStep:
    out = dict(state)
    f1 = new.intermediate_size
    for i in range(old.num_hidden_layers):
        mlp = f"model.layers.{i}.mlp"
        grow_axis(out, f"{mlp}.gate_proj.weight", 0, f1, filler, "W_gate new rows (new units)", "random")
        grow_axis(out, f"{mlp}.up_proj.weight", 0, f1, filler, "W_up new rows (new units)", "random")
        grow_axis(out, f"{mlp}.down_proj.weight", 1, f1, filler, "W_down new columns (new units)", "zero")
    return GrowthStep(out)
