"""`growlm experiment growth-vs-scratch --quick`: ledger FLOPs, compute to target, saving formula, figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.experiments.conftest import run_quick


def test_quick_growth_vs_scratch(tmp_path: Path, shared: Path, experiment_data_root: Path):
    out = tmp_path / "gvs"
    text, meta, _ = run_quick("growth-vs-scratch", out, shared, experiment_data_root)
    records = meta["data"]["records"]
    assert sorted((r["architecture"], r["seed"]) for r in records) == sorted(
        (a, s) for a in ("nexus", "tokenformer") for s in (0, 1, 2))
    for r in records:
        raw = json.loads((out / "units" / r["architecture"] / f"seed={r['seed']}" / "record.json").read_text())
        # the curves end exactly at the ledgers' totals: the compute axis is the ledger's, not steps
        assert raw["grown_curve"][-1]["flops"] == r["grown_ledger"]["total"]["train_flops"]
        assert raw["scratch_curve"][-1]["flops"] == r["scratch_ledger"]["total"]["train_flops"]
        assert r["grown_ledger"]["total"]["tokens"] == r["scratch_ledger"]["total"]["tokens"]  # same tokens
        assert r["growth_verified"] is True  # preserve growth is lossless
        assert r["target_loss"] == raw["scratch_curve"][-1]["loss"]
        assert r["scratch_flops_to_target"] <= r["scratch_total_flops"]
        if r["reached"]:
            assert r["saving"] == pytest.approx(1 - r["grown_flops_to_target"] / r["scratch_flops_to_target"])
        else:
            assert r["saving"] is None and r["grown_final_loss"] > r["target_loss"]
        assert r["saving_bound"] == pytest.approx(1 - r["grown_total_flops"] / r["scratch_flops_to_target"])
    assert "Saving = 1 − F_grown(L*) / F_scratch(L*)" in text and "41.5%" in text
    assert text.count("| NexusFormer | nexus_m→") == 1 and text.count("| TokenFormer | qkv_slots→") == 1
    assert "paper's comparison (its 41.5%)" in text
    assert (out / "loss_vs_flops.png").stat().st_size > 1000
