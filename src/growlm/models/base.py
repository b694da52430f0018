"""The decoder skeleton every growlm architecture shares, as a transformers model.

All growlm architectures are pre-norm decoder-only transformers:

    h   = embed(ids)
    for each layer:
        h = h + attention(rmsnorm(h))     # the projections inside differ per architecture
        h = h + ffn(rmsnorm(h))
    logits = lm_head(rmsnorm(h))

An architecture file supplies its config class (the fields it adds) and the modules
that differ (how Q/K/V/O are projected, whether Q and K are normalised per head, the
feed-forward block). Everything else -- masks, rotary tables, the key/value cache for
``generate()``, the loss, weight tying, transformers registration -- lives here once.

Parameter names follow transformers' Llama/Qwen3 layout (``model.layers.N.self_attn.
q_proj``...), so Qwen3 and Llama checkpoints convert by renaming nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from growlm.errors import ConfigError, unknown_key_message
from growlm.models.layers import (
    RMSNorm,
    SwiGLU,
    apply_rotary,
    attend,
    build_attention_mask,
    chunked_cross_entropy,
    fused_linears,
    rotary_tables,
    use_fused,
)
from growlm.runtime import RuntimeOptions

# Fields every architecture has, with the Python type a value must have.
COMMON_FIELDS: dict[str, type] = {
    "vocab_size": int,
    "hidden_size": int,
    "intermediate_size": int,
    "num_hidden_layers": int,
    "num_attention_heads": int,
    "num_key_value_heads": int,
    "head_dim": int,
    "max_position_embeddings": int,
    "rope_theta": float,
    "rms_norm_eps": float,
    "initializer_range": float,
    "tie_word_embeddings": bool,
    "bos_token_id": int,
    "eos_token_id": int,
    "pad_token_id": int,
    "embedding": str,
    "embedding_dim": int,
    "embedding_scale": float,
    "embedding_cell": int,
    "embedding_seed": int,
}

# Input embeddings: ``learned`` (an ordinary trained table) or a frozen substrate built by
# ``growlm.substrate`` from the tokenizer (docs/substrate.md).
EMBEDDING_KINDS = ("learned", "glyph", "binary", "random_binary")
FROZEN_EMBEDDINGS = frozenset(EMBEDDING_KINDS) - {"learned"}
SUBSTRATE_PARAMETER = "model.embed_tokens.weight"

# The output field that carries the key/value cache: ``cache`` in newer transformers, ``past_key_values``
# before (the old name still works there, with a deprecation warning on every call).
_CACHE_FIELD = "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"

# Fields that may be None (token ids of a model made before it met a tokenizer).
OPTIONAL_FIELDS = {"bos_token_id", "eos_token_id", "pad_token_id", "embedding_dim"}


class GrowLMConfig(PretrainedConfig):
    """Fields shared by all growlm architectures.

    ``num_key_value_heads`` defaults to ``num_attention_heads`` (no GQA) and
    ``head_dim`` to ``hidden_size // num_attention_heads``; both are stored resolved, so
    a saved config states the attention geometry explicitly. The attention width
    ``num_attention_heads * head_dim`` need not equal ``hidden_size`` (as in Qwen3), which
    is what lets the hidden size grow while the heads stay as they are.

    transformers 5 makes every config class a dataclass: fields are annotated class
    attributes and derived values are resolved in ``__post_init__``.
    """

    model_type = "growlm_base"
    architecture: ClassVar[str] = "base"
    # Extra fields of the architecture: name -> type. Subclasses extend this.
    arch_fields: ClassVar[dict[str, type]] = {}
    # Extra fields that may be None.
    arch_optional: ClassVar[frozenset[str]] = frozenset()

    vocab_size: int = 32000
    hidden_size: int = 768
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    # None asks __post_init__ to derive the value, which it always does: a built config holds ints
    # (typed so for its readers; an invalid num_attention_heads leaves None for validate() to name).
    num_key_value_heads: int = None  # type: ignore[assignment]
    head_dim: int = None  # type: ignore[assignment]
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False
    use_cache: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    # The input embedding (docs/substrate.md). A frozen substrate's table is
    # ``embedding_scale * [codes (vocab x embedding_dim, unit rows) | zeros up to hidden_size]``;
    # ``embedding_dim`` defaults to ``hidden_size`` at creation and stays fixed when the hidden
    # size grows (the new columns are zero and ``embedding_scale`` takes the growth factor).
    embedding: str = "learned"
    embedding_dim: int | None = None
    embedding_scale: float = 1.0
    embedding_cell: int = 32  # glyph: pixels per character cell side (32 -> 1024 bits, 64 -> 4096)
    embedding_seed: int = 0  # random_binary: the seed of the codes

    def __post_init__(self, **kwargs: Any) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.embedding_dim is None and self.embedding in FROZEN_EMBEDDINGS:
            self.embedding_dim = self.hidden_size
        if self.head_dim is None and isinstance(self.num_attention_heads, int) and self.num_attention_heads > 0:
            self.head_dim = self.hidden_size // self.num_attention_heads
        super().__post_init__(**kwargs)

    @classmethod
    def field_types(cls) -> dict[str, type]:
        """Every field a user may set on this architecture, with its type."""
        return {**COMMON_FIELDS, **cls.arch_fields}

    @classmethod
    def optional_fields(cls) -> frozenset[str]:
        return frozenset(OPTIONAL_FIELDS) | cls.arch_optional

    @property
    def frozen_embedding(self) -> bool:
        """True when the input embedding is a frozen substrate (never trained, see docs/substrate.md)."""
        return self.embedding != "learned"

    def field_values(self) -> dict[str, Any]:
        return {name: getattr(self, name, None) for name in self.field_types()}

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field that cannot work."""
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_key_value_heads={self.num_key_value_heads} must divide "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.rms_norm_eps <= 0 or self.rope_theta <= 0 or self.initializer_range <= 0:
            raise ConfigError("rms_norm_eps, rope_theta and initializer_range must be positive")
        self.validate_embedding()

    def validate_embedding(self) -> None:
        if self.embedding not in EMBEDDING_KINDS:
            raise ConfigError(unknown_key_message("embedding", str(self.embedding), EMBEDDING_KINDS))
        if not self.frozen_embedding:
            return
        if self.tie_word_embeddings:
            raise ConfigError(f"embedding={self.embedding} is a frozen substrate and cannot double as the trained "
                              "LM head: set tie_word_embeddings=false")
        dim = self.embedding_dim
        if not isinstance(dim, int) or isinstance(dim, bool) or not 0 < dim <= self.hidden_size:
            raise ConfigError(f"embedding_dim must be a positive integer at most hidden_size={self.hidden_size}, "
                              f"got {dim!r}")
        if not self.embedding_scale > 0:
            raise ConfigError(f"embedding_scale must be positive, got {self.embedding_scale!r}")
        if self.embedding == "glyph" and (self.embedding_cell <= 0 or self.embedding_cell % 16):
            raise ConfigError(f"embedding_cell must be a positive multiple of 16 (GNU Unifont is drawn on a 16-pixel "
                              f"grid), got {self.embedding_cell}")


class SelfAttention(nn.Module):
    """Causal multi-head attention with rotary positions and optional per-head QK norm.

    ``make_proj(in_features, out_features, role)`` builds the Q, K, V and O projections,
    which is the only thing that differs between Nexusformer (Nexus-Rank Q/K/V), Qwen3
    and Llama (linear) and TokenFormer (Pattention).
    """

    def __init__(
        self,
        config: GrowLMConfig,
        layer_idx: int,
        make_proj: Callable[[int, int, str], nn.Module],
        qk_norm: bool = False,
    ) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.scale = self.head_dim**-0.5
        d, q_dim, kv_dim = config.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.q_proj = make_proj(d, q_dim, "q")
        self.k_proj = make_proj(d, kv_dim, "k")
        self.v_proj = make_proj(d, kv_dim, "v")
        self.o_proj = make_proj(q_dim, d, "o")
        self.fused_linears: bool | None = None  # auto; RuntimeOptions.fuse_linears (set_runtime_options)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps) if qk_norm else None

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q, K and V of ``x`` (``[..., q_dim]``, ``[..., kv_dim]``, ``[..., kv_dim]``). Linear
        projections run as one product on CUDA (``layers.fused_linears``; ``RuntimeOptions.fuse_linears``);
        Nexusformer overrides this with its own fusion."""
        maps = (self.q_proj, self.k_proj, self.v_proj)
        if use_fused(self.fused_linears, x, maps):  # it checked that all three are plain linears
            q, k, v = fused_linears(x, cast(tuple[nn.Linear, ...], maps))
            return q, k, v
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def set_runtime_options(self, options: RuntimeOptions) -> None:
        self.fused_linears = options.fuse_linears

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        cache: Cache | None,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.project_qkv(x)
        q = q.view(b, t, self.num_heads, self.head_dim)
        k = k.view(b, t, self.num_kv_heads, self.head_dim)
        v = v.view(b, t, self.num_kv_heads, self.head_dim)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        cos, sin = rotary
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        out = attend(q, k, v, mask, self.scale)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))


def set_linear_fusion(model: nn.Module, fused: bool | None) -> int:
    """Run sibling linears (Q/K/V, SwiGLU's gate/up) as one product (True), one by one (False) or
    by default (None: fused on CUDA); returns how many modules were switched (``layers.fused_linears``)."""
    count = 0
    for module in model.modules():
        if isinstance(module, SelfAttention):
            module.fused_linears = fused
            count += 1
        elif isinstance(module, SwiGLU):
            module.fused = fused
            count += 1
    return count


def apply_runtime(model: nn.Module, options: RuntimeOptions) -> int:
    """Set ``options`` (which fused paths and kernels to take; ``growlm/runtime.py``) on every
    module of ``model`` that has such a choice -- also inside DDP, FSDP, peft or composite
    wrappers -- and return how many modules took them. Each module keeps its own setting, so
    two models in one process can run differently; a compiled graph keeps the setting it was
    traced with, so apply options before compiling."""
    count = 0
    for module in model.modules():
        setter = getattr(type(module), "set_runtime_options", None)
        if setter is not None:
            setter(module, options)
            count += 1
    return count


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then + ffn(norm(x))."""

    def __init__(self, config: GrowLMConfig, self_attn: nn.Module, mlp: nn.Module) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = self_attn
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = mlp

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        cache: Cache | None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rotary, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class DecoderStack(nn.Module):
    """Embeddings, the layers and the final norm (transformers calls this ``model``)."""

    def __init__(self, config: GrowLMConfig, make_layer: Callable[[GrowLMConfig, int], DecoderLayer]) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([make_layer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.gradient_checkpointing = False
        self.rotary_opaque = True  # RuntimeOptions.rotary_opaque (layers.rotary_tables)

    def set_runtime_options(self, options: RuntimeOptions) -> None:
        self.rotary_opaque = options.rotary_opaque

    def forward(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        cache: Cache | None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        h = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        t = h.shape[1]
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=h.device)[None]
        rotary = rotary_tables(position_ids, self.config.head_dim, self.config.rope_theta, h.dtype,
                               self.rotary_opaque)
        mask = build_attention_mask(attention_mask, t, past + t, h.device)
        hidden_states = [h] if output_hidden_states else None
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                h = torch.utils.checkpoint.checkpoint(layer, h, rotary, mask, cache, use_reentrant=False)
            else:
                h = layer(h, rotary, mask, cache)
            if hidden_states is not None:
                hidden_states.append(h)
        h = self.norm(h)
        return h, tuple(hidden_states) if hidden_states is not None else None


class GrowLMForCausalLM(PreTrainedModel, GenerationMixin):
    """A growlm architecture as a transformers causal LM (``from_pretrained``, ``generate``)."""

    config_class = GrowLMConfig
    config: GrowLMConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    # transformers declares these two as instance attributes (it rewrites them per model)
    _no_split_modules = ["DecoderLayer"]  # noqa: RUF012
    _supports_sdpa = True
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}  # noqa: RUF012

    def __init__(self, config: GrowLMConfig) -> None:
        config.validate()
        super().__init__(config)
        self.model = DecoderStack(config, self.make_layer)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        self.freeze_substrate()

    def freeze_substrate(self) -> None:
        """A frozen substrate embedding never takes a gradient (docs/substrate.md)."""
        if self.config.frozen_embedding:
            self.model.embed_tokens.weight.requires_grad_(False)

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """transformers' loader, then the substrate frozen again: loading swaps in new parameters,
        which come back with ``requires_grad=True``."""
        model = super().from_pretrained(*args, **kwargs)
        if isinstance(model, GrowLMForCausalLM):
            model.freeze_substrate()
        elif isinstance(model, tuple) and model and isinstance(model[0], GrowLMForCausalLM):
            model[0].freeze_substrate()  # output_loading_info=True
        return model

    def _init_weights(self, module: nn.Module) -> None:
        """transformers' initialisation, except a frozen substrate's table, which is filled with NaN.

        A substrate is built from the tokenizer (``growlm.substrate.install_substrate``), which a
        model constructor does not have. NaN makes a model whose substrate nobody installed fail at
        its first forward pass instead of training on a random frozen table without anyone noticing.
        Loaded checkpoints carry the table and never see this."""
        if module is getattr(getattr(self, "model", None), "embed_tokens", None) and self.config.frozen_embedding:
            with torch.no_grad():
                module.weight.fill_(float("nan"))
            return
        super()._init_weights(module)

    def make_layer(self, config: GrowLMConfig, layer_idx: int) -> DecoderLayer:
        """Build decoder layer ``layer_idx``; architectures override this."""
        raise NotImplementedError

    @staticmethod
    def swiglu(config: GrowLMConfig) -> nn.Module:
        return SwiGLU(config.hidden_size, config.intermediate_size)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        if not isinstance(value, nn.Embedding):
            raise TypeError(f"the input embedding must be an nn.Embedding, got {type(value).__name__}")
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        output_hidden_states: bool | None = None,
        shift_labels: torch.LongTensor | None = None,
        loss_chunk_tokens: int = 0,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Logits and, given ``labels`` (shifted here, -100 ignored) or ``shift_labels``
        (already aligned with the logits), the mean next-token cross-entropy.

        With ``loss_chunk_tokens > 0`` and targets, the loss is computed chunk by chunk and
        no logits are returned (``layers.chunked_cross_entropy``).

        The key/value cache arrives as ``past_key_values`` (transformers up to 5.2x) or as
        ``cache`` (the name newer transformers' ``generate`` passes); either works."""
        if past_key_values is None:
            past_key_values = cache
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        cache = past_key_values if use_cache else None
        hidden, all_hidden = self.model(
            input_ids, inputs_embeds, attention_mask, position_ids, cache, bool(output_hidden_states)
        )
        targets: torch.Tensor | None = shift_labels
        if labels is not None and targets is None:
            targets = F.pad(labels, (0, 1), value=-100)[:, 1:]
        cache_out: dict[str, Any] = {_CACHE_FIELD: cache}
        if loss_chunk_tokens > 0 and targets is not None:
            loss = chunked_cross_entropy(hidden.flatten(0, 1), self.lm_head.weight, targets.flatten(),
                                         loss_chunk_tokens)
            return CausalLMOutputWithPast(loss=loss, logits=None, hidden_states=all_hidden, **cache_out)
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden)
        full_loss: torch.Tensor | None = None
        if targets is not None:
            full_loss = F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100
            )
        return CausalLMOutputWithPast(loss=full_loss, logits=logits, hidden_states=all_hidden, **cache_out)
