"""One learning-rate schedule across a growth plan (issue 19, item 2): the plan's ``schedule:``
gives every step of a 3-stage plan with growth the lr of one run of the same length (exactly,
from metrics.jsonl), ``lr_factor`` scales its stage only, a crash mid-stage resumes on the
same curve, plans without ``schedule:`` keep their per-stage schedules, and bad keys are
refused in one line that names the valid ones."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from growlm.cli.main import main as cli_main
from growlm.errors import ConfigError
from growlm.training.config import TrainConfig
from growlm.training.optim import lr_factor
from growlm.training.plan import parse_plan, plan_lr_curve, plan_shapes, resume_plan, run_plan, stage_config
from growlm.training.trainer import Trainer, read_metrics, start_run
from tests.conftest import REPO, train_config

# a small nexus-tiny (the 32k vocabulary of the test data dominates; tied, 32 wide, one layer)
SMALL = {"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
         "num_key_value_heads": 2, "head_dim": 16, "nexus_m": 32, "nexus_a": 48, "tie_word_embeddings": True}
SCHEDULE = {"kind": "wsd", "warmup_steps": 3, "decay_fraction": 0.5, "min_lr_ratio": 0.1}
TOTAL = 20  # 6 + 8 + 6 steps: warm-up in stage 1, growth twice, the decay (steps 10-19) across stages 2 and 3


def _plan(out: Path, data: Any, schedule: dict | None = SCHEDULE, factor: float | None = None) -> dict:
    wider = {"name": "wider", "grow": {"nexus_m": 48, "nexus_a": 64}, "tokens": 256}  # 8 steps of 32 tokens
    if factor is not None:
        wider["lr_factor"] = factor
    plan = {"out_dir": str(out),
            "defaults": {"data": str(data), "seq_len": 16, "micro_batch_size": 2, "lr": 3e-3, "log_every": 1,
                         "eval_every": 1000, "eval_batches": 1, "checkpoint_every": 4, "progress": False,
                         "device": "cpu", "tensorboard": False, "compile": False},
            "stages": [{"name": "base", "model": "nexus-tiny", "model_overrides": SMALL,
                        "max_steps": 6},
                       wider,
                       {"name": "deeper", "grow": {"num_hidden_layers": 2}, "grow_options": {"layers_at": "end"},
                        "max_steps": 6}]}
    if schedule is not None:
        plan["schedule"] = dict(schedule)
    return plan


def _lr_by_stage(out: Path) -> list[list[float]]:
    """Every logged lr (every step is logged), stage by stage."""
    return [[r["lr"] for r in read_metrics(folder / "train")] for folder in sorted(out.glob("stage-*"))]


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory) -> dict[str, Path]:
    """The plan under one WSD schedule, and one plain run of its length with that schedule."""
    root = tmp_path_factory.mktemp("plan-schedule")
    run_plan(parse_plan(_plan(root / "plan", tiny_data)))
    start_run(train_config(tiny_data, root / "one", model_overrides=SMALL, seq_len=16, micro_batch_size=2, max_steps=TOTAL, lr=3e-3,
                           schedule="wsd", warmup_steps=3, decay_fraction=0.5, min_lr_ratio=0.1, log_every=1,
                           eval_every=1000, eval_batches=1, checkpoint_every=1000, tensorboard=False, compile=False))
    return {"plan": root / "plan", "one": root / "one"}


def test_one_wsd_over_three_stages_equals_one_run(runs):
    stages = _lr_by_stage(runs["plan"])
    one = [r["lr"] for r in read_metrics(runs["one"])]
    assert [len(s) for s in stages] == [6, 8, 6] and len(one) == TOTAL
    assert [lr for stage in stages for lr in stage] == one  # exact floats, every step
    # the curve is the one WSD: warm-up once, flat through the first growth, one decay to the floor
    # (a row's lr, logged after the scheduler's step, is the one the next update uses: row k has f(k))
    assert one[0] == pytest.approx(2e-3) and one[1] == pytest.approx(3e-3)
    assert one[8] == pytest.approx(3e-3) and one[9] < 3e-3
    assert stages[1][0] == pytest.approx(3e-3)  # no re-warm-up after growth
    assert one[-1] == pytest.approx(3e-4)
    ledger = json.loads((runs["plan"] / "ledger.json").read_text())
    assert [s["steps"] for s in ledger["stages"]] == [6, 8, 6] and ledger["total"]["tokens"] == TOTAL * 32
    assert (runs["plan"] / "lr.png").stat().st_size > 5000
    # what the stages were told: their place in the schedule, and the plan's length
    for folder, start in zip(sorted(runs["plan"].glob("stage-*")), (0, 6, 14), strict=True):
        config = yaml.safe_load((folder / "train" / "config.yaml").read_text())
        assert (config["schedule_start_step"], config["schedule_total_steps"]) == (start, TOTAL)


def test_lr_factor_scales_its_stage_only_and_a_crash_mid_stage_resumes_on_the_curve(
        runs, tiny_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "crashed"
    original = Trainer._step

    def crash(self):  # the process dies in stage 2 at step 6, after its step-4 checkpoint
        if self.cfg.schedule_start_step == 6 and self.state.step == 6:
            raise RuntimeError("simulated crash")
        return original(self)

    monkeypatch.setattr(Trainer, "_step", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_plan(parse_plan(_plan(out, tiny_data, factor=2.0)))
    assert len(read_metrics(out / "stage-02-wider" / "train")) == 6  # steps 5 and 6 were logged, then lost
    monkeypatch.setattr(Trainer, "_step", original)
    capsys.readouterr()
    resume_plan(out)
    assert "at step 4" in capsys.readouterr().err
    stages, one = _lr_by_stage(out), [r["lr"] for r in read_metrics(runs["one"])]
    # x2 is exact in floating point, so the scaled stage is compared exactly too
    assert stages[0] == one[:6] and stages[2] == one[14:]
    assert stages[1] == [2.0 * lr for lr in one[6:14]]


def test_lr_factor_without_a_plan_schedule_scales_the_stages_own_lr(tmp_path):
    plan = _plan(tmp_path, ".", schedule=None, factor=1.5)
    wider = parse_plan(plan).stages[1]
    plain = parse_plan(_plan(tmp_path, ".", schedule=None)).stages[1]
    scaled, unscaled = (stage_config(s, tmp_path, Path("."), check_data=False) for s in (wider, plain))
    assert [lr_factor(s, scaled) for s in range(8)] == [1.5 * lr_factor(s, unscaled) for s in range(8)]


def _legacy_factor(step: int, cfg: TrainConfig) -> float:
    """The per-run schedule as it was before plan schedules (optim.lr_factor at commit cae1e80)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    floor = cfg.min_lr_ratio
    if cfg.schedule == "cosine":
        span = max(1, cfg.max_steps - 1 - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    decay_steps = max(1, round(cfg.decay_fraction * cfg.max_steps))
    decay_start = cfg.max_steps - decay_steps
    if step < decay_start:
        return 1.0
    return floor + (1 - floor) * max(0.0, 1 - (step - decay_start + 1) / decay_steps)


@pytest.mark.parametrize("kind", ["cosine", "wsd", "constant"])
def test_without_a_plan_schedule_every_stage_keeps_its_own(kind, tmp_path):
    values = _plan(tmp_path, ".", schedule=None)
    values["defaults"].update(schedule=kind, warmup_steps=2, decay_fraction=0.3)
    values["stages"][1]["lr"] = 1e-3
    plan = parse_plan(values)
    assert plan.schedule is None
    expected = []
    for stage in plan.stages:
        cfg = stage_config(stage, tmp_path, None if stage.index == 0 else Path("."), check_data=False)
        assert (cfg.schedule_start_step, cfg.schedule_total_steps, cfg.lr_factor) == (0, 0, 1.0)
        expected += [cfg.lr * _legacy_factor(s, cfg) for s in range(cfg.max_steps)]
    assert plan_lr_curve(plan) == expected
    assert expected[6] == pytest.approx(1e-3 / 2)  # the second stage warms up again, from its own lr


@pytest.mark.parametrize("kind", ["cosine", "wsd", "constant"])
def test_plan_schedule_is_the_one_run_schedule_for_every_kind(kind, tmp_path):
    plan = parse_plan(_plan(tmp_path, ".", schedule={**SCHEDULE, "kind": kind}))
    one = train_config(".", tmp_path, max_steps=TOTAL, lr=3e-3, schedule=kind, warmup_steps=3, decay_fraction=0.5,
                       min_lr_ratio=0.1)
    assert plan.schedule.total_steps == TOTAL and plan.schedule.starts == [0, 6, 14]
    assert plan_lr_curve(plan) == [3e-3 * lr_factor(s, one) for s in range(TOTAL)]
    rows = plan_shapes(plan)
    assert [r["schedule_start_step"] for r in rows] == [0, 6, 14] and {r["schedule"] for r in rows} == {kind}


def test_plan_show_prints_the_schedule(capsys):
    assert cli_main(["plan", "show", str(REPO / "plans" / "tiny-wsd-growth.yaml")]) == 0
    text = capsys.readouterr().out
    assert "one wsd schedule over all stages, 100 steps, peak lr 0.002, warm-up 5 steps" in text
    assert "decay over the last 20 (from step 80)" in text
    assert "wider            wsd      plan steps        40 - 69        lr 3.000e-03 -> 3.000e-03 (lr_factor 1.5)" in text
    assert "(lr over 100 steps)" in text


def _with(values: dict, where: str, **keys) -> dict:
    values = copy.deepcopy(values)
    if where == "plan":
        values.update(keys)
    elif where == "defaults":
        values["defaults"].update(keys)
    else:
        values["stages"][int(where)].update(keys)
    return values


BASE = _plan(Path("x"), ".")


@pytest.mark.parametrize(
    ("values", "message"),
    [(_with(BASE, "plan", schedule={"kind": "wsd", "warmup": 5}),
      r"unknown plan schedule key 'warmup' \(did you mean 'warmup_steps'\?\); "
      r"valid: decay_fraction, kind, min_lr_ratio, warmup_steps"),
     (_with(BASE, "plan", schedule={"kind": "linear"}), "schedule.kind must be one of cosine, wsd, constant, got 'linear'"),
     (_with(BASE, "plan", schedule={"warmup_steps": 5}), "schedule.kind must be one of cosine, wsd, constant, got None"),
     (_with(BASE, "plan", schedule="wsd"), "the plan's schedule must be a mapping with keys kind, warmup_steps"),
     (_with(BASE, "plan", schedule={"kind": "wsd", "decay_fraction": 1.5}), r"schedule.decay_fraction must be in \[0, 1\]"),
     (_with(BASE, "plan", schedule={"kind": "wsd", "warmup_steps": "many"}), "schedule.warmup_steps must be a int"),
     (_with(BASE, "1", lr=1e-3), r"stage 2 \(wider\): lr is set once for a plan schedule .* lr_factor instead"),
     (_with(BASE, "2", warmup_steps=3), r"stage 3 \(deeper\): warmup_steps is set by the plan's schedule:"),
     (_with(BASE, "defaults", schedule="cosine"), "defaults: schedule is set by the plan's schedule:"),
     (_with(BASE, "1", micro_batch_size=4), r"stage 2 \(wider\): a plan schedule counts steps, so every stage needs "
                                            r"the same tokens per step .* base has 32, wider has 64"),
     (_with(BASE, "1", lr_factr=2.0), r"unknown key 'lr_factr' \(did you mean 'lr_factor'\?\)"),
     (_with(BASE, "1", lr_factor=0), "lr_factor must be positive, got 0"),
     (_with(BASE, "plan", schedul={"kind": "wsd"}), "unknown plan key 'schedul' .*valid: .*schedule")],
)
def test_bad_schedules_are_refused_in_one_line(values, message):
    with pytest.raises(ConfigError, match=message) as caught:
        plan_shapes(parse_plan(values))
    assert "\n" not in str(caught.value)


def test_set_of_a_schedule_key_is_refused_under_a_plan_schedule():
    with pytest.raises(ConfigError, match="--set warmup_steps is set by the plan's schedule:"):
        parse_plan(BASE, {"warmup_steps": 4})
    assert parse_plan(BASE, {"lr": 1e-3}).stages[2].train["lr"] == 1e-3  # the peak may be overridden
