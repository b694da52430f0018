"""The PNG figures of ``growlm analyze`` (matplotlib, headless): one per family.

* ``stats.png``: NOC, Z, θ, ρ, R and ΔP against tokens, one line per run;
* ``pca.png``: the PCA plane with each run's trajectory (paper Fig. 6 analogue);
* ``distances.png``: Grassmann and Euclidean distance to the growth point (paper Fig. 4);
* ``harmonic.png``: each run's R with its harmonic fit (paper Fig. 5);
* ``law.png``: ln PPL against |ln R| with the fitted line (paper Fig. 3);
* ``radius.png``: the (θ, ρ) plane with R level sets (paper Fig. 6).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from growlm.plotting import subplots


def _by_run(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in report["snapshots"]:
        out.setdefault(row["run"], []).append(row)
    return out


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    return path


def stats_figure(report: dict[str, Any], path: Path) -> Path:
    keys = [("noc", "NOC"), ("z", "Mann-Whitney Z"), ("theta", "θ (rad)"), ("rho", "ρ"), ("R", "R"),
            ("perf", "ΔP")]
    fig, axes = subplots(2, 3, figsize=(13, 7), dpi=110)
    for ax, (key, title) in zip(axes.flat, keys, strict=True):
        for label, rows in _by_run(report).items():
            ys = [r.get(key) for r in rows]
            if all(y is not None for y in ys):
                ax.plot([r["tokens"] for r in rows], ys, "o-", markersize=3, linewidth=1.2, label=label)
        ax.set_title(title)
        ax.set_xlabel("continued-training tokens")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    return _save(fig, path)


def pca_figure(report: dict[str, Any], path: Path) -> Path:
    fig, ax = subplots(figsize=(6.5, 5.5), dpi=110)
    for label, rows in _by_run(report).items():
        x, y = [r["pc1"] for r in rows], [r["pc2"] for r in rows]
        ax.plot(x, y, "o-", markersize=3, linewidth=1, label=label)
        ax.annotate("", xy=(x[-1], y[-1]), xytext=(x[-2], y[-2]), arrowprops={"arrowstyle": "->"})
        ax.plot(x[0], y[0], "k*", markersize=8)
    ratio = report["pca"]["explained_variance_ratio"]
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}%)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}%)" if len(ratio) > 1 else "PC2")
    ax.set_title("states in the PCA plane (★ growth point)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def distances_figure(report: dict[str, Any], path: Path) -> Path:
    fig, axes = subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for label, rows in _by_run(report).items():
        t = [r["tokens"] for r in rows]
        axes[0].plot(t, [r["grassmann"] for r in rows], "o-", markersize=3, label=label)
        axes[1].plot(t, [r["euclidean"] for r in rows], "o-", markersize=3, label=label)
    for ax, title in zip(axes, ("Grassmann G(2,3) geodesic distance to the growth point",
                                "Euclidean distance in the PCA plane"), strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("continued-training tokens")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def harmonic_figure(report: dict[str, Any], path: Path) -> Path:
    fits = {r["label"]: r["periodicity"].get("harmonic") for r in report["runs"]}
    fig, ax = subplots(figsize=(8, 4.5), dpi=110)
    for i, (label, rows) in enumerate(_by_run(report).items()):
        colour = f"C{i % 10}"
        t = np.array([r["tokens"] for r in rows], dtype=float)
        ax.plot(t, [r["R"] for r in rows], "o", color=colour, markersize=4, label=label)
        fit = fits.get(label)
        if fit:
            dense = np.linspace(t[1:].min(), t.max(), 200)  # fitted after the growth point
            trend = np.polynomial.polynomial.polyval(dense, fit.get("trend_coefficients", [fit["beta0"], fit["beta1"]]))
            curve = trend + fit["amplitude"] * np.sin(fit["omega"] * dense + fit["phase"])
            ax.plot(dense, curve, "-", color=colour, linewidth=1,
                    label=f"fit R²={fit['r2']:.2f}, p(perm.)={fit['permutation_pvalue']:.2g}")
    ax.set_xlabel("continued-training tokens")
    ax.set_ylabel("R")
    ax.set_title("radial energy R and harmonic regression y = β0 + β1 t + A sin(ωt + φ)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def law_figure(report: dict[str, Any], path: Path) -> Path:
    runs = {r["label"]: r["init"] for r in report["runs"]}
    fig, ax = subplots(figsize=(7, 5), dpi=110)
    for g, (init, law) in enumerate(report["law"].items()):
        xs = []
        for label, rows in _by_run(report).items():
            if runs[label] != init:
                continue
            pts = [r for r in rows if r["R"] > 0 and r.get("ppl")]
            x = [abs(math.log(r["R"])) for r in pts]
            xs += x
            ax.plot(x, [math.log(r["ppl"]) for r in pts], "o", markersize=4, color=f"C{g % 10}", alpha=0.6)
        line = np.linspace(min(xs), max(xs), 50)
        ax.plot(line, law["a"] * line + law["b"], "-", color=f"C{g % 10}",
                label=f"{init}: ln PPL = {law['a']:.3f}·|ln R| + {law['b']:.3f} (R²={law['r2']:.2f})")
    ax.set_xlabel("|ln R|")
    ax.set_ylabel("ln PPL")
    ax.set_title("ln PPL against |ln R| (points: snapshots of every growth scale)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def radius_figure(report: dict[str, Any], path: Path) -> Path:
    """Paper Fig. 6: the states in the (θ, ρ) plane coloured by performance, with the level sets of
    R at the band edges of ``radius_bands`` (circles) and each run's trajectory."""
    rows = report["snapshots"]
    fig, ax = subplots(figsize=(6.5, 5.5), dpi=110)
    for run_rows in _by_run(report).values():
        ax.plot([r["theta"] for r in run_rows], [r["rho"] for r in run_rows], "-", linewidth=0.6, alpha=0.5)
    perf = [r.get("perf") for r in rows]
    coloured = all(p is not None for p in perf)
    points = ax.scatter([r["theta"] for r in rows], [r["rho"] for r in rows], c=perf if coloured else None, s=16,
                        cmap="viridis", zorder=3)
    if coloured:
        fig.colorbar(points, ax=ax, label=f"performance ({report['settings'].get('performance_measure')})")
    bands = (report.get("radius_bands") or {}).get("perf") or (report.get("radius_bands") or {}).get("ln_ppl") or []
    angle = np.linspace(0, 2 * math.pi, 200)
    for edge in sorted({b["high"] for b in bands}):
        ax.plot(edge * np.cos(angle), edge * np.sin(angle), "k--", linewidth=0.6, alpha=0.6)
    ax.set_xlabel("θ")
    ax.set_ylabel("ρ")
    ax.set_title("states in the (θ, ρ) plane; circles: R band edges")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def write_figures(report: dict[str, Any], out: Path) -> list[Path]:
    paths = [stats_figure(report, out / "stats.png")]
    if report.get("pca"):
        paths += [pca_figure(report, out / "pca.png"), distances_figure(report, out / "distances.png")]
    if any(r["periodicity"].get("harmonic") for r in report["runs"]):
        paths.append(harmonic_figure(report, out / "harmonic.png"))
    if report.get("law"):
        paths.append(law_figure(report, out / "law.png"))
    if report.get("radius_bands"):
        paths.append(radius_figure(report, out / "radius.png"))
    return paths
