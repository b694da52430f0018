"""``growlm experiment growth-dynamics --quick``: every seed, scale and init analysed, tables and figures."""

from __future__ import annotations

import json
import math

import pytest

from growlm.experiments import run_experiment
from growlm.experiments.growth_dynamics import INITS


@pytest.mark.slow
def test_quick_growth_dynamics(tmp_path, shared):
    out = tmp_path / "gd"
    path, report = run_experiment("growth-dynamics", out=out, quick=True, seeds=2, device="cpu", shared=shared,
                                  data_root=tmp_path / "data", argv=["experiment", "growth-dynamics", "--quick"])
    text = path.read_text()
    for heading in ("Table 3 analogue", "Table 4 analogue", "Table 5 analogue", "Periodicity of R",
                    "ln PPL = a·|ln R| + b", "What holds"):
        assert heading in text
    for seed in (0, 1):
        analysis = json.loads((out / "units" / "analysis" / f"seed={seed}.json").read_text())
        labels = {r["label"] for r in analysis["runs"]}
        assert len(labels) == 12 and all(any(label.endswith(i.replace(":", "")) for label in labels) for i in INITS)
        assert all(len([s for s in analysis["snapshots"] if s["run"] == label]) == 8 for label in labels)
        assert set(analysis["law"]) == set(INITS)
    assert {p.name for p in report.figures} == {"stats.png", "pca.png", "distances.png", "harmonic.png", "law.png",
                                                "radius.png"}
    assert report.data["zero_new_blocks_frozen"] is True  # all-zero growth: new blocks never get gradient
    assert report.data["zero_same_at_every_scale"] is True  # ... so every scale trains the base model
    for law in report.data["laws"]:
        assert law["r2"].n == 2 and math.isfinite(law["a"].half_width)


def test_report_counts_and_combines_p_values_instead_of_averaging():
    from scipy.stats import combine_pvalues

    from growlm.experiments.growth_dynamics import _combined, _significant

    pvalues = [0.01, 0.2, None, 0.04, float("nan")]
    assert _significant(pvalues) == "2/3"
    assert float(_combined(pvalues)) == pytest.approx(combine_pvalues([0.01, 0.2, 0.04]).pvalue, rel=1e-3)
    assert _combined([None]) == "n/a"
