"""Nexus-Rank growth: same function, new blocks that train (or, with zero init, never do)."""

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from growlm.errors import GrowthError
from growlm.growth import grow_model, parse_init
from growlm.growth.grow import carry_moments, verify_growth
from tests.conftest import make_model, small_config


def growlm(*args):
    return subprocess.run([sys.executable, "-m", "growlm.cli.main", *args], capture_output=True, text=True)


def _index(region):
    """growth.json's per-axis runs [[start, stop], ...] as an index grid."""
    axes = [torch.cat([torch.arange(a, b) for a, b in runs]) for runs in region]
    return torch.meshgrid(*axes, indexing="ij")


def _two_adamw_steps(model, blocks, ids):
    """Max |grad| per block at steps 1 and 2, and whether the block is still zero after them."""
    model = model.train()
    params = dict(model.named_parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    seen = {i: [] for i in range(len(blocks))}
    for _ in range(2):
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        for i, (name, region) in enumerate(blocks):
            seen[i].append(params[name].grad[region].abs().max().item())
        optimizer.step()
    still_zero = [bool((params[name].detach()[region] == 0).all()) for name, region in blocks]
    return seen, still_zero


def test_cli_init_grow_then_automodel(tmp_path, capsys):
    """The issue's acceptance test, through the command line and transformers' loader (the first
    grow in a real process; init and the zero grow run the same command in this one)."""
    from growlm.cli.main import main

    a, b, z = tmp_path / "A", tmp_path / "B", tmp_path / "Z"
    assert main(["init", "nexus-tiny", "--out", str(a), "--set", "vocab_size=1000"]) == 0
    result = growlm("grow", str(a), "--out", str(b), "--set", "nexus_m=200", "--set", "nexus_a=240")
    assert result.returncode == 0, result.stderr
    assert AutoConfig.from_pretrained(b).nexus_m == 200 and AutoConfig.from_pretrained(b).nexus_a == 240
    model_a = AutoModelForCausalLM.from_pretrained(a).eval()
    model_b = AutoModelForCausalLM.from_pretrained(b).eval()
    ids = torch.randint(0, 1000, (2, 40))
    with torch.no_grad():
        la, lb = model_a(ids).logits, model_b(ids).logits
    assert (la - lb).abs().max() / la.abs().max() <= 1e-5

    report = json.loads((b / "growth.json").read_text())
    blocks = [(blk["param"], _index(blk["region"])) for blk in report["new_blocks"]]
    labels = {blk["label"] for blk in report["new_blocks"]}
    assert {"W_M new rows (new M units)", "W_A old rows x new columns", "W_A new rows x old columns",
            "W_A new rows x new columns", "W_D new columns (new A units)"} <= labels
    grads, _ = _two_adamw_steps(model_b, blocks, ids)
    assert all(max(g) > 0 for g in grads.values())

    capsys.readouterr()
    assert main(["grow", str(a), "--out", str(z), "--set", "nexus_m=200", "--set", "nexus_a=240", "--init", "zero"]) == 0
    err = capsys.readouterr().err
    assert "no new Nexus-Rank block ever receives gradient" in err
    assert "60 of 60 new blocks received no gradient" in err
    model_z = AutoModelForCausalLM.from_pretrained(z).eval()
    with torch.no_grad():
        assert (model_z(ids).logits - la).abs().max() / la.abs().max() <= 1e-5
    blocks = [(blk["param"], _index(blk["region"])) for blk in json.loads((z / "growth.json").read_text())["new_blocks"]]
    grads, still_zero = _two_adamw_steps(model_z, blocks, ids)
    assert all(max(g) == 0 for g in grads.values()) and all(still_zero)


@pytest.mark.parametrize("norm", ["none", "l2"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("axes", ["both", "m", "a"])
def test_random_configs_preserve_and_train(norm, seed, axes):
    config = small_config("nexus", seed, nexus_norm=norm)
    model = make_model(config, seed, perturb=0.02)
    request = {"both": {"nexus_m": config.nexus_m + 7, "nexus_a": config.nexus_a + 13},
               "m": {"nexus_m": min(config.nexus_a, config.nexus_m + 5)},
               "a": {"nexus_a": config.nexus_a + 9}}[axes]
    if request.get("nexus_m") == config.nexus_m:
        request = {"nexus_a": config.nexus_a + 4, "nexus_m": config.nexus_m + 4}
    result = grow_model(model, request, parse_init("preserve"), seed)
    check = verify_growth(model, result, seed)
    assert check.logits.max_rel_diff <= 1e-5
    assert check.gradients.every_block_got_gradient, check.gradients.blocks
    assert check.passed
    for name, value in request.items():
        assert getattr(result.model.config, name) == value


def test_zero_scheme_blocks_never_move():
    config = small_config("nexus", 7)
    model = make_model(config, perturb=0.02)
    result = grow_model(model, {"nexus_m": config.nexus_m + 8, "nexus_a": config.nexus_a + 8}, parse_init("zero"))
    check = verify_growth(model, result)
    assert check.logits.max_rel_diff <= 1e-5
    assert check.gradients.every_block_still_zero and check.gradients.no_block_moved
    assert not check.gradients.every_block_got_gradient
    assert any("no new Nexus-Rank block ever receives gradient" in w for w in result.warnings)


def test_noise_scheme_perturbs_by_the_fraction():
    config = small_config("nexus", 8)
    model = make_model(config, perturb=0.02)
    small = grow_model(model, {"nexus_a": config.nexus_a + 16}, parse_init("noise:0.1"), seed=1)
    large = grow_model(model, {"nexus_a": config.nexus_a + 16}, parse_init("noise:0.2"), seed=1)
    name = "model.layers.0.self_attn.q_proj.a_proj.weight"
    old = model.get_parameter(name).detach()
    new_rows_small = small.model.get_parameter(name).detach()[config.nexus_a:]
    new_rows_large = large.model.get_parameter(name).detach()[config.nexus_a:]
    assert new_rows_small.std().item() == pytest.approx(0.1 * old.std().item(), rel=0.25)
    assert torch.allclose(new_rows_large, 2 * new_rows_small)
    assert verify_growth(model, small).logits.max_abs_diff > 0


def test_optimizer_moments_are_carried_into_place():
    config = small_config("nexus", 9)
    model = make_model(config)
    result = grow_model(model, {"nexus_m": config.nexus_m + 3, "nexus_a": config.nexus_a + 5}, parse_init("preserve"))
    old = {name: {"step": torch.tensor(17.0), "exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)}
           for name, p in model.named_parameters()}
    carried = carry_moments(old, result)
    assert result.placements["model.layers.0.self_attn.k_proj.a_proj.weight"].source == \
        "model.layers.0.self_attn.k_proj.a_proj.weight"
    name = "model.layers.0.self_attn.k_proj.a_proj.weight"
    a0, m0 = config.nexus_a, config.nexus_m
    grown = carried[name]["exp_avg"]
    assert grown.shape == (a0 + 5, m0 + 3)
    assert torch.equal(grown[:a0, :m0], old[name]["exp_avg"])
    assert (grown[a0:] == 0).all() and (grown[:, m0:] == 0).all()
    assert carried[name]["step"] == 17
    untouched = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(carried[untouched]["exp_avg_sq"], old[untouched]["exp_avg_sq"])


@pytest.mark.parametrize(
    ("request_", "message"),
    [({"nexus_m": 8}, "would shrink nexus_m"),
     ({"nexus_q": 99}, "unknown nexus growth field 'nexus_q'"),
     ({"rope_theta": 999.0}, "field 'rope_theta' cannot be grown for architecture 'nexus'"),
     ({}, "nothing to grow")],
)
def test_impossible_requests_name_the_field(request_, message):
    model = make_model(small_config("nexus", 0, nexus_m=24, nexus_a=30))
    with pytest.raises(GrowthError, match=message):
        grow_model(model, request_, parse_init("preserve"))


def test_bad_init_scheme():
    with pytest.raises(GrowthError, match="unknown --init"):
        parse_init("gaussian")
    with pytest.raises(GrowthError, match="positive fraction"):
        parse_init("noise:-1")
