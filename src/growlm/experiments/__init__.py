"""Experiments that reproduce the papers' claims, each one command: ``growlm experiment NAME [--quick]``.

Every experiment module defines ``DESCRIPTION`` (one line), ``DEFAULT_SEEDS`` (optionally
``QUICK_SEEDS``, the ``--quick`` form's) and
``run(ctx: Context) -> Report``; ``common.py`` holds what they share (data, resumable
units, tables, reports, publishing into ``docs/results.md``). The ``--quick`` form runs on
a CPU in minutes and is tested in CI; the full form is sized for one GPU.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from growlm.errors import ConfigError, unknown_key_message

if TYPE_CHECKING:
    from growlm.experiments.common import Context, Report

# experiment name -> module (imported only when the experiment runs)
EXPERIMENTS: dict[str, str] = {
    "frozen-substrate": "growlm.experiments.frozen_substrate",
    "architectures": "growlm.experiments.architectures",
    "growth-vs-scratch": "growlm.experiments.growth_vs_scratch",
    "growth-recipes": "growlm.experiments.growth_recipes",
    "init-schemes": "growlm.experiments.init_schemes",
    "growth-dynamics": "growlm.experiments.growth_dynamics",
    "composition": "growlm.experiments.composition",
    "nexus-ablations": "growlm.experiments.nexus_ablations",
    "paper5-growth": "growlm.experiments.progressive",
}


def experiment_module(name: str) -> ModuleType:
    if name not in EXPERIMENTS:
        raise ConfigError(unknown_key_message("experiment", name, EXPERIMENTS))
    return importlib.import_module(EXPERIMENTS[name])


def run_experiment(name: str, out: str | Path | None = None, quick: bool = False, seeds: int | None = None,
                   device: str = "auto", shared: str | Path | None = None, data_root: str | Path | None = None,
                   benchmarks: str | Path | None = None, results_md: str | Path | None = None,
                   argv: Sequence[str] | None = None, options: dict[str, Any] | None = None) -> tuple[Path, Report]:
    """Run (or continue) experiment ``name``; returns the report's path and the report.

    ``out`` defaults to ``runs/experiments/NAME[-quick]``; finished units of an earlier
    invocation with the same ``out`` are reused. With ``results_md`` the report is also
    published there (see :func:`growlm.experiments.common.publish`)."""
    from growlm.experiments.common import Context, finish, publish
    from growlm.provenance import provenance

    provenance()  # worked out now and kept: the report names the code that started, not later edits
    module = experiment_module(name)
    count = seeds if seeds is not None else getattr(module, "QUICK_SEEDS", None) if quick else None
    count = count if count is not None else getattr(module, "DEFAULT_SEEDS", 3)
    if count < 1:
        raise ConfigError(f"--seeds must be at least 1, got {count}")
    out = Path(out) if out else Path("runs/experiments") / (name + ("-quick" if quick else ""))
    ctx = Context(name=name, out=out, quick=quick, seeds=list(range(count)), device=device,
                  shared=Path(shared) if shared else None,
                  data_root=Path(data_root) if data_root else Path("data/experiments"),
                  benchmarks=Path(benchmarks) if benchmarks else None, options=dict(options or {}))
    report = module.run(ctx)
    path = finish(ctx, report, argv)
    if results_md:
        publish(out, results_md)
    return path, report


def __getattr__(name: str) -> Any:
    # The names of experiments are needed by ``growlm --help``; what runs them (numpy and
    # more) is imported only when it is used.
    if name in ("Context", "Report", "finish", "publish"):
        from growlm.experiments import common

        return getattr(common, name)
    raise AttributeError(f"module 'growlm.experiments' has no attribute {name!r}")


__all__ = ["EXPERIMENTS", "Context", "Report", "experiment_module", "publish", "run_experiment"]
