"""Finding what to analyse in a run folder: its growth record, its growth point and its snapshots.

``growlm analyze RUN`` takes

* a plan stage folder (``OUT/stage-NN-name/``): ``grown/growth.json`` and ``train/``;
* a training run started from a grown model: ``RUN/snapshots/growth.json`` (the trainer copies
  it there at step 0) or the ``growth.json`` of the folder its ``config.yaml`` names in
  ``init_from``.

The series is the growth point (the run's step-0 snapshot, else the grown model folder) followed
by the run's snapshots (``RUN/snapshots/step-*``, training config ``snapshots``); a run without
snapshots falls back to its checkpoints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from growlm.analysis.statistics import AnalysisError
from growlm.logs import quiet
from growlm.models import storage


@dataclass
class Point:
    step: int
    tokens: int
    folder: Path


@dataclass
class RunSource:
    path: Path
    label: str
    run_dir: Path
    growth: dict[str, Any]
    points: list[Point]  # the growth point first
    data: Path | None = None  # prepared data folder of the run (for validation perplexity)
    seq_len: int | None = None  # the run's training context (perplexity windows)
    notes: list[str] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        return str(self.growth.get("architecture"))

    @property
    def init(self) -> str:
        return str(self.growth.get("init"))


def _run_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _data_folder(config: dict[str, Any]) -> Path | None:
    data = config.get("data")
    if isinstance(data, str):
        return Path(data)
    if isinstance(data, dict):
        if data.get("out"):
            return Path(data["out"])
        val = data.get("val")
        if isinstance(val, dict) and val.get("prepared"):
            return Path(val["prepared"])
    return None


def resolve_run(path: str | Path, label: str | None = None) -> RunSource:
    path = Path(path)
    if not path.exists():
        raise AnalysisError(f"{path} does not exist")
    if (path / "plan.yaml").exists():
        stages = sorted(p.name for p in path.glob("stage-*") if (p / "grown" / "growth.json").exists())
        raise AnalysisError(f"{path} is a whole plan; analyse one of its grown stages: "
                            + (", ".join(str(path / s) for s in stages) or "(none has a growth point)"))
    growth_file = None
    grown_dir = None
    if (path / "grown" / "growth.json").exists() and (path / "train").is_dir():
        run_dir, grown_dir = path / "train", path / "grown"
        growth_file = grown_dir / "growth.json"
    else:
        run_dir = path / "train" if (path / "train").is_dir() and not (path / "config.yaml").exists() else path
        config = _run_config(run_dir)
        if (run_dir / storage.SNAPSHOTS / "growth.json").exists():
            growth_file = run_dir / storage.SNAPSHOTS / "growth.json"
        if config.get("init_from"):
            try:
                with quiet(storage.__name__):
                    source = storage.resolve_model_dir(config["init_from"])
            except Exception:  # the grown folder may be gone; the copy in snapshots/ suffices
                source = None
            if source is not None and (source / "growth.json").exists():
                grown_dir = source
                growth_file = growth_file or source / "growth.json"
    if growth_file is None:
        raise AnalysisError(f"{path} has no growth point: no growth.json in {path / 'grown'}, "
                            f"{run_dir / storage.SNAPSHOTS} or the folder its config's init_from names. "
                            "growlm analyze needs a run that continues a grown model (a plan stage with "
                            "`grow:`, or `growlm train` with init_from a `growlm grow` output)")
    growth = json.loads(growth_file.read_text())
    snapshots = storage.list_snapshots(run_dir)
    notes = []
    points: list[Point] = []
    for folder in snapshots:
        info = json.loads((folder / storage.SNAPSHOT_INFO).read_text())
        points.append(Point(int(info["step"]), int(info["tokens"]), folder))
    if not snapshots:
        for folder in storage.list_checkpoints(run_dir):
            state = storage.load_trainer_state(folder)
            points.append(Point(int(state["step"]), int(state["tokens"]), folder))
        if points:
            notes.append("no snapshots: the run's checkpoints are the series")
    if not points or points[0].step != 0:
        if grown_dir is None:
            raise AnalysisError(f"{path}: neither a step-0 snapshot nor the grown model folder is available as the "
                                "growth point")
        points.insert(0, Point(0, 0, grown_dir))
    if len(points) < 2:
        raise AnalysisError(f"{path} has no snapshot after the growth point; keep snapshots of the continued "
                            "training with `snapshots: 11` (or snapshot_every_tokens) in its config or plan stage")
    config = _run_config(run_dir)
    name = label or (path.name if path.name != "train" else path.parent.name)
    seq_len = int(config["seq_len"]) if config.get("seq_len") else None
    return RunSource(path, name, run_dir, growth, points, _data_folder(config), seq_len, notes)
