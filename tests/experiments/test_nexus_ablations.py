"""`growlm experiment nexus-ablations --quick`: every arm and seed from one base, M > A run, paired arithmetic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from growlm.errors import ConfigError
from growlm.experiments import nexus_ablations as na
from growlm.experiments.common import Context
from tests.experiments.conftest import run_quick


def test_quick_nexus_ablations(tmp_path: Path, shared: Path, experiment_data_root: Path):
    out = tmp_path / "ablations"
    text, meta, _ = run_quick("nexus-ablations", out, shared, experiment_data_root)
    size = na.FORMS["quick"]
    data = meta["data"]
    seeds = (0, 1, 2)
    assert meta["seeds"] == list(seeds) and meta["form"] == "quick"
    assert sorted((r["arm"], r["seed"]) for r in data["records"]) == sorted((a, s) for a in na.ARMS for s in seeds)
    by = {(r["arm"], r["seed"]): r for r in data["records"]}
    base = size.dims(na.PAPER_BASE)
    assert base == (33, 40) and data["base"]["dims"] == list(base)
    for (arm, seed), r in by.items():
        # every route starts at the base and ends at the paper's target x D/768; staged arms grow twice
        expected = [list(size.dims(p)) for p in na.ARMS[arm].route]
        assert r["route"] == expected
        assert r["ppl"] == pytest.approx(math.exp(r["loss"])) and r["windows"] == size.final_windows
        plan = json.loads((out / "units" / arm / f"seed={seed}" / "plan.json").read_text())
        assert len(plan["stages"]) == max(1, len(expected)) and r["flops"] == plan["ledger"]["total"]["train_flops"]
        if arm == na.CONTROL:
            assert r["growth_verified"] == [] and r["tokens"] == na.control_steps(size) * size.tokens_per_step
        else:
            assert r["growth_verified"] == [True] * len(expected)  # lossless at every growth
            assert r["tokens"] == size.steps(size.grow_tokens) * size.tokens_per_step
        if len(expected) == 2:  # the second growth after stage_at of the continuation
            assert r["stage_steps"] == [4, 4]
    assert by["m-only", 0]["route"][-1][0] > by["m-only", 0]["route"][-1][1]  # M > A runs (warned, not refused)
    assert by["joint-m-led", 0]["route"] == [[47, 42]] and by["joint-a-led", 0]["route"] == [[35, 55]]
    # the no-growth control costs what the reference's continuation costs (within one step)
    control, ref = by[na.CONTROL, 0], by[na.REFERENCE, 0]
    assert abs(control["flops"] - ref["flops"]) / ref["flops"] < 1 / na.control_steps(size)
    # the paired arithmetic of the report
    rows = {r["arm"]: r for r in data["rows"]}
    for arm in ("m-only", "a-only", "flat"):
        diffs = [by[arm, s]["loss"] - by[na.REFERENCE, s]["loss"] for s in seeds]
        assert rows[arm]["vs_ref"]["mean"] == pytest.approx(sum(diffs) / 3)
        assert rows[arm]["vs_ref_verdict"] == na.verdict(na.mean_interval(diffs))
    assert rows[na.REFERENCE]["ppl"]["n"] == 3
    assert rows[na.REFERENCE]["ppl"]["mean"] == pytest.approx(sum(by[na.REFERENCE, s]["ppl"] for s in seeds) / 3)
    # files and columns
    assert "### Table 9" in text and "### Appendix I" in text
    headers = [line for line in text.splitlines() if line.startswith("| Arm |")]
    assert len(headers) == 2
    for column in ("Val PPL (95% CI)", "Δ ln PPL vs reference (paired)", "Continuation TFLOP", "M/A route (paper)"):
        assert all(column in h for h in headers)
    assert "Paper PPL (Table 9)" in headers[0] and "10.89016404" in text
    for figure in ("nexus_ablations.png", "continuation_curves.png"):
        assert (out / figure).stat().st_size > 1000
    assert (out / "report.md").exists() and (out / "runner.json").exists()
    weights = list((out / "runs").rglob("*.safetensors"))
    assert weights and all(p.relative_to(out / "runs").parts[0] == "base" for p in weights)  # only the bases keep them


def test_verdict_and_settings():
    assert na.verdict(na.mean_interval([0.1, 0.2, 0.15])) == "higher"
    assert na.verdict(na.mean_interval([-0.1, -0.2, -0.15])) == "lower"
    assert na.verdict(na.mean_interval([-0.1, 0.2, 0.05])) == "tie"
    assert na.verdict(na.mean_interval([0.1])) == "n/a"
    full = na.FORMS["full"]
    assert full.dims(na.PAPER_BASE) == (390, 480) and full.dims((1130, 1010)) == (565, 505)
    ctx = Context("nexus-ablations", Path("/tmp/x"), quick=True, seeds=[0], options={"parts": "axes,bogus"})
    with pytest.raises(ConfigError, match="bogus"):
        na.settings(ctx)
    with pytest.raises(ConfigError, match="nope"):
        na.settings(Context("nexus-ablations", Path("/tmp/x"), quick=True, seeds=[0], options={"nope": 1}))
    axes = na.settings(Context("nexus-ablations", Path("/tmp/x"), quick=True, seeds=[0], options={"parts": "axes"}))
    assert na.arm_names(axes) == ["m-only", "a-only", "joint-m-led", "joint-a-led", "no-growth"]


def test_drop_stale_forgets_records_without_weights(tmp_path: Path):
    ctx = Context("nexus-ablations", tmp_path, quick=True, seeds=[0])
    units = tmp_path / "units" / "flat" / "seed=0"
    units.mkdir(parents=True)
    kept = tmp_path / "model"
    kept.mkdir()
    (kept / "model.safetensors").write_bytes(b"")
    (units / "grown.json").write_text(json.dumps({"model": str(tmp_path / "gone")}))
    (units / "plan.json").write_text(json.dumps({"stages": [{"final_checkpoint": str(kept)}]}))
    na.drop_stale(ctx, "flat/seed=0")  # the plan's weights are there: both records kept
    assert (units / "plan.json").exists() and (units / "grown.json").exists()
    (kept / "model.safetensors").unlink()  # the evaluation deletes the weights, the folder stays
    na.drop_stale(ctx, "flat/seed=0")  # the plan's weights are gone: redo the plan, and the growth it needs
    assert not (units / "plan.json").exists() and not (units / "grown.json").exists()
