"""Exact parameter counts and training FLOPs per token for any growlm config.

Parameters are counted on a model built on the meta device (no memory, no
arithmetic), so the count is exact by construction for every architecture.

Training FLOPs per token count matrix multiplications only, the convention of
Kaplan et al., PaLM and ``torch.utils.flop_counter`` (norms, activations and softmax
are a few percent and omitted):

* every weight matrix used as a matmul (all projections, the FFN, the LM head; not
  the embedding lookup) costs 2 FLOPs per weight per token forward and 4 backward:
  ``6 * N_matmul``;
* causal attention over a context of ``T`` tokens costs ``QK^T`` and ``AV``:
  ``4 * T * heads * head_dim`` per layer forward, three times that for training,
  ``12 * L * heads * head_dim * T``. As in PaLM's MFU formula and the flop counter,
  the causal mask is not credited: the full T x T product is counted (what SDPA's math
  backend executes, and what the flop counter counts).

``tests/models/test_accounting.py`` checks the formula against
``torch.utils.flop_counter.FlopCounterMode`` on real forward/backward passes.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch

from growlm.models import GrowLMConfig, GrowLMForCausalLM, model_class_for


@dataclass(frozen=True)
class ModelCost:
    total_params: int
    embedding_params: int  # input embedding + untied LM head
    non_embedding_params: int
    matmul_params: int  # weights used in matrix multiplications (LM head included)
    seq_len: int
    train_flops_per_token: int
    forward_flops_per_token: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _meta_model(config: GrowLMConfig) -> GrowLMForCausalLM:
    with torch.device("meta"):
        return model_class_for(config)(config)


def model_cost(config: GrowLMConfig, seq_len: int | None = None) -> ModelCost:
    """Parameter counts and per-token FLOPs at context length ``seq_len``."""
    seq_len = seq_len or config.max_position_embeddings
    if config.architecture == "composite":  # every expert runs on every token: the experts' sum
        parts = [model_cost(c, seq_len) for c in config.expert_configs()]
        meta = _meta_model(config)
        mixer, adapter = getattr(meta, "mixer", None), getattr(meta, "adapter", None)
        extra = sum(p.numel() for p in mixer.parameters()) if mixer is not None else 0
        gate = mixer.gate.weight.numel() if mixer is not None and mixer.gate is not None else 0
        if adapter is not None:  # a matmul on every token, like the gate
            extra += adapter.weight.numel()
            gate += adapter.weight.numel()
        summed = {k: sum(getattr(p, k) for p in parts) for k in ModelCost.__dataclass_fields__ if k != "seq_len"}
        summed.update(total_params=summed["total_params"] + extra,
                      non_embedding_params=summed["non_embedding_params"] + extra,
                      matmul_params=summed["matmul_params"] + gate,
                      forward_flops_per_token=summed["forward_flops_per_token"] + 2 * gate,
                      train_flops_per_token=summed["train_flops_per_token"] + 6 * gate)
        return ModelCost(seq_len=seq_len, **summed)
    model = _meta_model(config)
    total = sum(p.numel() for p in model.parameters())  # tied weights are counted once
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    embedding = embed.numel() + (0 if head is embed else head.numel())
    matmul = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in name)
    if head is embed:
        matmul += head.numel()  # the tied matrix is still a matmul at the output
    attn = config.num_hidden_layers * config.num_attention_heads * config.head_dim * seq_len
    forward = 2 * matmul + 4 * attn
    return ModelCost(
        total_params=total,
        embedding_params=embedding,
        non_embedding_params=total - embedding,
        matmul_params=matmul,
        seq_len=seq_len,
        train_flops_per_token=3 * forward,
        forward_flops_per_token=forward,
    )


def training_flops_per_token(model: torch.nn.Module, seq_len: int) -> int:
    """Training FLOPs per token of a model as it is set up to train (frozen parts, adapters).

    Same convention as :func:`model_cost`, split by what a backward pass computes:
    the forward pass (``2 N`` for every matmul weight, adapters included, plus attention);
    input gradients (``2 N`` and the attention backward) for the layers at and above
    the lowest one holding a trainable parameter, which is where the gradient must
    flow; weight gradients (``2 N``) for trainable matmul weights only. With every
    parameter trainable this is exactly ``model_cost(...).train_flops_per_token``.
    Within the lowest trainable layer every matmul is counted, a small overestimate.
    """
    from growlm.models.storage import base_model, canonical_name

    config = base_model(model).config
    layers = config.num_hidden_layers
    pattern = re.compile(r"model\.layers\.(\d+)\.")

    def depth(name: str) -> int:
        found = pattern.match(name)
        if found:
            return int(found.group(1))
        return -1 if "embed_tokens" in name else layers

    named = [(canonical_name(n), p) for n, p in model.named_parameters()]
    trainable_depths = [depth(n) for n, p in named if p.requires_grad]
    lowest = min(trainable_depths) if trainable_depths else None
    matmuls = [(depth(n), p.numel(), p.requires_grad) for n, p in named if p.dim() == 2 and "embed_tokens" not in n]
    if config.tie_word_embeddings:
        embed = base_model(model).get_input_embeddings().weight
        matmuls.append((layers, embed.numel(), embed.requires_grad))
    attn = config.num_attention_heads * config.head_dim * seq_len  # per layer
    forward = 2 * sum(n for _, n, _ in matmuls) + 4 * attn * layers
    if lowest is None:
        return forward
    input_grads = 2 * sum(n for d, n, _ in matmuls if d >= lowest) + 8 * attn * (layers - max(lowest, 0))
    weight_grads = 2 * sum(n for _, n, trains in matmuls if trains)
    return forward + input_grads + weight_grads
