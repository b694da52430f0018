"""`growlm experiment growth-recipes --quick`, its one-WSD plans, and side-by-side units (CPU)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from growlm.experiments import growth_recipes as gr
from growlm.experiments.common import Context, Job, run_jobs
from growlm.training.config import build_train_config
from growlm.training.optim import lr_factor
from tests.experiments.conftest import run_quick


def test_quick_growth_recipes(tmp_path: Path, shared: Path, experiment_data_root: Path):
    out = tmp_path / "recipes"
    text, meta, _ = run_quick("growth-recipes", out, shared, experiment_data_root, parallel=2)
    data = meta["data"]
    arms = gr.FORMS["quick"].arm_list
    assert not data["skipped"], data["skipped"]  # stack and clone are in this growlm
    assert sorted({(r["arm"], r["seed"]) for r in data["records"]}) == sorted((a, s) for a in arms for s in (0, 1))
    for r in data["records"]:
        unit = json.loads((out / "units" / gr.ARMS[r["arm"]].arch / f"{r['arm']}-b1" / f"seed={r['seed']}" /
                           "final.json").read_text())
        plan = json.loads((out / "units" / gr.ARMS[r["arm"]].arch / f"{r['arm']}-b1" / f"seed={r['seed']}" /
                           "plan.json").read_text())
        assert r["flops"] == unit["flops"] == plan["ledger"]["total"]["train_flops"]  # the ledger, base counted
        assert r["loss"] == unit["report"] and unit["windows"] == gr.FORMS["quick"].final_windows
        assert r["saving"] == pytest.approx(1 - r["flops"] / r["scratch_flops_at_loss"])  # every seed, kept
        if gr.ARMS[r["arm"]].kind == "grow":
            assert len(plan["stages"]) == 2 and plan["stages"][1]["init"]
    # the no-growth control costs what the grown arm from the same base costs (within one step)
    grown = next(r for r in data["records"] if r["arm"] == "stack-d2" and r["seed"] == 0)
    control = next(r for r in data["records"] if r["arm"] == "control-d2" and r["seed"] == 0)
    assert abs(control["flops"] - grown["flops"]) / grown["flops"] < 0.1
    assert grown["vs_control"] == pytest.approx(grown["loss"] - control["loss"])
    # pilot: one row per architecture and lr, the chosen one lowest on the tuning half
    assert len(data["pilot"]) == 3 * 2
    for arch in ("Llama (Transformer++)", "NexusFormer", "TokenFormer"):
        rows = [p for p in data["pilot"] if p["arch"] == arch]
        assert min(rows, key=lambda p: p["tune"])["chosen"] == "✓"
    assert data["cross"]["n"] == 2 and len(data["cross"]["values"]) == 2
    header = next(line for line in text.splitlines() if line.startswith("| Arm |"))
    assert "Saving % (95% CI)" in header and "Seeds > 0" in header and "ΔL at equal compute" in header
    assert "Token speedup" in header and "GPU-s saving %" in header and "Pays" in header
    assert "Non-embedding share" in text and "**Budget**" in text and "side by side" in text
    for figure in ("loss_vs_flops.png", "savings.png"):
        assert (out / figure).stat().st_size > 1000
    assert not list((out / "runs").rglob("*.safetensors"))  # weights removed after the final evaluation


def test_one_wsd_over_the_grown_plan_is_one_run(tmp_path: Path):
    """The grown arm's learning rate at every step is that of a single WSD over all its steps."""
    size = gr.FORMS["quick"]
    shapes = gr.SHAPES["quick"]["llama"]
    have = gr.features()
    steps = 20
    lr = 1e-3
    for schedule in (True, False):  # the plan-level key, and the per-stage form used without it
        plan = gr.grown_plan(gr.ARMS["stack-d2"], shapes, steps, size, tmp_path, 0, lr,
                             {**have, "schedule": schedule and have["schedule"]}, "x")
        from growlm.training.plan import parse_plan, stage_config

        parsed = parse_plan({**plan, "out_dir": str(tmp_path / "p")})
        curve = []
        for stage in parsed.stages:
            cfg = stage_config(stage, tmp_path / "r", None if stage.index == 0 else tmp_path, check_data=False)
            curve += [cfg.lr * lr_factor(k, cfg) for k in range(cfg.max_steps)]
        one = build_train_config({"model": "llama-tiny", "data": ".", "max_steps": steps, "lr": lr, "schedule": "wsd",
                                  "warmup_steps": size.warmup_steps, "decay_fraction": size.decay_fraction,
                                  "min_lr_ratio": size.min_lr_ratio})
        assert curve == pytest.approx([lr * lr_factor(k, one) for k in range(steps)], rel=1e-12)
        assert [s.train["max_steps"] for s in parsed.stages] == [5, 15]  # growth at 25% (quick), no re-warm-up


def _tiny_job(ctx: Context, key: str, seed: int) -> None:
    """A unit for the runner test: a few steps of a tiny model, its final loss on both halves."""
    from growlm.experiments.growth_recipes import run_unit

    data = ctx.options["data"]
    plan = gr.one_run("llama", gr.SHAPES["quick"]["llama"]["d4"], 3, gr.FORMS["quick"], Path(data), seed, 3e-3, key)
    run_unit(ctx, key, plan, data, 32, 4, 2)


def test_side_by_side_units_match_one_at_a_time(tmp_path: Path, tiny_data: Path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same intra-op threads in this process and in the workers
    try:
        results = {}
        for parallel in (1, 2):
            ctx = Context("t", tmp_path / f"p{parallel}", quick=True, seeds=[0], device="cpu",
                          options={"data": str(tiny_data)})
            jobs = [Job(f"u/seed={s}", "tests.experiments.test_growth_recipes:_tiny_job",
                        {"key": f"u/seed={s}", "seed": s}, f"u/seed={s}/final", 3 * 64) for s in (0, 1, 2)]
            record = run_jobs(ctx, jobs, parallel=parallel, probe=parallel > 1, phase="test")
            assert record["ran"] == 3 and (parallel == 1 or record["alone"]["tokens"] == 3 * 64)
            results[parallel] = [json.loads((ctx.out / "units" / f"u/seed={s}/final.json").read_text())
                                 for s in (0, 1, 2)]
            if parallel > 1:  # the probe ran here, the other two in worker processes
                assert os.getpid() not in record["processes"] and record["side_by_side"]["jobs"] == 2
            again = run_jobs(ctx, jobs, parallel=parallel)  # resumable: nothing left to run
            assert again["ran"] == 0
        for one, two in zip(results[1], results[2], strict=True):
            assert one["tune"] == two["tune"] and one["report"] == two["report"]  # bit-identical on the CPU
        assert results[1][0]["report"] != results[1][1]["report"]  # the seeds differ
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name, init", [("llama-stack-240m.yaml", "stack"), ("nexus-240m-wsd-growth.yaml", "preserve")])
def test_recipe_plans_validate(name: str, init: str):
    """The 240M recipe plans of docs/growth.md: one WSD over the plan, growth early, past the warm-up."""
    from growlm.training.plan import load_plan, plan_shapes

    plan = load_plan(Path(__file__).resolve().parents[2] / "plans" / name)
    rows = plan_shapes(plan)
    assert [r["init"] for r in rows] == [None, init] and plan.source["schedule"]["kind"] == "wsd"
    base_share = rows[0]["tokens"] / (rows[0]["tokens"] + rows[1]["tokens"])
    assert 0.05 <= base_share <= 0.15 and rows[0]["steps"] > plan.source["schedule"]["warmup_steps"]
