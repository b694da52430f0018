"""Head-width growth (head_dim d -> k d) with the rotary tables rebuilt: same function, new blocks train,
and the requests that cannot be lossless are refused; attention widened to D for the paper's shapes."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from growlm.errors import GrowthError
from growlm.growth import grow_model, parse_init
from growlm.growth import head_dim as head_dim_module
from growlm.growth.grow import carry_moments, growable_fields, verify_growth
from growlm.models.accounting import model_cost
from growlm.models.presets import build_config
from tests.conftest import make_model, small_config

SLOTS = {"qkv_slots": 24, "proj_slots": 16, "ffn_slots": 32}


def _config(arch, seed, **extra):
    return small_config(arch, seed, **(SLOTS if arch == "tokenformer" else {}), **extra)


def test_rotary_positions_known_answers():
    # rotate-half layout: pair (f, f + d/2) -> (k f, d'/2 + k f)
    assert head_dim_module.rotary_positions(4, 8).tolist() == [0, 2, 4, 6]
    assert head_dim_module.rotary_positions(4, 12).tolist() == [0, 3, 6, 9]
    assert head_dim_module.rotary_positions(8, 16).tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    with pytest.raises(GrowthError, match="not a multiple of the current head_dim=8"):
        head_dim_module.rotary_positions(8, 12)


@pytest.mark.parametrize(("arch", "factor", "seed"), [("nexus", 2, 0), ("nexus", 3, 1), ("nexus+l2", 2, 5),
                                                      ("llama", 2, 2), ("llama", 4, 3), ("tokenformer", 2, 4)])
def test_head_dim_growth_is_lossless_and_trains(arch, factor, seed, tmp_path):
    arch, _, norm = arch.partition("+")  # nexus+l2: the L2-normalised Nexus-Rank variant (W_D is untouched by it)
    config = _config(arch, seed, **({"nexus_norm": norm} if norm else {}))
    model = make_model(config, seed, perturb=0.02)
    result = grow_model(model, {"head_dim": config.head_dim * factor}, parse_init("preserve"), seed)
    result.model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.head_dim == config.head_dim * factor
    attn = loaded.model.layers[0].self_attn
    assert attn.num_heads * attn.head_dim == config.num_attention_heads * config.head_dim * factor
    ids = torch.randint(0, config.vocab_size, (2, 40))  # 40 positions: the rotary phases matter
    with torch.no_grad():
        before, after = model(ids).logits, loaded(ids).logits
    assert (before - after).abs().max() / before.abs().max() <= 1e-5  # fp32: ~1e-7 measured
    check = verify_growth(model, result, seed)
    assert check.passed, [b.block.label for b in check.gradients.blocks if b.first_step_with_gradient is None]
    labels = {b.label for b in result.blocks}
    assert {"q_proj new features of each head", "k_proj new features of each head",
            "v_proj new features of each head", "o_proj inputs from new head features"} <= labels
    assert check.gradients.every_block_moved  # two AdamW steps move every new block


def test_naive_layout_is_not_lossless(monkeypatch):
    """The proof's point, checked: old features kept in the leading positions of the wider head meet
    other rotary frequencies and the function changes; the interleaved layout does not."""
    config = _config("llama", 5, head_dim=16)
    model = make_model(config, 5, perturb=0.02)
    exact = grow_model(model, {"head_dim": 32}, parse_init("preserve"))
    assert verify_growth(model, exact).logits.max_rel_diff <= 1e-5
    monkeypatch.setattr(head_dim_module, "rotary_positions",
                        lambda d0, d1: torch.cat([torch.arange(d0 // 2), torch.arange(d0 // 2) + d1 // 2]))
    naive = grow_model(model, {"head_dim": 32}, parse_init("preserve"))
    assert verify_growth(model, naive).logits.max_rel_diff > 1e-4


def test_query_scale_and_moments():
    config = _config("llama", 6, head_dim=8, num_attention_heads=2, num_key_value_heads=2)
    model = make_model(config, 6, perturb=0.02)
    result = grow_model(model, {"head_dim": 32}, parse_init("preserve"))  # k = 4: sqrt(k) = 2 exactly
    q_old = model.get_parameter("model.layers.0.self_attn.q_proj.weight").detach()
    q_new = result.model.get_parameter("model.layers.0.self_attn.q_proj.weight").detach()
    k_new = result.model.get_parameter("model.layers.0.self_attn.k_proj.weight").detach()
    pos = torch.tensor([0, 4, 8, 12, 16, 20, 24, 28])
    assert torch.equal(q_new[pos], 2 * q_old[:8]) and torch.equal(q_new[32 + pos], 2 * q_old[8:])
    mask = torch.ones(64, dtype=torch.bool)
    mask[torch.cat([pos, 32 + pos])] = False
    assert (k_new[mask] == 0).all() and (q_new[mask] != 0).any()
    assert result.placements["model.layers.0.self_attn.q_proj.weight"].scale == pytest.approx(2.0)
    old = {n: {"step": torch.tensor(3.0), "exp_avg": torch.ones_like(p), "exp_avg_sq": torch.ones_like(p)}
           for n, p in model.named_parameters()}
    carried = carry_moments(old, result)["model.layers.0.self_attn.q_proj.weight"]
    assert torch.equal(carried["exp_avg"][pos], torch.full_like(q_old[:8], 0.5))
    assert (carried["exp_avg"][mask] == 0).all()


def test_head_dim_refuses_what_cannot_work():
    nexus = make_model(_config("nexus", 7, head_dim=16))
    with pytest.raises(GrowthError, match="not a multiple"):
        grow_model(nexus, {"head_dim": 24}, parse_init("preserve"))
    with pytest.raises(GrowthError, match="not defined for head_dim growth"):
        grow_model(nexus, {"head_dim": 32}, parse_init("clone"))
    with pytest.raises(GrowthError, match="QK-norm"):
        grow_model(make_model(_config("nexus", 7, head_dim=16, qk_norm=True)), {"head_dim": 32},
                   parse_init("preserve"))
    assert "head_dim" in growable_fields("nexus") and "head_dim" not in growable_fields("qwen3")


def test_heads_widen_nexus_attention_to_d():
    """Item 5's route to the paper's 440M shape: 12 x 64 heads -> 16 x 64 = D = 1024 together with
    D, M and A, checked on the real preset shapes (counts) and on a small model (function, gradients)."""
    base = build_config("nexus-240m")
    grown = build_config("nexus-240m", {"hidden_size": 1024, "nexus_m": 1540, "nexus_a": 1730,
                                        "num_attention_heads": 16, "num_key_value_heads": 16})
    assert grown.num_attention_heads * grown.head_dim == grown.hidden_size == 1024
    # W_D: A -> 1024 instead of A -> 768 adds 3 x 12 x 1730 x 256 weights, W_O 12 x 256 x 1024
    extra = model_cost(grown).total_params - model_cost(build_config("nexus-440m")).total_params
    assert extra == 3 * 12 * 1730 * 256 + 12 * 256 * 1024
    # by hand: embeddings 2 V D, per layer 3 Nexus maps + W_O + SwiGLU + 2 norm gains, final norm
    per_layer = 3 * (768 * 780 + 780 * 960 + 960 * 768) + 768 * 768 + 3 * 768 * 2048 + 2 * 768
    assert model_cost(base).total_params == 2 * 32000 * 768 + 12 * per_layer + 768 == 187_936_512
    # the same move, scaled down: 3 heads of 16 on D = 48 -> 4 heads of 16 on D = 64
    config = _config("nexus", 8, hidden_size=48, num_attention_heads=3, num_key_value_heads=3, head_dim=16)
    model = make_model(config, 8, perturb=0.02)
    result = grow_model(model, {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
                                "nexus_m": config.nexus_m + 8, "nexus_a": config.nexus_a + 8}, parse_init("preserve"))
    assert result.new_config.num_attention_heads * result.new_config.head_dim == result.new_config.hidden_size
    check = verify_growth(model, result)
    assert check.passed and check.logits.max_rel_diff <= 1e-5


def test_cli_grows_heads_and_head_dim(tmp_path, capsys):
    """``growlm grow --set`` takes both routes (in process: the command line's own entry point)."""
    import json

    from growlm.cli.main import main

    a, b = tmp_path / "A", tmp_path / "B"
    assert main(["init", "nexus-tiny", "--out", str(a), "--set", "vocab_size=1000"]) == 0
    # nexus-tiny: D = 128, 4 heads of 32 -> D = 192 and 6 heads of 64 (attention width 384)
    assert main(["grow", str(a), "--out", str(b), "--set", "hidden_size=192", "--set", "num_attention_heads=6",
                 "--set", "num_key_value_heads=6", "--set", "head_dim=64"]) == 0
    report = json.loads((b / "growth.json").read_text())
    assert report["operators"] == ["attention_heads", "head_dim", "hidden_size"]
    assert report["verification"]["passed"] and report["verification"]["logits"]["max_rel_diff"] <= 1e-5
    capsys.readouterr()
    assert main(["grow", str(a), "--out", str(tmp_path / "C"), "--set", "head_dim=48"]) == 2
    assert "not a multiple of the current head_dim=32" in capsys.readouterr().err


def test_head_dim_with_every_other_operator():
    """head_dim runs after the heads and before hidden size and depth; placements chain through all."""
    config = _config("nexus", 3)
    model = make_model(config, 3, perturb=0.02)
    request = {"head_dim": config.head_dim * 2, "num_attention_heads": config.num_attention_heads * 2,
               "hidden_size": config.hidden_size + 16, "num_hidden_layers": config.num_hidden_layers + 1,
               "nexus_m": config.nexus_m + 8, "nexus_a": config.nexus_a + 8,
               "intermediate_size": config.intermediate_size + 8}
    result = grow_model(model, request, parse_init("preserve"), 3, {"layers_at": "start"})
    assert result.operators == ["nexus_rank", "ffn_width", "attention_heads", "head_dim", "hidden_size", "depth"]
    check = verify_growth(model, result, 3)
    assert check.passed and check.logits.max_rel_diff <= 1e-5
    q = "model.layers.1.self_attn.q_proj.d_proj.weight"  # old layer 0, after a new block at the start
    assert result.placements[q].source == "model.layers.0.self_attn.q_proj.d_proj.weight"
    assert result.placements[q].scale == pytest.approx(2**0.5)  # the query scale; hidden size leaves Q alone


def test_plan_validates_head_widening_before_running():
    from growlm.training.plan import parse_plan, plan_shapes

    base = {"out_dir": "x", "defaults": {"data": ".", "seq_len": 8}}
    stages = [{"model": "nexus-240m"}, {"grow": {"hidden_size": 1024, "nexus_m": 1540, "nexus_a": 1730,
                                                 "num_attention_heads": 16, "num_key_value_heads": 16}}]
    rows = plan_shapes(parse_plan({**base, "stages": stages}))
    assert rows[1]["parameters"] == 370_098_464  # nexus-440m (351,009,056) + W_D and W_O widened to D
    stages[1]["grow"] = {"head_dim": 96}
    with pytest.raises(GrowthError, match="stage stage2: head_dim=96 is not a multiple of the current head_dim=64"):
        plan_shapes(parse_plan({**base, "stages": stages}))
