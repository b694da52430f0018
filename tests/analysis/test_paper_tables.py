"""Known answers from the paper itself: its Table 4's R from its Z and NOC rows, its Table 5 from
its Table 3, and Appendix D's harmonic regression on its Table 4 (docs/analysis.md)."""

from __future__ import annotations

import numpy as np
import pytest

from growlm.analysis.statistics import (
    align_signs,
    harmonic_regression,
    pca_states,
    radial_energy,
    relative_change,
)
from tests.analysis.paper_tables import (
    APPENDIX_D_R2,
    TABLE3,
    TABLE4,
    TABLE4_TOKENS_B,
    TABLE5,
    TABLE5_EXPLAINED_PERCENT,
)


@pytest.mark.parametrize("init", sorted(TABLE4))
def test_table4_r_from_its_z_and_noc(init):
    row = TABLE4[init]
    _theta, _rho, radius = radial_energy(row["z"], row["noc"])
    assert np.max(np.abs(np.array(radius) - np.array(row["R"]))) <= 1e-8


def table3_states() -> np.ndarray:
    """(ΔZ/Z₀, ΔNOC/NOC₀, ΔAvg/Avg₀) of Table 3's 21 points, each against its growth's 0B row."""
    states = []
    for rows in TABLE3.values():
        z, noc, avg = (list(c) for c in zip(*rows, strict=True))
        states += list(zip(relative_change(z), relative_change(noc), relative_change(avg), strict=True))
    return np.array(states)


def test_table5_from_table3():
    result = pca_states(table3_states(), ["theta", "rho", "perf"])
    reference = np.array([TABLE5["PC1"], TABLE5["PC2"]])
    loadings = align_signs(np.array(result.components[:2]), reference)
    assert np.max(np.abs(loadings - reference)) <= 0.15
    explained = 100 * sum(result.explained_variance_ratio[:2])
    assert explained == pytest.approx(TABLE5_EXPLAINED_PERCENT, abs=2.0)


def test_appendix_d_harmonic_regression_on_table4_zero():
    # the paper's model: linear trend + one harmonic, all 11 points, F against the constant model
    fit = harmonic_regression(np.array(TABLE4_TOKENS_B, float) * 1e9, TABLE4["zero"]["R"], trend_degree=1,
                              permutations=199)
    assert (fit.df_model, fit.df_resid) == (3, 7)
    assert 0 < fit.r2 < 1 and fit.f_statistic > 0
    # growlm gives R² 0.701, F 5.46 (p 0.030), period 10.4B: the paper's R² 0.685, "period about 11B"
    assert fit.r2 == pytest.approx(APPENDIX_D_R2, abs=0.03)
    assert 9e9 < fit.period_tokens < 13e9 and fit.f_pvalue < 0.05
