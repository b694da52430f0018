"""Loss curves as PNG (matplotlib, headless).

Every growlm figure is a :class:`matplotlib.figure.Figure` of its own (:func:`subplots`),
never pyplot's: no backend is selected, no global figure registry is touched, and
``savefig`` renders with Agg whatever backend the process uses -- so importing or calling
this module changes nothing about the process (``matplotlib.use`` is an entry point's
business, ``growlm.system.configure_process``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
             dpi: float | None = None, **kwargs: Any) -> tuple[Figure, Any]:
    """``pyplot.subplots`` without pyplot: a new figure and its axes (``kwargs`` as
    ``Figure.subplots``: ``squeeze``, ``sharex``...). Nothing to close: the figure is freed
    with its last reference."""
    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def plot_loss_curves(
    curves: Sequence[dict[str, Any]],
    path: str | Path,
    title: str = "loss",
    markers: Sequence[tuple[float, str]] = (),
    x_label: str = "step",
    y_label: str = "cross-entropy (nats/token)",
) -> Path:
    """One line per curve: ``{"label", "x": [...], "y": [...], "style": "-"}``; vertical markers ``(x, text)``."""
    fig, ax = subplots(figsize=(8, 4.5), dpi=120)
    for curve in curves:
        if curve["x"]:
            ax.plot(curve["x"], curve["y"], curve.get("style", "-"), label=curve["label"], linewidth=1.4,
                    color=curve.get("color"))
    for x, text in markers:
        ax.axvline(x, color="grey", linestyle=":", linewidth=1.2)
        ax.annotate(text, (x, 0.03), xycoords=("data", "axes fraction"), xytext=(3, 0),
                    textcoords="offset points", fontsize=8, color="dimgrey", rotation=90, va="bottom")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(curves) > 4 else 1, loc="upper right", framealpha=0.85)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


def run_curves(rows: Sequence[dict[str, Any]], label: str, x_offset: float = 0.0) -> list[dict[str, Any]]:
    """Train and validation curves of one run's metrics.jsonl rows."""
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_loss" in r]
    return [
        {"label": f"{label} train", "x": [r["step"] + x_offset for r in train], "y": [r["loss"] for r in train]},
        {"label": f"{label} val", "x": [r["step"] + x_offset for r in val], "y": [r["val_loss"] for r in val],
         "style": "o--"},
    ]


def plot_score_series(rows: Sequence[dict[str, Any]], path: str | Path, title: str) -> Path:
    """Every evaluation score of a run's checkpoints against tokens seen (accuracies left, perplexities right)."""
    keys = [k for k in rows[0] if "/" in k]
    rates = [k for k in keys if not k.endswith(("perplexity", "loss"))]
    ppls = [k for k in keys if k.endswith(("perplexity", "loss"))]
    panels = [p for p in (rates, ppls) if p]
    fig, axes = subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), dpi=120, squeeze=False)
    x = [r["tokens"] if r["tokens"] is not None else r["step"] for r in rows]
    for ax, panel in zip(axes[0], panels, strict=True):
        for key in panel:
            ax.plot(x, [r[key] for r in rows], "o-", label=key, linewidth=1.2, markersize=3)
        ax.set_xlabel("training tokens" if rows[0]["tokens"] is not None else "step")
        ax.set_ylabel("score" if panel is rates else "perplexity / loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
