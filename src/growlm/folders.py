"""Folder I/O every writer shares: whole folders written atomically, optimizer moments read by name.

:func:`atomic_dir` is how checkpoints, snapshots, prepared data and grown models are
written: into a temporary sibling, renamed onto the real name only once complete, so a
crash never leaves a partial folder under a real name and a failed write leaves the
previous folder as it was. :func:`atomic_write_text` is the same for one file.

:func:`load_moments` reads an ``optimizer.pt`` as torch wrote it (state keyed by the
parameter's position) and keys it by parameter name, the form in which growth and
``init_from`` move moments between models whose parameters differ.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TMP = ".tmp"  # a temporary sibling is named FINAL.tmp-PID (an earlier growlm used FINAL.tmp)


def _tmp_sibling(final: Path) -> Path:
    # per process, so two processes that happen to write the same folder never share a half-written one
    return final.with_name(f"{final.name}{TMP}-{os.getpid()}")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


def clear_stale(final: Path) -> None:
    """Remove temporary siblings of ``final`` that nobody is writing any more: this process's
    own (left by an earlier failure, or by a process that had the same id) and those of
    processes that no longer run on this machine -- whatever a crash left there must never
    end up in the folder written next."""
    pattern = re.compile(re.escape(final.name + TMP) + r"(?:-(\d+))?")
    if not final.parent.is_dir():
        return
    for sibling in final.parent.iterdir():
        match = pattern.fullmatch(sibling.name)
        if match is None:
            continue
        pid = int(match.group(1)) if match.group(1) else None
        if pid is None or pid == os.getpid() or (pid > 0 and not _running(pid)):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; when the block ends normally it
    replaces ``final`` (an existing folder of that name is removed first).

    When the block raises, the temporary folder is removed and ``final`` is left exactly as
    it was. Stale temporaries of earlier attempts are cleared first (:func:`clear_stale`).
    One writer per folder at a time is the caller's business (rank 0, a lock)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(final)
    tmp = _tmp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write one file so that readers see the old content or the new, never a part of it."""
    path = Path(path)
    clear_stale(path)
    tmp = _tmp_sibling(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def state_by_name(optimizer_state: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    """``{param name: {"step", "exp_avg", "exp_avg_sq"}}`` from a torch optimizer state dict."""
    return {names[int(index)]: value for index, value in optimizer_state["state"].items()}


@dataclass
class SavedMoments:
    """An ``optimizer.pt`` keyed by parameter name, with its param groups (hyperparameters)."""

    by_name: dict[str, dict[str, Any]]
    param_groups: list[dict[str, Any]] = field(default_factory=list)


def load_moments(path: str | Path, names: list[str]) -> SavedMoments:
    """The AdamW moments in ``path`` (an ``optimizer.pt``) by parameter name, on the CPU;
    ``names`` are the parameter names in the order the file's state uses (the
    ``param_names`` saved next to it in ``trainer_state.json``)."""
    import torch  # here, not at import: data preparation workers import this module and never need torch

    saved = torch.load(path, map_location="cpu", weights_only=False)
    return SavedMoments(state_by_name(saved, names), saved.get("param_groups", []))
