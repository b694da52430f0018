"""Building blocks shared by every growlm architecture.

Each architecture file (``nexus.py``, ``qwen3.py``, ...) reads top to bottom as the
model it implements; the pieces that are identical across them live here, once:
RMSNorm, rotary position embeddings, the SwiGLU feed-forward block and causal
scaled-dot-product attention with an optional key/value cache.

Sibling linears fused (``fused_linears``): where several bias-free linears read the same
input -- Q, K and V; SwiGLU's gate and up -- one product with their weights concatenated
computes all of them (one larger matrix product instead of two or three narrow ones).
The concatenation is built from the live parameters at every forward (a copy of a few
MB), so names, checkpoints and growth see the separate modules. It runs only where the
modules are plain ``nn.Linear`` without hooks (not under peft's LoRA) and, by default,
only on CUDA (``RuntimeOptions.fuse_linears``: ``None`` = auto, the default, ``True`` or
``False``; set on a model by ``growlm.models.apply_runtime``). On CPU (where the parity
tests with transformers run) the modules are called one by one.

Numerics follow transformers' Llama/Qwen3 code exactly (RMSNorm in float32, rotary
tables cast to the activation dtype, ``head_dim ** -0.5`` scaling) so that a
converted checkpoint gives the same logits as the reference implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from growlm.runtime import RuntimeOptions


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain, computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def _rotary_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float) / head_dim)
    )
    freqs = position_ids[..., None].float() * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


@torch.library.custom_op("growlm::rotary_cos_sin", mutates_args=())
def _rotary_cos_sin_op(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    return _rotary_cos_sin(position_ids, head_dim, theta)


@_rotary_cos_sin_op.register_fake
def _(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (*position_ids.shape, head_dim)
    return position_ids.new_empty(shape, dtype=torch.float), position_ids.new_empty(shape, dtype=torch.float)


def rotary_tables(
    position_ids: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype, opaque: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (batch, seq, head_dim) for the given positions.

    The inverse frequencies are recomputed on every call instead of being stored as
    a buffer: they cost head_dim/2 operations, and a buffer would have to be
    re-materialised whenever transformers builds the model on the meta device.

    The tables are computed by an opaque custom op (``growlm::rotary_cos_sin``): left
    visible, ``torch.compile``'s Inductor inlines the cheap-looking ``cos``/``sin`` into
    every consumer and so recomputes them -- in float32, with large arguments, for every
    element of Q and K in every layer, forward and backward, a tenth of a nexus-240m step at
    sequence 4096 (measured: docs/benchmarks.md, round two). Behind the op they are computed once per forward and only read
    afterwards. The values are the same as the inline formula's in eager mode, bit for
    bit. ``opaque=False`` computes them inline, the state before the op (a model's
    ``DecoderStack.rotary_opaque``, from ``RuntimeOptions.rotary_opaque``;
    ``growlm bench --rotary-inline``).
    """
    compute = _rotary_cos_sin_op if opaque else _rotary_cos_sin
    cos, sin = compute(position_ids, head_dim, float(theta))
    return cos.to(dtype), sin.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (batch, heads, seq, head_dim) queries or keys by the position tables."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + _rotate_half(x) * sin


def no_global_hooks() -> bool:
    return not (nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks)


def plain_linear(module: nn.Module) -> bool:
    """A bias-free ``nn.Linear`` itself (not peft's LoRA layer or another subclass) without hooks:
    reading its ``weight`` is all its forward does."""
    return type(module) is nn.Linear and module.bias is None and not (module._forward_hooks or
                                                                      module._forward_pre_hooks)


def use_fused(setting: bool | None, x: torch.Tensor, modules: tuple[nn.Module, ...]) -> bool:
    """Whether to run ``modules`` (all reading ``x``) as one product (module doc)."""
    wanted = x.is_cuda if setting is None else setting
    return wanted and no_global_hooks() and all(plain_linear(m) for m in modules)


def fused_linears(x: torch.Tensor, modules: tuple[nn.Linear, ...]) -> tuple[torch.Tensor, ...]:
    """``tuple(m(x) for m in modules)`` as one product with the weights concatenated."""
    weight = torch.cat([m.weight for m in modules])
    return F.linear(x, weight).split([m.out_features for m in modules], dim=-1)


class SwiGLU(nn.Module):
    """The gated feed-forward block of Llama and Qwen: down(silu(gate(x)) * up(x)); gate and up
    as one product on CUDA (``fused_linears``)."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)
        self.fused: bool | None = None  # auto; RuntimeOptions.fuse_linears (set_runtime_options)

    def set_runtime_options(self, options: RuntimeOptions) -> None:
        self.fused = options.fuse_linears

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_fused(self.fused, x, (self.gate_proj, self.up_proj)):
            gate, up = fused_linears(x, (self.gate_proj, self.up_proj))
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)


def build_attention_mask(
    attention_mask: torch.Tensor | None, q_len: int, kv_len: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean (batch|1, 1, q_len, kv_len) mask, or None when plain causal attention suffices.

    ``attention_mask`` is the usual 2-D padding mask over all ``kv_len`` positions
    (1 = real token). Queries are the last ``q_len`` positions. A query at a padded
    position would see no key at all and SDPA would return NaN there, and a NaN value
    leaks into every other query through ``0 * NaN``; such queries are allowed to see
    themselves, which keeps them finite without touching real positions.
    """
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask.bool() if attention_mask.dtype != torch.bool else attention_mask
    padded = attention_mask is not None and not bool(attention_mask.all())
    if not padded and q_len == kv_len:
        return None  # SDPA's is_causal path
    if not padded and q_len == 1:
        return None  # one new token sees the whole cache
    offset = kv_len - q_len
    q_pos = torch.arange(q_len, device=device)[:, None] + offset
    k_pos = torch.arange(kv_len, device=device)[None, :]
    mask = (k_pos <= q_pos)[None, None]
    if padded and attention_mask is not None:  # (padded implies a mask)
        keep = attention_mask[:, None, None, :kv_len].bool()
        mask = mask & keep
        mask = mask | (k_pos == q_pos)[None, None]
    return mask


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """Causal SDPA over (batch, heads, seq, head_dim); k/v may have fewer heads (GQA)."""
    gqa = q.shape[1] != k.shape[1]
    if mask is None:
        causal = q.shape[2] == k.shape[2] and q.shape[2] > 1
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)


def _cross_entropy_sum(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy((hidden @ weight.t()).float(), targets, ignore_index=-100, reduction="sum")


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          chunk: int) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets``, ``chunk`` tokens at a time.

    Each chunk's logits exist only inside a checkpointed function: the forward keeps
    the loss, the backward recomputes the chunk's logits. Peak memory for the LM head
    falls from ``tokens x vocab`` to ``chunk x vocab`` floats at the cost of a second
    LM-head matmul in the backward pass.
    """
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk):
        total = total + torch.utils.checkpoint.checkpoint(
            _cross_entropy_sum, hidden[start: start + chunk], weight, targets[start: start + chunk],
            use_reentrant=False)
    return total / (targets != -100).sum().clamp(min=1)
