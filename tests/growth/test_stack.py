"""Depth stacking (--init stack, G_stack): exact block copies, a reported loss jump instead of a failed
verification, moments copied from the source block or started fresh, and plans that stack and clone."""

import json
import subprocess
import sys

import pytest
import torch

from growlm.errors import GrowthError
from growlm.growth import grow_checkpoint, grow_model, parse_init
from growlm.growth.grow import carry_moments, verify_growth
from growlm.growth.stack import stack_sources
from growlm.models import storage
from growlm.training.plan import parse_plan, run_plan
from tests.conftest import make_model, small_config


def _layer(model, i):
    prefix = f"model.layers.{i}."
    return {k[len(prefix):]: v for k, v in model.state_dict().items() if k.startswith(prefix)}


@pytest.mark.parametrize("arch", ["nexus", "qwen3", "llama", "tokenformer"])
def test_stack_copies_blocks_exactly_and_reports_the_loss_jump(arch):
    slots = {"qkv_slots": 24, "proj_slots": 16, "ffn_slots": 32} if arch == "tokenformer" else {}
    model = make_model(small_config(arch, 4, num_hidden_layers=2, **slots), perturb=0.02)
    result = grow_model(model, {"num_hidden_layers": 4}, parse_init("stack"))
    for p in range(4):  # G_stack x2: [0, 1, 0, 1]
        grown, source = _layer(result.model, p), _layer(model, p % 2)
        assert grown.keys() == source.keys() and all(torch.equal(grown[k], source[k]) for k in source)
    assert result.placements["model.layers.3.post_attention_layernorm.weight"].source == \
        "model.layers.1.post_attention_layernorm.weight"
    check = verify_growth(model, result)  # not function-preserving, and that is not a failure
    assert check.passed and check.gradients.every_block_got_gradient
    assert check.logits.max_rel_diff > 1e-4
    loss = check.loss
    assert loss.jump == pytest.approx(loss.after - loss.before) and loss.jump != 0
    assert "loss jump" in check.expectation
    assert all(b.init == "copy" for b in result.blocks) and {b.param.split(".")[2] for b in result.blocks} == {"2", "3"}


def test_stack_positions_and_refusals():
    assert stack_sources(2, 8) == {2: 0, 3: 1, 4: 0, 5: 1, 6: 0, 7: 1}  # x4: four copies of the stack
    assert stack_sources(3, 5, "start") == {0: 0, 1: 1}
    assert stack_sources(4, 6, "interleave") == {1: 0, 4: 1}
    model = make_model(small_config("llama", 5, num_hidden_layers=3), perturb=0.02)
    result = grow_model(model, {"num_hidden_layers": 5}, parse_init("stack"), options={"layers_at": "1,3"})
    order = [0, 0, 1, 1, 2]  # old blocks keep their order; inserted 1 and 3 copy old 0 and old 1
    for p, i in enumerate(order):
        assert torch.equal(_layer(result.model, p)["mlp.up_proj.weight"], _layer(model, i)["mlp.up_proj.weight"])
    with pytest.raises(GrowthError, match=r"depth growth .* only; this request also grows hidden_size; schemes valid "
                                          "for width fields: preserve, zero, noise:FRACTION, random, clone"):
        grow_model(model, {"num_hidden_layers": 6, "hidden_size": 96}, parse_init("stack"))
    with pytest.raises(GrowthError, match="schemes valid for width fields"):
        grow_model(model, {"intermediate_size": 128}, parse_init("stack"))


def test_stacked_blocks_carry_their_source_moments():
    model = make_model(small_config("qwen3", 6, num_hidden_layers=2), perturb=0.02)
    result = grow_model(model, {"num_hidden_layers": 4}, parse_init("stack"))
    old = {n: {"step": torch.tensor(9.0), "exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)}
           for n, p in model.named_parameters()}
    carried = carry_moments(old, result)
    for p in range(4):
        for key in ("exp_avg", "exp_avg_sq"):
            name = f"model.layers.{p}.self_attn.q_proj.weight"
            assert torch.equal(carried[name][key], old[f"model.layers.{p % 2}.self_attn.q_proj.weight"][key])


def _fake_checkpoint(model, folder):
    """A model folder with AdamW state (step 9) and trainer state, as a training checkpoint has."""
    storage.save_model(model, folder)
    names = storage.parameter_order(model)
    params = dict(model.named_parameters())
    state = {i: {"step": torch.tensor(9.0), "exp_avg": torch.full_like(params[n], 0.5),
                 "exp_avg_sq": torch.full_like(params[n], 0.25)} for i, n in enumerate(names)}
    torch.save({"state": state, "param_groups": [{"lr": 1e-3, "params": list(range(len(names)))}]},
               folder / storage.OPTIMIZER)
    (folder / storage.TRAINER_STATE).write_text(json.dumps({"param_names": names, "data_position": 0}))
    storage.write_manifest(folder)


def test_checkpoint_moments_fresh_vs_carry_and_a_stale_tmp_folder(tmp_path):
    model = make_model(small_config("llama", 7, num_hidden_layers=2, hidden_size=32, intermediate_size=40),
                       perturb=0.02)
    _fake_checkpoint(model, tmp_path / "src")
    # a crashed earlier attempt left a file in OUT.tmp: it must not end up in the grown folder
    (tmp_path / "carry.tmp").mkdir()
    (tmp_path / "carry.tmp" / "stale.bin").write_text("left by a crash")
    report = grow_checkpoint(tmp_path / "src", tmp_path / "carry", {"intermediate_size": 80}, parse_init("clone"))
    assert not (tmp_path / "carry" / "stale.bin").exists() and not (tmp_path / "carry.tmp").exists()
    assert report.moments == "carry" and "copied with their units" in report.optimizer_state
    grown_names = json.loads((tmp_path / "carry" / storage.TRAINER_STATE).read_text())["param_names"]
    saved = torch.load(tmp_path / "carry" / storage.OPTIMIZER, weights_only=False)["state"]
    up = saved[grown_names.index("model.layers.0.mlp.up_proj.weight")]
    down = saved[grown_names.index("model.layers.0.mlp.down_proj.weight")]
    assert float(up["step"]) == 9.0
    assert torch.allclose(up["exp_avg"], torch.full_like(up["exp_avg"], 0.25))  # produce axis, 2 copies: m / 2
    assert torch.allclose(up["exp_avg_sq"], torch.full_like(up["exp_avg"], 0.25 / 4))
    assert torch.allclose(down["exp_avg"], torch.full_like(down["exp_avg"], 0.5))  # read axis: m

    report = grow_checkpoint(tmp_path / "src", tmp_path / "fresh", {"intermediate_size": 80}, parse_init("clone"), moments="fresh")
    assert report.moments == "fresh" and report.optimizer_state.startswith("fresh")
    assert torch.load(tmp_path / "fresh" / storage.OPTIMIZER, weights_only=False)["state"] == {}
    with pytest.raises(GrowthError, match="unknown moments 'warm'; valid: carry, fresh"):
        grow_checkpoint(tmp_path / "src", tmp_path / "x", {"intermediate_size": 80}, parse_init("clone"),
                        moments="warm")

    cli = subprocess.run([sys.executable, "-m", "growlm.cli.main", "grow", str(tmp_path / "src"), "--out",
                          str(tmp_path / "stacked"), "--set", "num_hidden_layers=4", "--init", "stack",
                          "--moments", "fresh"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "loss on the verification batch" in cli.stdout and "jump" in cli.stdout
    assert "fresh" in cli.stdout and "not identities" in cli.stderr
    stacked = json.loads((tmp_path / "stacked" / "growth.json").read_text())
    assert stacked["init"] == "stack" and stacked["verification"]["passed"]
    assert stacked["verification"]["loss"]["jump"] != 0


def test_plan_stages_clone_then_stack(tmp_path, tiny_data):
    values = {
        "out_dir": str(tmp_path / "run"),
        "defaults": {"data": str(tiny_data), "seq_len": 32, "micro_batch_size": 2, "warmup_steps": 1, "lr": 3e-3,
                     "log_every": 2, "eval_every": 2, "eval_batches": 1, "checkpoint_every": 2, "progress": False,
                     "device": "cpu"},
        "stages": [
            {"name": "base", "model": "llama-tiny", "max_steps": 2,
             "model_overrides": {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 48,
                                 "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}},
            {"name": "wider", "grow": {"hidden_size": 48, "intermediate_size": 96}, "init": "clone",
             "moments": "fresh", "max_steps": 2},
            {"name": "deeper", "grow": {"num_hidden_layers": 4}, "init": "stack", "max_steps": 2},
        ],
    }
    with pytest.raises(Exception, match="moments"):
        parse_plan({**values, "stages": [values["stages"][0], {**values["stages"][1], "moments": "warm"}]})
    ledger = run_plan(parse_plan(values))
    assert [s.stage for s in ledger.stages] == ["base", "wider", "deeper"]
    wider = json.loads((tmp_path / "run" / "stage-02-wider" / "grown" / "growth.json").read_text())
    deeper = json.loads((tmp_path / "run" / "stage-03-deeper" / "grown" / "growth.json").read_text())
    assert wider["init"] == "clone" and wider["moments"] == "fresh"
    assert wider["verification"]["logits"]["max_rel_diff"] <= 1e-5
    assert deeper["init"] == "stack" and deeper["moments"] == "carry" and deeper["verification"]["passed"]
    assert "jump" in deeper["verification"]["loss"]
