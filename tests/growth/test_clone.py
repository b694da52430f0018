"""Width cloning (--init clone): lossless for every field and architecture it supports, copies that
train, noise that grows with F, and carried moments equal to what the grown model's gradients are."""

import pytest
import torch

from growlm.errors import GrowthError
from growlm.growth import grow_model, parse_init
from growlm.growth.clone import clone_map, head_clone_maps
from growlm.growth.grow import carry_moments, verify_growth
from tests.conftest import make_model, small_config

SLOTS = {"qkv_slots": 24, "proj_slots": 16, "ffn_slots": 32}


def _model(arch, seed=3, **overrides):
    config = small_config(arch, seed, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                          **(SLOTS if arch == "tokenformer" else {}), **overrides)
    return make_model(config, seed, perturb=0.02)


def _requests(arch, c):
    """Every field clone supports on ``arch`` at once: by x2 (and KV x2), and by non-integer ratios."""
    double = {"hidden_size": 128, "num_attention_heads": 8, "num_key_value_heads": 4}
    odd = {"hidden_size": 96, "num_attention_heads": 12}  # 64 -> 96; 4 -> 12 query heads on 2 kv heads
    if arch != "tokenformer":
        double["intermediate_size"] = 2 * c.intermediate_size
        odd["intermediate_size"] = c.intermediate_size * 3 // 2
    if arch == "nexus":
        double.update(nexus_m=2 * c.nexus_m, nexus_a=2 * c.nexus_a)
        odd.update(nexus_m=c.nexus_m + 5, nexus_a=c.nexus_a + 7)
    if arch == "tokenformer":  # slots grow by integer factors only
        double.update(qkv_slots=48, proj_slots=32, ffn_slots=64)
        odd.update(qkv_slots=72, ffn_slots=96)
    return {"x2": double, "non-integer": odd}


CASES = [(arch, tied, name) for arch in ("nexus", "qwen3", "llama", "tokenformer")
         for tied, name in ((False, "x2"), (True, "non-integer"), (True, "x2") if arch == "qwen3" else
                            (False, "non-integer"))]


def _grads(model, ids):
    model = model.float().train()
    model.zero_grad()
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(("arch", "tied", "name"), CASES)
def test_clone_is_lossless_trains_and_carries_moments(arch, tied, name):
    model = _model(arch, tie_word_embeddings=tied)
    request = _requests(arch, model.config)[name]
    result = grow_model(model, request, parse_init("clone"))
    check = verify_growth(model, result)
    assert check.logits.max_rel_diff <= 1e-5, check.logits
    assert check.passed and check.gradients.every_block_got_gradient
    assert result.blocks and all(b.init == "clone" for b in result.blocks)
    # moments: with the old gradient as m (and its square as v), the carried moments are the grown
    # model's gradient (and its square) at the same batch: the gradient factors of clone.py are exact
    ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    before = _grads(model, ids)
    old = {n: {"step": torch.tensor(7.0), "exp_avg": g, "exp_avg_sq": g * g} for n, g in before.items()}
    carried = carry_moments(old, result)
    after = _grads(result.model, ids)
    assert set(carried) == set(after)
    for n, g in after.items():
        scale = float(g.abs().max()) + 1e-12
        assert float((carried[n]["exp_avg"] - g).abs().max()) <= 1e-4 * scale, n
        assert float((carried[n]["exp_avg_sq"] - g * g).abs().max()) <= 1e-4 * scale**2, n
        assert float(carried[n]["step"]) == 7.0


def test_copies_are_copies():
    model = _model("llama", tie_word_embeddings=False)
    up = model.get_parameter("model.layers.0.mlp.up_proj.weight").detach()
    down = model.get_parameter("model.layers.0.mlp.down_proj.weight").detach()
    f = up.shape[0]
    grown = grow_model(model, {"intermediate_size": 2 * f}, parse_init("clone")).model
    up2 = grown.get_parameter("model.layers.0.mlp.up_proj.weight").detach()
    down2 = grown.get_parameter("model.layers.0.mlp.down_proj.weight").detach()
    assert torch.equal(up2[:f], up) and torch.equal(up2[f:], up)
    assert torch.allclose(down2[:, :f], down / 2) and torch.allclose(down2[:, :f] + down2[:, f:], down)


def test_clone_maps():
    m = clone_map(4, 6)
    assert m.src.tolist() == [0, 1, 2, 3, 0, 1] and m.read.tolist() == [0.5, 0.5, 1, 1, 0.5, 0.5]
    rms = clone_map(64, 96, norm_preserving=True)
    per_old = torch.zeros(64, dtype=torch.double).index_add_(0, rms.src, rms.value**2)
    assert torch.allclose(per_old, torch.full((64,), 1.5, dtype=torch.double))  # sum of value^2 = D'/D
    assert torch.allclose(torch.zeros(64, dtype=torch.double).index_add_(0, rms.src, rms.value * rms.read),
                          torch.ones(64, dtype=torch.double))
    q, kv = head_clone_maps(4, 2, 8, 4)  # g = 2 before and after: kv heads 2, 3 copy 0, 1
    assert kv.src.tolist() == [0, 1, 0, 1]
    # query head h reads kv head h // 2 (new) and copies a head of old group kv.src[h // 2]
    assert all(int(q.src[h]) // 2 == int(kv.src[h // 2]) for h in range(8))
    assert q.old_at.tolist() == [0, 1, 2, 3]
    q, _ = head_clone_maps(4, 2, 8, 2)  # g 2 -> 4: old heads at (h // 2) * 4 + h % 2
    assert q.old_at.tolist() == [0, 1, 4, 5] and all(int(q.src[h]) // 2 == h // 4 for h in range(8))


@pytest.mark.parametrize("arch", ["qwen3", "nexus"])
def test_noise_breaks_symmetry_by_an_amount_that_grows_with_f(arch):
    model = _model(arch)
    request = {"hidden_size": 96, "intermediate_size": 2 * model.config.intermediate_size}
    deviation = []
    for scheme in ("clone", "clone:0.01", "clone:0.1"):
        result = grow_model(model, request, parse_init(scheme), seed=1)
        check = verify_growth(model, result)
        assert check.passed
        deviation.append(check.logits.max_rel_diff)
    assert deviation[0] <= 1e-5 < deviation[1] < deviation[2] < 0.5, deviation
    assert str(parse_init("clone:0.1")) == "clone:0.1" and not parse_init("clone:0.1").lossless
    assert parse_init("clone").lossless


def test_clone_refusals():
    model = _model("llama")
    with pytest.raises(GrowthError, match=r"width fields only; num_hidden_layers takes .*stack"):
        grow_model(model, {"num_hidden_layers": 4, "hidden_size": 96}, parse_init("clone"))
    with pytest.raises(GrowthError, match="fewer than the current"):
        grow_model(model, {"num_key_value_heads": 4}, parse_init("clone"))
    l2 = make_model(small_config("nexus", 2, nexus_norm="l2"))
    with pytest.raises(GrowthError, match="nexus_norm=l2"):
        grow_model(l2, {"nexus_a": 2 * l2.config.nexus_a}, parse_init("clone"))
    tf = _model("tokenformer")
    with pytest.raises(GrowthError, match="qkv_slots only by an integer factor"):
        grow_model(tf, {"qkv_slots": 30}, parse_init("clone"))
    with pytest.raises(GrowthError, match="positive fraction"):
        parse_init("clone:-1")
    with pytest.raises(GrowthError, match=r"valid: .*stack, clone, clone:FRACTION"):
        parse_init("bogus")


def test_softmax_pattention_clones_exactly():
    tf = make_model(small_config("tokenformer", 6, pattention_norm="softmax", **SLOTS), perturb=0.02)
    result = grow_model(tf, {"ffn_slots": 96, "qkv_slots": 48}, parse_init("clone"))
    assert verify_growth(tf, result).logits.max_rel_diff <= 1e-5
    assert result.new_config.ffn_scale == pytest.approx(32**0.5 * 3**0.5)
