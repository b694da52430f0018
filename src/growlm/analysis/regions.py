"""What a grown model's snapshot is compared with, read from ``growth.json``.

The paper's definitions (``growlm analyze`` default): the base model read back from the growth
point (:func:`base_state`) against the grown model, pooled per layer / model / grown tensors /
tensor (:func:`base_vs_grown`, ``POOLINGS``); see docs/analysis.md for the pooling study.

growlm's earlier definitions (``--definitions growlm``): which entries of a grown model are old
and which are new, and the weight-space measures between a snapshot and the growth point: theta
(direction shift) and rho (orthogonal perturbation strength).

``growth.json`` (written by ``growlm grow`` and by plan stages) lists every new block
(parameter, region per axis as ``[start, stop]`` runs, init) and, for every grown parameter,
where its old values sit in the grown tensor (``placements``). The analysis looks at the
*grown matrices*: the 2-D parameters that hold both old entries and new blocks. In each,
the old entries are the placement's positions and the new entries the union of its new
blocks; norm gains (1-D) are left out.

growlm's definitions (the paper lost its formulas, see docs/analysis.md for the reasons):

* theta_t = arccos(<w_t, w_0> / (|w_t| |w_0|)), w = all grown matrices (old and new entries),
  flattened and concatenated, at snapshot t and at the growth point 0: how far the grown
  matrices have turned since growth, in radians, blind to pure rescaling (weight decay);
* rho_t = sum_W |(I - P_W) dW|^2 / sum_W |dW|^2 with dW = W_t - W_0 (the whole grown matrix)
  and P_W the orthogonal projector onto the column space of W's old block at the growth point
  (embedded at the old rows of the grown output space; numerical rank as numpy's matrix_rank):
  the share of the update energy since growth that points into output directions the old
  weights did not span -- new output units, or unused directions of old ones. 0 at the growth
  point (no update yet).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from growlm.analysis.statistics import AnalysisError


def _axis_positions(runs: list[list[int]]) -> np.ndarray:
    return np.concatenate([np.arange(a, b) for a, b in runs]) if runs else np.zeros(0, dtype=np.int64)


@dataclass
class GrownMatrix:
    name: str
    shape: tuple[int, ...]
    old_rows: np.ndarray  # positions of the old block along axis 0
    old_cols: np.ndarray  # ... along axis 1
    new_mask: np.ndarray  # bool, the grown shape: entries of new blocks

    @property
    def old_mask(self) -> np.ndarray:
        mask = np.zeros(self.shape, dtype=bool)
        mask[np.ix_(self.old_rows, self.old_cols)] = True
        return mask


def grown_matrices(growth: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> list[GrownMatrix]:
    """The grown matrices of a growth record, in sorted name order (the order values are pooled in)."""
    blocks: dict[str, list[dict[str, Any]]] = {}
    for block in growth.get("new_blocks", []):
        if block.get("init") != "fixed":
            blocks.setdefault(block["param"], []).append(block)
    out = []
    for name in sorted(blocks):
        placement = growth.get("placements", {}).get(name)
        if name not in shapes:
            raise AnalysisError(f"growth.json names parameter {name!r}, which the model does not have")
        shape = tuple(shapes[name])
        if len(shape) != 2 or placement is None or placement.get("source") is None:
            continue  # a vector, or a wholly new tensor: no old entries to compare with
        rows, cols = (_axis_positions(p) for p in placement["positions"])
        new_mask = np.zeros(shape, dtype=bool)
        for block in blocks[name]:
            r, c = (_axis_positions(p) for p in block["region"])
            new_mask[np.ix_(r, c)] = True
        out.append(GrownMatrix(name, shape, rows, cols, new_mask))
    if not out:
        raise AnalysisError("growth.json records no grown matrix with both old entries and new blocks (e.g. a "
                            "depth-only growth): the new-vs-old statistics compare entries of the same matrices")
    return out


def value_sets(state: Mapping[str, torch.Tensor], matrices: list[GrownMatrix]) -> tuple[np.ndarray, np.ndarray]:
    """(new values, old values) of the grown matrices: each matrix's entries under its mask in
    row-major order, matrices in sorted name order, concatenated."""
    new, old = [], []
    for m in matrices:
        w = _array(state, m.name)
        new.append(w[m.new_mask])
        old.append(w[m.old_mask])
    return np.concatenate(new), np.concatenate(old)


def _array(state: Mapping[str, torch.Tensor], name: str) -> np.ndarray:
    if name not in state:
        raise AnalysisError(f"the snapshot has no tensor {name!r}; is it a snapshot of the grown model?")
    return state[name].detach().to(torch.float64).cpu().numpy()


class WeightGeometry:
    """theta and rho of snapshots against one growth point (column spaces computed once)."""

    def __init__(self, growth_state: Mapping[str, torch.Tensor], matrices: list[GrownMatrix]) -> None:
        self.matrices = matrices
        self.w0 = {m.name: _array(growth_state, m.name) for m in matrices}
        self.bases = {}
        for m in matrices:
            block = self.w0[m.name][np.ix_(m.old_rows, m.old_cols)]
            u, s, _ = np.linalg.svd(block, full_matrices=False)
            tol = s.max(initial=0.0) * max(block.shape) * np.finfo(np.float64).eps
            self.bases[m.name] = u[:, s > tol]

    def theta_rho(self, state: Mapping[str, torch.Tensor]) -> tuple[float, float]:
        dot = norm_t = norm_0 = 0.0
        update = outside = 0.0
        for m in self.matrices:
            w0, wt = self.w0[m.name], _array(state, m.name)
            dot += float(np.sum(w0 * wt))
            norm_t += float(np.sum(wt * wt))
            norm_0 += float(np.sum(w0 * w0))
            dw = wt - w0
            energy = float(np.sum(dw * dw))
            inside = self.bases[m.name].T @ dw[m.old_rows]
            update += energy
            outside += energy - float(np.sum(inside * inside))
        cosine = dot / math.sqrt(norm_t * norm_0) if norm_t > 0 and norm_0 > 0 else 1.0
        theta = math.acos(min(1.0, max(-1.0, cosine)))
        rho = max(0.0, outside) / update if update > 0 else 0.0
        return theta, min(rho, 1.0)


# -- the paper's definitions: the base model against the grown model ------------------------------------
POOLINGS = ("model", "grown", "layer", "tensor")
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def base_state(growth: Mapping[str, Any], growth_state: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The base (pre-growth) model's tensors, read back from the growth point: a tensor growth left
    alone is itself; a grown one's old values sit at its placement's positions, times the
    placement's scale (``growth.json`` ``placements``); wholly new tensors have no base. Reading
    them from the growth point keeps a run analysable after its base checkpoint is deleted."""
    placements = growth.get("placements", {})
    base: dict[str, np.ndarray] = {}
    for name in sorted(growth_state):
        if name not in placements:
            base[name] = _array(growth_state, name)
    for name in sorted(placements):
        placement = placements[name]
        if placement.get("source") is None or name not in growth_state:
            continue
        index = [_axis_positions(runs) for runs in placement["positions"]]
        values = _array(growth_state, name)[np.ix_(*index)]
        scale = float(placement.get("scale", 1.0)) or 1.0
        base.setdefault(placement["source"], values / scale)
    return base


def _layer_key(name: str) -> str:
    match = _LAYER.search(name)
    return f"layer {int(match.group(1))}" if match else "other"


def pooled_groups(base: Mapping[str, np.ndarray], growth: Mapping[str, Any], grown_names: list[str],
                  pooling: str) -> list[tuple[str, list[str], list[str]]]:
    """(group, base tensor names, grown tensor names) for one pooling of ``POOLINGS``:

    * ``model``: every tensor of the base against every tensor of the grown model (one group);
    * ``grown``: the tensors growth changed (their base tensors against the grown ones);
    * ``layer``: per transformer layer (``layers.N.``) and the rest (``other``), every tensor;
    * ``tensor``: per tensor growth changed, its base tensor against it.
    """
    placements = growth.get("placements", {})
    changed = [n for n in grown_names if n in placements and placements[n].get("source") in base]
    if pooling == "model":
        return [("model", sorted(base), sorted(grown_names))]
    if pooling == "grown":
        if not changed:
            raise AnalysisError("growth.json records no grown tensor with old values; use --pooling model")
        return [("grown", sorted({placements[n]["source"] for n in changed}), changed)]
    if pooling == "tensor":
        if not changed:
            raise AnalysisError("growth.json records no grown tensor with old values; use --pooling model")
        return [(n, [placements[n]["source"]], [n]) for n in changed]
    if pooling == "layer":
        keys = sorted({_layer_key(n) for n in grown_names} | {_layer_key(n) for n in base})
        return [(k, [n for n in sorted(base) if _layer_key(n) == k], [n for n in sorted(grown_names)
                                                                        if _layer_key(n) == k]) for k in keys]
    raise AnalysisError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")


def pooled_sample(arrays: list[np.ndarray], max_values: int, seed: int) -> np.ndarray:
    """At most ``max_values`` values drawn at random without replacement from the concatenation of
    ``arrays`` (``numpy.random.default_rng(seed).choice``, then sorted by position), without
    materialising it; all values when there are no more."""
    sizes = np.array([a.size for a in arrays], dtype=np.int64)
    total = int(sizes.sum())
    if total <= max_values:
        return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays]) if arrays else np.zeros(0)
    picks = np.sort(np.random.default_rng(seed).choice(total, max_values, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    out = []
    for k, a in enumerate(arrays):
        lo, hi = np.searchsorted(picks, [starts[k], starts[k + 1]])
        if hi > lo:
            out.append(np.asarray(a, np.float64).ravel()[picks[lo:hi] - starts[k]])
    return np.concatenate(out)


def base_vs_grown(base: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray], growth: Mapping[str, Any],
                  pooling: str, max_values: int, grid: int, seed: int = 0) -> dict[str, Any]:
    """The paper's NOC and Z of one snapshot: per group of ``pooling`` (:func:`pooled_groups`), a
    random sample of at most ``max_values`` base values (seed ``seed``) and of grown values (seed
    ``seed + 1``), NOC = overlap of their KDEs and Z = two-sided Mann-Whitney p-value; the mean
    over groups (one group for ``model`` and ``grown``)."""
    from growlm.analysis.statistics import mann_whitney_pvalue, overlap_coefficient

    nocs, zs, n_base, n_grown = [], [], 0, 0
    for _key, base_names, grown_names in pooled_groups(base, growth, sorted(state), pooling):
        if not base_names or not grown_names:
            continue
        a = pooled_sample([base[n] for n in base_names], max_values, seed)
        b = pooled_sample([state[n] for n in grown_names], max_values, seed + 1)
        nocs.append(overlap_coefficient(a, b, max_values, grid))
        zs.append(mann_whitney_pvalue(a, b))
        n_base += sum(base[n].size for n in base_names)
        n_grown += sum(state[n].size for n in grown_names)
    if not nocs:
        raise AnalysisError(f"no group of pooling {pooling!r} has both base and grown values")
    return {"noc": float(np.mean(nocs)), "z": float(np.mean(zs)), "groups": len(nocs),
            "n_base": n_base, "n_grown": n_grown}


def arrays(state: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: _array(state, name) for name in state}
