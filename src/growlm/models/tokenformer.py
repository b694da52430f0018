"""TokenFormer: every projection is attention over learned parameter tokens (Pattention).

Paper: Wang et al., *TokenFormer: Rethinking Transformer Scaling with Tokenized Model
Parameters* (2024), a baseline of the Nexusformer paper; ../shared/papers/NOTES.md §3.

A Pattention layer with ``n`` parameter tokens maps ``x`` (d_in) to d_out as

    S = x K_p^T                 K_p: n x d_in   (``key_tokens``)
    A = norm(S)                 a nonlinear normalisation over the n scores
    y = A V_p                   V_p: n x d_out  (``value_tokens``)

with the normalisations of the released code (``pattention_norm``):

* ``l2_norm_gelu`` (default): ``GELU(S / ||S||_2 * scale)``
* ``gelu_l2_norm``: ``GELU(S) / ||GELU(S)||_2 * scale``
* ``softmax``: ``exp(S) / ||exp(S)||_1 * scale**2`` (the released code's n-scaled softmax)

On CUDA the default normalisation runs as one Triton row kernel per direction
(``pattention_norm.py``: the compiler's own kernels for it took 31% of a training step).

``scale`` is sqrt(n) in the released code, recomputed from the current n. growlm
stores it per layer kind (``qkv_scale``, ``proj_scale``, ``ffn_scale``): unset means
"sqrt(n), following n" as released; a number fixes it. Lossless parameter-token
growth fixes it at the pre-growth value (``growlm/growth/tokenformer_slots.py``).

The block is the released one: pre-norm; Q, K, V from Pattention layers with
``qkv_slots`` tokens, causal multi-head attention with RoPE, the output projection a
Pattention layer with ``proj_slots`` tokens, and the FFN a single Pattention layer with
``ffn_slots`` tokens. growlm uses RMSNorm where the released code uses LayerNorm, like
its other architectures (docs/models.md). No biases.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from growlm.errors import ConfigError
from growlm.models.base import DecoderLayer, GrowLMConfig, GrowLMForCausalLM, SelfAttention
from growlm.models.pattention_norm import l2_norm_gelu
from growlm.runtime import RuntimeOptions

PATTENTION_NORMS = ("l2_norm_gelu", "gelu_l2_norm", "softmax")


class TokenFormerConfig(GrowLMConfig):
    """Adds the parameter-token counts and the Pattention normalisation."""

    model_type = "growlm_tokenformer"
    architecture = "tokenformer"
    arch_fields: ClassVar[dict[str, type]] = {
        "qkv_slots": int,
        "proj_slots": int,
        "ffn_slots": int,
        "pattention_norm": str,
        "qkv_scale": float,
        "proj_scale": float,
        "ffn_scale": float,
    }
    arch_optional: ClassVar[frozenset[str]] = frozenset({"qkv_scale", "proj_scale", "ffn_scale"})

    qkv_slots: int = 2088
    proj_slots: int = 768
    ffn_slots: int = 3072
    pattention_norm: str = "l2_norm_gelu"
    qkv_scale: float | None = None
    proj_scale: float | None = None
    ffn_scale: float | None = None

    def validate(self) -> None:
        super().validate()
        for name in ("qkv_slots", "proj_slots", "ffn_slots"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.pattention_norm not in PATTENTION_NORMS:
            raise ConfigError(f"pattention_norm must be one of {', '.join(PATTENTION_NORMS)}, "
                              f"got {self.pattention_norm!r}")
        for name in ("qkv_scale", "proj_scale", "ffn_scale"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be positive or unset, got {value!r}")


class Pattention(nn.Module):
    """Token-parameter attention: ``norm(x K_p^T) V_p`` over ``slots`` parameter tokens."""

    def __init__(self, in_features: int, out_features: int, slots: int, norm: str, scale: float | None) -> None:
        super().__init__()
        self.key_tokens = nn.Parameter(torch.empty(slots, in_features))
        self.value_tokens = nn.Parameter(torch.empty(slots, out_features))
        self.norm = norm
        self.fixed_scale = scale
        self.kernel: bool | None = None  # the l2_norm_gelu row kernel: auto; RuntimeOptions.pattention_kernel

    def set_runtime_options(self, options: RuntimeOptions) -> None:
        self.kernel = options.pattention_kernel

    @property
    def scale(self) -> float:
        return self.fixed_scale if self.fixed_scale is not None else math.sqrt(self.key_tokens.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = x @ self.key_tokens.t()
        if self.norm == "l2_norm_gelu":
            weights = l2_norm_gelu(scores, self.scale, self.kernel)  # one Triton row kernel on CUDA (pattention_norm.py)
        elif self.norm == "gelu_l2_norm":
            weights = F.normalize(F.gelu(scores), dim=-1) * self.scale
        else:  # softmax, n-scaled as released; computed stably
            weights = torch.softmax(scores.float(), dim=-1).to(scores.dtype) * self.scale**2
        return weights @ self.value_tokens

    def extra_repr(self) -> str:
        n, d_in = self.key_tokens.shape
        return f"{d_in} -> {self.value_tokens.shape[1]}, slots={n}, norm={self.norm}, scale={self.scale:.4g}"


class TokenFormerForCausalLM(GrowLMForCausalLM):
    """TokenFormer language model (transformers model type ``growlm_tokenformer``)."""

    config_class = TokenFormerConfig

    def make_layer(self, config: GrowLMConfig, layer_idx: int) -> DecoderLayer:
        assert isinstance(config, TokenFormerConfig)  # config_class: transformers builds it as one
        def projection(in_features: int, out_features: int, role: str) -> nn.Module:
            if role == "o":
                return Pattention(in_features, out_features, config.proj_slots, config.pattention_norm,
                                  config.proj_scale)
            return Pattention(in_features, out_features, config.qkv_slots, config.pattention_norm, config.qkv_scale)

        ffn = Pattention(config.hidden_size, config.hidden_size, config.ffn_slots, config.pattention_norm,
                         config.ffn_scale)
        return DecoderLayer(config, SelfAttention(config, layer_idx, projection), ffn)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, Pattention):
            init.normal_(module.key_tokens, mean=0.0, std=self.config.initializer_range)
            init.normal_(module.value_tokens, mean=0.0, std=self.config.initializer_range)
        else:
            super()._init_weights(module)
