r"""TokenFormer parameter-token growth: ``qkv_slots``, ``proj_slots``, ``ffn_slots``: n -> n'.

A Pattention layer computes ``y = norm(x K_p^T) V_p`` with n parameter tokens (rows of
``K_p`` and ``V_p``) and a normalisation scaled by ``s`` (sqrt(n) in the released code).
Growth appends n' - n tokens: ``K_p' = [K_p; B_K]``, ``V_p' = [V_p; B_V]``.

*preserve* (the exact variant of ../shared/papers/NOTES.md §3): ``B_K = 0``, ``B_V`` random, and the scale
kept at its pre-growth value ``s`` (stored in the config as ``qkv_scale``/``proj_scale``/
``ffn_scale``).

* Same function, for ``l2_norm_gelu``: the new scores ``x B_K^T`` are 0, so the row norm
  ``||S||`` is unchanged; with ``s`` fixed the old normalised scores are unchanged, the new
  ones are ``GELU(0) = 0``, and the new value tokens are multiplied by 0. For
  ``gelu_l2_norm`` likewise: ``GELU(0) = 0`` adds nothing to the norm or the output.
* It trains: ``dL/dA_new = delta B_V^T != 0`` (random ``B_V``), and the normalisation's
  derivative at a zero score is ``GELU'(0) * s / ||S|| != 0``, so ``B_K`` gets a gradient
  at step 1; then the new scores are non-zero and ``B_V`` gets ``A_new^T delta`` at step 2.
* ``softmax`` cannot grow losslessly (``exp(0) = 1`` adds to the L1 norm): refused.

*random* is the released code's growth: ``B_K`` and ``B_V`` random and the scale
following the new n, so the function changes. *zero* sets ``B_V = 0`` too: then
``A_new = 0`` and ``dL/dA_new = 0``, and nothing ever trains. *noise:F*: the zero scheme
plus noise, scale fixed.
"""

from __future__ import annotations

import math

import torch

from growlm.errors import GrowthError
from growlm.growth.base import BlockFiller, GrowthStep, grow_axis
from growlm.models.tokenformer import TokenFormerConfig

FIELDS = ("qkv_slots", "proj_slots", "ffn_slots")
# slot field -> (scale field, the Pattention modules of layer i that use it)
KINDS = {
    "qkv_slots": ("qkv_scale", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    "proj_slots": ("proj_scale", ("self_attn.o_proj",)),
    "ffn_slots": ("ffn_scale", ("mlp",)),
}


def grow_tokenformer_slots(
    state: dict[str, torch.Tensor], old: TokenFormerConfig, new: TokenFormerConfig, filler: BlockFiller,
    options: dict,
) -> GrowthStep:
    out = dict(state)
    scheme = filler.scheme.kind
    for field_name, (scale_field, modules) in KINDS.items():
        n0, n1 = getattr(old, field_name), getattr(new, field_name)
        if n1 == n0:
            continue
        if old.pattention_norm == "softmax" and scheme in ("preserve", "zero"):
            raise GrowthError(f"{field_name}: a softmax Pattention cannot grow losslessly (exp(0) = 1 changes the "
                              "normalisation); use --init random for the released code's growth")
        old_scale = getattr(old, scale_field)
        setattr(new, scale_field, None if scheme == "random" else (old_scale or math.sqrt(n0)))
        for i in range(old.num_hidden_layers):
            for module in modules:
                prefix = f"model.layers.{i}.{module}"
                grow_axis(out, f"{prefix}.key_tokens", 0, n1, filler, f"{field_name}: new key tokens", "zero")
                grow_axis(out, f"{prefix}.value_tokens", 0, n1, filler, f"{field_name}: new value tokens", "random")
    return GrowthStep(out)
