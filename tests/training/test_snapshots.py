"""Weights-only snapshots of a run (training config ``snapshots`` / ``snapshot_every_tokens``)."""

from __future__ import annotations

import json

import pytest

from growlm.errors import ConfigError
from growlm.models import storage
from growlm.training.config import build_train_config, snapshot_steps
from growlm.training.trainer import start_run
from tests.conftest import train_config


def _cfg(**values):
    base = {"model": "nexus-tiny", "data": ".", "max_steps": 30, "seq_len": 32, "micro_batch_size": 4}
    return build_train_config({**base, **values})


def test_snapshot_steps():
    assert snapshot_steps(_cfg(snapshots=11), 128) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    assert snapshot_steps(_cfg(snapshots=2), 128) == [0, 30]
    assert snapshot_steps(_cfg(snapshots=50), 128) == list(range(31))  # more snapshots than steps: every step
    # every 300 tokens at 128 tokens per step: the first steps with >= 300, 600, ... tokens
    assert snapshot_steps(_cfg(snapshot_every_tokens=300), 128) == [0, 3, 5, 8, 10, 12, 15, 17, 19, 22, 24, 26, 29]
    assert snapshot_steps(_cfg(), 128) == []


@pytest.mark.parametrize(("values", "message"), [
    ({"snapshots": 1}, "snapshots must be 0 .off. or at least 2"),
    ({"snapshots": -3}, "snapshots must be 0"),
    ({"snapshot_every_tokens": -1}, "snapshot_every_tokens must not be negative"),
    ({"snapshots": 5, "snapshot_every_tokens": 100}, "not both"),
])
def test_bad_snapshot_settings(values, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(**values)


def test_a_run_keeps_weights_only_snapshots(tiny_data, tmp_path):
    cfg = train_config(tiny_data, tmp_path / "run", max_steps=8, snapshots=5, checkpoint_every=100)
    start_run(cfg)
    snapshots = storage.list_snapshots(tmp_path / "run")
    assert [p.name for p in snapshots] == [f"step-{s:08d}" for s in (0, 2, 4, 6, 8)]
    for folder in snapshots:
        info = json.loads((folder / storage.SNAPSHOT_INFO).read_text())
        assert info["tokens"] == info["step"] * 4 * 32
        assert (folder / storage.WEIGHTS).exists() and not (folder / storage.OPTIMIZER).exists()
        storage.verify(folder)
    # the last snapshot holds the final weights, equal to the final checkpoint's
    final = storage.load_state(storage.list_checkpoints(tmp_path / "run")[-1])
    last = storage.load_state(snapshots[-1])
    assert all((final[k] == last[k]).all() for k in final)
