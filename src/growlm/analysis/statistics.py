"""The statistics of growth dynamics on plain arrays: overlap, rank test, subspaces, periodicity, the law.

Each function implements one recipe of ``docs/analysis.md`` exactly, through scipy,
statsmodels or scikit-learn where they have it. Written by hand, because no library has
it: the exact p-value of Fisher's g test (scipy and statsmodels offer periodograms but no
g test) and the lifting of a 2-D PCA point to a plane of R^3 (the paper's construction,
whose formula was lost). Every function is tested on a case with a known answer
(``tests/analysis/test_statistics.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from growlm.errors import GrowlmError

NOC_GRID = 2048
NOC_MAX_VALUES = 20_000

# minimum number of points (growth point included) each per-run statistic needs
MINIMUM_POINTS = {"harmonic regression": 6, "Fisher's g": 5, "PCA": 3, "law fit": 3}


class AnalysisError(GrowlmError):
    """The input cannot be analysed as asked (no growth point, too few snapshots, mixed architectures)."""


def need(statistic: str, have: int, what: str = "points", hint: str = "") -> None:
    """Raise, naming the statistic and its minimum, when ``have`` is below it."""
    minimum = MINIMUM_POINTS[statistic]
    if have < minimum:
        raise AnalysisError(f"{statistic} needs at least {minimum} {what}, got {have}" + (f"; {hint}" if hint else ""))


# -- distributions of two sets of values ----------------------------------------------------------------
NOC_SEED = 0
NOC_PAD_BANDWIDTHS = 5.0  # the KDE grid reaches this many bandwidths beyond the data on both sides


def subsample(values: np.ndarray, max_values: int = NOC_MAX_VALUES, seed: int = NOC_SEED) -> np.ndarray:
    """At most ``max_values`` of ``values`` drawn at random without replacement
    (``numpy.random.default_rng(seed).choice(n, max_values, replace=False)``, in the drawn order);
    all of them, in order, when there are no more than ``max_values``. Random, not a fixed stride:
    a stride aliases with the row length of the flattened matrices (e.g. every 4th entry of a
    matrix with 4k columns is one column block)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size <= max_values:
        return values
    return values[np.random.default_rng(seed).choice(values.size, max_values, replace=False)]


def every_kth(values: np.ndarray, max_values: int = NOC_MAX_VALUES) -> np.ndarray:
    """The deterministic subsample ``values[::k]`` with ``k = ceil(n / max_values)`` (kept for callers of
    the old recipe; the analysis uses :func:`subsample`)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    k = max(1, math.ceil(values.size / max_values))
    return values[::k]


def overlap_coefficient(a: np.ndarray, b: np.ndarray, max_values: int = NOC_MAX_VALUES,
                        grid: int = NOC_GRID, seed: int = NOC_SEED) -> float:
    """Nonparametric overlap coefficient NOC = integral of min(f, g).

    f and g are ``scipy.stats.gaussian_kde`` estimates (Scott's bandwidth) of random subsamples
    (:func:`subsample`, at most ``max_values`` each, seed ``seed``) of ``a`` and ``b``; the integral
    is the trapezoid rule on ``grid`` equally spaced points from the smallest value minus
    ``NOC_PAD_BANDWIDTHS`` times the larger of the two bandwidths to the largest value plus as much
    (a grid that stops at the data's range cuts off the kernels' tails: two identical uniform sets
    would give 0.968 instead of 1). A set whose values are all equal has no density (its KDE is
    singular): it is a point mass, whose overlap with a continuous density is 0 and with a point
    mass at the same value 1.
    """
    from scipy.integrate import trapezoid
    from scipy.stats import gaussian_kde

    sa, sb = subsample(a, max_values, seed), subsample(b, max_values, seed + 1)
    if sa.size == 0 or sb.size == 0:
        raise AnalysisError("NOC needs two non-empty sets of values")
    flat_a, flat_b = np.ptp(sa) == 0, np.ptp(sb) == 0
    if flat_a or flat_b:
        return 1.0 if flat_a and flat_b and sa[0] == sb[0] else 0.0
    ka, kb = gaussian_kde(sa), gaussian_kde(sb)
    pad = NOC_PAD_BANDWIDTHS * math.sqrt(max(float(ka.covariance[0, 0]), float(kb.covariance[0, 0])))
    x = np.linspace(min(sa.min(), sb.min()) - pad, max(sa.max(), sb.max()) + pad, grid)
    return float(trapezoid(np.minimum(ka(x), kb(x)), x))


def mann_whitney_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    """The paper's Z: the two-sided p-value of the Mann-Whitney U test of ``a`` against ``b``
    (``scipy.stats.mannwhitneyu``, scipy's default method: exact for small samples without ties,
    else the normal approximation with tie correction and continuity correction). In [0, 1]:
    near 1 when the two sets have the same location, near 0 when one is shifted."""
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise AnalysisError("the Mann-Whitney test needs two non-empty sets of values")
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0  # every value equal: no difference in location (scipy would return nan)
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def relative_change(values: Sequence[float]) -> list[float]:
    """(x_t - x_0) / x_0 against the first value of the series (the run's growth point): the
    paper's θ from Z and ρ from NOC (recovered from Table 4, see docs/analysis.md)."""
    x0 = float(values[0])
    if x0 == 0:
        raise AnalysisError("a relative change needs a non-zero value at the growth point, got 0 "
                            "(e.g. NOC = 0 between disjoint sets)")
    return [(float(v) - x0) / x0 for v in values]


def radial_energy(z: Sequence[float], noc: Sequence[float]) -> tuple[list[float], list[float], list[float]]:
    """(θ, ρ, R) of one run's series: θ = relative change of Z, ρ = relative change of NOC, both
    against the run's own growth point, and R = sqrt(θ² + ρ²) (Eq. 18/32; no normalisation
    across runs)."""
    theta, rho = relative_change(z), relative_change(noc)
    return theta, rho, [math.hypot(t, r) for t, r in zip(theta, rho, strict=True)]


@dataclass(frozen=True)
class RankTest:
    u: float  # Mann-Whitney U of the first set (scipy's statistic)
    z: float  # (U - n1 n2 / 2) / sqrt(n1 n2 (n1 + n2 + 1) / 12): no tie, no continuity correction
    auc: float  # U / (n1 n2): the probability that a value of the first set exceeds one of the second
    n1: int
    n2: int


def mann_whitney_z(a: np.ndarray, b: np.ndarray) -> RankTest:
    """Mann-Whitney U of ``a`` vs ``b`` (``scipy.stats.mannwhitneyu``) as a normal-approximation z score."""
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        raise AnalysisError("the Mann-Whitney Z needs two non-empty sets of values")
    u = float(mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=False).statistic)
    mean, sd = n1 * n2 / 2.0, math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0)
    return RankTest(u, (u - mean) / sd, u / (n1 * n2), n1, n2)


# -- principal components and subspaces ------------------------------------------------------------------
@dataclass
class PCAResult:
    features: list[str]
    mean: list[float]
    scale: list[float]
    components: list[list[float]]  # loadings: one unit row per principal component
    explained_variance_ratio: list[float]
    scores: list[list[float]]  # each state projected on the components


def pca_states(states: np.ndarray, features: Sequence[str]) -> PCAResult:
    """PCA (``sklearn.decomposition.PCA``) of the standardised states (``StandardScaler``: zero mean,
    unit variance per feature; a constant feature is left at 0). Each component is oriented so that
    its entry of largest magnitude is positive (the sign of an eigenvector is arbitrary)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    states = np.asarray(states, np.float64)
    need("PCA", states.shape[0], "states")
    scaler = StandardScaler().fit(states)
    z = scaler.transform(states)
    pca = PCA(n_components=min(states.shape)).fit(z)
    components = pca.components_.copy()
    for row in components:
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1
    scores = (z - pca.mean_) @ components.T
    return PCAResult(list(features), scaler.mean_.tolist(), scaler.scale_.tolist(), components.tolist(),
                     pca.explained_variance_ratio_.tolist(), scores.tolist())


def align_signs(components: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``components`` (rows: unit loadings) with each row's sign flipped where its dot product with
    the same row of ``reference`` is negative: an eigenvector's sign is arbitrary, so loadings of
    several seeds must be put on one orientation before they are averaged."""
    components = np.array(components, dtype=np.float64, copy=True)
    reference = np.asarray(reference, dtype=np.float64)
    for i in range(min(len(components), len(reference))):
        if float(components[i] @ reference[i]) < 0:
            components[i] *= -1
    return components


def lifted_plane(point: Sequence[float]) -> np.ndarray:
    """The 2-D subspace of R^3 of a point (y1, y2) of the PCA plane: span{(1, 0, y1), (0, 1, y2)},
    orthonormalised by QR (3 x 2). It is the graph of the linear map (u, v) -> y1 u + y2 v, so
    distinct points give distinct planes and the origin gives the horizontal plane."""
    y1, y2 = float(point[0]), float(point[1])
    basis = np.array([[1.0, 0.0], [0.0, 1.0], [y1, y2]])
    q, _ = np.linalg.qr(basis)
    return q


def grassmann_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Geodesic distance on the Grassmannian: sqrt(sum of squared principal angles)
    (``scipy.linalg.subspace_angles``) between the column spans of ``a`` and ``b``."""
    from scipy.linalg import subspace_angles

    return float(np.sqrt(np.sum(subspace_angles(np.asarray(a, np.float64), np.asarray(b, np.float64)) ** 2)))


# -- periodicity ------------------------------------------------------------------------------------
@dataclass
class HarmonicFit:
    beta0: float
    beta1: float  # per token
    amplitude: float
    omega: float  # radians per token
    phase: float
    period_tokens: float
    r2: float
    f_statistic: float  # against the constant model (the paper's F(3, n - 4)), conditional on w
    f_pvalue: float
    df_model: float
    df_resid: float
    n: int
    fitted: list[float]
    trend_f: float  # harmonic terms given the trend (nested F), conditional on w
    trend_f_pvalue: float
    permutation_pvalue: float  # harmonic terms given the trend, the search over w included
    permutations: int
    trend_degree: int
    trend_coefficients: list[float]  # polynomial trend in tokens, lowest power first
    omega_range: list[float]  # the searched w, radians per token

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _designs(tau: np.ndarray, omegas: np.ndarray, degree: int = 1) -> np.ndarray:
    """(len(omegas), n, degree + 3) design matrices [1, tau, ..., tau^degree, sin(w tau), cos(w tau)]."""
    wt = omegas[:, None] * tau[None, :]
    powers = [np.broadcast_to(tau ** k, wt.shape) for k in range(degree + 1)]
    return np.stack([*powers, np.sin(wt), np.cos(wt)], axis=-1)


def _residual_makers(tau: np.ndarray, omegas: np.ndarray, degree: int = 1) -> np.ndarray:
    """I - H(w) for every w: the residual of least squares on the design at w is (I - H) y."""
    designs = _designs(tau, omegas, degree)
    hat = designs @ np.linalg.pinv(designs)
    return np.eye(tau.size)[None] - hat


def harmonic_regression(t: Sequence[float], y: Sequence[float], grid: int = 1024, permutations: int = 999,
                        seed: int = 0, trend_degree: int = 1) -> HarmonicFit:
    """Least squares fit of y = trend(t) + A sin(w t + phi), trend a polynomial of ``trend_degree``
    (1: the paper's b0 + b1 t), and a test of the harmonic terms *given* the trend.

    For a fixed w the model is linear (A sin(wt + phi) = a sin wt + c cos wt). Time is rescaled to
    tau in [0, 1]; w is searched on ``grid`` values from one full cycle over the span (2 pi) up to,
    not including, the Nyquist frequency of the median spacing (pi / spacing) -- a slower "cycle"
    is a trend, and at Nyquist sin vanishes at every sample --, the best refined by
    ``scipy.optimize.minimize_scalar`` between its grid neighbours. The final fit is a
    ``statsmodels`` OLS at that w, giving:

    * ``r2``, ``f_statistic``/``f_pvalue``: the F test against the constant model, the paper's
      F(3, n - 4) -- it counts the trend as signal, so any drift "is periodic";
    * ``trend_f``/``trend_f_pvalue``: the nested F test of the two harmonic terms against the
      trend-only model (``RegressionResults.compare_f_test``), still conditional on w;
    * ``permutation_pvalue``: the same nested F with the search over w included, against a null
      built by permuting the residuals of the trend-only fit (y* = trend fit + shuffled residuals,
      each refitted over the whole grid): the share of ``permutations`` (plus the observed) whose
      best nested F is at least the observed one.
    """
    import statsmodels.api as sm
    from scipy.optimize import minimize_scalar

    t, y = np.asarray(t, np.float64), np.asarray(y, np.float64)
    need("harmonic regression", t.size)
    if trend_degree < 0 or t.size < trend_degree + 5:
        raise AnalysisError(f"harmonic regression with a degree-{trend_degree} trend needs at least "
                            f"{trend_degree + 5} points, got {t.size}")
    span = float(t.max() - t.min())
    if span <= 0:
        raise AnalysisError("harmonic regression needs points at different times")
    tau = (t - t.min()) / span
    spacing = float(np.median(np.diff(np.sort(tau))))
    nyquist = math.pi / spacing
    if nyquist <= 2 * math.pi:
        raise AnalysisError("harmonic regression needs more than two points per cycle of the slowest w")
    omegas = np.linspace(2 * math.pi, nyquist, grid, endpoint=False)
    makers = _residual_makers(tau, omegas, trend_degree)
    rss_grid = np.sum((makers @ y) ** 2, axis=1)

    def rss(omega: float) -> float:
        design = _designs(tau, np.array([omega]), trend_degree)[0]
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        return float(np.sum((y - design @ coef) ** 2))

    i = int(np.argmin(rss_grid))
    best = float(omegas[i])
    lo, hi = omegas[max(i - 1, 0)], omegas[min(i + 1, grid - 1)]
    if hi > lo:
        refined = minimize_scalar(rss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
        if refined.fun <= rss_grid[i]:
            best = float(refined.x)
    design = _designs(tau, np.array([best]), trend_degree)[0]
    fit = sm.OLS(y, design).fit()
    trend_design = design[:, : trend_degree + 1]
    trend_fit = sm.OLS(y, trend_design).fit()
    trend_f, trend_p, _ = fit.compare_f_test(trend_fit)
    *poly, a, c = fit.params
    amplitude = float(math.hypot(a, c))
    phase = float(math.atan2(c, a))  # a sin + c cos = A sin(w tau + phase)

    df_full = t.size - design.shape[1]

    def nested_f(rss_trend: np.ndarray, rss_full: np.ndarray) -> np.ndarray:
        return ((rss_trend - rss_full) / 2) / np.maximum(rss_full / df_full, 1e-300)

    trend_maker = np.eye(t.size) - trend_design @ np.linalg.pinv(trend_design)
    observed = float(nested_f(np.array(trend_fit.ssr), np.array(rss_grid.min()))) if df_full > 0 else math.nan
    rng = np.random.default_rng(seed)
    perm_p, as_good, done = math.nan, 0, 0
    residuals = trend_fit.resid
    while permutations and done < permutations and df_full > 0:
        count = min(64, permutations - done)
        ys = trend_fit.fittedvalues[:, None] + np.stack([rng.permutation(residuals) for _ in range(count)], axis=1)
        rss_t = np.sum((trend_maker @ ys) ** 2, axis=0)
        rss_f = np.sum((makers @ ys) ** 2, axis=1).min(axis=0)
        as_good += int(np.sum(nested_f(rss_t, rss_f) >= observed * (1 - 1e-12)))
        done += count
    if permutations and df_full > 0:
        perm_p = (1 + as_good) / (1 + permutations)
    omega_tokens = best / span
    # back to tokens: tau = (t - t0) / span; compose the trend polynomial, fold t0 into the phase
    t0 = float(t.min())
    trend_t = np.polynomial.Polynomial(poly)(np.polynomial.Polynomial([-t0 / span, 1 / span]))
    coefficients = [float(v) for v in np.pad(trend_t.coef, (0, trend_degree + 1 - trend_t.coef.size))]
    phase_t = (phase - omega_tokens * t0 + math.pi) % (2 * math.pi) - math.pi
    beta1 = coefficients[1] if trend_degree >= 1 else 0.0
    return HarmonicFit(coefficients[0], beta1, amplitude, omega_tokens, phase_t, 2 * math.pi / omega_tokens,
                       float(fit.rsquared), float(fit.fvalue), float(fit.f_pvalue), float(fit.df_model),
                       float(fit.df_resid), int(t.size), fit.fittedvalues.tolist(), float(trend_f), float(trend_p),
                       perm_p, permutations, trend_degree, coefficients,
                       [float(omegas[0] / span), float(nyquist / span)])


def fisher_g_pvalue(g: float, m: int) -> float:
    """Exact P(G >= g) for Fisher's g under Gaussian white noise with m Fourier frequencies:
    sum over j = 1..floor(1/g) of (-1)^(j-1) C(m, j) (1 - j g)^(m-1) (Fisher 1929).

    The alternating sum cancels catastrophically in floating point (terms up to 2^m for a sum
    near 1: at m = 300 doubles give 0.0 for a white-noise maximum, and overflow near m = 1100), so
    it is summed in ``mpmath`` at m + 64 bits of precision -- enough for every term's magnitude
    plus a double's 53 bits. Written by hand: neither scipy nor statsmodels has Fisher's g test."""
    import mpmath

    if m < 1:
        raise AnalysisError("Fisher's g needs at least one Fourier frequency")
    if not g > 1.0 / m:
        return 1.0
    if g >= 1.0:
        return 0.0
    with mpmath.workprec(m + 64):
        x = mpmath.mpf(g)
        total = mpmath.mpf(0)
        for j in range(1, math.floor(1.0 / g) + 1):
            base = 1 - j * x
            if base <= 0:
                break
            term = mpmath.mpf(math.comb(m, j)) * base ** (m - 1)
            total += term if j % 2 else -term
        value = float(total)
    return float(min(max(value, 0.0), 1.0))


@dataclass
class FisherG:
    g: float
    pvalue: float
    m: int  # Fourier frequencies tested (0 and Nyquist excluded)
    frequency: float  # of the largest ordinate, cycles per sample
    n: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fisher_g(y: Sequence[float]) -> FisherG:
    """Fisher's g test for a periodic component: linear trend removed (``scipy.signal.detrend``),
    periodogram (``scipy.signal.periodogram``) at the Fourier frequencies k/n, 0 < k < n/2,
    g = largest ordinate / their sum, exact p-value (:func:`fisher_g_pvalue`). Assumes equally
    spaced samples (snapshots at a fixed token interval)."""
    from scipy.signal import detrend, periodogram

    y = np.asarray(y, np.float64)
    need("Fisher's g", y.size)
    n = y.size
    freqs, power = periodogram(detrend(y, type="linear"), fs=1.0, detrend=False, scaling="spectrum")
    keep = (freqs > 0) & (freqs < 0.5)  # Nyquist excluded for even n, as in Fisher's test
    power, freqs = power[keep], freqs[keep]
    m = int(power.size)
    total = float(power.sum())
    if total <= 0:
        return FisherG(math.nan, math.nan, m, math.nan, n)
    i = int(np.argmax(power))
    g = float(power[i] / total)
    return FisherG(g, fisher_g_pvalue(g, m), m, float(freqs[i]), n)


# -- the law across growth scales --------------------------------------------------------------------
LAW_PERMUTATIONS = 9999


def _run_permutation_pvalue(x: np.ndarray, y: np.ndarray, groups: np.ndarray, permutations: int,
                            seed: int) -> tuple[float, int]:
    """P-value of the slope's R^2 under a null that keeps every run's series whole: each run's y
    series is given to another run's x series (runs of equal length only; every permutation of
    the runs when there are at most ``permutations`` of them, else that many random ones). The
    snapshots of one run are not independent (both R and PPL drift with training), so permuting
    single points would be far too liberal; permuting whole runs keeps that dependence."""
    names = list(dict.fromkeys(groups.tolist()))
    blocks_x = [x[groups == n] for n in names]
    blocks_y = [y[groups == n] for n in names]
    if len(names) < 2 or len({b.size for b in blocks_x}) != 1:
        return math.nan, 0

    def r2(order: Sequence[int] | np.ndarray) -> float:
        yy = np.concatenate([blocks_y[i] for i in order])
        xx = np.concatenate(blocks_x)
        if np.ptp(xx) == 0 or np.ptp(yy) == 0:
            return 0.0
        return float(np.corrcoef(xx, yy)[0, 1] ** 2)

    observed = r2(range(len(names)))
    if math.factorial(len(names)) <= permutations:
        import itertools

        orders = list(itertools.permutations(range(len(names))))
        count = sum(r2(o) >= observed * (1 - 1e-12) for o in orders)
        return count / len(orders), len(orders)
    rng = np.random.default_rng(seed)
    count = sum(r2(rng.permutation(len(names))) >= observed * (1 - 1e-12) for _ in range(permutations))
    return (1 + count) / (1 + permutations), permutations


def law_fit(abs_ln_r: Sequence[float], ln_ppl: Sequence[float], groups: Sequence[str],
            permutations: int = LAW_PERMUTATIONS, seed: int = 0) -> dict[str, Any]:
    """ln(PPL) = a |ln R| + b by least squares (``scipy.stats.linregress``) over all points, and

    * ``pvalue``: linregress's p-value, which treats every snapshot as independent -- it is not
      (kept for comparison, not for verdicts);
    * ``run_permutation_pvalue``: the R^2 against whole runs permuted (:func:`_run_permutation_pvalue`;
      with three runs its smallest value is 1/6);
    * ``leave_one_run_out``: each group's (run's) points predicted by the fit on the other groups:
      RMSE in ln PPL and mean absolute percentage error in PPL;
    * ``influential``: points with high leverage (hat value > 2 p / n, p = 2) or Cook's distance
      > 4 / n (``statsmodels`` ``OLSInfluence``), as (run, index within the run, leverage, Cook's D).
    """
    import statsmodels.api as sm
    from scipy.stats import linregress

    x, y, groups = np.asarray(abs_ln_r, np.float64), np.asarray(ln_ppl, np.float64), np.asarray(groups)
    need("law fit", x.size, "points with R > 0 and a perplexity")
    fit = linregress(x, y)
    loo = []
    for name in dict.fromkeys(groups.tolist()):
        train, test = groups != name, groups == name
        if train.sum() < 2 or np.ptp(x[train]) == 0:
            loo.append({"run": name, "rmse_ln_ppl": math.nan, "mape_ppl": math.nan, "n": int(test.sum())})
            continue
        other = linregress(x[train], y[train])
        pred = other.slope * x[test] + other.intercept
        loo.append({"run": name, "rmse_ln_ppl": float(np.sqrt(np.mean((pred - y[test]) ** 2))),
                    "mape_ppl": float(100 * np.mean(np.abs(np.exp(pred) / np.exp(y[test]) - 1))),
                    "a": float(other.slope), "b": float(other.intercept), "n": int(test.sum())})
    run_p, run_perms = _run_permutation_pvalue(x, y, groups, permutations, seed)
    influential = []
    if x.size > 2 and np.ptp(x) > 0:
        influence = sm.OLS(y, sm.add_constant(x)).fit().get_influence()
        leverage, cooks = influence.hat_matrix_diag, influence.cooks_distance[0]
        index_in_run: dict[str, int] = {}
        for k, name in enumerate(groups.tolist()):
            i = index_in_run[name] = index_in_run.get(name, -1) + 1
            if leverage[k] > 4 / x.size or cooks[k] > 4 / x.size:
                influential.append({"run": name, "index": i, "leverage": float(leverage[k]),
                                    "cooks_distance": float(cooks[k])})
    return {"a": float(fit.slope), "b": float(fit.intercept), "r2": float(fit.rvalue ** 2),
            "pvalue": float(fit.pvalue), "run_permutation_pvalue": run_p, "run_permutations": run_perms,
            "n": int(x.size), "leave_one_run_out": loo, "influential": influential}


# -- Figure 6 / Eq. 36: performance by radius band ------------------------------------------------------
def radius_bands(r: Sequence[float], performance: Sequence[float], bands: int = 4,
                 edges: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """Mean performance per band of R (the level sets of R in the (θ, ρ) plane, paper Fig. 6 and
    Eq. 36): ``edges`` if given, else ``bands`` bands of equal count (quantiles of R). Each band:
    its edges, number of states, mean R, mean and standard deviation of the performance."""
    r, perf = np.asarray(r, np.float64), np.asarray(performance, np.float64)
    keep = np.isfinite(r) & np.isfinite(perf)
    r, perf = r[keep], perf[keep]
    if r.size == 0:
        return []
    if edges is None:
        edges = np.unique(np.quantile(r, np.linspace(0, 1, bands + 1)))
    edges = np.asarray(edges, np.float64)
    if edges.size < 2:
        edges = np.array([r.min(), r.max()])
    index = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, edges.size - 2)
    out = []
    for k in range(edges.size - 1):
        member = index == k
        if not member.any():
            continue
        out.append({"low": float(edges[k]), "high": float(edges[k + 1]), "n": int(member.sum()),
                    "mean_r": float(r[member].mean()), "mean_perf": float(perf[member].mean()),
                    "std_perf": float(perf[member].std(ddof=1)) if member.sum() > 1 else math.nan})
    return out
