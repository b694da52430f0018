"""Nexusformer: attention whose Q, K and V come from a nonlinear Nexus-Rank map.

Paper: *Nexusformer: Nonlinear Attention Expansion for Stable and Inheritable
Transformer Scaling* (``../shared/papers/nexusformer.txt``, formulas in ../shared/papers/NOTES.md §1).

The model is a pre-norm decoder (RMSNorm, RoPE, SwiGLU FFN, causal SDPA attention,
optional GQA; see ``base.py``) in which each of the Q, K and V projections is

    h1 = GELU(W_M x)        W_M: D -> M      (``m_proj``, "uplift")
    h2 = GELU(W_A h1)       W_A: M -> A      (``a_proj``, "expansion")
    y  = W_D h2             W_D: A -> out    (``d_proj``, "reduction")

with no biases and exact (erf) GELU. ``out`` is ``heads * head_dim`` for Q and
``kv_heads * head_dim`` for K and V; in the paper's configurations it equals D. The
output projection W_O and the FFN stay linear, as in the paper.

Option ``nexus_norm="l2"`` is a third-party variant (not the paper's formula): each
pre-activation is L2-normalised over its width and multiplied by a fixed scale,
``nexus_scale_m`` and ``nexus_scale_a`` (default sqrt(M) and sqrt(A) at creation),
before its GELU. The scales are stored in the config and kept when M and A grow,
which is what lets growth stay lossless for this variant
(``growlm/growth/nexus_rank.py``).

Option ``qk_norm=True`` (off by default, not in the paper) applies Qwen3's per-head RMSNorm
to the queries and keys the maps produce, before the rotary embedding. Without it the
attention logits grow multiplicatively under Adam -- the logit is a product of six weight
matrices, each moved by about lr per entry per step -- and at lr 2e-3 and above a wide
model's attention collapses to one-hot and it stops learning; with it the logits stay
bounded (docs/models.md, "Stability"; ``benchmarks/nexus_stability.py``). The norm acts on
the maps' outputs, so the fused path below and every growth operator are unaffected.

Fused computation (``fused_nexus_qkv``). Run one by one, the three maps of a layer are
nine narrow matrix products (M=780, A=960 in nexus-240m: widths that are not even a
multiple of 8, so bf16 tensor-core kernels lose their 16-byte alignment) and six
activations. The fused path computes exactly the same function from the same
parameters: W_M of Q, K, V stacked into one ``D -> 3M`` product (x is read once), the
``M -> A`` and ``A -> out`` stages as batched products (``torch.bmm``, batch of 3, or a
batch of 2 for K, V plus one product for Q when GQA makes their widths differ), and M
and A zero-padded to a multiple of ``pad`` (default 8). Padding is exact: a zero row of
W_M gives a pre-activation of exactly 0, GELU(0) = 0, and the zero columns of W_A and
W_D read only those zeros, so the padded units add exact zeros (the L2 norms are
unchanged too). The stacked/padded weights are built at every forward from the live
parameters (a few MB copy, small next to the products), so parameter names, the
checkpoint format and growth are untouched, and autograd sends every gradient back
to the original parameters.

The unfused path (the three modules called one by one) is used whenever the fused one
could compute something else or hide something: a Q/K/V map or one of its linears is
not the plain module (peft's LoRA wraps them), has forward hooks, or the three maps
disagree in M, A or normalisation; and when switched off: ``RuntimeOptions(nexus_fused=False)``
applied to the model (``growlm.models.apply_runtime``; ``GROWLM_NEXUS_FUSED=0`` at an entry
point, ``growlm bench --nexus-unfused``) or ``set_nexus_fusion(model, False)``. By default
(``auto``) the fused path runs on CUDA only: on CPU it measured no faster.
``RuntimeOptions.nexus_pad`` (``GROWLM_NEXUS_PAD``, ``--nexus-pad``) sets the padding
multiple (1 = none).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from growlm.errors import ConfigError
from growlm.models.base import DecoderLayer, GrowLMConfig, GrowLMForCausalLM, SelfAttention
from growlm.models.layers import no_global_hooks, plain_linear
from growlm.runtime import RuntimeOptions

NEXUS_NORMS = ("none", "l2")


class NexusConfig(GrowLMConfig):
    """Adds the Nexus-Rank widths ``nexus_m`` (M) and ``nexus_a`` (A)."""

    model_type = "growlm_nexus"
    architecture = "nexus"
    arch_fields: ClassVar[dict[str, type]] = {
        "nexus_m": int,
        "nexus_a": int,
        "nexus_norm": str,
        "nexus_scale_m": float,
        "nexus_scale_a": float,
        "qk_norm": bool,
    }
    arch_optional: ClassVar[frozenset[str]] = frozenset({"nexus_scale_m", "nexus_scale_a"})

    nexus_m: int = 780
    nexus_a: int = 960
    nexus_norm: str = "none"
    nexus_scale_m: float | None = None
    nexus_scale_a: float | None = None
    # Per-head RMSNorm on queries and keys before the rotary embedding, as in Qwen3. Off by
    # default (the paper's formula; checkpoints saved without the field load unchanged). On, it
    # bounds the attention logits, which plain Nexus-Rank lets grow until attention collapses at
    # learning rates a linear projection trains at (docs/models.md, "Stability").
    qk_norm: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        if self.nexus_norm == "l2":
            if self.nexus_scale_m is None:
                self.nexus_scale_m = math.sqrt(self.nexus_m)
            if self.nexus_scale_a is None:
                self.nexus_scale_a = math.sqrt(self.nexus_a)
        super().__post_init__(**kwargs)

    def validate(self) -> None:
        super().validate()
        for name in ("nexus_m", "nexus_a"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.nexus_m > self.nexus_a:
            # the paper's own ablations use M > A (Table 9: 1180/960, 1130/1010): allowed, but said
            warnings.warn(f"nexus_m={self.nexus_m} exceeds nexus_a={self.nexus_a}: departs from the main "
                          "Nexus-Rank design D -> M -> A (M <= A), as the paper's Table 9 ablations do",
                          UserWarning, stacklevel=2)
        if self.nexus_norm not in NEXUS_NORMS:
            raise ConfigError(f"nexus_norm must be one of {', '.join(NEXUS_NORMS)}, got {self.nexus_norm!r}")


class NexusRank(nn.Module):
    """The D -> M -> A -> out map that replaces a linear Q, K or V projection."""

    def __init__(self, in_features: int, out_features: int, config: NexusConfig) -> None:
        super().__init__()
        self.m_proj = nn.Linear(in_features, config.nexus_m, bias=False)
        self.a_proj = nn.Linear(config.nexus_m, config.nexus_a, bias=False)
        self.d_proj = nn.Linear(config.nexus_a, out_features, bias=False)
        self.l2 = config.nexus_norm == "l2"
        # the l2 variant's scales (NexusConfig resolves them, sqrt(M) and sqrt(A) by default); unused without it
        self.scale_m: float = config.nexus_scale_m if config.nexus_scale_m is not None else 1.0
        self.scale_a: float = config.nexus_scale_a if config.nexus_scale_a is not None else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u1 = self.m_proj(x)
        if self.l2:
            u1 = F.normalize(u1, dim=-1) * self.scale_m
        u2 = self.a_proj(F.gelu(u1))
        if self.l2:
            u2 = F.normalize(u2, dim=-1) * self.scale_a
        return self.d_proj(F.gelu(u2))


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _stacked(weights: list[torch.Tensor], rows: int, cols: int) -> torch.Tensor:
    """``[len(weights), rows, cols]``: the matrices stacked, each zero-padded at the bottom and right."""
    w = torch.stack(weights)
    pad_rows, pad_cols = rows - w.shape[1], cols - w.shape[2]
    return F.pad(w, (0, pad_cols, 0, pad_rows)) if pad_rows or pad_cols else w


def fused_nexus_qkv(x: torch.Tensor, maps: tuple[NexusRank, ...], pad: int = 8) -> tuple[torch.Tensor, ...]:
    """``tuple(m(x) for m in maps)`` for Nexus-Rank maps sharing M, A and normalisation, computed
    as one ``D -> len(maps)*M`` product and batched ``M -> A``, ``A -> out`` products (module doc)."""
    first = maps[0]
    n_maps = len(maps)
    m, a = first.a_proj.in_features, first.a_proj.out_features
    mp, ap = _round_up(m, pad), _round_up(a, pad)
    lead, d = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, d)
    tokens = flat.shape[0]
    w_m = _stacked([p.m_proj.weight for p in maps], mp, d).reshape(n_maps * mp, d)
    # [tokens, n*mp] -> [n, tokens, mp]: a strided view, which bmm reads without a copy
    u1 = F.linear(flat, w_m).view(tokens, n_maps, mp).transpose(0, 1)
    if first.l2:
        u1 = F.normalize(u1, dim=-1) * first.scale_m
    u2 = torch.bmm(F.gelu(u1), _stacked([p.a_proj.weight for p in maps], ap, mp).transpose(1, 2))
    if first.l2:
        u2 = F.normalize(u2, dim=-1) * first.scale_a
    h2 = F.gelu(u2)
    outs: list[torch.Tensor] = []
    start = 0
    while start < n_maps:  # runs of maps with the same output width share one batched product
        width = maps[start].d_proj.out_features
        stop = start + 1
        while stop < n_maps and maps[stop].d_proj.out_features == width:
            stop += 1
        w_d = _stacked([p.d_proj.weight for p in maps[start:stop]], width, ap)
        y = torch.bmm(h2[start:stop], w_d.transpose(1, 2))
        outs.extend(y[i].view(*lead, width) for i in range(stop - start))
        start = stop
    return tuple(outs)


def can_fuse(maps: tuple[nn.Module, ...]) -> bool:
    """Whether ``fused_nexus_qkv`` computes exactly what calling ``maps`` one by one would."""
    if not no_global_hooks():
        return False
    first = maps[0]
    if not all(type(p) is NexusRank and not (p._forward_hooks or p._forward_pre_hooks) for p in maps):
        return False
    ranks = cast(tuple[NexusRank, ...], maps)  # checked just above
    if not all(plain_linear(lin) for p in ranks for lin in (p.m_proj, p.a_proj, p.d_proj)):
        return False
    return all(p.a_proj.weight.shape == ranks[0].a_proj.weight.shape and
               p.m_proj.weight.shape == ranks[0].m_proj.weight.shape and
               (p.l2, p.scale_m, p.scale_a) == (first.l2, first.scale_m, first.scale_a) for p in ranks)


class NexusAttention(SelfAttention):
    """Self-attention whose Q, K, V Nexus-Rank maps run fused when they can (module doc).

    ``fused`` and ``pad`` are plain attributes (not config fields): how the same function is
    computed is a property of the run, not of the model (``RuntimeOptions.nexus_fused``: None
    = auto, fused on CUDA tensors only -- on CPU the batched products measured no faster than
    the separate ones, ``benchmarks/nexus_fusion.py``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        defaults = RuntimeOptions()
        self.fused: bool | None = defaults.nexus_fused
        self.pad: int = defaults.nexus_pad

    def set_runtime_options(self, options: RuntimeOptions) -> None:
        super().set_runtime_options(options)
        self.fused = options.nexus_fused
        self.pad = options.nexus_pad

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        maps = (self.q_proj, self.k_proj, self.v_proj)
        fused = x.is_cuda if self.fused is None else self.fused
        if fused and can_fuse(maps):
            q, k, v = fused_nexus_qkv(x, cast(tuple[NexusRank, ...], maps), self.pad)  # can_fuse checked them
            return q, k, v
        return super().project_qkv(x)


def set_nexus_fusion(model: nn.Module, fused: bool | None, pad: int | None = None) -> int:
    """Switch every Nexusformer attention layer of ``model`` to the fused (True) or unfused (False)
    path, or back to the default (None: fused on CUDA), and set the padding multiple; returns how
    many layers were switched."""
    count = 0
    for module in model.modules():
        if isinstance(module, NexusAttention):
            module.fused = fused
            if pad is not None:
                if pad < 1:
                    raise ConfigError(f"the Nexus-Rank padding multiple must be positive, got {pad}")
                module.pad = pad
            count += 1
    return count


class NexusForCausalLM(GrowLMForCausalLM):
    """Nexusformer language model (transformers model type ``growlm_nexus``)."""

    config_class = NexusConfig

    def make_layer(self, config: GrowLMConfig, layer_idx: int) -> DecoderLayer:
        assert isinstance(config, NexusConfig)  # config_class: transformers builds it as one
        def projection(in_features: int, out_features: int, role: str) -> nn.Module:
            if role == "o":  # the paper keeps W_O linear
                return nn.Linear(in_features, out_features, bias=False)
            return NexusRank(in_features, out_features, config)

        attention = NexusAttention(config, layer_idx, projection, qk_norm=bool(config.qk_norm))
        return DecoderLayer(config, attention, self.swiglu(config))
