"""TokenFormer's fused Pattention normalisation: the closed-form gradient, the launch shape and,
on a GPU (or in Triton's CPU interpreter where Triton is installed), the kernels."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from growlm.models import pattention_norm as pn


def _scores(rows: int, n: int, dtype: torch.dtype, device: str = "cpu") -> torch.Tensor:
    torch.manual_seed(0)
    s = torch.randn(rows, n, dtype=dtype, device=device) * 3
    s[1] = 0  # norm 0: F.normalize's eps branch
    s[2] = 1e-14  # norm below eps too, but not zero
    return s


@pytest.mark.parametrize("scale", [1.0, 45.7])
def test_closed_form_backward_equals_autograd(scale):
    s = _scores(6, 37, torch.float64).requires_grad_()
    grad_w = torch.randn(6, 37, dtype=torch.float64)
    (expected,) = torch.autograd.grad(pn.reference(s, scale), s, grad_w)
    got = pn.backward_reference(grad_w, s.detach(), scale).double()
    # backward_reference computes in float32 like the kernel; rows 1, 2 (the eps branch: inv * g, with
    # inv = scale / eps) are ~1e12 times larger than the others, so each row gets its own tolerance
    for row in range(6):
        torch.testing.assert_close(got[row], expected[row], rtol=1e-5, atol=1e-5 * expected[row].abs().max().item())
    assert expected[1].abs().max() > 1e9


def test_off_cuda_the_torch_expression_runs_unchanged():
    s = _scores(5, 64, torch.float32)
    assert not pn.kernel_applies(s)
    assert torch.equal(pn.l2_norm_gelu(s, 8.0), torch.nn.functional.gelu(torch.nn.functional.normalize(s, dim=-1) * 8))


@pytest.mark.parametrize("n, strides, head, tail, align, warps", [
    (2088, (2088,), 2048, 64, 8, 4),  # q/k/v of tokenformer-240m: 2112 lanes, not one block of 4096
    (2088, (2112, 2088), 2048, 64, 8, 4),  # Inductor's padded rows
    (768, (768,), 512, 256, 8, 2),
    (3072, (3072,), 2048, 1024, 8, 4),
    (4096, (4096,), 4096, 16, 8, 4),  # a power of two: the tail block is all masked
    (5000, (5000,), 4096, 1024, 8, 8),
    (37, (40,), 32, 16, 1, 2),
    (12, (12,), 8, 16, 4, 2),
])
def test_launch_shape_covers_the_row_with_little_waste(n, strides, head, tail, align, warps):
    shape = pn.launch_shape(n, *strides)
    assert (shape.head, shape.tail, shape.align, shape.warps) == (head, tail, align, warps)
    assert shape.head <= n <= shape.head + shape.tail
    assert all(value % shape.align == 0 for value in (n, *strides))


needs_kernel = pytest.mark.skipif(not (torch.cuda.is_available() and pn.triton is not None),
                                  reason="the Triton kernel needs a CUDA GPU")


@needs_kernel
@pytest.mark.parametrize("n", [768, 2088, 3072, 5000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_matches_the_reference_forward_and_backward(n, dtype):
    s = _scores(4096, n, dtype, "cuda").requires_grad_()
    grad_w = torch.randn_like(s)
    scale = n ** 0.5
    assert pn.kernel_applies(s)
    w = pn.l2_norm_gelu(s, scale)
    (got,) = torch.autograd.grad(w, s, grad_w)
    s64 = s.detach().double().requires_grad_()
    w64 = pn.reference(s64, scale)
    (want,) = torch.autograd.grad(w64, s64, grad_w.double())
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    rows = [0, *range(3, s.shape[0])]  # rows 1, 2 take the eps branch, ~1e12 times larger (checked apart)
    for a, b in ((w.double(), w64), (got.double(), want)):
        torch.testing.assert_close(a[rows], b[rows], rtol=tol, atol=tol * b[rows].abs().max().item())
        torch.testing.assert_close(a[1:3], b[1:3], rtol=tol, atol=tol * b[1:3].abs().max().item())


@needs_kernel
@pytest.mark.parametrize("n", [2088, 768])
def test_kernel_reads_padded_rows_in_place(n):
    # Inductor lays a product's output out with 128-byte rows; the kernels read such rows as they are
    torch.manual_seed(0)
    stride = -(-n // 64) * 64 + 64
    s = (torch.randn(512, stride, device="cuda", dtype=torch.bfloat16) * 3)[:, :n]
    g = torch.randn(512, stride + 64, device="cuda", dtype=torch.bfloat16)[:, :n]
    w, norm = torch.ops.growlm.l2_norm_gelu(s, 45.7)
    w_dense, norm_dense = torch.ops.growlm.l2_norm_gelu(s.contiguous(), 45.7)
    assert torch.equal(w, w_dense) and torch.equal(norm, norm_dense)
    grad = torch.ops.growlm.l2_norm_gelu_backward(g, s, norm, 45.7)
    assert torch.equal(grad, torch.ops.growlm.l2_norm_gelu_backward(g.contiguous(), s.contiguous(), norm, 45.7))


@needs_kernel
def test_compiled_graph_passes_the_products_output_without_a_copy():
    # the flexible_layout tag: no copy kernel for the op's input (10 ms of a tokenformer-240m step
    # when the op demanded contiguous rows; docs/benchmarks.md round three (h2))
    from torch._inductor.utils import run_fw_bw_and_get_code

    torch.manual_seed(0)
    x = torch.randn(4, 256, 128, device="cuda", dtype=torch.bfloat16)
    keys = torch.randn(2088, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    values = torch.randn(2088, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    torch._dynamo.reset()
    compiled = torch.compile(lambda: (pn.l2_norm_gelu(x @ keys.t(), 45.7) @ values).float().square().mean())
    _, codes = run_fw_bw_and_get_code(compiled)
    copies = [line for code in codes for line in code.splitlines()
              if line.startswith("triton_") and "l2_norm_gelu" in line.split("=")[0]]
    assert copies == []


@needs_kernel
def test_kernel_op_passes_opcheck_and_compiles():
    s = _scores(64, 2088, torch.bfloat16, "cuda").requires_grad_()
    torch.library.opcheck(torch.ops.growlm.l2_norm_gelu, (s, 45.7))
    compiled = torch.compile(lambda x: pn.l2_norm_gelu(x, 45.7).sum())
    compiled(s).backward()
    eager = s.detach().clone().requires_grad_()
    pn.l2_norm_gelu(eager, 45.7).sum().backward()
    torch.testing.assert_close(s.grad, eager.grad)


_INTERPRETED = textwrap.dedent("""
    import torch
    from growlm.models import pattention_norm as pn

    torch.manual_seed(0)
    for n, stride in ((5, 5), (37, 40), (768, 768), (2088, 2112), (3072, 3072)):
        s = (torch.randn(4, stride) * 3)[:, :n]  # a view: rows keep the stride
        s[1] = 0
        assert s.stride(0) == stride
        g = torch.randn(4, stride + 8)[:, :n]
        w, norm = torch.ops.growlm.l2_norm_gelu(s, n ** 0.5)
        s64 = s.double().requires_grad_()
        want = pn.reference(s64, n ** 0.5)
        (want_grad,) = torch.autograd.grad(want, s64, g.double())
        got_grad = torch.ops.growlm.l2_norm_gelu_backward(g, s, norm, n ** 0.5)
        rows = [0, 2, 3]  # row 1 takes the eps branch, ~1e12 times larger
        for got, ref in ((w, want.detach()), (got_grad, want_grad)):
            error = ((got.double()[rows] - ref[rows]).norm() / ref[rows].norm()).item()
            assert error < 1e-6, (n, error)
        eps_row = pn.backward_reference(g[1:2], s[1:2], n ** 0.5)
        assert torch.allclose(got_grad[1:2], eps_row, rtol=1e-6)
    print("interpreted ok")
""")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed (CPU builds of torch)")
def test_kernels_in_tritons_cpu_interpreter_match_float64():
    # the same kernels the GPU runs, executed by Triton's interpreter on CPU tensors (float32,
    # strided rows, the eps branch): norm-wise relative error below 1e-6 forward and backward
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", _INTERPRETED], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "interpreted ok" in done.stdout
