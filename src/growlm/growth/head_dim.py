r"""Head-width growth: ``head_dim`` d -> d' = k d for an integer k >= 2, the rotary tables exact.

Heads keep their number; each head widens from d to d' features, so the attention width
grows from ``H d`` to ``H d'``. The catch is the rotary embedding. growlm's RoPE (the
Llama/Qwen3 "rotate half" layout, ``models/layers.py``) pairs feature ``f`` of a head with
feature ``f + d/2`` and rotates the pair by ``position * theta^(-2f/d)``; the tables are
rebuilt from ``head_dim`` at every forward. At the new width, feature ``j`` rotates at
``theta^(-2j/d')``.

**Where the old features go.** Old feature ``f < d/2`` moves to ``k f`` and its partner
``d/2 + f`` to ``d'/2 + k f``. Then the frequency index is ``2 (k f) / (k d) = 2 f / d``: the
same rational number, and since ``torch.arange(0, d', 2) / d'`` divides exact integers
with correct rounding, the same float, so the rebuilt tables hold *bit for bit* the old
``cos``/``sin`` at the old features' new positions, and pairs stay pairs. The features in
between (``j`` not a multiple of k, in either half) are new; they pair only with each
other.

**Why k must be an integer (and why no other d' can be lossless).** Old feature ``f = 1``
rotates at ``theta^(-2/d)``; a feature of the new head rotates at that frequency only if
``j / d' = 1 / d``, i.e. ``j = d'/d``, which must be an integer. If it is not, no feature of
the new head rotates at the old frequency; the score of an old pair would then depend on
the relative position through a different frequency, and since ``cos(w t)`` for distinct
``w`` are linearly independent functions of ``t``, no choice of weights makes every score
equal at every position: the function changes. So with standard RoPE, d' must be a
multiple of d (64 -> 128, not 64 -> 80). Growing to a non-multiple would need a
non-standard rotary table (a stored per-feature frequency list, or new features left
unrotated); growlm does not offer one and refuses such requests.

For every layer (in the projections' own terms, ``growth/interfaces.py``; for Nexus-Rank
the output features are W_D's rows):

*preserve*:

* Q: old output features moved as above and multiplied by ``sqrt(k)``; new features random.
* K: old output features moved; new features **zero**.
* V: old output features moved (the same layout; V is not rotated, any layout would do);
  new features random.
* output projection: old input features moved with V's; new input features zero.

Same function. Per head, the rotated key has zeros at every new feature (rotation acts
within pairs of new features, and zero rotates to zero), so
``q' . k' = sqrt(k) q . k`` with the old pairs rotated exactly as before, and the new
scale ``1/sqrt(d') = 1/(sqrt(k) sqrt(d))`` gives back ``q . k / sqrt(d)``: every attention
weight is unchanged (exactly in exact arithmetic; ~1e-7 relative in fp32 from the
``sqrt(k)`` product, none for k = 4). Each head's output is its old output on the old
features plus new features that reach the output projection through zero columns.

It trains. New V features are non-zero (random rows), so the output projection's new
columns get gradient at step 1; after they move, the new V rows do at step 2. The new
query features are non-zero, so ``dL/dk_new = sum_i (dL/ds_ij) R q_new,i != 0`` gives the
new K rows gradient at step 1; once ``k_new != 0`` the new Q rows get it at step 2.

Not offered:

* QK-norm (Qwen3, or Nexusformer with ``qk_norm: true``): the per-head RMSNorm runs over
  all d' features, so any non-zero new query (key) feature changes the normalisation of
  the old ones, an input-dependent factor. Lossless needs new Q *and* K features zero,
  and then ``dL/dq_new`` (a sum of ``k_new = 0`` terms) and ``dL/dk_new`` are zero forever:
  a saddle, like the paper's all-zero init. Refused with this reason.
* *clone* (copying units has no meaning for rotary frequencies), *fresh*, *stack*.

*zero* zeroes every new block (lossless, and no new block ever trains: a new V feature
is 0 and its output column is 0, a new Q feature meets a zero K feature). *noise:F* and
*random* as in ``base.py`` (both change the function).
"""

from __future__ import annotations

import math

import torch

from growlm.errors import GrowthError
from growlm.growth.base import BlockFiller, GrowthStep, Placement, arange, grow_axis
from growlm.growth.interfaces import input_axes, output_axes
from growlm.models.base import GrowLMConfig

FIELDS = ("head_dim",)


def rotary_positions(d0: int, d1: int) -> torch.Tensor:
    """New position, within a head, of each old feature (rotate-half layout, ``d1 = k d0``)."""
    if d1 % d0:
        valid = ", ".join(str(d0 * k) for k in (2, 3, 4))
        raise GrowthError(
            f"head_dim={d1} is not a multiple of the current head_dim={d0}: with rotary position embeddings only a "
            f"multiple keeps every old feature at its old frequency (proof in growlm/growth/head_dim.py), so the "
            f"function would change; valid values: {valid}, ... (or grow num_attention_heads to widen attention)")
    k, half0, half1 = d1 // d0, d0 // 2, d1 // 2
    first = arange(half0) * k
    return torch.cat([first, first + half1])


def check_head_dim(config: GrowLMConfig, new_head_dim: int) -> None:
    """Refuse, in one line with the reason, a head_dim growth that cannot be lossless (before any work:
    ``growlm plan show`` calls this through ``grow.check_request``)."""
    if getattr(config, "qk_norm", False) or config.architecture == "qwen3":
        raise GrowthError(
            "head_dim cannot grow losslessly with QK-norm (qk_norm on): the per-head RMSNorm over the wider head "
            "makes new query/key features either change the old ones' normalisation or, zeroed, never train "
            "(growlm/growth/head_dim.py); grow num_attention_heads instead")
    rotary_positions(config.head_dim, new_head_dim)


def grow_head_dim(
    state: dict[str, torch.Tensor], old: GrowLMConfig, new: GrowLMConfig, filler: BlockFiller, options: dict
) -> GrowthStep:
    d0, d1 = old.head_dim, new.head_dim
    check_head_dim(old, d1)
    if filler.scheme.kind not in ("preserve", "zero", "noise", "random"):
        raise GrowthError(f"--init {filler.scheme} is not defined for head_dim growth; valid: preserve, zero, "
                          "noise:F, random")
    within = rotary_positions(d0, d1)
    k = d1 // d0

    def positions(heads: int) -> torch.Tensor:
        return (arange(heads)[:, None] * d1 + within[None, :]).flatten()

    q_pos, kv_pos = positions(old.num_attention_heads), positions(old.num_key_value_heads)
    q_width, kv_width = old.num_attention_heads * d1, old.num_key_value_heads * d1
    out = dict(state)
    placements: dict[str, Placement] = {}
    for i in range(old.num_hidden_layers):
        attn = f"model.layers.{i}.self_attn"
        for proj, width, pos, role, scale in (("q_proj", q_width, q_pos, "random", math.sqrt(k)),
                                              ("k_proj", kv_width, kv_pos, "zero", 1.0),
                                              ("v_proj", kv_width, kv_pos, "random", 1.0)):
            for name, axis in output_axes(out, f"{attn}.{proj}"):
                placements[name] = grow_axis(out, name, axis, width, filler, f"{proj} new features of each head",
                                             role, pos, scale=scale)
        for name, axis in input_axes(out, f"{attn}.o_proj"):
            placements[name] = grow_axis(out, name, axis, q_width, filler, "o_proj inputs from new head features",
                                         "zero", q_pos)
    return GrowthStep(out, placements)
