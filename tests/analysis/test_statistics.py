"""Known answers for every statistic of growth dynamics (synthetic input, no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from growlm.analysis.statistics import (
    AnalysisError,
    every_kth,
    fisher_g,
    fisher_g_pvalue,
    grassmann_distance,
    harmonic_regression,
    law_fit,
    lifted_plane,
    mann_whitney_z,
    overlap_coefficient,
    pca_states,
)


def test_noc_of_a_set_with_itself_is_one_and_of_far_sets_zero():
    x = np.random.default_rng(0).normal(size=5000)
    assert overlap_coefficient(x, x) == pytest.approx(1.0, abs=1e-3)
    assert overlap_coefficient(x, x + 50.0) < 1e-6


def test_noc_of_two_normals_matches_the_closed_form():
    # N(0,1) vs N(1,1): overlap = 2 Phi(-1/2) = 0.6171; KDE of 20,000 points is close
    from scipy.stats import norm

    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 40_000), rng.normal(1, 1, 40_000)
    assert overlap_coefficient(a, b) == pytest.approx(2 * norm.cdf(-0.5), abs=0.02)


def test_noc_point_masses():
    x = np.random.default_rng(0).normal(size=100)
    assert overlap_coefficient(np.zeros(10), x) == 0.0
    assert overlap_coefficient(np.zeros(10), np.zeros(3)) == 1.0


def test_every_kth_is_deterministic_and_capped():
    values = np.arange(45_001)
    sub = every_kth(values, 20_000)
    assert sub.size <= 20_000 and sub[0] == 0 and sub[1] == 3  # k = ceil(45001 / 20000) = 3


def test_z_matches_a_hand_computation():
    a, b = np.array([1.0, 4.0, 6.0]), np.array([2.0, 3.0, 5.0, 7.0])
    # U of a: pairs (a_i > b_j): 1 -> 0, 4 -> 2 (2, 3), 6 -> 3 (2, 3, 5): U = 5
    result = mann_whitney_z(a, b)
    assert result.u == 5.0
    expected = (5 - 3 * 4 / 2) / math.sqrt(3 * 4 * (3 + 4 + 1) / 12)
    assert result.z == pytest.approx(expected, rel=1e-12)
    assert result.auc == pytest.approx(5 / 12)


def test_z_counts_ties_as_half_without_correcting_the_variance():
    a, b = np.array([1.0, 2.0]), np.array([1.0, 3.0])
    result = mann_whitney_z(a, b)  # pairs: (1,1) tie .5, (1,3) 0, (2,1) 1, (2,3) 0
    assert result.u == 1.5
    assert result.z == pytest.approx((1.5 - 2) / math.sqrt(2 * 2 * 5 / 12), rel=1e-12)


def test_grassmann_identical_is_zero_and_orthogonal_is_the_maximum():
    e = np.eye(4)
    assert grassmann_distance(e[:, :2], e[:, :2]) == pytest.approx(0.0, abs=1e-12)
    assert grassmann_distance(e[:, :2], e[:, :2] @ np.array([[1.0, 1.0], [1.0, -1.0]])) == pytest.approx(0.0, abs=1e-7)
    assert grassmann_distance(e[:, :2], e[:, 2:]) == pytest.approx(math.pi / 2 * math.sqrt(2), rel=1e-12)
    # in R^3 two planes share a line: the maximum is pi/2 (one principal angle)
    assert grassmann_distance(np.eye(3)[:, :2], np.eye(3)[:, 1:]) == pytest.approx(math.pi / 2, rel=1e-12)


def test_lifted_planes():
    assert grassmann_distance(lifted_plane((0.0, 0.0)), np.eye(3)[:, :2]) == pytest.approx(0.0, abs=1e-12)
    # the plane of (y1, 0) has normal (-y1, 0, 1): its angle to the horizontal plane is atan(|y1|)
    assert grassmann_distance(lifted_plane((0.0, 0.0)), lifted_plane((2.0, 0.0))) == pytest.approx(math.atan(2.0))


def test_pca_loadings_of_a_one_dimensional_cloud():
    t = np.linspace(-1, 1, 20)
    noise = np.random.default_rng(0).normal(scale=1e-3, size=(20, 3))
    states = np.column_stack([t, 2 * t, -3 * t]) + noise
    result = pca_states(states, ["a", "b", "c"])
    # standardised, the three features are (+, +, -) copies of t: PC1 = (1, 1, -1)/sqrt(3) up to sign
    pc1 = np.array(result.components[0])
    assert np.allclose(np.abs(pc1), 1 / math.sqrt(3), atol=1e-3)
    assert np.sign(pc1[0]) == np.sign(pc1[1]) == -np.sign(pc1[2])
    assert result.explained_variance_ratio[0] > 0.999
    with pytest.raises(AnalysisError, match="PCA needs at least 3 states"):
        pca_states(states[:2], ["a", "b", "c"])


def test_harmonic_regression_recovers_a_planted_sinusoid():
    t = np.linspace(0, 30e6, 41)  # tokens
    omega = 2 * math.pi / 11e6  # a period of 11M tokens, as the paper's 11B
    y = 0.5 + 1e-8 * t + 0.3 * np.sin(omega * t + 0.7) + np.random.default_rng(0).normal(scale=0.01, size=t.size)
    fit = harmonic_regression(t, y, permutations=199)
    assert fit.omega == pytest.approx(omega, rel=0.01)
    assert fit.amplitude == pytest.approx(0.3, rel=0.03)
    assert fit.phase == pytest.approx(0.7, abs=0.05)
    assert fit.beta1 == pytest.approx(1e-8, rel=0.1)
    assert fit.r2 > 0.99 and fit.f_pvalue < 1e-10
    assert (fit.df_model, fit.df_resid) == (3, t.size - 4)
    assert fit.permutation_pvalue == pytest.approx(1 / 200)  # no ordering of 199 fits as well


def test_harmonic_regression_on_noise_the_f_test_is_optimistic_and_the_permutation_test_is_not():
    t = np.arange(11.0)
    fits = [harmonic_regression(t, np.random.default_rng(s).normal(size=11), grid=256, permutations=199)
            for s in range(40)]
    f_reject = np.mean([f.f_pvalue < 0.05 for f in fits])
    perm_reject = np.mean([f.permutation_pvalue < 0.05 for f in fits])
    assert f_reject > 0.3  # choosing w after seeing the data: the conditional F test rejects far too often
    assert perm_reject <= 0.15  # the permutation test includes the search: near its 5% size
    with pytest.raises(AnalysisError, match="harmonic regression needs at least 6"):
        harmonic_regression(t[:5], t[:5])


def test_fisher_pvalue_exact_formula():
    # m = 2: P(G > x) = 2 (1 - x) - (1 - 2x) for x <= 1/2, 2 (1 - x) above
    assert fisher_g_pvalue(0.4, 2) == pytest.approx(2 * 0.6 - 0.2)
    assert fisher_g_pvalue(0.8, 2) == pytest.approx(0.4)
    assert fisher_g_pvalue(0.1, 5) == 1.0
    # against simulation: G of m exponential ordinates (white-noise periodogram)
    rng = np.random.default_rng(0)
    m = 5
    ordinates = rng.exponential(size=(200_000, m))
    g = ordinates.max(axis=1) / ordinates.sum(axis=1)
    for x in (0.35, 0.5, 0.7):
        assert fisher_g_pvalue(x, m) == pytest.approx(np.mean(g > x), abs=0.005)


def test_fisher_g_rejects_a_sinusoid_and_not_white_noise():
    n = 64
    t = np.arange(n)
    result = fisher_g(np.sin(2 * math.pi * 5 * t / n) + 0.01 * t)
    assert result.pvalue < 1e-10 and result.frequency == pytest.approx(5 / n)
    assert result.m == 31
    pvalues = np.array([fisher_g(np.random.default_rng(s).normal(size=n)).pvalue for s in range(300)])
    assert 0.02 < np.mean(pvalues < 0.05) < 0.09  # the test's size, near 5%
    with pytest.raises(AnalysisError, match="Fisher's g needs at least 5"):
        fisher_g(np.ones(4))


def test_law_fit_recovers_the_line_and_predicts_held_out_runs():
    x = np.array([1.0, 2, 3, 1.5, 2.5, 3.5, 0.5, 1.2, 2.2])
    y = -0.0991 * x + 2.4804
    fit = law_fit(x, y, ["a"] * 3 + ["b"] * 3 + ["c"] * 3)
    assert fit["a"] == pytest.approx(-0.0991) and fit["b"] == pytest.approx(2.4804) and fit["r2"] == pytest.approx(1)
    assert all(e["rmse_ln_ppl"] < 1e-9 for e in fit["leave_one_run_out"])
    with pytest.raises(AnalysisError, match="law fit needs at least 3"):
        law_fit(x[:2], y[:2], ["a", "b"])
