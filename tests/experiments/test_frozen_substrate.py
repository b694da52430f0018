"""``growlm experiment frozen-substrate --quick``: every arm, depth and seed is present, intervals are
finite, the token budget matches across arms, and the constructive arm trains for fewer FLOPs."""

import json
import math

from growlm.experiments import EXPERIMENTS, run_experiment
from growlm.experiments.frozen_substrate import QUICK, arms, substrate_available


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
    assert sorted((r["arm"], r["depth"], r["seed"]) for r in records) == \
        sorted((a, d, s) for a in names for d in depths for s in (0, 1, 2))
    for r in records:
        assert r["val_ppl"] > 1 and 0 <= r["paper5_acc"] <= 1 and r["squad_bpb"] > 0
    rows = report.data["rows"]
    assert len(rows) == len(names) * len(depths)
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
    from growlm.experiments.frozen_substrate import FULL, constructive_plan, monolithic_run
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
