"""A slice of a corpus drawn across its sources in proportion, and an account of what a split holds.

The shared corpus's validation split is 2% of every source's documents, drawn at random
(seeded). A training slice made of the *first* N documents of each source file is drawn
differently twice over: every source gets the same number of documents whatever its size,
and the first documents of a file are a few neighbouring ones (the first book or two, one
folder of a documentation tree). A model trained on such a slice is validated on text
unlike its training text, and its validation loss says so (about 1 nat above the training
loss in the demo). :func:`draw_documents` draws a slice like the validation split instead:
each source contributes in proportion to its number of documents, the documents chosen at
random over the whole file.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from growlm.errors import DataError


def _lines(path: Path) -> list[bytes]:
    """The non-blank lines of a JSONL(.gz) file, as bytes (decoded only when chosen)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return [line for line in f if line.strip()]
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def source_name(path: Path) -> str:
    """``corpus/train/linuxdocs.jsonl.gz`` -> ``linuxdocs``."""
    return path.name.split(".")[0]


def proportional_counts(sizes: Sequence[int], total: int) -> list[int]:
    """``total`` split over groups of ``sizes`` in proportion, by largest remainder (Hamilton's method).

    The counts add up to ``total`` exactly and each is the floor or the ceiling of its
    exact share ``total * size / sum(sizes)``; ties go to the earlier group."""
    if total > sum(sizes):
        raise DataError(f"cannot draw {total} documents from {sum(sizes)}")
    shares = [total * s / sum(sizes) for s in sizes]
    counts = [int(share) for share in shares]
    order = sorted(range(len(sizes)), key=lambda i: (-(shares[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def describe(path: Path, text_field: str = "text") -> dict[str, int]:
    """Documents and characters of one JSONL(.gz) file."""
    lines = _lines(path)
    return {"documents": len(lines), "characters": sum(len(json.loads(line)[text_field]) for line in lines)}


def draw_documents(files: Sequence[Path], total: int, out_dir: Path, seed: int = 0,
                   text_field: str = "text") -> dict[str, dict[str, int]]:
    """Draw ``total`` documents over ``files`` (one source each) in proportion to their sizes.

    Each file contributes :func:`proportional_counts` of the total, chosen uniformly at random
    (``seed``) among all its documents and kept in file order; the chosen lines are written
    verbatim to ``out_dir/SOURCE.jsonl``. Returns, per source, the documents in the file,
    the documents drawn and their characters."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = {Path(f): _lines(Path(f)) for f in files}
    counts = proportional_counts([len(v) for v in lines.values()], total)
    rng = np.random.default_rng(seed)
    account: dict[str, dict[str, int]] = {}
    for (path, source_lines), count in zip(lines.items(), counts, strict=True):
        chosen = np.sort(rng.choice(len(source_lines), size=count, replace=False))
        picked = [source_lines[i] for i in chosen]
        target = out_dir / f"{source_name(path)}.jsonl"
        target.write_bytes(b"".join(line if line.endswith(b"\n") else line + b"\n" for line in picked))
        account[source_name(path)] = {
            "documents_in_source": len(source_lines), "documents": count,
            "characters": sum(len(json.loads(line)[text_field]) for line in picked)}
    return account


def split_account(files: Sequence[Path], text_field: str = "text") -> dict[str, dict[str, Any]]:
    """Per source file: its documents and characters (what a validation split holds)."""
    return {source_name(Path(f)): describe(Path(f), text_field) for f in files}
