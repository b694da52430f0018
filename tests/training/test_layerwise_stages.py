"""Several blocks per stage in layer-wise plans (``layerwise.layers_per_stage``, the paper's later
3-layers-per-stage form): k = 1 expands exactly as before, bad values are refused by key, and a
real k = 2 run keeps every block below the new pair bit-identical, trains both new blocks,
merges holistic LoRA exactly, ledgers exact FLOPs and resumes a crash mid-stage exactly."""

import copy
import json
from pathlib import Path

import pytest
import torch

from growlm.errors import ConfigError
from growlm.models import storage
from growlm.models.accounting import model_cost
from growlm.models.presets import build_config
from growlm.overrides import read_yaml
from growlm.training.layerwise import expand_layerwise
from growlm.training.plan import load_plan, parse_plan, plan_shapes, resume_plan, run_plan
from growlm.training.trainer import Trainer, read_metrics
from tests.conftest import REPO
from tests.training.conftest import LAYERWISE_TINY, block, check_lora_merge, final_checkpoint

BASE = {"model": "nexus-tiny", "model_overrides": {"tie_word_embeddings": False}, "depth": 6, "tokens_per_block": 100}
LORA = {"target_modules": ["o_proj", "down_proj"], "r": 4, "alpha": 8}
# the run's model: the tiny plan's nexus-tiny at half width (the 32k vocabulary's head dominates a step)
SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_key_value_heads": 2,
         "head_dim": 32, "nexus_m": 80, "nexus_a": 96, "tie_word_embeddings": False}


def test_one_layer_per_stage_is_the_default_expansion():
    """k = 1 gives the stages the recipe always gave (names, budgets, seeds, globs, adapters), literally."""
    spec = {**BASE, "depth": 3, "holistic_from": 3, "lora": LORA, "grow_seed": 5}
    expected = [
        {"name": "block-01", "model": "nexus-tiny",
         "model_overrides": {"tie_word_embeddings": False, "num_hidden_layers": 1}, "tokens": 100,
         "frozen": ["model.embed_tokens.weight"]},
        {"name": "block-02", "grow": {"num_hidden_layers": 2}, "init": "fresh", "grow_options": {"layers_at": "end"},
         "grow_seed": 7, "tokens": 100, "trainable": ["model.layers.1.*", "lm_head.weight", "model.norm.weight"]},
        {"name": "block-03-holistic", "grow": {"num_hidden_layers": 3}, "init": "fresh",
         "grow_options": {"layers_at": "end"}, "grow_seed": 8, "tokens": 100,
         "trainable": ["model.layers.2.*", "lm_head.weight", "model.norm.weight"], "lora": {**LORA, "layers": [0, 1]}},
    ]
    assert expand_layerwise(spec) == expected
    assert expand_layerwise({**spec, "layers_per_stage": 1}) == expected
    for path in (LAYERWISE_TINY, REPO / "plans" / "frozen-substrate-gpu.yaml"):
        values = read_yaml(path, "plan file")["layerwise"]
        assert expand_layerwise({**values, "layers_per_stage": 1}) == expand_layerwise(values)


def test_three_layers_per_stage_expands_to_the_papers_form():
    stages = expand_layerwise({**BASE, "depth": 9, "layers_per_stage": 3, "holistic_from": 7, "lora": LORA})
    assert [s["name"] for s in stages] == ["blocks-01-03", "blocks-04-06", "blocks-07-09-holistic"]
    assert stages[0]["model_overrides"]["num_hidden_layers"] == 3
    assert [s["tokens"] for s in stages] == [300, 300, 300]  # the budget is per block: 3 blocks' worth per stage
    assert stages[1]["grow"] == {"num_hidden_layers": 6} and stages[2]["grow"] == {"num_hidden_layers": 9}
    assert stages[1]["trainable"] == ["model.layers.3.*", "model.layers.4.*", "model.layers.5.*", "lm_head.weight",
                                      "model.norm.weight"]
    assert "lora" not in stages[1] and stages[2]["lora"]["layers"] == [0, 1, 2, 3, 4, 5]
    steps = expand_layerwise({**{k: v for k, v in BASE.items() if k != "tokens_per_block"}, "max_steps_per_block": 4,
                              "layers_per_stage": 2})
    assert [s["max_steps"] for s in steps] == [8, 8, 8]
    # plan show validates it: the shapes of every stage, and a budget of depth x tokens_per_block in all
    plan = parse_plan({"out_dir": "unused", "defaults": {"data": ".", "seq_len": 10, "micro_batch_size": 1},
                       "layerwise": {**BASE, "layers_per_stage": 3}})
    rows = plan_shapes(plan)
    assert [r["config"]["num_hidden_layers"] for r in rows] == [3, 6]
    assert sum(r["tokens"] for r in rows) == 6 * 100
    gpu = load_plan(REPO / "plans" / "frozen-substrate-gpu-by3.yaml")  # the shipped paper-form plan
    assert [s.name for s in gpu.stages] == ["blocks-01-03", "blocks-04-06", "blocks-07-09-holistic"]
    assert [r["config"]["num_hidden_layers"] for r in plan_shapes(gpu)] == [3, 6, 9]


@pytest.mark.parametrize("spec, message", [
    ({**BASE, "layers_per_stage": 0}, "layerwise.layers_per_stage must be a positive"),
    ({**BASE, "layers_per_stage": 4}, r"layerwise.depth \(6\) must be a multiple of layerwise.layers_per_stage \(4\)"),
    ({**BASE, "layers_per_stage": "three"}, "layers_per_stage must be a int"),
    ({**BASE, "layers_per_stage": True}, "layers_per_stage must be a int"),
    ({**BASE, "layers_per_stage": 3, "holistic_from": 3, "lora": LORA}, r"holistic_from must be .*4, 7, 10"),
    ({**BASE, "layers_per_stage": 2, "holistic_from": 4, "lora": LORA}, "layers_per_stage=2"),
    ({**BASE, "layers_per_stage": 2, "model_overrides": {"num_hidden_layers": 2}}, "num_hidden_layers"),
])
def test_bad_layers_per_stage_is_refused_by_name(spec, message):
    with pytest.raises(ConfigError, match=message):
        expand_layerwise(spec)


def _values(out: Path, data: Path) -> dict:
    values = copy.deepcopy(read_yaml(LAYERWISE_TINY, "plan file"))
    values["out_dir"] = str(out)
    values["defaults"].update(data=str(data), seq_len=32, micro_batch_size=2, warmup_steps=1, log_every=1,
                              eval_every=1000, eval_batches=1, checkpoint_every=2, progress=False, device="cpu",
                              tensorboard=False, compile=False)
    values["layerwise"].pop("tokens_per_block")
    values["layerwise"]["model_overrides"].update(SMALL)
    # 2 blocks per stage, 2 steps of 2 x 32 tokens per block: stages of 4 steps; holistic LoRA in stage 3
    values["layerwise"].update(depth=6, layers_per_stage=2, max_steps_per_block=2, holistic_from=5)
    return values


STAGES = ["stage-01-blocks-01-02", "stage-02-blocks-03-04", "stage-03-blocks-05-06-holistic"]


def test_two_layers_per_stage_freeze_train_merge_ledger_and_resume(tmp_path, tiny_data, monkeypatch, capsys):
    # the plan crashes in stage 2 after its step-2 checkpoint (steps 1-3 logged) and is resumed: the
    # resumed stage logs the steps it lost exactly as they were, then every property below holds
    out = tmp_path / "run"
    original = Trainer._step

    def crash(self):
        if "stage-02" in str(self.cfg.out_dir) and self.state.step == 3:
            raise RuntimeError("simulated crash")
        return original(self)

    monkeypatch.setattr(Trainer, "_step", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_plan(parse_plan(_values(out, tiny_data)))
    assert not (out / STAGES[1] / "stage.json").exists()
    before = [(r["step"], r["loss"]) for r in read_metrics(out / STAGES[1] / "train") if "loss" in r]
    assert [step for step, _ in before] == [1, 2, 3]
    monkeypatch.setattr(Trainer, "_step", original)
    capsys.readouterr()
    ledger = resume_plan(out)
    err = capsys.readouterr().err
    assert "stage 1/3 blocks-01-02: complete, skipped" in err and "at step 2" in err
    after = [(r["step"], r["loss"]) for r in read_metrics(out / STAGES[1] / "train") if "loss" in r]
    assert [step for step, _ in after] == [1, 2, 3, 4] and after[:3] == before

    assert [s.stage for s in ledger.stages] == [name.split("-", 2)[2] for name in STAGES]
    assert [s.steps for s in ledger.stages] == [4, 4, 4]
    s1, s2, s3 = (storage.load_state(final_checkpoint(out, name)) for name in STAGES)
    assert sum(1 for k in s1 if k.endswith("self_attn.o_proj.weight")) == 2  # stage 1 is a 2-block model

    # stage 2: blocks 0-1 bit-identical (frozen); both fresh blocks 2 and 3 trained, as did the head
    for i in (0, 1):
        assert all(torch.equal(v, s1[k]) for k, v in block(s2, i).items())
    grown2 = storage.load_state(out / STAGES[1] / "grown")
    for i in (2, 3):
        matrices = {k: v for k, v in block(s2, i).items() if v.dim() == 2}
        assert matrices and all(not torch.equal(v, grown2[k]) for k, v in matrices.items())
    assert not torch.equal(s2["lm_head.weight"], s1["lm_head.weight"])
    growth = json.loads((out / STAGES[1] / "grown" / "growth.json").read_text())
    assert growth["verification"]["passed"]

    # stage 3 (holistic): the base of blocks 0-3 is stage 2's result; merged = base + alpha/r B A exactly
    lora_dir = final_checkpoint(out, STAGES[2]) / "lora"
    adapted, adapter = check_lora_merge(lora_dir, s2, s3, range(4), LORA["alpha"] / LORA["r"])
    assert adapted == {f"model.layers.{i}.{m}" for i in range(4) for m in ("self_attn.o_proj", "mlp.down_proj")}
    assert not any(".layers.4." in k or ".layers.5." in k for k in adapter)
    grown3 = storage.load_state(out / STAGES[2] / "grown")
    for i in (4, 5):
        assert all(not torch.equal(v, grown3[k]) for k, v in block(s3, i).items() if v.dim() == 2)

    # ledger: stage 2 is a full 4-block step minus blocks 0-1's backward (4 FLOPs per weight, attention 8 H d T)
    cfg4 = build_config("nexus-tiny", {**SMALL, "num_hidden_layers": 4})
    below = sum(v.numel() for i in (0, 1) for v in block(s2, i).values() if v.dim() == 2)
    attn = cfg4.num_attention_heads * cfg4.head_dim * 32
    assert ledger.stages[1].train_flops_per_token == model_cost(cfg4, 32).train_flops_per_token \
        - 4 * below - 2 * 8 * attn
    full6 = model_cost(build_config("nexus-tiny", {**SMALL, "num_hidden_layers": 6}), 32)
    frozen4 = sum(v.numel() for i in range(4) for v in block(s2, i).values() if v.dim() == 2)
    lora_params = sum(v.numel() for v in adapter.values())
    assert ledger.stages[2].train_flops_per_token == full6.train_flops_per_token - 2 * frozen4 + 6 * lora_params
    assert ledger.total.tokens == 6 * 2 * 64


def test_plan_show_lists_the_multi_block_stages(tmp_path, capsys):
    from growlm.cli.main import main

    values = read_yaml(LAYERWISE_TINY, "plan file")
    values["layerwise"].update(depth=4, layers_per_stage=2)
    path = tmp_path / "plan.yaml"
    import yaml

    path.write_text(yaml.safe_dump(values))
    assert [s.name for s in load_plan(path).stages] == ["blocks-01-02", "blocks-03-04-holistic"]
    main(["plan", "show", str(path)])
    shown = capsys.readouterr().out
    lines = [line for line in shown.splitlines() if "GFLOP/token" in line]
    assert [line.split()[0] for line in lines] == ["blocks-01-02", "blocks-03-04-holistic"]
    assert len({line.index(" nexus ") for line in lines}) == 1  # the columns stay aligned past 16 characters
