"""Old and new entries from growth.json, and theta / rho on constructed cases with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from growlm.analysis.regions import WeightGeometry, grown_matrices, value_sets
from growlm.analysis.statistics import AnalysisError
from growlm.growth import grow_model, parse_init
from growlm.growth.grow import growth_report
from tests.conftest import make_model, small_config

# one matrix grown from 2 x 2 to 4 x 3: old block rows 0-1, columns 0-1
GROWTH = {
    "placements": {"w": {"source": "w", "positions": [[[0, 2]], [[0, 2]]], "scale": 1.0}},
    "new_blocks": [
        {"param": "w", "label": "new rows", "init": "random", "region": [[[2, 4]], [[0, 3]]]},
        {"param": "w", "label": "new column", "init": "zero", "region": [[[0, 2]], [[2, 3]]]},
        {"param": "g", "label": "gain", "init": "fixed", "region": [[[2, 4]]]},
    ],
}
SHAPES = {"w": (4, 3), "g": (4,)}


def _state(w: np.ndarray) -> dict[str, torch.Tensor]:
    return {"w": torch.tensor(w, dtype=torch.float64), "g": torch.ones(4)}


def _w0(old: np.ndarray) -> np.ndarray:
    w = np.zeros((4, 3))
    w[:2, :2] = old
    return w


def test_masks_partition_the_grown_matrix():
    (m,) = grown_matrices(GROWTH, SHAPES)
    assert m.name == "w" and m.new_mask.sum() == 8 and m.old_mask.sum() == 4
    assert not (m.new_mask & m.old_mask).any() and (m.new_mask | m.old_mask).all()
    w = np.arange(12.0).reshape(4, 3)
    new, old = value_sets(_state(w), [m])
    assert old.tolist() == [0, 1, 3, 4] and new.tolist() == [2, 5, 6, 7, 8, 9, 10, 11]


def test_theta_is_the_angle_and_ignores_scale():
    old = np.array([[1.0, 2.0], [3.0, -1.0]])
    w0 = _w0(old)
    geometry = WeightGeometry(_state(w0), grown_matrices(GROWTH, SHAPES))
    assert geometry.theta_rho(_state(3 * w0))[0] == pytest.approx(0.0, abs=1e-7)
    direction = np.zeros((4, 3))
    direction[3, 1] = np.linalg.norm(w0)  # orthogonal to w0, same norm
    for alpha in (0.1, 0.7, 1.3):
        wt = math.cos(alpha) * w0 + math.sin(alpha) * direction
        assert geometry.theta_rho(_state(wt))[0] == pytest.approx(alpha, rel=1e-9)


def test_rho_is_the_share_of_update_energy_outside_the_old_column_space():
    old = np.array([[1.0, 2.0], [3.0, -1.0]])  # full rank: its column space is all old rows
    w0 = _w0(old)
    geometry = WeightGeometry(_state(w0), grown_matrices(GROWTH, SHAPES))
    assert geometry.theta_rho(_state(w0)) == (0.0, 0.0)  # no update yet
    assert geometry.theta_rho(_state(2 * w0))[1] == pytest.approx(0.0, abs=1e-12)
    inside = np.zeros((4, 3))
    inside[:2, 2] = [0.5, -2.0]  # a new column of old rows: still in the old rows' (full) column space
    assert geometry.theta_rho(_state(w0 + inside))[1] == pytest.approx(0.0, abs=1e-12)
    outside = np.zeros((4, 3))
    outside[2:, :] = [[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]  # new rows: energy 6
    assert geometry.theta_rho(_state(w0 + outside))[1] == pytest.approx(1.0)
    # energy 6 outside, 4.25 inside
    assert geometry.theta_rho(_state(w0 + outside + inside))[1] == pytest.approx(6 / (6 + 4.25))


def test_rho_counts_unused_directions_of_old_rows():
    old = np.array([[1.0, 2.0], [0.0, 0.0]])  # rank 1: column space = first old row's axis
    geometry = WeightGeometry(_state(_w0(old)), grown_matrices(GROWTH, SHAPES))
    update = np.zeros((4, 3))
    update[0, 0], update[1, 1] = 1.0, 2.0  # energy 1 inside, 4 outside (old row 1 was never used)
    assert geometry.theta_rho(_state(_w0(old) + update))[1] == pytest.approx(4 / 5)


def test_regions_of_a_real_growth_record_hold_exactly_the_old_weights():
    config = small_config("nexus", seed=3)
    model = make_model(config, seed=0, perturb=0.02)
    result = grow_model(model, {"nexus_m": config.nexus_m + 8, "nexus_a": config.nexus_a + 8}, parse_init("preserve"))
    record = json.loads(json.dumps(growth_report(result, None).to_json()))
    state = {k: v.double() for k, v in result.model.state_dict().items()}
    matrices = grown_matrices(record, {k: tuple(v.shape) for k, v in state.items()})
    assert len(matrices) == 3 * 3 * config.num_hidden_layers  # m, a, d of q, k, v in every layer
    original = model.state_dict()
    for m in matrices:
        w = state[m.name].numpy()
        old = w[np.ix_(m.old_rows, m.old_cols)]
        np.testing.assert_array_equal(old, original[m.name].double().numpy())
        assert (m.new_mask | m.old_mask).all() and not (m.new_mask & m.old_mask).any()


def test_a_growth_without_grown_matrices_is_refused():
    with pytest.raises(AnalysisError, match="no grown matrix"):
        grown_matrices({"new_blocks": [], "placements": {}}, {})
