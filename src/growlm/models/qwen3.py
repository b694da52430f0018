"""Qwen3: the dense decoder of the Qwen3 technical report, a baseline of the Nexusformer paper.

Pre-norm decoder (``base.py``) with linear, bias-free Q/K/V/O projections, a per-head
RMSNorm on queries and keys applied before the rotary embedding ("QK-norm"),
grouped-query attention, RoPE, a SwiGLU FFN and optionally tied input/output
embeddings. Parameter names equal those of transformers' ``Qwen3ForCausalLM``, and
the arithmetic matches it step by step (RMSNorm in float32, rotary tables in the
activation dtype, ``head_dim ** -0.5`` scaling), so a converted checkpoint
(``growlm convert``) gives the same logits. Sliding-window attention and attention
biases, which no released dense Qwen3 uses, are not supported.
"""

from __future__ import annotations

from torch import nn

from growlm.models.base import DecoderLayer, GrowLMConfig, GrowLMForCausalLM, SelfAttention


class Qwen3Config(GrowLMConfig):
    """growlm's Qwen3 configuration (transformers model type ``growlm_qwen3``)."""

    model_type = "growlm_qwen3"
    architecture = "qwen3"


def linear_projection(in_features: int, out_features: int, role: str) -> nn.Module:
    return nn.Linear(in_features, out_features, bias=False)


class Qwen3ForCausalLM(GrowLMForCausalLM):
    """Qwen3 language model with the same weights layout as transformers' Qwen3ForCausalLM."""

    config_class = Qwen3Config

    def make_layer(self, config: GrowLMConfig, layer_idx: int) -> DecoderLayer:
        attention = SelfAttention(config, layer_idx, linear_projection, qk_norm=True)
        return DecoderLayer(config, attention, self.swiglu(config))
