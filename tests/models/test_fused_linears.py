"""Sibling linears run as one product (Q/K/V, SwiGLU gate/up) compute what the modules compute."""

import copy

import pytest
import torch

from growlm.errors import ConfigError
from growlm.models.base import apply_runtime, set_linear_fusion
from growlm.models.layers import SwiGLU, fused_linears, use_fused
from growlm.runtime import RuntimeOptions
from tests.conftest import assert_same_loss_and_gradients, make_model, small_config


def _relative(a, b):
    return float(((a - b).norm() / b.norm().clamp_min(1e-30)).detach())


def test_swiglu_fused_equals_unfused_fp32_forward_and_backward():
    torch.manual_seed(0)
    block = SwiGLU(48, 96)
    x = torch.randn(3, 7, 48, requires_grad=True)
    upstream = torch.randn(3, 7, 48)
    results = []
    for fused in (True, False):
        block.fused = fused
        block.zero_grad(set_to_none=True)
        x.grad = None
        y = block(x)
        (y * upstream).sum().backward()
        results.append((y.detach(), {n: p.grad.clone() for n, p in block.named_parameters()}, x.grad.clone()))
    (fy, fg, fx), (uy, ug, ux) = results
    assert _relative(fy, uy) <= 1e-6 and _relative(fx, ux) <= 1e-6
    assert sorted(fg) == sorted(ug) and all(_relative(fg[n], ug[n]) <= 1e-6 for n in ug)


@pytest.mark.parametrize(("arch", "seed"), [("qwen3", 1), ("qwen3", 3), ("llama", 2), ("nexus", 0)])
def test_whole_model_with_fused_linears_equals_unfused_in_float64(arch, seed):
    """Qwen3 and Llama (GQA in some seeds: Q wider than K, V) and Nexusformer's SwiGLU."""
    fused = make_model(small_config(arch, seed), perturb=0.05).double().train()
    plain = copy.deepcopy(fused)
    assert set_linear_fusion(fused, True) == 2 * fused.config.num_hidden_layers
    set_linear_fusion(plain, False)
    assert_same_loss_and_gradients(fused, plain)


def test_fused_only_for_plain_linears_on_the_chosen_device():
    block = SwiGLU(8, 16)
    x = torch.randn(2, 8)
    pair = (block.gate_proj, block.up_proj)
    assert not use_fused(None, x, pair)  # auto: CUDA only
    assert use_fused(True, x, pair) and not use_fused(False, x, pair)
    handle = block.up_proj.register_forward_hook(lambda m, i, o: None)
    assert not use_fused(True, x, pair)
    handle.remove()
    assert [t.shape for t in fused_linears(x, pair)] == [torch.Size([2, 16])] * 2


def test_lora_on_q_proj_is_not_fused_away():
    from growlm.training.trainable import apply_lora

    model = make_model(small_config("qwen3", 0))
    wrapped = apply_lora(model, {"target_modules": ["q_proj", "up_proj"], "r": 2})
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    ids = torch.randint(0, 512, (2, 6))
    with torch.no_grad():
        set_linear_fusion(wrapped, True)
        on = wrapped(input_ids=ids).logits
        set_linear_fusion(wrapped, False)
        assert torch.equal(on, wrapped(input_ids=ids).logits)


def test_environment_switch(monkeypatch):
    monkeypatch.setenv("GROWLM_FUSE_LINEARS", "0")
    block = SwiGLU(4, 8)
    assert block.fused is None  # building a module reads no environment: an entry point does
    apply_runtime(block, RuntimeOptions.from_env())
    assert block.fused is False
    monkeypatch.setenv("GROWLM_FUSE_LINEARS", "yes")
    with pytest.raises(ConfigError, match="GROWLM_FUSE_LINEARS must be one of auto, 1, 0"):
        RuntimeOptions.from_env()
