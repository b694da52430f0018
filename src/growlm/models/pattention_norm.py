"""TokenFormer's default Pattention normalisation, ``GELU(S / ||S||_2 * scale)``, as one row kernel.

Why a kernel. Each Pattention layer turns its scores ``S`` (``tokens x slots``, slots =
768 to 3072 in tokenformer-240m) into weights with an L2 norm over the row followed by a
GELU. Left to ``torch.compile``, forward and backward became looped Triton reductions
that read each row several times, at a fraction of the memory bandwidth: close to a third of
a tokenformer-240m training step (measured: docs/benchmarks.md, round two). A row of at most 8192 slots fits
in one Triton program's registers, so here forward reads ``S`` once and writes the
weights and one float per row (``scale / max(||S||, eps)``); backward reads ``S``, the
incoming gradient and that float once and writes the gradient.

Gradient (derivation; ``backward_reference`` below is the same formula in torch and is
tested against autograd). Let ``n = ||s||``, ``c = scale``, ``inv = c / max(n, eps)``,
``u = s * inv`` and ``w = GELU(u)``. With ``g = dL/dw * GELU'(u)``:

* ``n >= eps``: ``u = c * s / n``, whose Jacobian is ``(c / n)(I - s s^T / n^2)``, so
  ``dL/ds = inv * (g - s (s . g) / n^2) = inv * (g - u (u . g) / c^2)``
  (because ``s / n = u / c``);
* ``n < eps`` (``F.normalize`` divides by eps instead): ``u = s * c / eps`` is linear, so
  ``dL/ds = inv * g``.

``GELU'(u) = Phi(u) + u * phi(u)`` (exact, erf-based GELU, as ``F.gelu``).

The kernel runs on CUDA tensors when Triton is importable and the row has at most
``MAX_KERNEL_SLOTS`` entries; everything else (CPU, wider rows) uses the torch
expression of ``tokenformer.py``, which CPU tests and parity checks see unchanged.
``RuntimeOptions(pattention_kernel=False)`` on the model (each ``Pattention``'s ``kernel``;
``GROWLM_PATTENTION_KERNEL=0`` at an entry point) switches the kernel off (``None`` = auto,
the default, and ``True`` use it on CUDA). The op is a ``torch.library`` custom op, so ``torch.compile`` calls it
as one opaque kernel and autograd uses the backward registered here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

MAX_KERNEL_SLOTS = 8192
EPS = 1e-12  # F.normalize's default

try:  # Triton ships with CUDA builds of torch; CPU builds (and CI) have none
    import triton
    import triton.language as tl

    try:
        from triton.language.extra import libdevice
    except ImportError:  # older Triton
        from triton.language.extra.cuda import libdevice
except ImportError:
    triton = None

def reference(s: torch.Tensor, scale: float) -> torch.Tensor:
    """The normalisation as the released code writes it (tokenformer.py uses this off CUDA)."""
    return F.gelu(F.normalize(s, dim=-1) * scale)


def backward_reference(grad_w: torch.Tensor, s: torch.Tensor, scale: float, eps: float = EPS) -> torch.Tensor:
    """dL/ds by the closed form of the module doc, in float32 (the kernel computes the same)."""
    s32, g32 = s.float(), grad_w.float()
    norm = s32.norm(dim=-1, keepdim=True)
    inv = scale / norm.clamp_min(eps)
    u = s32 * inv
    gelu_grad = 0.5 * (1 + torch.erf(u * 0.7071067811865476)) + u * torch.exp(-0.5 * u * u) * 0.3989422804014327
    g = g32 * gelu_grad
    dot = (u * g).sum(-1, keepdim=True)
    projection = (norm >= eps).float()
    return (inv * (g - projection * u * dot / (scale * scale))).to(s.dtype)


# The Triton kernels (Any to the type checker: Triton ships no types, and CPU builds have none).
_forward_kernel: Any
_backward_kernel: Any
if triton is not None:

    @triton.jit
    def _forward_kernel(s_ptr, w_ptr, inv_ptr, n, scale, eps, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n
        s = tl.load(s_ptr + row * n + cols, mask=mask, other=0.0).to(tl.float32)
        norm = tl.sqrt(tl.sum(s * s, axis=0))
        inv = scale / tl.maximum(norm, eps)
        u = s * inv
        w = 0.5 * u * (1.0 + libdevice.erf(u * 0.7071067811865476))
        tl.store(w_ptr + row * n + cols, w.to(w_ptr.dtype.element_ty), mask=mask)
        tl.store(inv_ptr + row, inv)

    @triton.jit
    def _backward_kernel(grad_ptr, s_ptr, inv_ptr, out_ptr, n, scale, eps, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n
        s = tl.load(s_ptr + row * n + cols, mask=mask, other=0.0).to(tl.float32)
        gw = tl.load(grad_ptr + row * n + cols, mask=mask, other=0.0).to(tl.float32)
        inv = tl.load(inv_ptr + row)
        norm = tl.sqrt(tl.sum(s * s, axis=0))
        u = s * inv
        cdf = 0.5 * (1.0 + libdevice.erf(u * 0.7071067811865476))
        pdf = tl.exp(-0.5 * u * u) * 0.3989422804014327
        g = gw * (cdf + u * pdf)
        dot = tl.sum(u * g, axis=0)
        projection = tl.where(norm >= eps, 1.0, 0.0)
        out = inv * (g - projection * u * (dot / (scale * scale)))
        tl.store(out_ptr + row * n + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def _launch_shape(n: int) -> tuple[int, int]:
    assert triton is not None  # only the kernels' launchers call this, and they exist only with Triton
    block = triton.next_power_of_2(n)
    return block, 4 if block <= 1024 else 8 if block <= 4096 else 16


@torch.library.custom_op("growlm::l2_norm_gelu", mutates_args=())
def _l2_norm_gelu(s: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    n = s.shape[-1]
    rows = s.numel() // n
    s = s.contiguous()
    w = torch.empty_like(s)
    inv = torch.empty(s.shape[:-1], device=s.device, dtype=torch.float32)
    if rows:
        block, warps = _launch_shape(n)
        _forward_kernel[(rows,)](s, w, inv, n, scale, EPS, BLOCK=block, num_warps=warps)
    return w, inv


@_l2_norm_gelu.register_fake
def _(s: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(s, memory_format=torch.contiguous_format), s.new_empty(s.shape[:-1], dtype=torch.float32)


@torch.library.custom_op("growlm::l2_norm_gelu_backward", mutates_args=())
def _l2_norm_gelu_backward(grad_w: torch.Tensor, s: torch.Tensor, inv: torch.Tensor, scale: float) -> torch.Tensor:
    n = s.shape[-1]
    rows = s.numel() // n
    grad_w, s = grad_w.contiguous(), s.contiguous()
    out = torch.empty_like(s)
    if rows:
        block, warps = _launch_shape(n)
        _backward_kernel[(rows,)](grad_w, s, inv, out, n, scale, EPS, BLOCK=block, num_warps=warps)
    return out


@_l2_norm_gelu_backward.register_fake
def _(grad_w: torch.Tensor, s: torch.Tensor, inv: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.empty_like(s, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output) -> None:
    s, scale = inputs
    ctx.save_for_backward(s, output[1])
    ctx.scale = scale


def _backward(ctx, grad_w: torch.Tensor, _grad_inv: torch.Tensor | None) -> tuple[torch.Tensor, None]:
    s, inv = ctx.saved_tensors
    return _l2_norm_gelu_backward(grad_w, s, inv, ctx.scale), None


_l2_norm_gelu.register_autograd(_backward, setup_context=_setup_context)


def kernel_applies(s: torch.Tensor, setting: bool | None = None) -> bool:
    """Whether ``l2_norm_gelu`` runs the Triton kernel for these scores (module doc); ``setting``:
    None = auto (CUDA), False = never."""
    wanted = s.is_cuda if setting is None else setting
    return bool(wanted and triton is not None and s.is_cuda and s.shape[-1] <= MAX_KERNEL_SLOTS)


def l2_norm_gelu(s: torch.Tensor, scale: float, kernel: bool | None = None) -> torch.Tensor:
    """``GELU(S / ||S||_2 * scale)`` over the last dimension: the row kernel where it applies
    (``kernel``: None = auto), else the torch expression."""
    if kernel_applies(s, kernel):
        return _l2_norm_gelu(s, float(scale))[0]
    return reference(s, scale)
