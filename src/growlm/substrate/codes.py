"""From per-token codes to the embedding table: PCA of glyph bits, binary id codes, random codes.

Every kind yields ``codes``: a ``vocab x embedding_dim`` float64 matrix whose rows are
unit vectors. The model's table is then

    table = embedding_scale * [codes | zeros(vocab, hidden_size - embedding_dim)]

(``embedding_dim = hidden_size`` unless the hidden size has grown since; see
``growlm.growth.hidden_size``).

glyph (../shared/papers/NOTES.md §2): the ``V x bits`` 0/1 picture matrix is centred (column means
removed) and rotated onto its principal axes, in order of decreasing variance; each row
is then L2-normalised. "Full rank" means every axis with non-zero variance is kept: a
32 x 32 cell has 1024 pixels but only a few hundred of them ever differ between tokens
(the 32k vocabulary: rank 536), so the rank ``r`` is below 1024. The table keeps the first
``min(embedding_dim, r)`` principal coordinates -- all of them whenever
``embedding_dim >= r``, which is the paper's full-dimension PCA; with a narrower model, the
best ``embedding_dim``-dimensional linear summary of the pictures (by variance) -- and
pads with zero columns up to ``embedding_dim``. The PCA is an eigendecomposition of the
exact ``bits x bits`` covariance (``torch.linalg.eigh`` in float64; the 0/1 Gram matrix is
computed exactly in float32, every entry being an integer below 2^24), which is cheaper
than an SVD of the ``V x bits`` matrix and gives the same axes. Each axis's sign is fixed
as scikit-learn's ``svd_flip`` fixes it (the largest-magnitude coordinate positive), so the
table is a deterministic function of the pictures; tests check the axes against
scikit-learn's PCA.

binary: the token id's ``n = ceil(log2 V)`` bits (least significant first) as +-1,
repeated to ``embedding_dim`` columns (column ``j`` is bit ``j mod n``), divided by
``sqrt(embedding_dim)``. Distinct ids differ in at least one bit, hence in at least
``floor(embedding_dim / n)`` columns: collision-free by construction.

random_binary: ``embedding_dim`` independent fair +-1 bits per token from
``torch.Generator().manual_seed(embedding_seed)``, duplicates redrawn until every row is
unique, divided by ``sqrt(embedding_dim)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from growlm.errors import ConfigError

RANK_TOLERANCE = 1e-10  # eigenvalues below this fraction of the largest count as zero variance


def normalise_rows(codes: torch.Tensor) -> torch.Tensor:
    norms = codes.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ConfigError("a token's code is all zero after centring; its row cannot be normalised")
    return codes / norms


def principal_axes(bits: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean, axes, variances)`` of the rows of a 0/1 matrix: axes as columns, by decreasing variance,
    only those with non-zero variance."""
    x = torch.from_numpy(np.ascontiguousarray(bits, dtype=np.float32))
    n = x.shape[0]
    gram = (x.T @ x).double()  # exact: integer entries below 2^24
    mean = x.double().mean(0)
    cov = gram - n * torch.outer(mean, mean)
    values, vectors = torch.linalg.eigh(cov)
    values, vectors = values.flip(0), vectors.flip(1)
    rank = int((values > RANK_TOLERANCE * values[0]).sum()) if values[0] > 0 else 0
    return mean, vectors[:, :rank], values[:rank] / max(n - 1, 1)


def principal_coordinates(bits: np.ndarray, count: int | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """The first ``min(count, rank)`` principal coordinates of every row (signs fixed as ``svd_flip``)."""
    mean, axes, variances = principal_axes(bits)
    rank = axes.shape[1]
    kept = rank if count is None else min(count, rank)
    centred = torch.from_numpy(np.asarray(bits, dtype=np.float64)) - mean
    coords = centred @ axes[:, :kept]
    signs = torch.sign(coords.gather(0, coords.abs().argmax(0, keepdim=True)))
    coords = coords * torch.where(signs == 0, 1.0, signs)
    total = float(variances.sum()) if rank else 0.0
    info = {"bits": int(bits.shape[1]), "rank": rank, "components_kept": kept,
            "variance_kept": float(variances[:kept].sum()) / total if total else 0.0}
    return coords, info


def glyph_codes(bits: np.ndarray, dim: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """Unit-norm ``V x dim`` codes: the first ``min(dim, rank)`` principal coordinates, zero-padded."""
    coords, info = principal_coordinates(bits, dim)
    codes = torch.zeros(bits.shape[0], dim, dtype=torch.float64)
    codes[:, : coords.shape[1]] = coords
    return normalise_rows(codes), info


def id_bits(vocab_size: int) -> int:
    return max(1, math.ceil(math.log2(vocab_size)))


def binary_codes(vocab_size: int, dim: int) -> tuple[torch.Tensor, dict[str, Any]]:
    n = id_bits(vocab_size)
    if dim < n:
        raise ConfigError(f"embedding=binary needs embedding_dim >= {n} (the bits of a token id below "
                          f"{vocab_size}), got {dim}")
    ids = torch.arange(vocab_size, dtype=torch.long)[:, None]
    bit_of_column = torch.arange(dim) % n
    codes = ((ids >> bit_of_column) & 1).double() * 2 - 1
    return codes / math.sqrt(dim), {"id_bits": n, "repeats": dim / n}


def random_binary_codes(vocab_size: int, dim: int, seed: int) -> tuple[torch.Tensor, dict[str, Any]]:
    n = id_bits(vocab_size)
    if dim < n:
        raise ConfigError(f"embedding=random_binary needs embedding_dim >= {n} to give {vocab_size} tokens "
                          f"distinct codes, got {dim}")
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2, (vocab_size, dim), generator=generator, dtype=torch.int8)
    redraws = 0
    while True:
        _, first = np.unique(codes.numpy(), axis=0, return_index=True)
        duplicates = np.setdiff1d(np.arange(vocab_size), first)
        if len(duplicates) == 0:
            break
        redraws += len(duplicates)
        codes[torch.from_numpy(duplicates)] = torch.randint(0, 2, (len(duplicates), dim), generator=generator,
                                                            dtype=torch.int8)
    return (codes.double() * 2 - 1) / math.sqrt(dim), {"seed": seed, "redrawn": redraws}


def table_from_codes(codes: torch.Tensor, hidden_size: int, scale: float = 1.0) -> torch.Tensor:
    """The float32 ``V x hidden_size`` embedding table: ``scale * [codes | 0]``."""
    vocab, dim = codes.shape
    if dim > hidden_size:
        raise ConfigError(f"embedding_dim={dim} exceeds hidden_size={hidden_size}")
    table = torch.zeros(vocab, hidden_size, dtype=torch.float64)
    table[:, :dim] = codes * scale
    return table.float()


def row_groups(matrix: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(group of each row, size of each group)``: rows are in one group iff they are identical bit for bit.

    Rows are compared as raw bytes (one ``np.unique`` over a 1-D array of fixed-size byte
    strings), which is much faster than ``np.unique(axis=0)``'s lexicographic sort."""
    array = np.ascontiguousarray(matrix.numpy() if isinstance(matrix, torch.Tensor) else matrix)
    rows = array.reshape(array.shape[0], -1).view(np.dtype((np.void, array.dtype.itemsize * array[0].size)))
    _, inverse, counts = np.unique(rows.reshape(-1), return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def count_collisions(table: torch.Tensor) -> dict[str, Any]:
    """Tokens whose row equals another token's row exactly."""
    inverse, counts = row_groups(table)
    shared = counts[inverse] > 1
    return {"tokens": int(table.shape[0]), "distinct_rows": len(counts),
            "tokens_sharing_a_row": int(shared.sum()), "share_sharing_a_row": float(shared.mean()),
            "groups": int((counts > 1).sum())}
