"""The compute saving of a grown run against a curve of annealed scratch endpoints (pre-registered).

The definition (docs/experiments.md, ``growth-recipes``, written before any GPU run):

* the scratch target is trained at K >= 3 budgets, each its own full schedule ending in
  an annealed endpoint ``(C_i, L_i)``: ``C_i`` its training FLOPs from the plan's ledger,
  ``L_i`` its final validation loss on the report half of the validation windows;
* ``C_scratch(L)``, the compute scratch needs to reach loss ``L``, is read off the
  piecewise-linear curve of ``L`` against ``ln C`` through the endpoints (sorted by C):
  on the first segment (in increasing C) whose two losses bracket ``L``,
  ``ln C = ln C_i + (L_i - L) / (L_i - L_{i+1}) * (ln C_{i+1} - ln C_i)``;
* a loss outside the endpoints' range is *extrapolated* on the nearest end segment and
  flagged (``"below"``: worse than the smallest budget, ``"above"``: better than the
  largest); if that segment does not fall (noise), the least-squares line of L on ln C
  over all endpoints is used, and if that does not fall either the value is undefined
  (NaN, flagged ``"undefined"``);
* ``saving = 1 - C_grown / C_scratch(L_grown)`` per seed, with the same seed's scratch
  endpoints; every seed counts: negative savings are kept, extrapolated ones flagged,
  nothing is excluded (only an undefined value cannot enter the mean; it is counted);
* ``delta_loss = L_grown - L_scratch(C_grown)`` (the scratch curve at the grown run's
  compute, the same interpolation the other way round; negative = growth better);
* ``token_speedup = T_scratch(L_grown) / T_grown`` (G_stack's convention), with
  ``T_scratch(L) = C_scratch(L) / f_target`` (scratch trains at constant FLOPs per token);
* seconds: ``1 - s_grown / s_scratch(L_grown)``, ``s_scratch(L)`` the scratch endpoints'
  seconds per FLOP (their total seconds over their total FLOPs) times ``C_scratch(L)``.

:func:`summarise` gives the mean, the 95% Student-t interval (``growlm.stats.mean_interval``,
scipy) and the number of seeds with a positive saving.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from growlm.stats import Interval, mean_interval


@dataclass(frozen=True)
class Endpoint:
    """One annealed scratch run: its training FLOPs, final (report-half) loss, seconds and tokens."""

    flops: float
    loss: float
    seconds: float = math.nan
    tokens: float = math.nan


@dataclass(frozen=True)
class Reading:
    """A value read off the scratch curve, and where it came from: ``inside``, ``below``, ``above``, ``undefined``."""

    value: float
    where: str

    @property
    def extrapolated(self) -> bool:
        return self.where != "inside"


def _sorted(endpoints: Sequence[Endpoint]) -> list[Endpoint]:
    points = sorted(endpoints, key=lambda e: e.flops)
    if len(points) < 2:
        raise ValueError("a scratch curve needs at least two endpoints")
    if any(p.flops <= 0 for p in points) or len({p.flops for p in points}) != len(points):
        raise ValueError("scratch endpoints need distinct positive FLOPs")
    return points


def _fit(points: list[Endpoint]) -> tuple[float, float]:
    """Least-squares line L = a + b ln C over all endpoints."""
    x = np.log([p.flops for p in points])
    y = np.array([p.loss for p in points])
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def log_flops_at_loss(endpoints: Sequence[Endpoint], loss: float) -> Reading:
    """``ln C_scratch(loss)`` (module docstring: first bracketing segment, else flagged extrapolation)."""
    points = _sorted(endpoints)
    x = [math.log(p.flops) for p in points]
    y = [p.loss for p in points]
    for i in range(len(points) - 1):
        lo, hi = min(y[i], y[i + 1]), max(y[i], y[i + 1])
        if lo <= loss <= hi and y[i] != y[i + 1]:
            return Reading(x[i] + (y[i] - loss) / (y[i] - y[i + 1]) * (x[i + 1] - x[i]), "inside")
    # no segment brackets it (the curve is continuous): worse than every endpoint, or better
    if loss > max(y):
        where, (i, j) = "below", (0, 1)
    else:
        where, (i, j) = "above", (len(points) - 2, len(points) - 1)
    slope = (y[j] - y[i]) / (x[j] - x[i])
    if slope < 0:
        return Reading(x[i] + (loss - y[i]) / slope, where)
    a, b = _fit(points)
    if b < 0:
        return Reading((loss - a) / b, where)
    return Reading(math.nan, "undefined")


def loss_at_flops(endpoints: Sequence[Endpoint], flops: float) -> Reading:
    """``L_scratch(C)``: linear in ln C between the endpoints around C, the end segment outside (flagged)."""
    points = _sorted(endpoints)
    x = [math.log(p.flops) for p in points]
    y = [p.loss for p in points]
    t = math.log(flops)
    if x[0] <= t <= x[-1]:
        i = max(k for k in range(len(x) - 1) if x[k] <= t)
        return Reading(y[i] + (t - x[i]) / (x[i + 1] - x[i]) * (y[i + 1] - y[i]), "inside")
    i, where = (0, "below") if t < x[0] else (len(x) - 2, "above")
    return Reading(y[i] + (t - x[i]) / (x[i + 1] - x[i]) * (y[i + 1] - y[i]), where)


@dataclass
class Saving:
    """One grown run (one seed) against its seed's scratch curve."""

    flops: float
    loss: float
    scratch_flops_at_loss: float
    saving: float
    where: str  # inside | below | above | undefined
    delta_loss: float  # L_grown - L_scratch(C_grown)
    delta_where: str
    token_speedup: float
    tokens: float = math.nan
    seconds: float = math.nan
    scratch_seconds_at_loss: float = math.nan
    seconds_saving: float = math.nan

    @property
    def extrapolated(self) -> bool:
        return self.where != "inside"

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "extrapolated": self.extrapolated}


def saving(endpoints: Sequence[Endpoint], flops: float, loss: float, tokens: float = math.nan,
           seconds: float = math.nan, target_flops_per_token: float | None = None) -> Saving:
    """The pre-registered saving of one grown run (``flops``: its ledger total, base stage included)."""
    points = _sorted(endpoints)
    if not (math.isfinite(loss) and math.isfinite(flops)):  # a run that failed (diverged): no saving exists
        return Saving(flops=flops, loss=loss, scratch_flops_at_loss=math.nan, saving=math.nan, where="undefined",
                      delta_loss=math.nan, delta_where="undefined", token_speedup=math.nan, tokens=tokens,
                      seconds=seconds)
    reading = log_flops_at_loss(points, loss)
    c_scratch = math.exp(reading.value) if math.isfinite(reading.value) else math.nan
    at = loss_at_flops(points, flops)
    if target_flops_per_token is None:  # scratch trains at constant FLOPs per token: read it off an endpoint
        with_tokens = [p for p in points if p.tokens == p.tokens and p.tokens > 0]
        target_flops_per_token = with_tokens[0].flops / with_tokens[0].tokens if with_tokens else math.nan
    speedup = (c_scratch / target_flops_per_token) / tokens if tokens == tokens and tokens > 0 else math.nan
    timed = [p for p in points if p.seconds == p.seconds]
    per_flop = sum(p.seconds for p in timed) / sum(p.flops for p in timed) if timed else math.nan
    scratch_seconds = per_flop * c_scratch
    return Saving(flops=flops, loss=loss, scratch_flops_at_loss=c_scratch, saving=1.0 - flops / c_scratch,
                  where=reading.where, delta_loss=loss - at.value, delta_where=at.where, token_speedup=speedup,
                  tokens=tokens, seconds=seconds, scratch_seconds_at_loss=scratch_seconds,
                  seconds_saving=1.0 - seconds / scratch_seconds if seconds == seconds else math.nan)


def saving_against(curve: Sequence[Endpoint], flops: float, loss: float, tokens: float = math.nan,
                   seconds: float = math.nan) -> Saving:
    """How much less compute the model behind ``curve`` needs to reach another run's ``loss``:
    ``1 - C_curve(loss) / flops`` (the Nexusformer paper's 41.5%: grown Nexus against grown
    TokenFormer). :func:`saving` reads the same curve at the same loss but compares the other way
    (``1 - flops / C_curve(loss)``: the saving of the run against the curve)."""
    read = saving(curve, flops, loss, tokens, seconds)
    return dataclasses.replace(read, saving=1.0 - read.scratch_flops_at_loss / flops)


@dataclass
class SavingSummary:
    """Over the seeds of one recipe: intervals, positive count, extrapolated count."""

    n: int
    saving: Interval
    positive: int
    extrapolated: int
    undefined: int
    delta_loss: Interval
    token_speedup: Interval
    seconds_saving: Interval
    values: list[float] = field(default_factory=list)

    @property
    def pays(self) -> bool:
        """The pre-registered decision rule: the 95% interval of the saving lies above 0."""
        return self.saving.n >= 2 and self.saving.low > 0

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "saving": self.saving.as_dict(), "positive": self.positive,
                "extrapolated": self.extrapolated, "undefined": self.undefined, "pays": self.pays,
                "delta_loss": self.delta_loss.as_dict(), "token_speedup": self.token_speedup.as_dict(),
                "seconds_saving": self.seconds_saving.as_dict(), "values": self.values}


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if v == v and math.isfinite(v)]


def summarise(savings: Sequence[Saving], confidence: float = 0.95) -> SavingSummary:
    """Mean and t-interval of every seed's saving (negatives kept, extrapolations in), positive count."""
    values = [s.saving for s in savings]
    defined = _finite(values)
    return SavingSummary(
        n=len(savings), saving=mean_interval(defined, confidence), positive=sum(v > 0 for v in defined),
        extrapolated=sum(s.where in ("below", "above") for s in savings),
        undefined=len(values) - len(defined),
        delta_loss=mean_interval(_finite([s.delta_loss for s in savings]), confidence),
        token_speedup=mean_interval(_finite([s.token_speedup for s in savings]), confidence),
        seconds_saving=mean_interval(_finite([s.seconds_saving for s in savings]), confidence),
        values=values)
