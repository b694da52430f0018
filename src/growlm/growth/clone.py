r"""Width cloning (``--init clone`` / ``clone:F``): new units are copies of old ones (Net2Net, HyperCloning).

Every width field names a set of *units* (features of the residual stream, FFN units,
attention heads, Nexus M or A units, TokenFormer parameter tokens). Growth from ``n`` to
``n'`` units makes new unit ``k`` a copy of old unit ``src(k) = k mod n`` (heads: see
below); old unit ``i`` then has ``c_i`` copies (itself included). Each copy ``k`` carries
``value_k`` times its source's activation, and every tensor that *reads* the units
multiplies the copy's input weights by ``read_k``, chosen so that
``sum_{k: src(k)=i} value_k read_k = 1`` for every old unit ``i``:

* tensors that **produce** a unit (its incoming weights: rows of W_gate/W_up, the Q/K/V
  features of a head, the embedding and residual writers for the stream, W_M/W_A rows,
  key tokens) are copied along the unit axis and multiplied by ``value_k``;
* tensors that **read** a unit (its outgoing weights: W_down columns, o_proj inputs,
  residual readers, W_A/W_D columns, value tokens) are copied and multiplied by
  ``read_k``: the copies' contributions sum to the original's.

**Same function.** A reader computes ``sum_k W'[:, k] u'_k = sum_i W[:, i] u_i sum_{k->i}
read_k value_k = W u``. The unit's activation is an elementwise function of its own
pre-activation in every place we clone (SwiGLU's ``silu(g) u``, GELU in Nexus-Rank,
per-head attention with whole heads copied, the residual stream itself), so a copy
computes exactly its source's activation (``value_k = 1``) -- except where a norm
couples all units of the axis:

* **RMSNorm over the residual stream** (hidden size D -> D'). With ``value_k = 1`` the
  mean square becomes ``sum_i c_i h_i^2 / D'``, which equals ``mean(h^2)`` only when every
  ``c_i`` is the same. We take ``value_k = sqrt(lambda / c_i)`` with ``lambda = D'/D``, so
  ``sum_{k->i} value_k^2 = lambda`` and ``sum_k h'_k^2 / D' = lambda sum_i h_i^2 / D' =
  mean(h^2)``: the RMS (epsilon included) is unchanged for every ratio. The normalised
  vector is ``n'_k = value_k n_i``, gains are copied (``g'_k = g_i``), and readers use
  ``read_k = value_k / lambda`` (sum over copies: ``sum value_k^2 / lambda = 1``). The
  embedding and every residual writer produce the stream, so they carry ``value_k``;
  by induction the stream is ``h'_k = value_k h_{src(k)}`` after every block. A tied LM
  head reads the final norm with the embedding's factors ``value_k`` instead of
  ``read_k``: the final gain is divided by ``lambda`` there, and ``sum_k E_i value_k
  (g_i / lambda) value_k n_i = E_i g_i n_i``. For an integer ratio r: ``value = 1`` and
  ``read = 1/r``, the plain Net2Net split. (A frozen substrate embedding must stay
  ``embedding_scale * [codes | 0]`` and so cannot be cloned: refused.)
* **Heads**: whole heads are copied (Q, K and V features of a head move together, so
  rotary and QK-norm, which act per head on ``head_dim``, are unaffected). With GQA
  (``g = H/KV`` query heads per key/value head) new key/value head ``j`` copies
  ``j mod KV``, and query head ``h`` of new group ``j = h // g'``, slot ``t = h mod g'``,
  copies old query head ``(j mod KV) g + (t mod g)``: a head of the old group that reads
  the key/value head that new group ``j`` copied. Every query head thus attends over
  keys and values equal to its source's, its output equals its source's, and the output
  projection's input columns are split by ``1/c``. Old heads keep the positions the
  *preserve* operator gives them (``attention_heads.head_positions``); ``g' >= g`` is
  required as there.
* **Nexus-Rank M and A units**: ``W_M`` rows copied, ``W_A`` columns split; ``W_A``
  rows copied, ``W_D`` columns split. GELU is elementwise, so exact. The L2-normalised
  variant divides by the norm over all units, which copies change: refused.
* **TokenFormer parameter tokens**: key tokens copied, value tokens split. The
  normalisation couples all n scores: for an integer ratio ``r = n'/n`` every score
  appears r times, so ``||S'|| = sqrt(r) ||S||`` (``l2_norm_gelu``, ``gelu_l2_norm``) and
  ``sum exp(S') = r sum exp(S)`` (softmax); multiplying the fixed scale by ``sqrt(r)``
  (stored in the config) restores every old weight exactly, and the split value tokens
  sum the r equal copies back. A non-integer ratio cannot be made exact: refused.

**It trains**: every copy is an old unit, so it gets the gradient its source gets (times
the factors below); the verification checks each copied slab.

**Symmetry breaking** (``clone:F``): copies of one unit receive equal gradients up to a
factor and would stay copies. ``clone:F`` adds N(0, (F sigma)^2) to the new slab of every
grown matrix (sigma: that tensor's pre-growth standard deviation), changing the function
by an amount that grows with F; ``clone`` alone is lossless (<= 1e-5 relative in fp32).

**Optimizer moments** (``moments: carry``). A copy's gradient is its source's gradient
times a known factor: on a *produce* axis the copy's output sensitivity is ``read_k``
times its source's; on a *read* axis its input is ``value_k`` times its source's. So
carried first moments are copied with factor ``read_k`` on produce axes and ``value_k``
on read axes (second moments: the squares), which is what the gradient history would
have been had the grown model been trained from the start. Integer ratio r in the FFN:
W_gate/W_up rows get ``m/r, v/r^2`` (their gradient is split), W_down columns ``m, v``
(each copy sees the same activation). Adam's update ``m / sqrt(v)`` is unchanged per
entry, so right after growth every copy moves like its source. Gains: factor
``value_k read_k`` (tied final gain ``value_k^2``). Key/value heads: the mean of ``1/c``
over the query heads reading the copy (exact for uniform ratios).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from growlm.errors import GrowthError
from growlm.growth.base import BlockFiller, GrowthStep, Placement, arange, matrix_std
from growlm.growth.interfaces import input_axes, output_axes
from growlm.models.base import GrowLMConfig
from growlm.models.nexus import NexusConfig

MOMENTS = ("exp_avg", "exp_avg_sq")


@dataclass(frozen=True)
class CloneMap:
    """How ``n`` old units become ``n'``: the source of each new unit and its two factors."""

    src: torch.Tensor  # (n',) old unit each new unit copies
    value: torch.Tensor  # (n',) factor on tensors producing the unit
    read: torch.Tensor  # (n',) factor on tensors reading the unit
    old_at: torch.Tensor  # (n,) position of each old unit in the new layout

    @property
    def old(self) -> int:
        return len(self.old_at)

    def expand(self, width: int) -> CloneMap:
        """Units of ``width`` features each (heads): the feature-level map."""
        feats = arange(width)[None, :]
        return CloneMap((self.src[:, None] * width + feats).flatten(), self.value.repeat_interleave(width),
                        self.read.repeat_interleave(width), (self.old_at[:, None] * width + feats).flatten())


def copies(src: torch.Tensor, old: int) -> torch.Tensor:
    """``c_{src(k)}`` for every new unit k: how many units copy the same old unit."""
    return torch.bincount(src, minlength=old)[src].double()


def clone_map(old: int, new: int, norm_preserving: bool = False) -> CloneMap:
    """``src(k) = k mod old``; ``value = 1, read = 1/c`` (or the RMS-preserving pair, see the docstring)."""
    src = arange(new) % old
    c = copies(src, old)
    if norm_preserving:
        lam = new / old
        value = torch.sqrt(lam / c)
        return CloneMap(src, value, value / lam, arange(old))
    return CloneMap(src, torch.ones(new, dtype=torch.double), 1.0 / c, arange(old))


def _factor(cmap: CloneMap, role: str, moment: str | None) -> torch.Tensor:
    # weights: produce -> value, read -> read; gradients swap them (see "Optimizer moments")
    if moment is None:
        return cmap.value if role == "produce" else cmap.read
    f = cmap.read if role == "produce" else cmap.value
    return f * f if moment == "exp_avg_sq" else f


def _placement(name: str, shape: tuple[int, ...], axis: int, cmap: CloneMap, factor: torch.Tensor,
               prev: Placement | None) -> Placement:
    at_old = factor[cmap.old_at]
    uniform = bool((at_old == at_old[0]).all())
    index = list(prev.index) if prev is not None else [arange(n) for n in shape]
    index[axis] = cmap.old_at
    note = "" if uniform else "clone: old entries scaled per feature (growth/clone.py)"
    scale = (prev.scale if prev is not None else 1.0) * (float(at_old[0]) if uniform else 1.0)
    return Placement(name, tuple(index), scale, note or (prev.note if prev is not None else ""))


def clone_axis(state: dict[str, torch.Tensor], placements: dict[str, Placement], name: str, axis: int,
               cmap: CloneMap, role: str, filler: BlockFiller, label: str) -> None:
    """Copy ``state[name]`` along ``axis`` by ``cmap``; ``role``: "produce" or "read" (see the docstring)."""
    old = state[name]
    factor = _factor(cmap, role, filler.moment)
    view = [1] * old.dim()
    view[axis] = -1
    grown = old.index_select(axis, cmap.src) * factor.view(view).to(old.dtype)
    new_at = torch.ones(len(cmap.src), dtype=torch.bool)
    new_at[cmap.old_at] = False
    slab = tuple(new_at.nonzero().flatten() if d == axis else arange(n) for d, n in enumerate(grown.shape))
    if filler.moment is None:
        if filler.scheme.noise > 0 and old.dim() > 1:
            noise = filler.normal(grown.shape, filler.scheme.noise * matrix_std(old), grown)
            mask = new_at.view(view).to(grown.dtype)
            grown = grown + noise * mask
        if len(slab[axis]):
            filler.record(name, f"{label} (cloned)", slab, "clone")
    placements[name] = _placement(name, tuple(old.shape), axis, cmap, factor, placements.get(name))
    state[name] = grown


def clone_gain(state: dict[str, torch.Tensor], placements: dict[str, Placement], name: str, cmap: CloneMap,
               filler: BlockFiller, divide: float = 1.0, tied: bool = False) -> None:
    """An RMSNorm gain over cloned features: copied (divided by ``divide``), see the docstring."""
    old = state[name]
    if filler.moment is None:
        factor = torch.full((len(cmap.src),), 1.0 / divide, dtype=torch.double)
    else:
        f = cmap.value * cmap.value if tied else cmap.value * cmap.read
        factor = f * f if filler.moment == "exp_avg_sq" else f
    state[name] = old[cmap.src] * factor.to(old.dtype)
    new_at = torch.ones(len(cmap.src), dtype=torch.bool)
    new_at[cmap.old_at] = False
    if filler.moment is None and bool(new_at.any()):
        filler.record(name, "norm gain of cloned features", (new_at.nonzero().flatten(),), "clone")
    placements[name] = _placement(name, tuple(old.shape), 0, cmap, factor, None)


# -- the fields ----------------------------------------------------------------------------------

def clone_ffn(state: dict[str, torch.Tensor], old: GrowLMConfig, new: GrowLMConfig, filler: BlockFiller
              ) -> GrowthStep:
    out = dict(state)
    placements: dict[str, Placement] = {}
    cmap = clone_map(old.intermediate_size, new.intermediate_size)
    for i in range(old.num_hidden_layers):
        mlp = f"model.layers.{i}.mlp"
        clone_axis(out, placements, f"{mlp}.gate_proj.weight", 0, cmap, "produce", filler, "W_gate rows")
        clone_axis(out, placements, f"{mlp}.up_proj.weight", 0, cmap, "produce", filler, "W_up rows")
        clone_axis(out, placements, f"{mlp}.down_proj.weight", 1, cmap, "read", filler, "W_down columns")
    return GrowthStep(out, placements)


def head_clone_maps(h0: int, kv0: int, h1: int, kv1: int) -> tuple[CloneMap, CloneMap]:
    """Query-head and key/value-head maps keeping every query head on an equal key/value head."""
    from growlm.growth.attention_heads import head_positions

    g0, g1 = h0 // kv0, h1 // kv1
    q_old_at = head_positions(h0, kv0, h1, kv1)  # refuses g1 < g0
    kv_src = arange(kv1) % kv0
    q_src = torch.tensor([int(kv_src[h // g1]) * g0 + (h % g1) % g0 for h in range(h1)], dtype=torch.long)
    c_q = copies(q_src, h0)
    q_map = CloneMap(q_src, torch.ones(h1, dtype=torch.double), 1.0 / c_q, q_old_at)
    # a key/value copy's gradient: the sum over the query heads of its group, each split by 1/c
    sensitivity = (1.0 / c_q).view(kv1, g1).sum(1) / g0
    kv_map = CloneMap(kv_src, torch.ones(kv1, dtype=torch.double), sensitivity, arange(kv0))
    return q_map, kv_map


def clone_heads(state: dict[str, torch.Tensor], old: GrowLMConfig, new: GrowLMConfig, filler: BlockFiller
                ) -> GrowthStep:
    h0, kv0, h1, kv1, d = (old.num_attention_heads, old.num_key_value_heads, new.num_attention_heads,
                           new.num_key_value_heads, old.head_dim)
    if h1 % kv1:
        raise GrowthError(f"num_key_value_heads={kv1} must divide num_attention_heads={h1}")
    q_map, kv_map = head_clone_maps(h0, kv0, h1, kv1)
    q_feat, kv_feat = q_map.expand(d), kv_map.expand(d)
    out = dict(state)
    placements: dict[str, Placement] = {}
    for i in range(old.num_hidden_layers):
        attn = f"model.layers.{i}.self_attn"
        for proj, cmap in (("q_proj", q_feat), ("k_proj", kv_feat), ("v_proj", kv_feat)):
            for name, axis in output_axes(out, f"{attn}.{proj}"):
                clone_axis(out, placements, name, axis, cmap, "produce", filler, f"{proj} features of heads")
        for name, axis in input_axes(out, f"{attn}.o_proj"):
            clone_axis(out, placements, name, axis, q_feat, "read", filler, "o_proj inputs from heads")
    return GrowthStep(out, placements)


def clone_hidden(state: dict[str, torch.Tensor], old: GrowLMConfig, new: GrowLMConfig, filler: BlockFiller
                 ) -> GrowthStep:
    if old.frozen_embedding:
        raise GrowthError(f"--init clone cannot grow hidden_size with a frozen {old.embedding} substrate embedding "
                          "(its table must stay embedding_scale*[codes | 0]); use --init preserve for hidden_size")
    d0, d1 = old.hidden_size, new.hidden_size
    lam = d1 / d0
    cmap = clone_map(d0, d1, norm_preserving=True)
    out = dict(state)
    placements: dict[str, Placement] = {}

    def axes(prefix: str, role: str, label: str) -> None:
        for name, axis in (output_axes if role == "produce" else input_axes)(out, prefix):
            clone_axis(out, placements, name, axis, cmap, role, filler, label)

    clone_axis(out, placements, "model.embed_tokens.weight", 1, cmap, "produce", filler, "embedding columns")
    for i in range(old.num_hidden_layers):
        layer = f"model.layers.{i}"
        for norm in ("input_layernorm", "post_attention_layernorm"):
            clone_gain(out, placements, f"{layer}.{norm}.weight", cmap, filler)
        for proj in ("q_proj", "k_proj", "v_proj"):
            axes(f"{layer}.self_attn.{proj}", "read", "stream inputs")
        axes(f"{layer}.self_attn.o_proj", "produce", "stream outputs")
        axes(f"{layer}.mlp", "read", "stream inputs")
        axes(f"{layer}.mlp", "produce", "stream outputs")
    tied = old.tie_word_embeddings
    clone_gain(out, placements, "model.norm.weight", cmap, filler, divide=lam if tied else 1.0, tied=tied)
    if tied:
        out.pop("lm_head.weight", None)
    else:
        clone_axis(out, placements, "lm_head.weight", 1, cmap, "read", filler, "LM head inputs")
    return GrowthStep(out, placements)


def clone_nexus_rank(state: dict[str, torch.Tensor], old: NexusConfig, new: NexusConfig, filler: BlockFiller
                     ) -> GrowthStep:
    from growlm.growth.nexus_rank import nexus_projection_prefixes

    if old.nexus_norm == "l2":
        raise GrowthError("--init clone cannot grow nexus_m/nexus_a with nexus_norm=l2 (copies change the norm "
                          "every unit is divided by); use --init preserve")
    m_map, a_map = clone_map(old.nexus_m, new.nexus_m), clone_map(old.nexus_a, new.nexus_a)
    out = dict(state)
    placements: dict[str, Placement] = {}
    for prefix in nexus_projection_prefixes(old):
        if new.nexus_m != old.nexus_m:
            clone_axis(out, placements, f"{prefix}.m_proj.weight", 0, m_map, "produce", filler, "W_M rows")
            clone_axis(out, placements, f"{prefix}.a_proj.weight", 1, m_map, "read", filler, "W_A columns")
        if new.nexus_a != old.nexus_a:
            clone_axis(out, placements, f"{prefix}.a_proj.weight", 0, a_map, "produce", filler, "W_A rows")
            clone_axis(out, placements, f"{prefix}.d_proj.weight", 1, a_map, "read", filler, "W_D columns")
    return GrowthStep(out, placements)


def clone_tokenformer_slots(state: dict[str, torch.Tensor], old: GrowLMConfig, new: GrowLMConfig,
                            filler: BlockFiller) -> GrowthStep:
    from growlm.growth.tokenformer_slots import KINDS

    out = dict(state)
    placements: dict[str, Placement] = {}
    for field_name, (scale_field, modules) in KINDS.items():
        n0, n1 = getattr(old, field_name), getattr(new, field_name)
        if n1 == n0:
            continue
        if n1 % n0:
            raise GrowthError(f"--init clone grows {field_name} only by an integer factor (the normalisation over "
                              f"all tokens is exact only then); {n0} -> {n1} is not, try {2 * n0} or use --init "
                              "preserve")
        cmap = clone_map(n0, n1)
        old_scale = getattr(old, scale_field) or math.sqrt(n0)
        setattr(new, scale_field, old_scale * math.sqrt(n1 // n0))
        for i in range(old.num_hidden_layers):
            for module in modules:
                prefix = f"model.layers.{i}.{module}"
                clone_axis(out, placements, f"{prefix}.key_tokens", 0, cmap, "produce", filler,
                           f"{field_name}: key tokens")
                clone_axis(out, placements, f"{prefix}.value_tokens", 0, cmap, "read", filler,
                           f"{field_name}: value tokens")
    return GrowthStep(out, placements)
