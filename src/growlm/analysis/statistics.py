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


# -- distributions of new vs old values -------------------------------------------------------------
def every_kth(values: np.ndarray, max_values: int = NOC_MAX_VALUES) -> np.ndarray:
    """The deterministic subsample ``values[::k]`` with ``k = ceil(n / max_values)`` (at most max_values)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    k = max(1, math.ceil(values.size / max_values))
    return values[::k]


def overlap_coefficient(a: np.ndarray, b: np.ndarray, max_values: int = NOC_MAX_VALUES,
                        grid: int = NOC_GRID) -> float:
    """Nonparametric overlap coefficient NOC = integral of min(f, g).

    f and g are ``scipy.stats.gaussian_kde`` estimates (Scott's bandwidth) of the every-k-th
    subsamples of ``a`` and ``b`` (at most ``max_values`` each); the integral is the trapezoid
    rule on ``grid`` equally spaced points from the smallest to the largest subsampled value of
    the two sets together. A set whose values are all equal has no density (its KDE is
    singular): it is a point mass, whose overlap with a continuous density is 0 and with a
    point mass at the same value 1.
    """
    from scipy.integrate import trapezoid
    from scipy.stats import gaussian_kde

    sa, sb = every_kth(a, max_values), every_kth(b, max_values)
    if sa.size == 0 or sb.size == 0:
        raise AnalysisError("NOC needs two non-empty sets of values")
    flat_a, flat_b = np.ptp(sa) == 0, np.ptp(sb) == 0
    if flat_a or flat_b:
        return 1.0 if flat_a and flat_b and sa[0] == sb[0] else 0.0
    x = np.linspace(min(sa.min(), sb.min()), max(sa.max(), sb.max()), grid)
    f, g = gaussian_kde(sa)(x), gaussian_kde(sb)(x)
    return float(trapezoid(np.minimum(f, g), x))


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
    f_statistic: float
    f_pvalue: float
    df_model: float
    df_resid: float
    n: int
    fitted: list[float]
    permutation_pvalue: float  # accounts for the search over w (see harmonic_regression)
    permutations: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _designs(tau: np.ndarray, omegas: np.ndarray) -> np.ndarray:
    """(len(omegas), n, 4) design matrices [1, tau, sin(w tau), cos(w tau)]."""
    wt = omegas[:, None] * tau[None, :]
    ones = np.broadcast_to(np.ones_like(tau), wt.shape)
    return np.stack([ones, np.broadcast_to(tau, wt.shape), np.sin(wt), np.cos(wt)], axis=-1)


def _residual_makers(tau: np.ndarray, omegas: np.ndarray) -> np.ndarray:
    """I - H(w) for every w: the residual of least squares on the design at w is (I - H) y."""
    designs = _designs(tau, omegas)
    hat = designs @ np.linalg.pinv(designs)
    return np.eye(tau.size)[None] - hat


def harmonic_regression(t: Sequence[float], y: Sequence[float], grid: int = 2048,
                        permutations: int = 999, seed: int = 0) -> HarmonicFit:
    """Least squares fit of y = b0 + b1 t + A sin(w t + phi).

    For a fixed w the model is linear in (b0, b1, a, c) with A sin(wt + phi) = a sin wt + c cos wt;
    w is the grid point (``grid`` values equally spaced from half a cycle over the span to the
    Nyquist frequency of the median spacing) with the least residual sum of squares, refined by
    ``scipy.optimize.minimize_scalar`` between its neighbours. The final fit is a
    ``statsmodels`` OLS at that w: R^2, and the F test of the model against the constant model
    with (3, n - 4) degrees of freedom -- conditional on w, like the paper's F(3, 7) for 11 points.

    That F p-value ignores that w was chosen to fit best, and with few points it is far too
    small (on white noise of 11 points its median is about 0.05). ``permutation_pvalue`` accounts
    for the search: the share of ``permutations`` random orderings of y (plus the observed one)
    whose best grid fit is at least as good, i.e. a test of "no temporal structure" that
    includes the choice of w. Time is rescaled to [0, 1] for the search and reported in tokens.
    """
    from scipy.optimize import minimize_scalar

    t, y = np.asarray(t, np.float64), np.asarray(y, np.float64)
    need("harmonic regression", t.size)
    span = float(t.max() - t.min())
    if span <= 0:
        raise AnalysisError("harmonic regression needs points at different times")
    tau = (t - t.min()) / span
    spacing = float(np.median(np.diff(np.sort(tau))))
    omegas = np.linspace(math.pi, math.pi / spacing, grid)  # half a cycle over the span .. Nyquist
    makers = _residual_makers(tau, omegas)
    rss_grid = np.sum((makers @ y) ** 2, axis=1)

    def rss(omega: float) -> float:
        design = _designs(tau, np.array([omega]))[0]
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        return float(np.sum((y - design @ coef) ** 2))

    i = int(np.argmin(rss_grid))
    best = float(omegas[i])
    lo, hi = omegas[max(i - 1, 0)], omegas[min(i + 1, grid - 1)]
    if hi > lo:
        refined = minimize_scalar(rss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
        if refined.fun <= rss_grid[i]:
            best = float(refined.x)
    import statsmodels.api as sm

    fit = sm.OLS(y, _designs(tau, np.array([best]))[0]).fit()
    b0, b1, a, c = fit.params
    amplitude = float(math.hypot(a, c))
    phase = float(math.atan2(c, a))  # a sin + c cos = A sin(w tau + phase)
    # permutation p-value of the whole search (grid minimum of RSS; TSS is the same for every order)
    rng = np.random.default_rng(seed)
    perm_p, as_good, done = math.nan, 0, 0
    while done < permutations:
        count = min(64, permutations - done)
        shuffled = np.stack([rng.permutation(y) for _ in range(count)], axis=1)
        best_perm = np.sum((makers @ shuffled) ** 2, axis=1).min(axis=0)
        as_good += int(np.sum(best_perm <= rss_grid[i] * (1 + 1e-12)))
        done += count
    if permutations:
        perm_p = (1 + as_good) / (1 + permutations)
    omega_tokens = best / span
    # back to tokens: tau = (t - t0) / span; fold the offset t0 into b0 and the phase
    t0 = float(t.min())
    beta1 = float(b1) / span
    beta0 = float(b0) - beta1 * t0
    phase_t = (phase - omega_tokens * t0 + math.pi) % (2 * math.pi) - math.pi
    return HarmonicFit(beta0, beta1, amplitude, omega_tokens, phase_t, 2 * math.pi / omega_tokens,
                       float(fit.rsquared), float(fit.fvalue), float(fit.f_pvalue), float(fit.df_model),
                       float(fit.df_resid), int(t.size), fit.fittedvalues.tolist(), perm_p, permutations)


def fisher_g_pvalue(g: float, m: int) -> float:
    """Exact P(G >= g) for Fisher's g under Gaussian white noise with m Fourier frequencies:
    sum over j = 1..floor(1/g) of (-1)^(j-1) C(m, j) (1 - j g)^(m-1) (Fisher 1929).

    Written by hand: neither scipy nor statsmodels has Fisher's g test."""
    if m < 1:
        raise AnalysisError("Fisher's g needs at least one Fourier frequency")
    if g <= 1.0 / m:
        return 1.0
    total = 0.0
    for j in range(1, math.floor(1.0 / g) + 1):
        total += (-1) ** (j - 1) * math.comb(m, j) * (1.0 - j * g) ** (m - 1)
    return float(min(max(total, 0.0), 1.0))


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
def law_fit(abs_ln_r: Sequence[float], ln_ppl: Sequence[float], groups: Sequence[str]) -> dict[str, Any]:
    """ln(PPL) = a |ln R| + b by least squares (``scipy.stats.linregress``) over all points, and for each
    group (run) the prediction of its points by the fit on the other groups' points (leave one run
    out): RMSE in ln PPL and mean absolute percentage error in PPL."""
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
    return {"a": float(fit.slope), "b": float(fit.intercept), "r2": float(fit.rvalue ** 2),
            "pvalue": float(fit.pvalue), "n": int(x.size), "leave_one_run_out": loo}
