"""Every architecture x growth operator: the grown model loads with transformers, computes the
same function, and every new block trains within two optimizer steps."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from growlm.errors import GrowthError
from growlm.growth import grow_model, parse_init
from growlm.growth.attention_heads import head_positions
from growlm.growth.base import take
from growlm.growth.depth import new_layer_positions
from growlm.growth.grow import carry_moments, growable_fields, verify_growth
from tests.conftest import make_model, small_config

SLOTS = {"qkv_slots": 24, "proj_slots": 16, "ffn_slots": 32}


def _request(arch, c, op):
    if op == "depth":
        return {"num_hidden_layers": c.num_hidden_layers + 2}, {"layers_at": "interleave"}
    if op == "hidden_size":
        return {"hidden_size": c.hidden_size + 16}, {}
    if op == "heads":
        return {"num_attention_heads": c.num_attention_heads * 2}, {}
    if op == "heads_and_kv":
        return {"num_attention_heads": c.num_attention_heads * 2, "num_key_value_heads": c.num_key_value_heads * 2}, {}
    if op == "ffn_width":
        return {"intermediate_size": c.intermediate_size + 24}, {}
    if op == "nexus_rank":
        return {"nexus_m": c.nexus_m + 8, "nexus_a": c.nexus_a + 8}, {}
    if op == "tokenformer_slots":
        return {"qkv_slots": c.qkv_slots + 8, "proj_slots": c.proj_slots + 4, "ffn_slots": c.ffn_slots + 8}, {}
    assert op == "everything"
    request = {"num_hidden_layers": c.num_hidden_layers + 1, "hidden_size": c.hidden_size + 16,
               "num_attention_heads": c.num_attention_heads * 2}
    if arch == "nexus":
        request.update(nexus_m=c.nexus_m + 8, nexus_a=c.nexus_a + 8)
    if arch == "tokenformer":
        request.update(qkv_slots=c.qkv_slots + 8)
    else:
        request["intermediate_size"] = c.intermediate_size + 8
    return request, {"layers_at": "start"}


COMMON = ["heads", "heads_and_kv", "hidden_size", "depth", "everything"]
CASES = ([("nexus", op) for op in ["nexus_rank", "ffn_width", *COMMON]]
         + [(a, op) for a in ("qwen3", "llama") for op in ["ffn_width", *COMMON]]
         + [("tokenformer", op) for op in ["tokenformer_slots", *COMMON]]
         + [("nexus+qk_norm", "everything")])  # the option's per-operator cases: tests/models/test_nexus_qk_norm.py


@pytest.mark.parametrize(("arch", "op"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_grown_checkpoint_loads_preserves_and_trains(arch, op, seed, tmp_path):
    arch, _, option = arch.partition("+")  # "nexus+qk_norm": the architecture with that boolean option on
    config = small_config(arch, seed, **(SLOTS if arch == "tokenformer" else {}), **({option: True} if option else {}))
    model = make_model(config, seed, perturb=0.02)
    request, options = _request(arch, config, op)
    result = grow_model(model, request, parse_init("preserve"), seed, options)
    result.model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    for name, value in request.items():
        assert getattr(loaded.config, name) == value
    ids = torch.randint(0, config.vocab_size, (2, 24))
    with torch.no_grad():
        before, after = model(ids).logits, loaded(ids).logits
    assert (before - after).abs().max() / before.abs().max() <= 1e-5
    # gradients on the loaded model, at the recorded blocks
    work = loaded.train()
    params = dict(work.named_parameters())
    optimizer = torch.optim.AdamW(work.parameters(), lr=1e-3, weight_decay=0.0)
    reached = [False] * len(result.blocks)
    for _ in range(2):
        optimizer.zero_grad()
        work(input_ids=ids, labels=ids).loss.backward()
        for i, block in enumerate(result.blocks):
            reached[i] |= bool(take(params[block.param].grad, block.index).abs().max() > 0)
        optimizer.step()
    assert result.blocks and all(reached), [b.label for b, r in zip(result.blocks, reached, strict=True) if not r]


@pytest.mark.parametrize("arch", ["nexus", "qwen3", "llama", "tokenformer"])
def test_growable_fields_cover_the_issue(arch):
    fields = set(growable_fields(arch))
    assert {"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads"} <= fields
    assert ("intermediate_size" in fields) == (arch != "tokenformer")
    assert ("qkv_slots" in fields) == (arch == "tokenformer") and ("nexus_m" in fields) == (arch == "nexus")


def test_depth_positions():
    assert new_layer_positions(4, 6) == [4, 5]
    assert new_layer_positions(4, 6, "start") == [0, 1]
    assert new_layer_positions(4, 6, "interleave") == [1, 4]
    assert new_layer_positions(3, 4, "interleave") == [2]
    assert new_layer_positions(4, 6, "0,3") == [0, 3] == new_layer_positions(4, 6, [3, 0])
    with pytest.raises(GrowthError, match="lists 1 position"):
        new_layer_positions(4, 6, [2])
    with pytest.raises(GrowthError, match=r"must be in 0\.\.5"):
        new_layer_positions(4, 6, [1, 6])


def test_depth_moves_old_layers_and_their_moments():
    config = small_config("llama", 3, num_hidden_layers=2)
    model = make_model(config, perturb=0.02)
    result = grow_model(model, {"num_hidden_layers": 4}, parse_init("preserve"), options={"layers_at": [0, 2]})
    assert result.placements["model.layers.1.mlp.up_proj.weight"].source == "model.layers.0.mlp.up_proj.weight"
    assert result.placements["model.layers.3.mlp.up_proj.weight"].source == "model.layers.1.mlp.up_proj.weight"
    assert result.placements["model.layers.0.mlp.up_proj.weight"].source is None
    new_down = result.model.get_parameter("model.layers.2.mlp.down_proj.weight")
    assert (new_down == 0).all()
    neighbour_gain = model.get_parameter("model.layers.0.input_layernorm.weight")
    assert torch.equal(result.model.get_parameter("model.layers.2.input_layernorm.weight"), neighbour_gain)
    old = {n: {"step": torch.tensor(5.0), "exp_avg": torch.full_like(p, 1.0), "exp_avg_sq": torch.full_like(p, 4.0)}
           for n, p in model.named_parameters()}
    carried = carry_moments(old, result)
    assert "model.layers.0.mlp.up_proj.weight" not in carried
    assert torch.equal(carried["model.layers.3.mlp.up_proj.weight"]["exp_avg"],
                       old["model.layers.1.mlp.up_proj.weight"]["exp_avg"])


def test_hidden_size_rescales_moments_with_the_values():
    config = small_config("qwen3", 4, hidden_size=32, tie_word_embeddings=False)
    model = make_model(config, perturb=0.02)
    result = grow_model(model, {"hidden_size": 50}, parse_init("preserve"))
    c = (50 / 32) ** 0.5
    placement = result.placements["model.embed_tokens.weight"]
    assert placement.scale == pytest.approx(c)
    old_embed = model.get_parameter("model.embed_tokens.weight").detach()
    new_embed = result.model.get_parameter("model.embed_tokens.weight").detach()
    assert torch.allclose(new_embed[:, :32], c * old_embed) and (new_embed[:, 32:] == 0).all()
    gain = result.placements["model.norm.weight"]
    assert gain.scale == pytest.approx(1 / c)
    old = {n: {"step": torch.tensor(3.0), "exp_avg": torch.ones_like(p), "exp_avg_sq": torch.ones_like(p)}
           for n, p in model.named_parameters()}
    carried = carry_moments(old, result)["model.embed_tokens.weight"]
    assert torch.allclose(carried["exp_avg"][:, :32], torch.full((512, 32), 1 / c))
    assert torch.allclose(carried["exp_avg_sq"][:, :32], torch.full((512, 32), 1 / c**2))
    assert (carried["exp_avg"][:, 32:] == 0).all()


def test_gqa_head_placement_keeps_groups():
    # 4 query heads on 2 kv heads -> 8 on 2: old head h (group h // 2) goes to group position
    assert head_positions(4, 2, 8, 2).tolist() == [0, 1, 4, 5]
    assert head_positions(4, 2, 8, 4).tolist() == [0, 1, 2, 3]
    with pytest.raises(GrowthError, match="fewer than the current 2"):
        head_positions(4, 2, 4, 4)


def test_heads_refuse_what_cannot_work():
    model = make_model(small_config("qwen3", 5, num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(GrowthError, match="does not divide"):
        grow_model(model, {"num_attention_heads": 6, "num_key_value_heads": 4}, parse_init("preserve"))
    with pytest.raises(GrowthError, match="fewer than the current"):
        grow_model(model, {"num_key_value_heads": 4}, parse_init("preserve"))
    with pytest.raises(GrowthError, match="field 'head_dim' cannot be grown"):
        grow_model(model, {"head_dim": 32}, parse_init("preserve"))
    with pytest.raises(GrowthError, match="unknown growth option 'where'"):
        grow_model(model, {"num_hidden_layers": 9}, parse_init("preserve"), options={"where": "end"})


def test_tokenformer_exact_and_released_slot_growth():
    config = small_config("tokenformer", 6, **SLOTS)
    model = make_model(config, perturb=0.02)
    exact = grow_model(model, {"qkv_slots": 40}, parse_init("preserve"))
    assert exact.new_config.qkv_scale == pytest.approx(24**0.5) and exact.new_config.ffn_scale is None
    keys = exact.model.get_parameter("model.layers.0.self_attn.q_proj.key_tokens").detach()
    values = exact.model.get_parameter("model.layers.0.self_attn.q_proj.value_tokens").detach()
    assert (keys[24:] == 0).all() and (values[24:] != 0).all()
    assert verify_growth(model, exact).logits.max_rel_diff <= 1e-5
    released = grow_model(model, {"qkv_slots": 40}, parse_init("random"))
    assert released.new_config.qkv_scale is None  # follows n, as in the released code
    assert verify_growth(model, released).logits.max_rel_diff > 1e-3
    softmax = make_model(small_config("tokenformer", 6, pattention_norm="softmax", **SLOTS))
    with pytest.raises(GrowthError, match="cannot grow losslessly"):
        grow_model(softmax, {"ffn_slots": 40}, parse_init("preserve"))
    assert verify_growth(softmax, grow_model(softmax, {"ffn_slots": 40}, parse_init("random"))).passed


def test_zero_init_starts_at_zero_everywhere():
    config = small_config("llama", 7)
    model = make_model(config, perturb=0.02)
    result = grow_model(model, {"num_hidden_layers": config.num_hidden_layers + 1, "intermediate_size": 99},
                        parse_init("zero"))
    check = verify_growth(model, result)
    assert check.passed and check.logits.max_rel_diff <= 1e-5
    new_layer = f"model.layers.{config.num_hidden_layers}"
    assert all((p == 0).all() for n, p in result.model.named_parameters() if n.startswith(new_layer))
