"""TokenFormer's fused Pattention normalisation: the closed-form gradient and, on a GPU, the kernel."""

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
def test_kernel_op_passes_opcheck_and_compiles():
    s = _scores(64, 2088, torch.bfloat16, "cuda").requires_grad_()
    torch.library.opcheck(torch.ops.growlm.l2_norm_gelu, (s, 45.7))
    compiled = torch.compile(lambda x: pn.l2_norm_gelu(x, 45.7).sum())
    compiled(s).backward()
    eager = s.detach().clone().requires_grad_()
    pn.l2_norm_gelu(eager, 45.7).sum().backward()
    torch.testing.assert_close(s.grad, eager.grad)
