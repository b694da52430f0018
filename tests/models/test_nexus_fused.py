"""The fused Nexus-Rank path computes what the three maps compute one by one, in forward and
backward, and steps aside whenever it could not (LoRA, hooks, switched off)."""

import copy

import pytest
import torch

import growlm.models.nexus as nexus
from growlm.errors import ConfigError
from growlm.models import apply_runtime
from growlm.models.nexus import NexusAttention, NexusRank, can_fuse, set_nexus_fusion
from growlm.runtime import RuntimeOptions
from tests.conftest import make_model, small_config


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm() / b.norm().clamp_min(1e-30)).detach())


def _attention(config) -> NexusAttention:
    def projection(i, o, role):
        return torch.nn.Linear(i, o, bias=False) if role == "o" else NexusRank(i, o, config)

    return NexusAttention(config, 0, projection)


def _qkv_and_grads(att: NexusAttention, x: torch.Tensor, upstream: list[torch.Tensor] | None):
    att.zero_grad(set_to_none=True)
    x.grad = None
    outs = att.project_qkv(x)
    upstream = upstream or [torch.randn_like(o) for o in outs]
    sum((o * g).sum() for o, g in zip(outs, upstream, strict=True)).backward()
    grads = {n: p.grad.clone() for n, p in att.named_parameters() if p.grad is not None}
    return outs, grads, x.grad.clone(), upstream


@pytest.mark.parametrize("pad", [1, 8, 64])
@pytest.mark.parametrize("norm", ["none", "l2"])
@pytest.mark.parametrize("seed", [0, 1, 3])  # seed 1: GQA (K, V narrower than Q), seed 3: no GQA
def test_fused_equals_unfused_fp32_forward_and_backward(seed, norm, pad):
    config = small_config("nexus", seed, nexus_norm=norm)
    torch.manual_seed(seed)
    att = _attention(config)
    att.pad = pad
    x = torch.randn(3, 11, config.hidden_size, requires_grad=True)
    att.fused = True
    fused_out, fused_grads, fused_dx, upstream = _qkv_and_grads(att, x, None)
    att.fused = False
    plain_out, plain_grads, plain_dx, _ = _qkv_and_grads(att, x, upstream)
    assert [o.shape for o in fused_out] == [o.shape for o in plain_out]
    assert all(_relative(f, p) <= 1e-6 for f, p in zip(fused_out, plain_out, strict=True))
    # every parameter of the nine linears gets its gradient, and the same one
    assert sorted(fused_grads) == sorted(plain_grads) and len(plain_grads) == 9
    assert all(_relative(fused_grads[n], plain_grads[n]) <= 1e-6 for n in plain_grads)
    assert _relative(fused_dx, plain_dx) <= 1e-6


@pytest.mark.parametrize("seed", [1, 2])
def test_whole_model_fused_equals_unfused_in_float64(seed):
    """Through every layer, the loss and all parameter gradients agree to float64 rounding."""
    fused = make_model(small_config("nexus", seed), perturb=0.05).double().train()
    plain = copy.deepcopy(fused)
    assert set_nexus_fusion(fused, True, 8) == fused.config.num_hidden_layers
    set_nexus_fusion(plain, False)
    ids = torch.randint(0, 512, (2, 9))
    losses = []
    for model in (fused, plain):
        loss = model(ids, labels=ids).loss
        loss.backward()
        losses.append(loss.detach())
    assert abs(float(losses[0] - losses[1])) <= 1e-12
    for (name, p), (_, q) in zip(fused.named_parameters(), plain.named_parameters(), strict=True):
        assert _relative(p.grad, q.grad) <= 1e-10, name


def test_fused_path_is_taken_and_names_are_unchanged(monkeypatch):
    model = make_model(small_config("nexus", 0))
    calls = []
    real = nexus.fused_nexus_qkv
    monkeypatch.setattr(nexus, "fused_nexus_qkv", lambda *a: calls.append(1) or real(*a))
    set_nexus_fusion(model, True)
    model(torch.randint(0, 512, (1, 5)))
    assert len(calls) == model.config.num_hidden_layers
    set_nexus_fusion(model, None)  # auto: fused on CUDA only; this is a CPU tensor
    model(torch.randint(0, 512, (1, 5)))
    assert len(calls) == model.config.num_hidden_layers
    names = [n for n in model.state_dict() if ".layers.0.self_attn." in n]
    assert names == [f"model.layers.0.self_attn.{p}_proj.{s}_proj.weight" for p in "qkv" for s in "mad"] + [
        "model.layers.0.self_attn.o_proj.weight"]


def test_hooks_make_the_unfused_path_run():
    """A forward hook on an inner linear must see its call: fusion would bypass it."""
    model = make_model(small_config("nexus", 0))
    set_nexus_fusion(model, True)
    seen = []
    model.model.layers[0].self_attn.k_proj.a_proj.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.randint(0, 512, (2, 5)))
    assert seen == [torch.Size([2, 5, model.config.nexus_a])]


def test_lora_wrapped_maps_are_not_fused():
    """peft's LoRA layers forward ``.weight`` to the base weight; fusing would drop the adapter."""
    from growlm.training.trainable import apply_lora, check_lora_spec

    model = make_model(small_config("nexus", 0))
    att = model.model.layers[0].self_attn
    assert can_fuse((att.q_proj, att.k_proj, att.v_proj))
    wrapped = apply_lora(model, check_lora_spec({"target_modules": ["a_proj"], "r": 2}))
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    att = next(m for m in wrapped.modules() if isinstance(m, NexusAttention))
    assert not can_fuse((att.q_proj, att.k_proj, att.v_proj))
    ids = torch.randint(0, 512, (2, 6))
    set_nexus_fusion(wrapped, True)
    with torch.no_grad():
        on = wrapped(input_ids=ids).logits
        set_nexus_fusion(wrapped, False)
        assert torch.equal(on, wrapped(input_ids=ids).logits)


def test_environment_switch(monkeypatch):
    """The variables still switch the path -- read by an entry point's ``RuntimeOptions.from_env``
    and applied to the model, never by the module itself."""
    config = small_config("nexus", 0)
    monkeypatch.setenv("GROWLM_NEXUS_FUSED", "0")
    monkeypatch.setenv("GROWLM_NEXUS_PAD", "64")
    att = _attention(config)
    assert att.fused is None and att.pad == 8  # building a module reads no environment
    assert apply_runtime(att, RuntimeOptions.from_env()) == 1
    assert att.fused is False and att.pad == 64
    monkeypatch.setenv("GROWLM_NEXUS_FUSED", "maybe")
    with pytest.raises(ConfigError, match="GROWLM_NEXUS_FUSED must be one of auto, 1, 0"):
        RuntimeOptions.from_env()
    monkeypatch.setenv("GROWLM_NEXUS_FUSED", "1")
    monkeypatch.setenv("GROWLM_NEXUS_PAD", "0")
    with pytest.raises(ConfigError, match="GROWLM_NEXUS_PAD must be a positive integer"):
        RuntimeOptions.from_env()
