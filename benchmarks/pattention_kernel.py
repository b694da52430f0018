"""Time TokenFormer's Pattention normalisation kernels on one GPU (docs/benchmarks.md, round three (h2)).

For each row length of tokenformer-240m (768, 2088, 3072 slots; 32768 rows = one 4096 x 8
micro-batch) and two layouts (contiguous rows; rows padded to 128 bytes as Inductor lays out a
matrix product's output), times forward and backward of

* ``kernel``: the kernels of ``growlm.models.pattention_norm`` at their fixed launch shape,
  and at every other warp count (``--warps``), to check the fixed choice;
* ``legacy``: an earlier version of the same module (``--legacy FILE``, its op namespace
  renamed by the caller), which copies non-contiguous rows first;
* ``compiled``: ``torch.compile`` of the torch expression (the path with the kernel off).

Each figure is the median of ``triton.testing.do_bench``; ``GB/s`` counts the bytes each
kernel must move (forward: read S, write W; backward: read S and dW, write dS; 2 bytes an
element in bf16). The per-step totals weight each row length by its count in
tokenformer-240m (12 layers x (3 x 2088 + 768 + 3072)). Errors are float32 inputs against the
float64 torch reference (norm-wise relative). Writes one JSON file.

    python3 benchmarks/pattention_kernel.py --out pattention-kernel.json [--legacy FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from growlm.models import pattention_norm as pn

LAYER_SLOTS = {768: 1, 2088: 3, 3072: 1}  # tokenformer-240m: proj, q/k/v, ffn per layer
LAYERS = 12


def padded_stride(n: int, dtype: torch.dtype) -> int:
    """The row stride Inductor gives a product's output: 128-byte rows from 1024 elements on
    (3072 bf16 slots are already a multiple of 128 bytes: no padding)."""
    step = 128 // torch.tensor([], dtype=dtype).element_size()
    return -(-n // step) * step if n >= 1024 else n


def padded(rows: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows of ``n`` laid out with ``padded_stride``."""
    return (torch.randn(rows, padded_stride(n, dtype), device="cuda", dtype=dtype) * 3)[:, :n]  # a view


def timed(fn: Callable[[], Any]) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=10, rep=60, return_mode="median"))


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want).norm() / want.norm())


def kernel_calls(s: torch.Tensor, g: torch.Tensor, warps: int | None) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """Forward and backward launches of the module's kernels, at their launch shape or ``warps``."""
    n, rows = s.shape[-1], s.shape[0]
    w = torch.empty(s.shape, device=s.device, dtype=s.dtype)
    out = torch.empty_like(w)
    norm = torch.empty(rows, device=s.device, dtype=torch.float32)
    shape = pn.launch_shape(n, s.stride(0), g.stride(0))
    meta = dict(HEAD=shape.head, TAIL=shape.tail, ALIGN=shape.align, num_warps=warps or shape.warps)
    scale = n**0.5

    def forward() -> None:
        pn._forward_kernel[(rows,)](s, w, norm, n, s.stride(0), scale, pn.EPS, **meta)

    def backward() -> None:
        pn._backward_kernel[(rows,)](g, s, norm, out, n, g.stride(0), s.stride(0), scale, pn.EPS, **meta)

    forward()
    return forward, backward


def measure(n: int, rows: int, layout: str, legacy: Any, warp_sweep: list[int]) -> dict[str, Any]:
    make = padded if layout == "padded" else lambda r, c, d: torch.randn(r, c, device="cuda", dtype=d) * 3
    s, g = make(rows, n, torch.bfloat16), make(rows, n, torch.bfloat16)
    assert layout == "contiguous" or s.stride(0) == padded_stride(n, torch.bfloat16), "padded rows stay a view"
    scale = n**0.5
    fwd_bytes, bwd_bytes = 4 * rows * n, 6 * rows * n
    result: dict[str, Any] = {"slots": n, "rows": rows, "layout": layout, "row_stride": s.stride(0),
                              "launch_shape": pn.launch_shape(n, s.stride(0), g.stride(0))._asdict()}

    def record(name: str, fwd_ms: float, bwd_ms: float) -> None:
        result[name] = {"forward_ms": fwd_ms, "backward_ms": bwd_ms, "forward_GBps": fwd_bytes / fwd_ms / 1e6,
                        "backward_GBps": bwd_bytes / bwd_ms / 1e6}
        print(f"  {n:5d} {layout:10s} {name:12s} fwd {fwd_ms * 1e3:7.1f} us ({fwd_bytes / fwd_ms / 1e6:6.0f} GB/s)  "
              f"bwd {bwd_ms * 1e3:7.1f} us ({bwd_bytes / bwd_ms / 1e6:6.0f} GB/s)", flush=True)

    forward, backward = kernel_calls(s, g, None)
    record("kernel", timed(forward), timed(backward))
    for warps in warp_sweep:
        if warps != result["launch_shape"]["warps"]:
            forward, backward = kernel_calls(s, g, warps)
            record(f"warps{warps}", timed(forward), timed(backward))
    if legacy is not None:  # its op copies strided rows to contiguous first, as Inductor did before
        w_old, inv_old = torch.ops.growlm_legacy.l2_norm_gelu(s, scale)
        record("legacy", timed(lambda: torch.ops.growlm_legacy.l2_norm_gelu(s, scale)),
               timed(lambda: torch.ops.growlm_legacy.l2_norm_gelu_backward(g, s, inv_old, scale)))
    leaf = s.detach().clone().requires_grad_()
    compiled = torch.compile(lambda x: pn.reference(x, scale))
    torch.autograd.grad(compiled(leaf), leaf, g)  # compiles forward and backward before any timing
    forward_ms = timed(lambda: compiled(leaf))
    record("compiled", forward_ms, timed(lambda: torch.autograd.grad(compiled(leaf), leaf, g)) - forward_ms)
    # float32 errors of the module's op against float64 (forward and gradient), padded rows included
    s32 = s[:2048].float()
    g32 = g[:2048].float()
    w32, norm32 = torch.ops.growlm.l2_norm_gelu(s32, scale)
    s64 = s32.double().requires_grad_()
    w64 = pn.reference(s64, scale)
    (grad64,) = torch.autograd.grad(w64, s64, g32.double())
    grad32 = torch.ops.growlm.l2_norm_gelu_backward(g32, s32, norm32, scale)
    result["float32_error"] = {"forward": relative_error(w32, w64), "backward": relative_error(grad32, grad64)}
    w16, _ = torch.ops.growlm.l2_norm_gelu(s, scale)
    result["bf16_error"] = {"forward": relative_error(w16[:2048], pn.reference(s[:2048].double(), scale))}
    if legacy is not None:
        result["legacy_equal_forward"] = bool(torch.equal(w_old, w16))
    return result


def load_legacy(path: str | None) -> Any:
    if not path:
        return None
    spec = importlib.util.spec_from_file_location("legacy_pattention_norm", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, default=32768)
    parser.add_argument("--slots", default="768,2088,3072")
    parser.add_argument("--warps", default="1,2,4,8,16", help="warp counts tried beside the fixed launch shape")
    parser.add_argument("--legacy", help="an earlier pattention_norm.py whose ops are renamed growlm_legacy::")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() or pn.triton is None:
        print("needs a CUDA GPU with Triton", file=sys.stderr)
        return 2
    legacy = load_legacy(args.legacy)
    warp_sweep = [int(w) for w in args.warps.split(",") if w]
    runs = [measure(int(n), args.rows, layout, legacy, warp_sweep)
            for n in args.slots.split(",") for layout in ("contiguous", "padded")]
    per_step: dict[str, dict[str, float]] = {}
    for name in ("kernel", "legacy", "compiled"):
        for layout in ("contiguous", "padded"):
            picked = [r for r in runs if r["layout"] == layout and name in r and r["slots"] in LAYER_SLOTS]
            if len(picked) == len(LAYER_SLOTS):
                per_step[f"{name}/{layout}"] = {
                    part: LAYERS * sum(LAYER_SLOTS[r["slots"]] * r[name][f"{part}_ms"] for r in picked)
                    for part in ("forward", "backward")}
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "runs": runs,
              "tokenformer_240m_ms_per_step": per_step}
    Path(args.out).write_text(json.dumps(report, indent=2))
    for key, value in per_step.items():
        print(f"tokenformer-240m per step, {key}: forward {value['forward']:.1f} ms, backward {value['backward']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
