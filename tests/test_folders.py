"""growlm.folders: the one atomic folder writer and the one reader of optimizer moments by name."""

import os
import subprocess
import sys

import pytest
import torch

from growlm.folders import atomic_dir, atomic_write_text, load_moments


def _files(folder):
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_new_folder_appears_whole_and_replaces_the_old_one(tmp_path):
    final = tmp_path / "deep" / "out"
    with atomic_dir(final) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir()) and not final.exists()
        (tmp / "a.txt").write_text("first")
    assert _files(final) == {"a.txt": "first"}
    with atomic_dir(final) as tmp:
        (tmp / "b.txt").write_text("second")
    assert _files(final) == {"b.txt": "second"}  # replaced, not merged
    assert sorted(p.name for p in final.parent.iterdir()) == ["out"]  # no temporary left


def test_a_failure_leaves_the_old_folder_intact_and_no_temporary(tmp_path):
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("half of the new")
        raise RuntimeError("disk on fire")
    assert _files(final) == {"a.txt": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(KeyboardInterrupt), atomic_dir(tmp_path / "never") as tmp:
        raise KeyboardInterrupt
    assert not (tmp_path / "never").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: its id names no process (until the system hands it out again)
    return proc.pid


def test_stale_temporaries_are_cleared_first_and_never_end_up_in_the_folder(tmp_path):
    final = tmp_path / "out"
    stale = [tmp_path / "out.tmp", tmp_path / f"out.tmp-{os.getpid()}", tmp_path / f"out.tmp-{_dead_pid()}"]
    for folder in stale:
        folder.mkdir()
        (folder / "stale.bin").write_text("left by a crash")
    live = tmp_path / f"out.tmp-{os.getppid()}"  # a process that runs: perhaps writing it right now
    live.mkdir()
    other = tmp_path / "outer.tmp"  # another folder's temporary
    other.mkdir()
    with atomic_dir(final) as tmp:
        assert not any(tmp.iterdir())
        (tmp / "new.bin").write_text("new")
    assert _files(final) == {"new.bin": "new"}
    assert not any(folder.exists() for folder in stale)
    assert live.is_dir() and other.is_dir()


def test_atomic_write_text_replaces_a_file(tmp_path):
    path = tmp_path / "units" / "a.json"
    path.parent.mkdir()
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_load_moments_keys_them_by_name_with_the_param_groups(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    names = [n for n, _ in model.named_parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.5)
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    torch.save(optimizer.state_dict(), tmp_path / "optimizer.pt")
    saved = load_moments(tmp_path / "optimizer.pt", names)
    assert list(saved.by_name) == names
    for index, (name, param) in enumerate(model.named_parameters()):
        assert torch.equal(saved.by_name[name]["exp_avg"], optimizer.state[param]["exp_avg"])
        assert saved.by_name[name]["exp_avg"].shape == param.shape
        assert index in saved.param_groups[0]["params"]
    assert saved.param_groups[0]["lr"] == 0.5
    torch.save({"state": {}}, tmp_path / "empty.pt")  # a grown folder with fresh moments, no groups
    empty = load_moments(tmp_path / "empty.pt", names)
    assert empty.by_name == {} and empty.param_groups == []
