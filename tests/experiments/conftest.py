"""The quick experiments share one prepared corpus slice (prepared once per test session)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def experiment_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("experiment-data")


def run_quick(name: str, out: Path, shared: Path, data_root: Path, **options):
    """``growlm experiment NAME --quick`` on the CPU; returns the report text and experiment.json content."""
    import json

    from growlm.experiments import run_experiment

    path, report = run_experiment(name, out=out, quick=True, device="cpu", shared=shared, data_root=data_root,
                                  argv=["experiment", name, "--quick"], options=options)
    return path.read_text(), json.loads((out / "experiment.json").read_text()), report
