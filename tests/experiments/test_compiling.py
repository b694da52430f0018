"""The experiments' ``compile`` setting: resolved per device, validated, and written into every training config.

No GPU here: "on CUDA" is ``torch.cuda.is_available`` patched to True, and the checks read the
configs the experiments build (nothing trains)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from growlm.errors import ConfigError
from growlm.experiments import (
    compiling,
    composition,
    frozen_substrate,
    growth_dynamics,
    growth_recipes,
    nexus_ablations,
    progressive,
    recipe,
)
from growlm.experiments.common import Context, throughput_text
from growlm.training.compiling import check_mode


def _ctx(tmp_path: Path, quick: bool = False, device: str = "auto", **options) -> Context:
    return Context("x", tmp_path, quick=quick, seeds=[0], device=device, options=options)


def built_modes(ctx: Context) -> dict[str, object]:
    """The ``compile`` value of one training config of every experiment, as each builds it."""
    data = Path("data")
    size = recipe.sizing(ctx)
    gr = growth_recipes.settings(ctx)
    na = nexus_ablations.settings(ctx)
    pr = progressive.settings(ctx)
    co = composition.sizing(ctx)
    fs = frozen_substrate._settings(ctx)
    return {
        "recipe": recipe.train_values(ctx, size, data, 0, 1000)["compile"],  # architectures, growth-vs-scratch, init-schemes
        "growth-recipes": growth_recipes.one_run("nexus", {}, 10, gr, data, 0, 1e-3, "run")["defaults"]["compile"],
        "nexus-ablations": nexus_ablations._defaults(na, "data", 0)["compile"],
        "progressive": progressive._defaults(pr, "data", 0)["compile"],
        "composition": composition._train_values(co, "init", data, 10, 0, False)["compile"],
        "growth-dynamics": growth_dynamics._train_values(growth_dynamics._sizes(ctx), data, 0)["compile"],
        "frozen-substrate plan": frozen_substrate.constructive_plan(fs, False, "data", 0)["defaults"]["compile"],
        "frozen-substrate run": frozen_substrate.monolithic_run(fs, False, "data", "mono-learned", 1, 0)["compile"],
    }


@pytest.fixture
def cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.mark.parametrize("quick", [True, False])
def test_auto_is_eager_on_the_cpu_in_every_experiment(tmp_path, quick):
    modes = built_modes(_ctx(tmp_path, quick=quick, device="cpu"))
    assert modes and all(mode is False for mode in modes.values()), modes


def test_auto_on_cuda_stays_eager_for_the_default_full_forms_whose_runs_are_too_short_to_pay(tmp_path, cuda, caplog,
                                                                                           monkeypatch):
    monkeypatch.setattr(compiling, "_said", set())  # each reason is logged once per process
    caplog.set_level("INFO", logger="growlm")
    modes = built_modes(_ctx(tmp_path))
    assert all(mode is False for mode in modes.values()), modes
    said = " ".join(caplog.messages)
    # each experiment measured its own longest run: recipe 3M base + 1.5M grown, growth-recipes 2M x 1.5,
    # composition 250 x 256 x 32, frozen-substrate 4 x 96 x 512 x 16
    for tokens in (4_500_000, 3_000_000, 2_048_000, 3_145_728):
        assert f"trains {tokens:,} tokens" in said, tokens


def test_auto_compiles_a_run_as_long_as_the_threshold_and_not_one_token_shorter(cuda):
    pays = compiling.COMPILE_PAYS_TOKENS
    assert compiling.choose("auto", "cuda", tokens=pays).mode == "graphs"
    assert compiling.choose("auto", "cuda", tokens=pays - 1).mode is False
    assert compiling.choose("auto", "cuda", tokens=pays, no_graphs="because").mode is True
    assert compiling.choose("graphs", "cuda", tokens=1).mode == "graphs"  # an explicit setting is obeyed


def test_auto_on_cuda_is_graphs_for_long_runs_except_where_an_experiment_says_why_not(tmp_path, cuda, monkeypatch):
    monkeypatch.setattr(compiling, "COMPILE_PAYS_TOKENS", 1)
    modes = built_modes(_ctx(tmp_path))
    for name, mode in modes.items():
        check_mode(mode)  # a value the trainer takes
        assert mode == (True if name.startswith("frozen-substrate") else "graphs"), (name, mode)
    # --device cpu on a CUDA machine stays eager
    assert set(built_modes(_ctx(tmp_path, device="cpu")).values()) == {False}


@pytest.mark.parametrize("value, expected", [("false", False), (False, False), ("true", True), (True, True),
                                             ("regional", "regional"), ("graphs", "graphs")])
def test_an_explicit_setting_reaches_every_training_config(tmp_path, cuda, value, expected):
    modes = built_modes(_ctx(tmp_path, compile=value))
    for name, mode in modes.items():
        if name.startswith("frozen-substrate") and expected == "graphs":
            assert mode is True, name  # its LoRA/frozen path compiles without CUDA graphs (NO_GRAPHS)
        else:
            assert mode == expected and type(mode) is type(expected), (name, mode)


def test_an_explicit_setting_applies_on_the_cpu_too(tmp_path):
    modes = built_modes(_ctx(tmp_path, quick=True, device="cpu", compile="true"))
    assert set(modes.values()) == {True}


@pytest.mark.parametrize("build", [recipe.sizing, growth_recipes.settings, nexus_ablations.settings,
                                   progressive.settings, composition.sizing, growth_dynamics._sizes,
                                   frozen_substrate._settings])
def test_an_invalid_value_names_the_choices(tmp_path, build):
    with pytest.raises(ConfigError, match="compile must be one of auto, false, true, regional, graphs; got 'fast'"):
        build(_ctx(tmp_path, quick=True, device="cpu", compile="fast"))


def test_choice_gives_its_reason_and_graphs_falls_back_where_an_experiment_cannot_take_it(cuda):
    assert compiling.choose("auto", "cpu").mode is False
    assert "without CUDA" in compiling.choose("auto", "cpu").reason
    choice = compiling.choose("graphs", "auto", no_graphs="because")
    assert choice.mode is True and choice.label == "true" and "because" in choice.reason
    assert compiling.choose("auto", "cuda", no_graphs="because").mode is True
    assert compiling.choose("eager", "cuda").label == "eager"
    assert compiling.config_mode(compiling.choose("auto", "cuda").label) == "graphs"


def test_speed_text_reports_mode_speed_and_first_step_of_runs_and_plan_stages(tmp_path):
    units = tmp_path / "units" / "a"
    units.mkdir(parents=True)
    (units / "run.json").write_text(json.dumps({"run": "r", "summary": {"steady_tokens_per_s": 1000.0,
                                                                        "time_to_first_step_s": 2.0}}))
    (units / "plan.json").write_text(json.dumps({"run": "p", "ledger": {}, "stages": [
        {"steady_tokens_per_s": 3000.0, "stage_to_first_step_s": 4.0},
        {"steady_tokens_per_s": 2000.0, "stage_to_first_step_s": 6.0}]}))
    (units / "eval.json").write_text(json.dumps({"loss": 1.0}))  # not a training unit
    found = compiling.trained_units(tmp_path)
    assert len(found) == 2
    text = compiling.speed_text(compiling.CompileChoice("graphs", "why"), found)
    assert "compile graphs (why)" in text
    assert "2,000 tokens/s (median of 3 runs or plan stages; range 1,000-3,000)" in text
    assert "first step after 4.0 s (median; max 6.0 s" in text
    assert compiling.speed_text(compiling.CompileChoice(False, "cpu")).startswith("**Compile**: compile eager (cpu)")


def test_throughput_line_names_the_compile_mode():
    runner = [{"phase": "arms", "parallel": 2, "side_by_side": {"jobs": 3, "tokens_per_s": 5e5, "seconds": 10}}]
    assert throughput_text(runner, "note", "graphs").startswith("**Throughput** (compile graphs; note): arms: 3 units")
    assert throughput_text(runner).startswith("**Throughput**: arms")
