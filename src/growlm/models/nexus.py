"""Nexusformer: attention whose Q, K and V come from a nonlinear Nexus-Rank map.

Paper: *Nexusformer: Nonlinear Attention Expansion for Stable and Inheritable
Transformer Scaling* (``../shared/papers/nexusformer.txt``, formulas in NOTES.md §1).

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
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from growlm.errors import ConfigError
from growlm.models.base import DecoderLayer, GrowLMConfig, GrowLMForCausalLM, SelfAttention

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
    }
    arch_optional: ClassVar[frozenset[str]] = frozenset({"nexus_scale_m", "nexus_scale_a"})

    nexus_m: int = 780
    nexus_a: int = 960
    nexus_norm: str = "none"
    nexus_scale_m: float | None = None
    nexus_scale_a: float | None = None

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
            raise ConfigError(
                f"nexus_m={self.nexus_m} exceeds nexus_a={self.nexus_a}: the Nexus-Rank map widens "
                "D -> M -> A, so M must not be larger than A"
            )
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
        self.scale_m = config.nexus_scale_m
        self.scale_a = config.nexus_scale_a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u1 = self.m_proj(x)
        if self.l2:
            u1 = F.normalize(u1, dim=-1) * self.scale_m
        u2 = self.a_proj(F.gelu(u1))
        if self.l2:
            u2 = F.normalize(u2, dim=-1) * self.scale_a
        return self.d_proj(F.gelu(u2))


class NexusForCausalLM(GrowLMForCausalLM):
    """Nexusformer language model (transformers model type ``growlm_nexus``)."""

    config_class = NexusConfig

    def make_layer(self, config: NexusConfig, layer_idx: int) -> DecoderLayer:
        def projection(in_features: int, out_features: int, role: str) -> nn.Module:
            if role == "o":  # the paper keeps W_O linear
                return nn.Linear(in_features, out_features, bias=False)
            return NexusRank(in_features, out_features, config)

        return DecoderLayer(config, SelfAttention(config, layer_idx, projection), self.swiglu(config))
