"""Known answers for every statistic of growth dynamics (synthetic input, no model)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from growlm.analysis.statistics import (
    AnalysisError,
    align_signs,
    every_kth,
    fisher_g,
    fisher_g_pvalue,
    grassmann_distance,
    harmonic_regression,
    law_fit,
    lifted_plane,
    mann_whitney_pvalue,
    mann_whitney_z,
    overlap_coefficient,
    pca_states,
    radial_energy,
    radius_bands,
    subsample,
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


def test_noc_grid_is_padded_identical_uniform_sets_give_one():
    u = np.random.default_rng(0).uniform(size=5000)
    assert overlap_coefficient(u, u) == pytest.approx(1.0, abs=2e-3)


def test_subsample_is_random_seeded_and_capped():
    values = np.arange(45_001)
    a, b = subsample(values, 20_000, seed=0), subsample(values, 20_000, seed=0)
    assert a.size == 20_000 and np.array_equal(a, b) and np.unique(a).size == 20_000
    assert not np.array_equal(a, subsample(values, 20_000, seed=1))
    # a fixed stride of a matrix with 3 columns takes one column; a random sample takes all three
    matrix = np.tile(np.array([0.0, 1.0, 2.0]), 15_000)
    assert set(np.unique(matrix[::3])) == {0.0} and set(np.unique(subsample(matrix, 1000))) == {0.0, 1.0, 2.0}


def test_mann_whitney_pvalue_is_scipys_and_in_unit_interval():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(0.5, size=400)
    assert mann_whitney_pvalue(a, b) == pytest.approx(mannwhitneyu(a, b).pvalue)
    assert mann_whitney_pvalue(a, b) < 1e-6
    same = mann_whitney_pvalue(a, rng.normal(size=400))
    assert 0 <= same <= 1
    assert mann_whitney_pvalue(np.zeros(3), np.zeros(4)) == 1.0


def test_radial_energy_is_relative_to_the_growth_point():
    theta, rho, radius = radial_energy([0.8, 0.4, 0.8], [0.5, 0.5, 0.75])
    assert theta == [0.0, -0.5, 0.0] and rho == [0.0, 0.0, 0.5] and radius == [0.0, 0.5, 0.5]
    with pytest.raises(AnalysisError, match="non-zero value at the growth point"):
        radial_energy([0.0, 1.0], [1.0, 1.0])


def test_radius_bands_mean_performance_falls_with_r():
    rng = np.random.default_rng(0)
    angle, r = rng.uniform(0, 2 * math.pi, 400), rng.uniform(0, 1.2, 400)
    theta, rho = r * np.cos(angle), r * np.sin(angle)
    perf = 5 - 3 * np.hypot(theta, rho) + rng.normal(scale=0.3, size=400)
    bands = radius_bands(np.hypot(theta, rho), perf, bands=4)
    assert len(bands) == 4 and sum(b["n"] for b in bands) == 400
    means = [b["mean_perf"] for b in bands]
    assert all(x > y for x, y in itertools.pairwise(means))  # stepwise decrease
    fixed = radius_bands(np.hypot(theta, rho), perf, edges=[0, 0.5, 1.0, 2.0])
    assert [b["high"] for b in fixed] == [0.5, 1.0, 2.0]


def test_align_signs():
    ref = np.array([[0.6, 0.7, 0.4], [-0.5, -0.1, 0.86]])
    flipped = align_signs(-ref, ref)
    assert np.allclose(flipped, ref)


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
    fit = harmonic_regression(t, y, permutations=199, trend_degree=1)
    assert fit.omega == pytest.approx(omega, rel=0.01)
    assert fit.amplitude == pytest.approx(0.3, rel=0.03)
    assert fit.phase == pytest.approx(0.7, abs=0.05)
    assert fit.beta1 == pytest.approx(1e-8, rel=0.1)
    assert fit.r2 > 0.99 and fit.f_pvalue < 1e-10 and fit.trend_f_pvalue < 1e-10
    assert (fit.df_model, fit.df_resid) == (3, t.size - 4)
    assert fit.permutation_pvalue == pytest.approx(1 / 200)  # no permutation of 199 fits as well
    # the searched w: one full cycle over the span up to (not including) Nyquist
    assert fit.omega_range[0] == pytest.approx(2 * math.pi / 30e6)
    assert fit.omega_range[1] == pytest.approx(math.pi / (30e6 / 40))


def test_nested_f_matches_statsmodels_compare_f_test():
    import statsmodels.api as sm

    t = np.arange(12.0)
    y = 0.2 * t + np.sin(1.3 * t) + np.random.default_rng(3).normal(scale=0.3, size=t.size)
    fit = harmonic_regression(t, y, permutations=0, trend_degree=1)
    tau = t / t.max()
    w = fit.omega * t.max()
    full = sm.OLS(y, np.column_stack([np.ones_like(tau), tau, np.sin(w * tau), np.cos(w * tau)])).fit()
    trend = sm.OLS(y, np.column_stack([np.ones_like(tau), tau])).fit()
    f, p, _ = full.compare_f_test(trend)
    assert fit.trend_f == pytest.approx(f, rel=1e-9) and fit.trend_f_pvalue == pytest.approx(p, rel=1e-9)


def _rejection(make, n: int = 40, degree: int = 2) -> tuple[float, float]:
    t = np.arange(1, 11.0)  # 11 snapshots, the growth point left out
    fits = [harmonic_regression(t, make(t, np.random.default_rng(s)), grid=256, permutations=99, trend_degree=degree)
            for s in range(n)]
    return (float(np.mean([f.permutation_pvalue < 0.05 for f in fits])),
            float(np.mean([f.f_pvalue < 0.05 for f in fits])))


def test_periodicity_given_the_trend_holds_its_level_on_trends_and_saturation():
    linear, linear_vs_constant = _rejection(lambda t, r: 0.1 * t + r.normal(scale=0.3, size=t.size))
    saturating, saturating_vs_constant = _rejection(
        lambda t, r: 1 - np.exp(-t / 3) + r.normal(scale=0.05, size=t.size))
    assert linear <= 0.15 and saturating <= 0.15  # near the 5% level
    # the F test against the constant model calls both periodic
    assert linear_vs_constant > 0.5 and saturating_vs_constant > 0.9


def test_periodicity_given_the_trend_finds_a_planted_sinusoid():
    found, _ = _rejection(lambda t, r: 0.02 * t + 0.3 * np.sin(2 * math.pi * t / 4.5 + 0.5)
                          + r.normal(scale=0.05, size=t.size), n=20)
    assert found >= 0.8
    with pytest.raises(AnalysisError, match="harmonic regression needs at least 6"):
        harmonic_regression(np.arange(5.0), np.arange(5.0))


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


def test_fisher_pvalue_against_exact_rationals_and_at_large_m():
    from fractions import Fraction

    def exact(g: float, m: int) -> float:
        x = Fraction(g)
        return float(sum((-1) ** (j - 1) * math.comb(m, j) * (1 - j * x) ** (m - 1)
                         for j in range(1, math.floor(1 / x) + 1) if 1 - j * x > 0))

    for m, g in ((5, 0.3), (20, 0.12), (40, 0.06), (60, 0.05), (120, 0.03)):
        assert fisher_g_pvalue(g, m) == pytest.approx(exact(g, m), rel=1e-9, abs=1e-15)
    # m = 300: the largest of 300 white-noise ordinates has g near (ln 300 + 0.58) / 300; doubles gave 0.0
    g = (math.log(300) + 0.5772) / 300
    assert 0.3 < fisher_g_pvalue(g, 300) < 0.7
    assert fisher_g_pvalue(1.01 / 300, 300) == pytest.approx(1.0, abs=1e-9)
    for m in (1100, 1200):  # doubles overflowed here
        p = fisher_g_pvalue((math.log(m) + 0.5772) / m, m)
        assert 0.3 < p < 0.7


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


def test_law_run_permutation_holds_its_level_on_random_walks_and_finds_a_law():
    # independent random walks per run: linregress's point-wise p-value rejects far too often,
    # whole-run permutation near its level
    runs, k = 6, 10
    groups = np.repeat([f"r{i}" for i in range(runs)], k)
    point, whole = [], []
    for s in range(40):
        rng = np.random.default_rng(s)
        x = np.cumsum(rng.normal(size=(runs, k)), axis=1).ravel()
        y = np.cumsum(rng.normal(size=(runs, k)), axis=1).ravel()
        fit = law_fit(x, y, groups, permutations=720)
        point.append(fit["pvalue"] < 0.05)
        whole.append(fit["run_permutation_pvalue"] < 0.05)
    assert np.mean(point) > 0.2 and np.mean(whole) <= 0.15
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 3, runs * k) + np.repeat(np.arange(runs), k)
    fit = law_fit(x, -0.1 * x + 2.5 + rng.normal(scale=0.01, size=x.size), groups)
    assert fit["run_permutation_pvalue"] <= 2 / 720 and fit["run_permutations"] == 720
    # a far point is flagged (leverage / Cook's distance)
    x2, y2 = np.append(x, 40.0), np.append(-0.1 * x + 2.5, 0.0)
    flagged = law_fit(x2, y2, [*groups, "r9"])["influential"]
    assert any(e["run"] == "r9" for e in flagged)
