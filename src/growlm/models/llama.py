"""Transformer++ (Llama): the strong-baseline decoder of the Nexusformer paper.

Pre-norm decoder (``base.py``) with linear, bias-free Q/K/V/O projections, RoPE, a
SwiGLU FFN and RMSNorm, and no QK-norm: the Llama architecture. Parameter names and
arithmetic equal transformers' ``LlamaForCausalLM``, so checkpoints convert both ways
with ``growlm convert`` and give the same logits. Grouped-query attention is
supported; attention/MLP biases, scaled RoPE variants (llama3, linear, dynamic) and
``pretraining_tp > 1`` are not.
"""

from __future__ import annotations

from growlm.models.base import DecoderLayer, GrowLMConfig, GrowLMForCausalLM, SelfAttention
from growlm.models.qwen3 import linear_projection


class LlamaConfig(GrowLMConfig):
    """growlm's Llama configuration (transformers model type ``growlm_llama``)."""

    model_type = "growlm_llama"
    architecture = "llama"


class LlamaForCausalLM(GrowLMForCausalLM):
    """Llama / Transformer++ language model with transformers' LlamaForCausalLM weight layout."""

    config_class = LlamaConfig

    def make_layer(self, config: GrowLMConfig, layer_idx: int) -> DecoderLayer:
        attention = SelfAttention(config, layer_idx, linear_projection, qk_norm=False)
        return DecoderLayer(config, attention, self.swiglu(config))
