"""TokenFormer's default Pattention normalisation, ``GELU(S / ||S||_2 * scale)``, as one row kernel.

Why a kernel. Each Pattention layer turns its scores ``S`` (``tokens x slots``, slots =
768 to 3072 in tokenformer-240m) into weights with an L2 norm over the row followed by a
GELU. Left to ``torch.compile``, forward and backward became looped Triton reductions
that read each row several times, at a fraction of the memory bandwidth: close to a third of
a tokenformer-240m training step (measured: docs/benchmarks.md, round two). A row of at most
8192 slots fits in one Triton program's registers, so here forward reads ``S`` once and writes
the weights and one float per row (the row's norm); backward reads ``S``, the incoming gradient
and that float once and writes the gradient.

How the kernels read a row (docs/benchmarks.md, round three (h2), has the measurements):

* *Any row stride.* Inductor pads the rows of a matrix product's output to 128 bytes when
  they are at least 1024 elements long (2088 slots -> a stride of 2112). An op that demanded
  contiguous inputs made the compiled graph copy every such score matrix (and its gradient)
  back before each call: ~10 ms of a 141 ms tokenformer-240m step. The ops carry the
  ``flexible_layout`` tag and take each input's row stride; only a last dimension that is not
  contiguous is copied.
* *Two power-of-two pieces.* Triton blocks are powers of two; one block of 4096 lanes for a
  2088-slot row computed the GELU and its derivative on 1.96x as many lanes as there are
  slots. A row is read as its largest power-of-two head plus a tail block (2088 = 2048 + 64
  lanes, 768 = 512 + 256, 3072 = 2048 + 1024).
* *Alignment.* Rows whose length and strides are multiples of 8 elements are declared so
  (``tl.multiple_of``), so loads and stores use 16-byte vectors where Triton could not prove
  it from a runtime length like 2088.
* *The norm is saved*, so backward does one row reduction (``s . g``), not two.

The launch shape (warps per row) is fixed by the row length, never autotuned: the warps
decide the order of the row sums, and a timing-dependent choice would make two runs differ
in the last bit (deterministic runs are bit-identical, docs/benchmarks.md).

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
the default, and ``True`` use it on CUDA). The ops are ``torch.library`` custom ops, so
``torch.compile`` calls each as one opaque kernel and autograd uses the backward registered
here. With ``TRITON_INTERPRET=1`` the kernels also run on CPU tensors (Triton's interpreter;
tests/models/test_pattention_norm.py uses it where Triton is installed).
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

MAX_KERNEL_SLOTS = 8192
EPS = 1e-12  # F.normalize's default

try:  # Triton ships with CUDA builds of torch; CPU builds (and CI) have none
    import triton
    import triton.language as tl

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
    def _offsets(row, stride, first, LANES: tl.constexpr, ALIGN: tl.constexpr):
        # every run of contiguous offsets starts at a multiple of ALIGN (row * stride and the head
        # length are): the hint that lets Triton use vector loads for a runtime length like 2088
        return tl.multiple_of(row * stride + first + tl.arange(0, LANES), ALIGN)

    @triton.jit
    def _gelu(u):
        return 0.5 * u * (1.0 + tl.erf(u * 0.7071067811865476))

    @triton.jit
    def _gelu_grad(u):
        return 0.5 * (1.0 + tl.erf(u * 0.7071067811865476)) + u * tl.exp(-0.5 * u * u) * 0.3989422804014327

    @triton.jit
    def _forward_kernel(s_ptr, w_ptr, norm_ptr, n, s_stride, scale, eps,
                        HEAD: tl.constexpr, TAIL: tl.constexpr, ALIGN: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        in_tail = HEAD + tl.arange(0, TAIL) < n
        s_head = tl.load(s_ptr + _offsets(row, s_stride, 0, HEAD, ALIGN)).to(tl.float32)
        s_tail = tl.load(s_ptr + _offsets(row, s_stride, HEAD, TAIL, ALIGN), mask=in_tail, other=0.0).to(tl.float32)
        norm = tl.sqrt(tl.sum(s_head * s_head, axis=0) + tl.sum(s_tail * s_tail, axis=0))
        inv = scale / tl.maximum(norm, eps)
        out = w_ptr.dtype.element_ty
        tl.store(w_ptr + _offsets(row, n, 0, HEAD, ALIGN), _gelu(s_head * inv).to(out))
        tl.store(w_ptr + _offsets(row, n, HEAD, TAIL, ALIGN), _gelu(s_tail * inv).to(out), mask=in_tail)
        tl.store(norm_ptr + row, norm)

    @triton.jit
    def _backward_kernel(grad_ptr, s_ptr, norm_ptr, out_ptr, n, grad_stride, s_stride, scale, eps,
                         HEAD: tl.constexpr, TAIL: tl.constexpr, ALIGN: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        in_tail = HEAD + tl.arange(0, TAIL) < n
        s_head = tl.load(s_ptr + _offsets(row, s_stride, 0, HEAD, ALIGN)).to(tl.float32)
        s_tail = tl.load(s_ptr + _offsets(row, s_stride, HEAD, TAIL, ALIGN), mask=in_tail, other=0.0).to(tl.float32)
        gw_head = tl.load(grad_ptr + _offsets(row, grad_stride, 0, HEAD, ALIGN)).to(tl.float32)
        gw_tail = tl.load(grad_ptr + _offsets(row, grad_stride, HEAD, TAIL, ALIGN), mask=in_tail,
                          other=0.0).to(tl.float32)
        norm = tl.load(norm_ptr + row)
        inv = scale / tl.maximum(norm, eps)
        u_head = s_head * inv
        u_tail = s_tail * inv
        g_head = gw_head * _gelu_grad(u_head)
        g_tail = gw_tail * _gelu_grad(u_tail)
        # the projection term of the module doc; none in the eps branch, where u is linear in s
        dot = tl.sum(u_head * g_head, axis=0) + tl.sum(u_tail * g_tail, axis=0)
        coefficient = tl.where(norm >= eps, dot / (scale * scale), 0.0)
        out = out_ptr.dtype.element_ty
        tl.store(out_ptr + _offsets(row, n, 0, HEAD, ALIGN), (inv * (g_head - u_head * coefficient)).to(out))
        tl.store(out_ptr + _offsets(row, n, HEAD, TAIL, ALIGN), (inv * (g_tail - u_tail * coefficient)).to(out),
                 mask=in_tail)


class LaunchShape(NamedTuple):
    """How a row of ``n`` slots is read: ``head`` (largest power of two <= n) + ``tail`` lanes
    (a power of two >= the rest, at least 16), ``align`` (largest power of two <= 8 dividing n and
    the row strides), ``warps`` per row (module doc: fixed by the row length)."""

    head: int
    tail: int
    align: int
    warps: int


def launch_shape(n: int, *strides: int) -> LaunchShape:
    """The kernels' launch shape for rows of ``n`` slots read with these row strides."""
    head = 1 << (n.bit_length() - 1)
    rest = n - head
    tail = max(16, 1 << (rest - 1).bit_length()) if rest else 16
    align = 8
    while any(value % align for value in (n, *strides)):
        align //= 2
    lanes = head + (rest and tail)
    # measured on an H100 at 32768 rows (docs/benchmarks.md (h2)): 2 warps for 768 slots, 4 for 2088 and 3072
    return LaunchShape(head, tail, align, 2 if lanes <= 1024 else 4 if lanes <= 4096 else 8)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` as (rows, slots) with contiguous slots; keeps the row stride (Inductor's padding)."""
    rows = t.reshape(-1, t.shape[-1])  # a view for padded rows: only the last dimension is strided
    return rows if rows.stride(-1) == 1 or rows.shape[-1] == 1 else rows.contiguous()


# flexible_layout: Inductor passes padded matrix-product outputs as they are (module doc). torch
# releases whose custom_op takes no tags (before 2.8) keep their default: a copy to exact strides
_LAYOUT: dict[str, Any] = ({"tags": (torch.Tag.flexible_layout,)}
           if "tags" in inspect.signature(torch.library.custom_op).parameters and hasattr(torch.Tag, "flexible_layout")
           else {})


@torch.library.custom_op("growlm::l2_norm_gelu", mutates_args=(), **_LAYOUT)
def _l2_norm_gelu(s: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    n = s.shape[-1]
    rows = _rows(s)
    w = torch.empty(s.shape, device=s.device, dtype=s.dtype)
    norm = torch.empty(s.shape[:-1], device=s.device, dtype=torch.float32)
    if rows.numel():
        shape = launch_shape(n, rows.stride(0))
        _forward_kernel[(rows.shape[0],)](rows, w, norm, n, rows.stride(0), scale, EPS, HEAD=shape.head,
                                          TAIL=shape.tail, ALIGN=shape.align, num_warps=shape.warps)
    return w, norm


@_l2_norm_gelu.register_fake
def _(s: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    return s.new_empty(s.shape), s.new_empty(s.shape[:-1], dtype=torch.float32)


@torch.library.custom_op("growlm::l2_norm_gelu_backward", mutates_args=(), **_LAYOUT)
def _l2_norm_gelu_backward(grad_w: torch.Tensor, s: torch.Tensor, norm: torch.Tensor, scale: float) -> torch.Tensor:
    n = s.shape[-1]
    grad_rows, rows = _rows(grad_w), _rows(s)
    out = torch.empty(s.shape, device=s.device, dtype=s.dtype)
    if rows.numel():
        shape = launch_shape(n, grad_rows.stride(0), rows.stride(0))
        _backward_kernel[(rows.shape[0],)](grad_rows, rows, norm.contiguous(), out, n, grad_rows.stride(0),
                                           rows.stride(0), scale, EPS, HEAD=shape.head, TAIL=shape.tail,
                                           ALIGN=shape.align, num_warps=shape.warps)
    return out


@_l2_norm_gelu_backward.register_fake
def _(grad_w: torch.Tensor, s: torch.Tensor, norm: torch.Tensor, scale: float) -> torch.Tensor:
    return s.new_empty(s.shape)


def _setup_context(ctx, inputs, output) -> None:
    s, scale = inputs
    ctx.save_for_backward(s, output[1])
    ctx.scale = scale


def _backward(ctx, grad_w: torch.Tensor, _grad_norm: torch.Tensor | None) -> tuple[torch.Tensor, None]:
    s, norm = ctx.saved_tensors
    return _l2_norm_gelu_backward(grad_w, s, norm, ctx.scale), None


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
