"""Nexusformer's ``qk_norm`` option: per-head RMSNorm on Q and K (as Qwen3), off by default, fused ==
unfused with it on, growth exact with it on, counted by the accounting (docs/models.md, "Stability")."""

import copy
import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from growlm.errors import ConfigError
from growlm.growth import grow_model, parse_init
from growlm.growth.grow import verify_growth
from growlm.models.accounting import model_cost
from growlm.models.nexus import set_nexus_fusion
from growlm.models.presets import build_config
from tests.conftest import assert_same_loss_and_gradients, make_model, small_config


def test_default_is_off_and_on_adds_one_gain_per_head_dim():
    off, on = small_config("nexus", 1), small_config("nexus", 1, qk_norm=True)
    assert off.qk_norm is False
    names_off = set(make_model(off).state_dict())
    names_on = set(make_model(on).state_dict())
    added = names_on - names_off
    assert names_off <= names_on
    assert added == {f"model.layers.{i}.self_attn.{n}_norm.weight"
                     for i in range(on.num_hidden_layers) for n in "qk"}
    for i in range(on.num_hidden_layers):
        att = make_model(on).model.layers[i].self_attn
        assert att.q_norm.weight.shape == att.k_norm.weight.shape == (on.head_dim,)


def test_set_override_and_bad_value():
    assert build_config("nexus-tiny", {"qk_norm": True}).qk_norm is True
    with pytest.raises(ConfigError, match="qk_norm must be a bool"):
        build_config("nexus-tiny", {"qk_norm": "maybe"})


def test_scaling_q_and_k_maps_changes_nothing_with_qk_norm_only():
    """With QK-norm the logits see only the direction of each head's q and k: scaling W_D of the
    Q and K maps (the output scale of the Nexus-Rank map) leaves the model unchanged; without
    it the attention logits, and so the output, change. (A tiny RMSNorm epsilon: the default 1e-6
    is not negligible against the mean square of these small maps' outputs; RMSNorm computes in
    float32, hence the float32-sized tolerance.)"""
    ids = torch.randint(0, 512, (2, 12))
    for qk_norm in (True, False):
        model = make_model(small_config("nexus", 2, qk_norm=qk_norm, rms_norm_eps=1e-30), perturb=0.05).double()
        with torch.no_grad():
            before = model(ids).logits
            for layer in model.model.layers:
                layer.self_attn.q_proj.d_proj.weight.mul_(30.0)
                layer.self_attn.k_proj.d_proj.weight.mul_(20.0)
            after = model(ids).logits
        diff = float((before - after).abs().max() / before.abs().max())
        assert (diff <= 1e-6) if qk_norm else (diff > 1e-3), (qk_norm, diff)


def test_checkpoint_without_the_field_loads_as_before(tmp_path):
    """A config.json written before the option existed has no ``qk_norm``: it loads with it off and
    computes what it computed."""
    model = make_model(small_config("nexus", 3), perturb=0.05)
    model.save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    fields = json.loads(path.read_text())
    fields.pop("qk_norm", None)
    path.write_text(json.dumps(fields))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.qk_norm is False
    ids = torch.randint(0, 512, (2, 10))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_round_trip_keeps_the_option(tmp_path):
    model = make_model(small_config("nexus", 4, qk_norm=True), perturb=0.05)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.qk_norm is True
    ids = torch.randint(0, 512, (2, 10))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


@pytest.mark.parametrize("seed", [1, 3])  # seed 1: GQA
def test_fused_equals_unfused_with_qk_norm_in_float64(seed):
    fused = make_model(small_config("nexus", seed, qk_norm=True), perturb=0.05).double().train()
    plain = copy.deepcopy(fused)
    set_nexus_fusion(fused, True, 8)
    set_nexus_fusion(plain, False)
    assert_same_loss_and_gradients(fused, plain)
    assert any("q_norm" in n for n, _ in fused.named_parameters())


def _grow_request(config, op):
    return {
        "nexus_rank": ({"nexus_m": config.nexus_m + 8, "nexus_a": config.nexus_a + 8}, {}),
        "hidden_size": ({"hidden_size": config.hidden_size + 16}, {}),
        "heads": ({"num_attention_heads": config.num_attention_heads * 2}, {}),
        "heads_and_kv": ({"num_attention_heads": config.num_attention_heads * 2,
                          "num_key_value_heads": config.num_key_value_heads * 2}, {}),
        "depth": ({"num_hidden_layers": config.num_hidden_layers + 2}, {"layers_at": "interleave"}),
    }[op]


@pytest.mark.parametrize("norm", ["none", "l2"])
@pytest.mark.parametrize("op", ["nexus_rank", "hidden_size", "heads", "heads_and_kv", "depth"])
def test_growth_stays_exact_and_trains_with_qk_norm(op, norm):
    config = small_config("nexus", 5, qk_norm=True, nexus_norm=norm)
    model = make_model(config, 5, perturb=0.05)
    request, options = _grow_request(config, op)
    result = grow_model(model, request, parse_init("preserve"), 5, options)
    assert result.model.config.qk_norm is True
    check = verify_growth(model, result, 5)
    assert check.logits.max_rel_diff <= 1e-5
    assert check.gradients.every_block_got_gradient, check.gradients.blocks
    # the QK-norm gains of every grown layer are there, with the head width
    for layer in result.model.model.layers:
        assert layer.self_attn.q_norm.weight.shape == (config.head_dim,)


def test_accounting_counts_the_gains_and_no_flops():
    off = build_config("nexus-tiny")
    on = build_config("nexus-tiny", {"qk_norm": True})
    a, b = model_cost(off, 128), model_cost(on, 128)
    assert b.total_params - a.total_params == 2 * on.head_dim * on.num_hidden_layers
    assert b.non_embedding_params - a.non_embedding_params == 2 * on.head_dim * on.num_hidden_layers
    assert b.train_flops_per_token == a.train_flops_per_token  # norms are not matmuls (accounting.py)
