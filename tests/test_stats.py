"""Intervals over seeds against textbook values."""

import math

import pytest

from growlm.stats import group_intervals, mean_interval


def test_t_interval_matches_the_t_table():
    # n = 5, mean 3, s = sqrt(2.5); t(0.975, 4) = 2.776445 (any t table) -> half-width 2.776445 * s / sqrt(5)
    interval = mean_interval([1, 2, 3, 4, 5])
    assert interval.mean == 3
    assert interval.std == pytest.approx(math.sqrt(2.5))
    assert interval.half_width == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    assert interval.format(2) == "3.00 ± 1.96"
    # n = 2: t(0.975, 1) = 12.7062
    assert mean_interval([0.0, 1.0]).half_width == pytest.approx(12.7062 * math.sqrt(0.5) / math.sqrt(2), rel=1e-5)


def test_one_seed_has_no_interval_and_says_so():
    interval = mean_interval([2.5])
    assert interval.n == 1 and math.isnan(interval.half_width)
    assert interval.format(1) == "2.5 (n=1)"
    assert mean_interval([]).format() == "n/a"
    assert mean_interval([4.0, 4.0, 4.0]).half_width == 0.0


def test_non_finite_values_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        mean_interval([1.0, float("nan")])


def test_group_intervals_groups_in_first_seen_order():
    records = [{"arch": "b", "seed": 0, "loss": 2.0}, {"arch": "a", "seed": 0, "loss": 1.0},
               {"arch": "b", "seed": 1, "loss": 4.0}, {"arch": "a", "seed": 1, "loss": None}]
    rows = group_intervals(records, ["arch"], ["loss"])
    assert [r["arch"] for r in rows] == ["b", "a"]
    assert rows[0]["seeds"] == 2 and rows[0]["loss"].mean == 3.0
    assert rows[1]["loss"].n == 1  # the None is left out
