"""The pre-registered saving estimator of `growth-recipes` on known answers."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from growlm.experiments.saving import (
    Endpoint,
    log_flops_at_loss,
    loss_at_flops,
    saving,
    saving_against,
    summarise,
)

# a scratch curve exactly linear in ln C: L = 10 - ln(C / 1e12), endpoints at 1, e, e^2 TF
CURVE = [Endpoint(1e12 * math.e ** k, 10.0 - k, seconds=10.0 * math.e ** k, tokens=1e6 * math.e ** k)
         for k in (0, 1, 2)]


def test_interpolation_is_linear_in_log_compute():
    # L = 9.25 sits 0.75 of the way from e^0 to e^1 in ln C
    reading = log_flops_at_loss(CURVE, 9.25)
    assert reading.where == "inside" and reading.value == pytest.approx(math.log(1e12) + 0.75)
    # the endpoints themselves come back exactly, in any input order
    assert math.exp(log_flops_at_loss(CURVE[::-1], 8.0).value) == pytest.approx(CURVE[2].flops)
    assert loss_at_flops(CURVE, 1e12 * math.e ** 1.5).value == pytest.approx(8.5)


def test_saving_positive_negative_and_extrapolated_are_kept():
    # grown reaches L = 8.5 (scratch needs e^1.5 TF) with e^1 TF: saving 1 - e^-0.5
    s = saving(CURVE, 1e12 * math.e, 8.5, tokens=2e6)
    assert s.saving == pytest.approx(1 - math.exp(-0.5)) and not s.extrapolated
    assert s.delta_loss == pytest.approx(8.5 - 9.0)  # scratch at e^1 TF has 9.0
    # token speedup: scratch tokens for L (1e6 e^1.5, constant FLOPs per token) over the grown tokens
    assert s.token_speedup == pytest.approx(1e6 * math.e ** 1.5 / 2e6)
    # seconds: scratch's seconds per FLOP (10 s per TF) times C_scratch(L)
    assert s.scratch_seconds_at_loss == pytest.approx(10.0 * math.e ** 1.5)
    worse = saving(CURVE, 1e12 * math.e ** 2, 8.5)  # more compute than scratch needs: negative, kept
    assert worse.saving == pytest.approx(1 - math.exp(0.5)) and worse.saving < 0
    beyond = saving(CURVE, 1e12 * math.e, 7.0)  # better than the largest endpoint: extrapolated, flagged
    assert beyond.where == "above" and beyond.extrapolated
    assert beyond.scratch_flops_at_loss == pytest.approx(1e12 * math.e ** 3)
    below = saving(CURVE, 1e12 * math.e, 10.5)  # worse than the smallest: extrapolated on the first segment
    assert below.where == "below" and below.scratch_flops_at_loss == pytest.approx(1e12 * math.e ** -0.5)


def test_noisy_end_segment_falls_back_to_the_fitted_line():
    noisy = [Endpoint(1e12, 10.0), Endpoint(1e12 * math.e, 9.0), Endpoint(1e12 * math.e ** 2, 9.0)]
    reading = log_flops_at_loss(noisy, 8.0)  # last segment flat: least squares L = 9.833 - 0.5 ln(C/1e12)
    assert reading.where == "above"
    assert reading.value - math.log(1e12) == pytest.approx((59 / 6 - 8.0) / 0.5)  # = 11/3
    rising = [Endpoint(1e12, 9.0), Endpoint(2e12, 9.5), Endpoint(3e12, 10.0)]
    assert math.isnan(log_flops_at_loss(rising, 8.0).value) and log_flops_at_loss(rising, 8.0).where == "undefined"


def test_summary_matches_scipy_t_interval_and_counts_every_seed():
    grown = [(math.e, 8.5), (math.e ** 2, 8.5), (math.e ** 0.5, 9.0), (1.0, 7.5)]  # (C / TF, L)
    savings = [saving(CURVE, 1e12 * c, loss) for c, loss in grown]
    summary = summarise(savings)
    values = [s.saving for s in savings]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 4,
                                 scale=stats.tstd(values) / math.sqrt(4))
    assert summary.n == 4 and summary.saving.n == 4  # nothing excluded
    assert summary.saving.low == pytest.approx(low) and summary.saving.high == pytest.approx(high)
    assert summary.positive == sum(v > 0 for v in values) == 3
    assert summary.extrapolated == 1  # L = 7.5 is beyond the largest endpoint
    assert summary.pays == (low > 0)


def test_saving_against_another_run_reads_the_curve_the_papers_way():
    # Nexus's curve reaches TokenFormer's loss 8.5 at e^1.5 TF; TokenFormer spent e^2 TF on it:
    # Nexus saves 1 - e^1.5 / e^2 = 1 - e^-0.5 (positive: Nexus is the cheaper one)
    s = saving_against(CURVE, 1e12 * math.e ** 2, 8.5)
    assert s.saving == pytest.approx(1 - math.exp(-0.5)) and not s.extrapolated
    # ... which is not the other direction's figure (TokenFormer against Nexus: 1 - e^2 / e^1.5 < 0)
    assert saving(CURVE, 1e12 * math.e ** 2, 8.5).saving == pytest.approx(1 - math.exp(0.5))
