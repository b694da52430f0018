r"""Dual-axis growth of the Nexus-Rank projections: M -> M' and A -> A' (either or both).

Each of Q, K and V in every layer computes ``y = W_D g(W_A g(W_M x))`` with
``g = GELU`` (optionally ``g(u) = GELU(s * u / ||u||)`` for ``nexus_norm="l2"``).
Growth keeps every pretrained matrix in the top-left corner of its larger successor:

    W_M' = [ W_M ]        W_A' = [ W_A   B_on ]        W_D' = [ W_D   B_D ]
           [ B_M ]               [ B_no  B_nn ]

(``B_M``: new rows = new M units; ``B_on``: old A rows reading new M units; ``B_no``: new
A rows reading old M units; ``B_nn``: the new x new corner; ``B_D``: the output's
columns for new A units.)

Plain Nexus-Rank (the paper's formula), *preserve*: ``B_M, B_no, B_nn`` random,
``B_on = 0``, ``B_D = 0``.

* Same function. The old M units compute ``W_M x`` exactly as before. The old A units
  compute ``W_A h1_old + B_on h1_new = W_A h1_old`` because ``B_on = 0``. The output is
  ``W_D h2_old + B_D h2_new = W_D h2_old`` because ``B_D = 0``. So y is unchanged for
  every x (exactly in exact arithmetic; in floating point up to the summation order
  of the matrix kernels, ~1e-7 relative in fp32).
* It trains. With ``delta = dL/dy``: ``dL/dB_D = delta h2_new^T`` is non-zero at step 1
  since the random ``B_M``, ``B_no``, ``B_nn`` make ``h2_new != 0``; likewise
  ``dL/dB_on = (dL/du2_old) h1_new^T != 0`` at step 1. Once ``B_D`` has moved,
  ``dL/du2_new = g'(u2_new) * B_D^T delta != 0``, which gives ``B_no``, ``B_nn`` and,
  through them, ``B_M`` non-zero gradients at step 2. Every new block trains within two
  optimizer steps.

With the L2 variant the norm couples all units of a stage: a non-zero new unit
would change ``||u||`` and so every old unit. *preserve* therefore zeroes the blocks
that make new pre-activations and randomises those that read them:
``B_M = 0``, ``B_no = 0``, ``B_on, B_nn, B_D`` random, and the scales ``s_M, s_A`` stay at
their pre-growth values (they live in the config).

* Same function. ``u1_new = B_M x = 0`` so ``||u1'|| = ||u1||`` and ``h1_new = GELU(0) = 0``;
  the old A units get ``W_A h1_old + B_on * 0``; ``u2_new = B_no h1_old + B_nn * 0 = 0`` so
  ``||u2'|| = ||u2||`` and ``h2_new = 0``; the output gets ``W_D h2_old + B_D * 0``.
* It trains. At step 1, ``dL/dh2_new = B_D^T delta != 0`` and the normalisation's
  Jacobian at ``u_new = 0`` is ``s / ||u||`` on the new coordinates, so ``B_no`` gets
  ``(dL/du2_new) h1_old^T != 0``; ``dL/dh1_new = B_on^T dL/du2_old + B_nn^T dL/du2_new != 0``
  gives ``B_M`` a gradient. After step 1 ``h1_new`` and ``h2_new`` are non-zero, so
  ``B_on``, ``B_nn`` and ``B_D`` get gradients at step 2.

*zero* sets every block to zero: lossless, but then ``h1_new = h2_new = 0`` and every
path into a new block goes through a zero weight, so every new gradient is exactly
zero forever (../shared/papers/NOTES.md §1). *noise:F* adds N(0, (F sigma)^2) to every block of the
zero scheme, sigma being the standard deviation of the matrix the block extends.
"""

from __future__ import annotations

import torch

from growlm.growth.base import BlockFiller, GrowthStep, embed, matrix_std
from growlm.models.nexus import NexusConfig

FIELDS = ("nexus_m", "nexus_a")


def nexus_projection_prefixes(config: NexusConfig) -> list[str]:
    return [f"model.layers.{i}.self_attn.{p}_proj" for i in range(config.num_hidden_layers) for p in "qkv"]


def grow_nexus_rank(
    state: dict[str, torch.Tensor], old: NexusConfig, new: NexusConfig, filler: BlockFiller, options: dict
) -> GrowthStep:
    """Grow every Q/K/V Nexus-Rank map from (old.M, old.A) to (new.M, new.A); other tensors pass through."""
    m0, a0, m1, a1 = old.nexus_m, old.nexus_a, new.nexus_m, new.nexus_a
    l2 = old.nexus_norm == "l2"
    out = dict(state)
    for prefix in nexus_projection_prefixes(old):
        wm, wa, wd = (state[f"{prefix}.{n}_proj.weight"] for n in "mad")
        sm, sa, sd = matrix_std(wm), matrix_std(wa), matrix_std(wd)
        d_in, d_out = wm.shape[1], wd.shape[0]

        name = f"{prefix}.m_proj.weight"
        grown = out[name] = embed(wm, (m1, d_in))
        filler.fill(grown, name, "W_M new rows (new M units)", (slice(m0, m1), slice(0, d_in)),
                    "zero" if l2 else "random", sm)

        name = f"{prefix}.a_proj.weight"
        grown = out[name] = embed(wa, (a1, m1))
        filler.fill(grown, name, "W_A old rows x new columns", (slice(0, a0), slice(m0, m1)),
                    "random" if l2 else "zero", sa)
        filler.fill(grown, name, "W_A new rows x old columns", (slice(a0, a1), slice(0, m0)),
                    "zero" if l2 else "random", sa)
        filler.fill(grown, name, "W_A new rows x new columns", (slice(a0, a1), slice(m0, m1)), "random", sa)

        name = f"{prefix}.d_proj.weight"
        grown = out[name] = embed(wd, (d_out, a1))
        filler.fill(grown, name, "W_D new columns (new A units)", (slice(0, d_out), slice(a0, a1)),
                    "random" if l2 else "zero", sd)
    return GrowthStep(out)
