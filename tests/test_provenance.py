"""Provenance names growlm's own code: its version always, its checkout's commit only from growlm's
own checkout (never another repository around a copy), and a source hash that follows the code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import growlm
from growlm import provenance as prov
from tests.conftest import REPO

GROWLM_PYPROJECT = '[project]\nname = "growlm"\nversion = "0.1.0"\n'


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com",
                           "-c", "commit.gpgsign=false", *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def _repo(root: Path, pyproject: str, package: str = "src/growlm") -> Path:
    """A git repository at ``root`` with ``pyproject`` and a two-file package at ``package``; returns the package."""
    pkg = root / package
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    (pkg / "sub" / "m.py").write_text("y = 2\n")
    (root / "pyproject.toml").write_text(pyproject)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "one")
    return pkg


def test_growlms_own_checkout_gives_its_commit_and_dirt(tmp_path: Path):
    pkg = _repo(tmp_path / "growlm", GROWLM_PYPROJECT)
    head = _git(tmp_path / "growlm", "rev-parse", "--short", "HEAD")
    assert prov.checkout_commit(pkg) == head
    (pkg / "sub" / "m.py").write_text("y = 3\n")
    assert prov.checkout_commit(pkg) == head + "-dirty"


def test_a_copy_inside_another_repository_gives_no_commit(tmp_path: Path):
    # the other repository's pyproject names another project
    assert prov.checkout_commit(_repo(tmp_path / "other", '[project]\nname = "other"\n')) is None
    # it names growlm, but this package is not its src/growlm (a vendored copy)
    assert prov.checkout_commit(_repo(tmp_path / "vendor", GROWLM_PYPROJECT, "third_party/growlm")) is None
    # no repository at all (an installed package)
    loose = tmp_path / "site-packages" / "growlm"
    loose.mkdir(parents=True)
    assert prov.checkout_commit(loose) is None


def test_source_hash_follows_the_code_not_the_place(tmp_path: Path):
    pkg = _repo(tmp_path / "a", GROWLM_PYPROJECT)
    first = prov.source_hash(pkg)
    assert len(first) == 12 and int(first, 16) >= 0
    copy = tmp_path / "b" / "growlm"
    shutil.copytree(pkg, copy)
    assert prov.source_hash(copy) == first  # the same code elsewhere (a copied tree, a stale .git)
    (copy / "notes.txt").write_text("not code")
    assert prov.source_hash(copy) == first
    (copy / "sub" / "m.py").write_text("y = 3\n")
    assert prov.source_hash(copy) != first
    (copy / "sub" / "m.py").write_text("y = 2\n")
    (copy / "sub" / "m.py").rename(copy / "sub" / "n.py")  # same bytes, another module
    assert prov.source_hash(copy) != first


@pytest.mark.parametrize("without_tomllib", [False, True])
def test_pyproject_is_recognised_by_its_project_name(tmp_path: Path, monkeypatch, without_tomllib):
    if without_tomllib:  # Python 3.10 has no tomllib: the fallback reads the name line
        monkeypatch.setitem(sys.modules, "tomllib", None)
    path = tmp_path / "pyproject.toml"
    cases = {GROWLM_PYPROJECT: True,
             '[project]\nname = "growlm-extras"\n': False,
             '[tool.x]\nname = "growlm"\n[project]\nname = "other"\n': False,
             '[project]\nversion = "1"\n': False}
    for text, expected in cases.items():
        path.write_text(text)
        assert prov.names_growlm(path) is expected, text
    assert prov.names_growlm(tmp_path / "missing.toml") is False


def test_this_process_names_its_own_checkout(monkeypatch):
    code = prov.provenance()
    assert code.version == growlm.__version__
    assert code.source_hash == prov.source_hash(Path(growlm.__file__).resolve().parent)
    if prov.PACKAGE_DIR == REPO / "src" / "growlm" and (REPO / ".git").exists():
        assert code.commit is not None  # describe's name (a hash, or tag-N-gHASH) resolves to HEAD
        assert _git(REPO, "rev-parse", code.commit.removesuffix("-dirty")) == _git(REPO, "rev-parse", "HEAD")
    # run from elsewhere (the working directory plays no part)
    monkeypatch.chdir("/")
    assert prov.checkout_commit() == code.commit


def test_text_names_the_commit_only_when_there_is_one():
    assert prov.Provenance("0.1.0", "abc1234-dirty", "0123456789ab").text() == \
        "growlm 0.1.0 (commit abc1234-dirty, source 0123456789ab)"
    assert prov.Provenance("0.1.0", None, "0123456789ab").text() == "growlm 0.1.0 (source 0123456789ab)"
