"""Reading prepared token shards: fixed-length windows in a resumable order.

A split is the concatenation of its shards. It is cut into non-overlapping windows
of ``seq_len + 1`` tokens (input and shifted target share ``seq_len`` of them);
window ``i`` starts at token ``i * seq_len``. Training visits the windows in a
permutation drawn from ``(seed, epoch)``, so the whole data order is a function of
one integer, the number of windows consumed so far (the *data position*). Saving
that integer in a checkpoint is all it takes to resume the stream exactly, and a
run started from a checkpoint of another run can continue on the windows that run
never saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from growlm.data.prepare import FORMAT
from growlm.errors import DataError, read_json


def load_meta(data_dir: str | Path) -> dict[str, Any]:
    path = Path(data_dir) / "meta.json"
    meta = read_json(path, DataError,
                     f"{data_dir} is not a prepared data folder (no meta.json); run `growlm data prepare`")
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: unknown data format {meta.get('format')!r} (expected {FORMAT})")
    return meta


class TokenSplit:
    """The tokens of one split, memory-mapped, addressable as one long array."""

    def __init__(self, data_dir: str | Path, split: str) -> None:
        self.dir = Path(data_dir)
        self.meta = load_meta(self.dir)
        if split not in self.meta["splits"]:
            raise DataError(f"{data_dir} has no '{split}' split (has: {', '.join(self.meta['splits'])})")
        info = self.meta["splits"][split]
        dtype = np.dtype(self.meta["dtype"])
        self.arrays = []
        for shard in info["shards"]:
            path = self.dir / shard["file"]
            if not path.exists():
                raise DataError(f"shard {path} listed in meta.json is missing")
            expected = shard["tokens"] * dtype.itemsize
            if path.stat().st_size != expected:
                raise DataError(f"shard {path} has {path.stat().st_size} bytes, meta.json says {expected}")
            self.arrays.append(np.memmap(path, dtype=dtype, mode="r"))
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])
        self.num_tokens = int(self.starts[-1])
        self.num_bytes = int(info.get("bytes", 0))
        self.split = split

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` of the concatenated shards."""
        out = np.empty(length, dtype=np.int64)
        filled = 0
        shard = int(np.searchsorted(self.starts, start, side="right") - 1)
        while filled < length:
            offset = start + filled - int(self.starts[shard])
            take = min(length - filled, len(self.arrays[shard]) - offset)
            out[filled: filled + take] = self.arrays[shard][offset: offset + take]
            filled += take
            shard += 1
        return out

    def num_windows(self, seq_len: int) -> int:
        return max(0, (self.num_tokens - 1) // seq_len)

    def window(self, index: int, seq_len: int) -> np.ndarray:
        return self.read(index * seq_len, seq_len + 1)


class WindowSampler:
    """Batches of windows in a seeded per-epoch permutation, addressed by data position."""

    def __init__(self, split: TokenSplit, seq_len: int, seed: int) -> None:
        self.split, self.seq_len, self.seed = split, seq_len, seed
        self.n = split.num_windows(seq_len)
        if self.n == 0:
            raise DataError(
                f"the {split.split} split of {split.dir} has {split.num_tokens} tokens, fewer than one window of "
                f"seq_len + 1 = {seq_len + 1}"
            )
        self._epoch = -1
        self._order: np.ndarray | None = None

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if epoch != self._epoch or self._order is None:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._epoch = epoch
        return int(self._order[offset])

    def window(self, position: int) -> np.ndarray:
        """The ``seq_len + 1`` tokens of the window at data position ``position``."""
        return self.split.window(self._index(position), self.seq_len)

    def batch(self, position: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Input and target tensors (batch_size, seq_len) for windows position .. position + batch_size - 1."""
        rows = np.stack([self.window(position + i) for i in range(batch_size)])
        tokens = torch.from_numpy(rows)
        return tokens[:, :-1], tokens[:, 1:]


class WindowSplit(Protocol):
    """What evaluation reads from a split: a :class:`TokenSplit`, or a ``dataset`` source's
    ``sources.InMemorySplit``."""

    num_tokens: int
    num_bytes: int

    def num_windows(self, seq_len: int) -> int: ...

    def window(self, index: int, seq_len: int) -> np.ndarray: ...


def evaluation_windows(split: WindowSplit, seq_len: int, max_windows: int | None = None) -> np.ndarray:
    """Window indices for validation: all of them, or ``max_windows`` spread evenly over the split.

    Spreading (rather than taking the first windows) keeps a capped evaluation
    representative of every source in the split; the choice is fixed, so numbers
    compare across checkpoints.
    """
    n = split.num_windows(seq_len)
    if max_windows is None or max_windows >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_windows).round().astype(np.int64))


def evaluation_batches(split: WindowSplit, seq_len: int, batch_size: int, max_batches: int | None = None):
    """Batches of validation windows (see :func:`evaluation_windows`), the same every time."""
    windows = evaluation_windows(split, seq_len, None if max_batches is None else max_batches * batch_size)
    for start in range(0, len(windows), batch_size):
        rows = np.stack([split.window(int(i), seq_len) for i in windows[start: start + batch_size]])
        tokens = torch.from_numpy(rows)
        yield tokens[:, :-1], tokens[:, 1:]
