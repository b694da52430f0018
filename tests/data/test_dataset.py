"""Windows and the data position: deterministic, resumable, across shard boundaries."""

import json

import numpy as np
import torch

from growlm.data.dataset import TokenSplit, WindowSampler, evaluation_windows
from growlm.data.prepare import prepare
from tests.conftest import SP_MODEL


def _split(tmp_path, shard_tokens=97):
    path = tmp_path / "d.jsonl"
    docs = [{"text": " ".join(f"w{i}x{j}" for j in range(30))} for i in range(30)]
    path.write_text("\n".join(json.dumps(d) for d in docs))
    prepare([path], str(SP_MODEL), tmp_path / "out", val_fraction=0.0, shard_tokens=shard_tokens,
            show_progress=False)
    return TokenSplit(tmp_path / "out", "train")


def test_reads_across_shards(tmp_path):
    split = _split(tmp_path)
    assert len(split.arrays) > 3
    whole = np.concatenate([np.asarray(a, dtype=np.int64) for a in split.arrays])
    for start, length in [(0, 10), (90, 20), (95, 300), (split.num_tokens - 7, 7)]:
        assert np.array_equal(split.read(start, length), whole[start: start + length])


def test_windows_shift_inputs_and_targets(tmp_path):
    split = _split(tmp_path)
    sampler = WindowSampler(split, seq_len=16, seed=0)
    x, y = sampler.batch(0, 4)
    assert x.shape == y.shape == (4, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_order_depends_only_on_position(tmp_path):
    split = _split(tmp_path)
    one = WindowSampler(split, seq_len=8, seed=5)
    seq = [one.batch(p, 3)[0] for p in range(0, 3 * 40, 3)]  # crosses epochs
    other = WindowSampler(split, seq_len=8, seed=5)
    for i in (17, 3, 39):
        assert torch.equal(other.batch(3 * i, 3)[0], seq[i])
    epoch = [WindowSampler(split, 8, 5)._index(p) for p in range(one.n)]
    assert sorted(epoch) == list(range(one.n))
    assert not torch.equal(WindowSampler(split, 8, 6).batch(0, 3)[0], seq[0])


def test_evaluation_windows_spread_over_the_split(tmp_path):
    split = _split(tmp_path)
    n = split.num_windows(8)
    picked = evaluation_windows(split, 8, 5)
    assert len(picked) == 5 and picked[0] == 0 and picked[-1] == n - 1
    assert np.array_equal(evaluation_windows(split, 8, None), np.arange(n))
