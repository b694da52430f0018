"""Which growlm produced a result: its version, its checkout's git commit, and a hash of its source.

Experiment reports (``experiment.json`` and the header line of ``report.md``), ``growlm bench``
records and ``growlm --version`` name the code that ran with three facts, each honest about
what it knows:

* ``version``: the installed distribution's version (``importlib.metadata``); ``growlm.__version__``
  where growlm runs without being installed;
* ``commit``: ``git describe --always --dirty`` of growlm's *own* checkout, or None. Git is asked
  in the folder holding the package's source, and its answer counts only if that repository's
  top level holds this very package as ``src/growlm`` and a ``pyproject.toml`` naming the project
  ``growlm``. Asking in the working directory instead named another repository's commit as
  growlm's when growlm ran from a copy inside that repository; an installed growlm has no commit;
* ``source_hash``: the first 12 hex digits of a sha256 over the package's ``.py`` files, so a result
  is tied to code even where ``.git`` is missing or stale (a working tree copied onto another
  machine with an old ``.git`` reports that old commit, but the hash of the code that ran). Each
  file, in the order of its path relative to the package folder, adds ``path NUL bytes NUL``;
  ``python -c "import growlm.provenance as p; print(p.source_hash())"`` recomputes it for a checkout.

Nothing here imports torch, so ``growlm --version`` stays instant.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
_GIT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Provenance:
    """The code that ran: growlm's version, its checkout's commit (None outside one), its source hash."""

    version: str
    commit: str | None
    source_hash: str

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def text(self) -> str:
        """``growlm 0.1.0 (commit 70acb97-dirty, source 0123456789ab)``; no commit part outside a checkout."""
        parts = ([f"commit {self.commit}"] if self.commit else []) + [f"source {self.source_hash}"]
        return f"growlm {self.version} ({', '.join(parts)})"


def version() -> str:
    """growlm's version: the installed distribution's, else the package's own ``__version__``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as distribution_version

    try:
        return distribution_version("growlm")
    except PackageNotFoundError:  # run from a source tree on PYTHONPATH without being installed
        import growlm

        return growlm.__version__


def source_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 over the package's ``.py`` files (relative path and bytes, in path order), first 12 hex digits."""
    digest = hashlib.sha256()
    for rel in sorted(p.relative_to(package_dir).as_posix() for p in package_dir.rglob("*.py")):
        digest.update(rel.encode() + b"\0" + (package_dir / rel).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def names_growlm(pyproject: Path) -> bool:
    """Whether ``pyproject`` is growlm's: its ``[project]`` table has ``name = "growlm"``."""
    try:
        text = pyproject.read_text()
    except OSError:
        return False
    toml = _tomllib()
    if toml is None:  # Python 3.10: no TOML reader in the standard library; the name line will do
        return re.search(r"(?ms)^\[project\][^\[]*?^name\s*=\s*[\"']growlm[\"']\s*$", text) is not None
    try:
        return toml.loads(text).get("project", {}).get("name") == "growlm"
    except toml.TOMLDecodeError:
        return False


def _tomllib() -> Any:
    """The standard library's TOML reader (Python 3.11+), or None where there is none."""
    if sys.version_info >= (3, 11):
        try:
            import tomllib
        except ImportError:
            return None
        return tomllib
    return None


def _git(package_dir: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True, text=True,
                                timeout=_GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None
    return (result.stdout.strip() or None) if result.returncode == 0 else None


def checkout_commit(package_dir: Path = PACKAGE_DIR) -> str | None:
    """``git describe --always --dirty`` of growlm's own checkout, or None when the package at
    ``package_dir`` does not run from one (installed, or a copy inside some other repository)."""
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    if top is None:
        return None
    root = Path(top).resolve()
    if (root / "src" / "growlm").resolve() != package_dir.resolve() or not names_growlm(root / "pyproject.toml"):
        return None
    return _git(package_dir, "describe", "--always", "--dirty")


@lru_cache(maxsize=1)
def provenance() -> Provenance:
    """This process's growlm, worked out once (call it early: a long run may outlive edits to the source)."""
    return Provenance(version=version(), commit=checkout_commit(), source_hash=source_hash())
