"""``growlm experiment frozen-substrate --quick``: every arm, depth and seed is present, intervals are
finite, the token budget matches across arms, the constructive arm trains for fewer FLOPs, the
two-blocks-per-stage arm shares its first stage with mono-glyph, and the report states the glyph
PCA's truncation."""

import json
import math

import pytest

from growlm.errors import ConfigError
from growlm.experiments import EXPERIMENTS, run_experiment
from growlm.experiments.common import Context
from growlm.experiments.frozen_substrate import (
    FULL,
    QUICK,
    _settings,
    arms,
    grouped_holistic_from,
    substrate_available,
)


def test_quick_form_is_complete(tmp_path, shared):
    assert "frozen-substrate" in EXPERIMENTS
    out = tmp_path / "exp"
    path, report = run_experiment("frozen-substrate", out=out, quick=True, device="cpu", shared=shared,
                                  data_root=tmp_path / "data", argv=["experiment", "frozen-substrate", "--quick"])
    text = path.read_text()
    header = "| arm | depth | seeds | val ppl ↓ | paper5 acc ↑ | paper5 acc_norm ↑ | SQuAD answer bits/byte ↓ |"
    assert header in text and "![score-vs-depth](score-vs-depth.png)" in text
    assert (out / "score-vs-depth.png").stat().st_size > 10_000
    meta = json.loads((out / "experiment.json").read_text())
    assert meta["seeds"] == [0, 1, 2] and meta["form"] == "quick"
    assert all(math.isfinite(row["val_ppl"]["half_width"]) for row in meta["data"]["rows"])

    substrate = substrate_available()
    names = ["constructive", *arms(substrate)[1]]
    if substrate:
        assert names == ["constructive", "mono-glyph", "mono-binary", "mono-learned"]
    depths = list(range(1, QUICK["depth"] + 1))
    records = report.data["records"]
    grouped = [r for r in records if r["arm"] == "constructive-by2"]  # 2 blocks per stage: depth 2 only
    assert sorted((r["depth"], r["seed"]) for r in grouped) == [(2, 0), (2, 1), (2, 2)]
    records = [r for r in records if r["arm"] != "constructive-by2"]
    assert sorted((r["arm"], r["depth"], r["seed"]) for r in records) == \
        sorted((a, d, s) for a in names for d in depths for s in (0, 1, 2))
    for r in grouped:  # its first stage is the depth-2 monolithic run on its substrate: one run, one record
        twin = next(m for m in records if (m["arm"], m["depth"], m["seed"]) == (names[1], 2, r["seed"]))
        assert {**twin, "arm": r["arm"]} == r
    if substrate:  # the quick width (64) truncates the 32k tokenizer's glyph PCA (rank 536), and says so
        pca = report.data["glyph_pca"]
        assert (pca["width"], pca["components_kept"], pca["rank"], pca["bits"]) == (64, 64, 536, 1024)
        assert 0.5 < pca["variance_kept"] < 0.86  # 128 axes keep 86% (docs/substrate.md); 64 keep less
        assert "keeps the first 64 of the 536 principal axes" in text and "model.hidden_size=576" in text
    for r in records:
        assert r["val_ppl"] > 1 and 0 <= r["paper5_acc"] <= 1 and r["squad_bpb"] > 0
    rows = report.data["rows"]
    assert len(rows) == len(names) * len(depths) + 1
    for row in rows:
        assert row["seeds"] == 3
        for metric in ("val_ppl", "paper5_acc", "squad_bpb"):
            interval = row[metric]
            assert math.isfinite(interval.mean) and math.isfinite(interval.half_width)
    by = {(r["arm"], r["depth"], r["seed"]): r for r in records}
    for d in depths:
        for s in (0, 1, 2):
            tokens = {by[(a, d, s)]["tokens"] for a in names}
            assert tokens == {d * QUICK["steps_per_block"] * 32 * 2}  # same budget everywhere
            if d > 1:  # frozen blocks below the new one get no weight gradients
                assert by[("constructive", d, s)]["train_flops"] < by[("mono-learned", d, s)]["train_flops"]
    # each seed is its own run: the depth-2 constructive models differ across seeds
    assert len({by[("constructive", 2, s)]["val_ppl"] for s in (0, 1, 2)}) == 3


def test_full_form_configs_validate_and_share_the_budget():
    """The GPU form's plans and baselines are valid configs (checked without training) with equal budgets."""
    from growlm.experiments.frozen_substrate import constructive_plan, monolithic_run
    from growlm.models.accounting import model_cost
    from growlm.models.presets import build_config
    from growlm.training.config import build_train_config
    from growlm.training.plan import parse_plan, plan_shapes

    substrate = substrate_available()
    values = constructive_plan(FULL, substrate, ".", seed=1)
    rows = plan_shapes(parse_plan({**values, "out_dir": "unused"}))
    assert [r["config"]["num_hidden_layers"] for r in rows] == list(range(1, FULL["depth"] + 1))
    assert [r["stage"].endswith("-holistic") for r in rows] == \
        [k >= FULL["holistic_from"] for k in range(1, FULL["depth"] + 1)]
    per_block = rows[0]["tokens"]
    for arm in arms(substrate)[1]:
        for k in range(1, FULL["depth"] + 1):
            cfg = build_train_config({**monolithic_run(FULL, substrate, ".", arm, k, seed=1), "out_dir": "unused"})
            assert cfg.max_steps * cfg.tokens_per_step == k * per_block and cfg.seed == 1
            config = build_config(cfg.model, cfg.model_overrides)
            assert config.num_hidden_layers == k and not config.tie_word_embeddings
            assert 5e6 < model_cost(config).total_params < 30e6  # the preamble's GPU sizing

    # the paper's later form, two blocks per stage: stages reach depths 2 and 4, holistic from depth 3
    values = constructive_plan(FULL, substrate, ".", seed=1, layers_per_stage=2)
    rows = plan_shapes(parse_plan({**values, "out_dir": "unused"}))
    assert [r["config"]["num_hidden_layers"] for r in rows] == [2, 4] and grouped_holistic_from(FULL) == 3
    assert [r["stage"] for r in rows] == ["blocks-01-02", "blocks-03-04-holistic"]
    assert all(r["tokens"] == 2 * per_block for r in rows)


def _options(quick: bool = False, **options) -> dict:
    return _settings(Context("frozen-substrate", out=".", quick=quick, seeds=[0], options=options))


def test_options_set_nested_fields_and_refuse_unknown_keys():
    s = _options(**{"model.hidden_size": 576, "train.lr": 1e-3, "layers_per_stage": 3, "depth": 6})
    assert s["model"]["hidden_size"] == 576 and s["model"]["head_dim"] == FULL["model"]["head_dim"]
    assert s["train"]["lr"] == 1e-3 and FULL["model"]["hidden_size"] == 256  # the form itself is untouched
    assert grouped_holistic_from(s) == 4  # holistic_from 3 -> the first stage start at or above it
    assert grouped_holistic_from({**s, "holistic_from": 7}) is None  # beyond depth 6
    for options, message in [({"dpeth": 3}, "dpeth"), ({"model.": 3}, "model.FIELD"),
                             ({"layers_per_stage": 3}, "multiple of layers_per_stage"),
                             ({"layers_per_stage": 0}, "positive integer")]:
        with pytest.raises(ConfigError, match=message):
            _options(**options)
