"""What the architecture/growth experiments share: compute-to-target, ledger curves, sizes, options."""

from __future__ import annotations

import pytest

from growlm.errors import ConfigError
from growlm.experiments.common import Context
from growlm.experiments.recipe import (
    ARCHITECTURES,
    GROWTH,
    MODELS,
    architectures,
    check_options,
    flops_to_reach,
    model_costs,
    plan_curve,
    sizing,
)


def test_flops_to_reach_interpolates_the_first_crossing():
    flops, losses = [0.0, 10.0, 20.0], [10.0, 8.0, 6.0]
    assert flops_to_reach(flops, losses, 7.0) == pytest.approx(15.0)
    assert flops_to_reach(flops, losses, 8.0) == pytest.approx(10.0)  # an evaluation exactly at the target
    assert flops_to_reach(flops, losses, 11.0) == 0.0  # already below at the first point
    assert flops_to_reach(flops, losses, 5.0) is None  # never reached
    # a noisy curve: the first crossing counts, not a later one
    assert flops_to_reach([0, 10, 20, 30], [10, 7, 8, 6], 7.5) == pytest.approx(10 * 2.5 / 3)
    with pytest.raises(ValueError):
        flops_to_reach([0, 1], [1.0], 0.5)


def test_plan_curve_places_stages_on_the_ledger_flops():
    plan = {"stages": [
        {"stage": "base", "train_flops_per_token": 100, "cumulative_train_flops": 100 * 40, "cumulative_tokens": 40,
         "metrics": [{"tokens": 20, "loss": 9.0, "val_loss": 5.0}, {"tokens": 30, "loss": 8.0},
                     {"tokens": 40, "loss": 7.0, "val_loss": 4.0}]},
        {"stage": "grown", "train_flops_per_token": 150, "cumulative_train_flops": 100 * 40 + 150 * 20,
         "cumulative_tokens": 60, "metrics": [{"tokens": 20, "val_loss": 3.5}]},
    ]}
    points = plan_curve(plan)
    assert [(p["tokens"], p["flops"], p["loss"], p["stage"]) for p in points] == [
        (20, 2000, 5.0, "base"), (40, 4000, 4.0, "base"), (60, 7000, 3.5, "grown")]
    assert points[-1]["flops"] == plan["stages"][-1]["cumulative_train_flops"]


def test_full_models_match_in_parameters_and_every_growth_is_valid():
    from growlm.growth.grow import check_request
    from growlm.models.presets import build_config

    for form in ("full", "quick"):
        counts = {a: model_costs(*MODELS[form][a], 256)["total_params"] for a in ARCHITECTURES}
        assert max(counts.values()) / min(counts.values()) < 1.01, (form, counts)
        for arch in ARCHITECTURES:
            preset, overrides = MODELS[form][arch]
            changes = check_request(build_config(preset, overrides), GROWTH[form][arch])
            assert changes and all(new > old for old, new in changes.values())


def test_options_override_sizing_and_unknown_ones_are_named(tmp_path):
    ctx = Context("x", tmp_path, quick=True, seeds=[0], options={"base_tokens": "4096", "lr": 0.01,
                                                                 "architectures": "nexus,llama"})
    size = sizing(ctx)
    assert size.base_tokens == 4096 and size.lr == 0.01 and size.steps(4096) == 4096 // size.tokens_per_step
    assert architectures(ctx) == ["nexus", "llama"]
    check_options(ctx, ["architectures"])
    with pytest.raises(ConfigError, match="base_tokens"):
        check_options(Context("x", tmp_path, quick=True, seeds=[0], options={"base_tokns": 1}))
    with pytest.raises(ConfigError, match="tokenformer"):
        architectures(Context("x", tmp_path, quick=True, seeds=[0], options={"architectures": "gpt"}))


def test_cli_passes_options_and_refuses_unknown_ones(tmp_path, capsys):
    from growlm.cli.main import main

    code = main(["experiment", "init-schemes", "--quick", "--out", str(tmp_path / "o"), "--data-root", str(tmp_path / "d"), "--set", "base_tokns=4"])
    assert code == 2
    err = capsys.readouterr().err
    assert "base_tokns" in err and "base_tokens" in err and "schemes" in err
    code = main(["experiment", "init-schemes", "--quick", "--out", str(tmp_path / "o"), "--data-root", str(tmp_path / "d"), "--set", "schemes=zero,bad"])
    assert code == 2 and "noise:FRACTION" in capsys.readouterr().err
