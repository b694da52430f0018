"""Summaries over seeds: mean with a Student-t 95% interval, and how growlm prints it.

Every experiment reports a point as ``mean ± half-width`` over its seeds, where the
half-width is that of the two-sided Student-t confidence interval of the mean
(``scipy.stats.t.interval`` with ``n - 1`` degrees of freedom and the sample standard
error). With one seed there is no interval: the half-width is ``nan`` and the table
says so instead of printing a zero that looks like certainty.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int
    std: float  # sample standard deviation (ddof=1); nan for n < 2
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "half_width": self.half_width}

    def format(self, digits: int = 3, scale: float = 1.0) -> str:
        """``mean ± half`` (``mean (n=1)`` when there is no interval)."""
        if math.isnan(self.mean):
            return "n/a"
        if self.n < 2 or math.isnan(self.half_width):
            return f"{self.mean * scale:.{digits}f} (n={self.n})"
        return f"{self.mean * scale:.{digits}f} ± {self.half_width * scale:.{digits}f}"


def mean_interval(values: Iterable[float], confidence: float = 0.95) -> Interval:
    """Mean and two-sided Student-t confidence interval of the mean; non-finite values are refused."""
    from scipy import stats

    data = np.asarray([float(v) for v in values], dtype=np.float64)
    if data.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan, confidence)
    if not np.all(np.isfinite(data)):
        raise ValueError(f"cannot summarise non-finite values: {data.tolist()}")
    mean = float(data.mean())
    if data.size < 2:
        return Interval(mean, math.nan, math.nan, 1, math.nan, confidence)
    std = float(data.std(ddof=1))
    if std == 0.0:
        return Interval(mean, mean, mean, int(data.size), 0.0, confidence)
    low, high = stats.t.interval(confidence, data.size - 1, loc=mean, scale=std / math.sqrt(data.size))
    return Interval(mean, float(low), float(high), int(data.size), std, confidence)


def group_intervals(records: Sequence[dict[str, Any]], by: Sequence[str], metrics: Sequence[str],
                    confidence: float = 0.95) -> list[dict[str, Any]]:
    """One row per distinct value of the ``by`` keys (first-seen order), each metric as an :class:`Interval`.

    Records lacking a metric (or holding None) are left out of that metric's interval."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(tuple(record.get(k) for k in by), []).append(record)
    rows = []
    for key, members in groups.items():
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        row["seeds"] = len(members)
        for metric in metrics:
            row[metric] = mean_interval([m[metric] for m in members if m.get(metric) is not None], confidence)
        rows.append(row)
    return rows
