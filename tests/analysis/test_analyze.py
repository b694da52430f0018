"""``growlm analyze`` end to end on tiny grown runs: files, an independent recomputation of NOC and Z
from the snapshots by the recipe in docs/analysis.md, and the clear errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from scipy.integrate import trapezoid
from scipy.stats import gaussian_kde, rankdata

from growlm.analysis import AnalysisError, AnalysisSettings, analyse
from growlm.cli.main import main
from growlm.growth import grow_checkpoint, parse_init
from growlm.training.plan import parse_plan, run_plan
from growlm.training.trainer import start_run
from tests.conftest import train_config

SMALL = {"num_hidden_layers": 1, "hidden_size": 64, "num_attention_heads": 2, "head_dim": 32,
         "nexus_m": 48, "nexus_a": 64, "intermediate_size": 128}


@pytest.fixture(scope="module")
def grown_runs(tiny_data, tmp_path_factory) -> dict[str, Path]:
    """A plan (base, then grow + continue with 6 snapshots) and a second scale grown from the same base."""
    root = tmp_path_factory.mktemp("dynamics")
    common = {"data": str(tiny_data), "seq_len": 32, "micro_batch_size": 4, "lr": 3e-3, "warmup_steps": 2,
              "log_every": 5, "eval_every": 100, "eval_batches": 2, "checkpoint_every": 100, "progress": False,
              "device": "cpu", "tensorboard": False}
    plan = parse_plan({"out_dir": str(root / "plan"), "defaults": common, "stages": [
        {"name": "base", "model": "nexus-tiny", "model_overrides": SMALL, "max_steps": 12},
        {"name": "grow", "grow": {"nexus_m": 64, "nexus_a": 80}, "init": "noise:0.2", "max_steps": 12,
         "snapshots": 7}]})
    run_plan(plan)
    base = next((root / "plan").glob("stage-01-*")) / "train"
    grow_checkpoint(base, root / "grown2", {"nexus_m": 80, "nexus_a": 96}, parse_init("noise:0.2"))
    start_run(train_config(tiny_data, root / "scale2", model=None, init_from=str(root / "grown2"), max_steps=12,
                           snapshots=7, eval_every=100, checkpoint_every=100))
    grow_checkpoint(base, root / "grown-zero", {"nexus_m": 64, "nexus_a": 80}, parse_init("zero"))
    start_run(train_config(tiny_data, root / "zero", model=None, init_from=str(root / "grown-zero"), max_steps=4,
                           snapshots=3, eval_every=100, checkpoint_every=100))
    start_run(train_config(tiny_data, root / "short", model=None, init_from=str(root / "grown2"), max_steps=4,
                           snapshots=3, eval_every=100, checkpoint_every=100))
    return {"stage": next((root / "plan").glob("stage-02-*")), "scale2": root / "scale2", "short": root / "short",
            "base": base, "zero": root / "zero"}


def _sets(growth: dict, state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """New and old values of the grown matrices, written from the recipe in docs/analysis.md."""
    def idx(runs):
        return np.concatenate([np.arange(a, b) for a, b in runs])

    new, old = [], []
    for name in sorted({b["param"] for b in growth["new_blocks"] if b["init"] != "fixed"}):
        w = state[name].astype(np.float64)
        placement = growth["placements"].get(name)
        if w.ndim != 2 or placement is None or placement["source"] is None:
            continue
        mask = np.zeros(w.shape, bool)
        for b in growth["new_blocks"]:
            if b["param"] == name and b["init"] != "fixed":
                mask[np.ix_(idx(b["region"][0]), idx(b["region"][1]))] = True
        old_mask = np.zeros(w.shape, bool)
        old_mask[np.ix_(idx(placement["positions"][0]), idx(placement["positions"][1]))] = True
        new.append(w[mask])
        old.append(w[old_mask])
    return np.concatenate(new), np.concatenate(old)


def _noc(a, b, cap=5000):
    if a.size > cap:
        a = a[np.random.default_rng(0).choice(a.size, cap, replace=False)]
    if b.size > cap:
        b = b[np.random.default_rng(1).choice(b.size, cap, replace=False)]
    ka, kb = gaussian_kde(a, "scott"), gaussian_kde(b, "scott")
    pad = 5 * math.sqrt(max(ka.covariance[0, 0], kb.covariance[0, 0]))
    x = np.linspace(min(a.min(), b.min()) - pad, max(a.max(), b.max()) + pad, 2048)
    return trapezoid(np.minimum(ka(x), kb(x)), x)


def _z(a, b):
    ranks = rankdata(np.concatenate([a, b]))
    u = ranks[: a.size].sum() - a.size * (a.size + 1) / 2
    n1, n2 = a.size, b.size
    return (u - n1 * n2 / 2) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)


def test_analyze_writes_everything_and_agrees_with_a_recomputation(grown_runs, tmp_path, tiny_data):
    out = tmp_path / "analysis"
    code = main(["analyze", str(grown_runs["stage"]), str(grown_runs["scale2"]), "--out", str(out),
                 "--names", "small", "large", "--limit", "2", "--benchmark-points", "ends", "--ppl-batches", "2",
                 "--max-values", "5000", "--device", "cpu", "--definitions", "growlm"])
    assert code == 0
    report = json.loads((out / "dynamics.json").read_text())
    for name in ("dynamics.csv", "tables.md", "stats.png", "pca.png", "distances.png", "harmonic.png", "law.png"):
        assert (out / name).stat().st_size > 0, name
    rows = report["snapshots"]
    assert [r["run"] for r in rows] == ["small"] * 7 + ["large"] * 7
    assert [r["step"] for r in rows[:7]] == [0, 2, 4, 6, 8, 10, 12]
    for run_name, run_dir in (("small", grown_runs["stage"] / "train"), ("large", grown_runs["scale2"])):
        growth = json.loads((run_dir / "snapshots" / "growth.json").read_text())
        for row in (r for r in rows if r["run"] == run_name):
            state = load_file(Path(row["snapshot"]) / "model.safetensors")
            new, old = _sets(growth, state)
            assert row["noc"] == pytest.approx(_noc(new, old), abs=1e-3)
            assert row["z"] == pytest.approx(_z(new, old), rel=1e-6)
    first = rows[0]
    assert first["theta"] == 0 and first["rho"] == 0 and first["R"] == 0 and first["perf"] == 0
    assert all(0 <= r["rho"] <= 1 and r["ppl"] > 0 for r in rows)
    # benchmarks at the ends only: ΔP from them there; the state's performance is then the perplexity gain
    assert [r.get("paper5") is not None for r in rows[:7]] == [True] + [False] * 5 + [True]
    assert report["settings"]["performance_measure"] == "delta_lnppl"
    assert rows[6]["perf"] == pytest.approx(100 * (math.log(rows[0]["ppl"]) - math.log(rows[6]["ppl"])))
    assert max(r["R"] for r in rows) <= math.sqrt(2) + 1e-12
    law = report["law"]["noise:0.2"]  # one law per init scheme, across its scales
    assert law["n"] == 12 and [e["run"] for e in law["leave_one_run_out"]] == ["small", "large"]
    assert len(report["pca"]["components"]) == 3 and report["settings"]["state"] == ["rho", "noc", "perf"]
    assert {"harmonic", "fisher"} <= set(report["runs"][0]["periodicity"])
    tables = (out / "tables.md").read_text()
    assert "| Model_size |" in tables and "| PC1 |" in tables and "| init | a | b | R² |" in tables


def test_clear_errors(grown_runs, tmp_path):
    cheap = AnalysisSettings(tasks=[], ppl_batches=1, max_values=2000, device="cpu")
    with pytest.raises(AnalysisError, match="has no growth point"):
        analyse([grown_runs["base"]], tmp_path / "a", cheap)
    with pytest.raises(AnalysisError, match="harmonic regression needs at least 6 points after the growth point, got 2"):
        analyse([grown_runs["short"]], tmp_path / "b", cheap)
    mixed = tmp_path / "mixed"
    shutil.copytree(grown_runs["scale2"], mixed)
    record = json.loads((mixed / "snapshots" / "growth.json").read_text())
    (mixed / "snapshots" / "growth.json").write_text(json.dumps({**record, "architecture": "qwen3"}))
    with pytest.raises(AnalysisError, match=r"mix architectures: scale2 \(nexus\), mixed \(qwen3\)"):
        analyse([grown_runs["scale2"], mixed], tmp_path / "c", cheap)
    with pytest.raises(AnalysisError, match="unknown statistic to skip 'harmonics'"):
        analyse([grown_runs["scale2"]], tmp_path / "d", AnalysisSettings(tasks=[], skip=["harmonics"]))
    # with the periodicity tests left out, three points are enough
    report = analyse([grown_runs["short"]], tmp_path / "e", AnalysisSettings(
        tasks=[], ppl_batches=1, max_values=2000, device="cpu", skip=["harmonic", "fisher"]))
    assert len(report["snapshots"]) == 3 and report["law"] is None
    # the weight statistics in worker processes give the same numbers
    again = analyse([grown_runs["short"]], tmp_path / "f", AnalysisSettings(
        tasks=[], ppl_batches=1, max_values=2000, device="cpu", skip=["harmonic", "fisher"], workers=2))
    keys = ("noc", "z", "theta", "rho", "R")
    assert [[r[k] for k in keys] for r in again["snapshots"]] == [[r[k] for k in keys] for r in report["snapshots"]]


def test_paper_definitions_zero_init_and_noise(grown_runs, tmp_path):
    """The default (paper) definitions: NOC and Z between the base and the grown model; on a zero
    init NOC is below 1 but far from 0 (the grown model is the base plus zeros), Z a p-value in
    [0, 1]; θ, ρ are relative changes against the growth point and R their norm."""
    from growlm.analysis.regions import base_state, base_vs_grown
    from growlm.models import storage

    report = analyse([grown_runs["zero"], grown_runs["scale2"]], tmp_path / "paper", AnalysisSettings(
        tasks=[], ppl_batches=1, max_values=2000, device="cpu", skip=["harmonic", "fisher", "law"]),
        names=["zero", "noise"])
    assert report["settings"]["definitions"] == "paper" and report["settings"]["state"] == ["theta", "rho", "perf"]
    rows = report["snapshots"]
    for row in rows:
        assert 0 <= row["z"] <= 1 and 0 < row["noc"] <= 1
    zero = [r for r in rows if r["run"] == "zero"]
    assert 0.3 < zero[0]["noc"] < 0.99  # base vs base padded with zeros: non-trivial, not 0
    for run in ("zero", "noise"):
        series = [r for r in rows if r["run"] == run]
        z0, n0 = series[0]["z"], series[0]["noc"]
        for r in series:
            assert r["theta"] == pytest.approx((r["z"] - z0) / z0) and r["rho"] == pytest.approx((r["noc"] - n0) / n0)
            assert r["R"] == pytest.approx(math.hypot(r["theta"], r["rho"]))
    # the base read back from the growth point is the base checkpoint (growth keeps the old values)
    growth = json.loads((grown_runs["zero"] / "snapshots" / "growth.json").read_text())
    grown = storage.load_state(grown_runs["zero"].parent / "grown-zero")
    base = base_state(growth, grown)
    saved = storage.load_state(storage.resolve_model_dir(grown_runs["base"]))
    assert set(base) == set(saved)
    assert all(np.array_equal(base[k], saved[k].double().numpy()) for k in base)
    # poolings: every one gives NOC and Z in range; unknown pooling named with the valid ones
    arrays = {k: v.double().numpy() for k, v in grown.items()}
    for pooling in ("model", "grown", "layer", "tensor"):
        result = base_vs_grown(base, arrays, growth, pooling, 2000, 512)
        assert 0 < result["noc"] < 1 and 0 <= result["z"] <= 1
    with pytest.raises(AnalysisError, match="unknown pooling 'rows'"):
        analyse([grown_runs["zero"]], tmp_path / "x", AnalysisSettings(tasks=[], pooling="rows"))
