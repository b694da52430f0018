"""The composition experiment's quick form: every seed and model present, tables complete, intervals finite."""

from __future__ import annotations

import json
import math

import torch

from growlm.experiments import run_experiment
from growlm.experiments.composition import MODELS, SPLITS
from growlm.models import storage


def test_quick_composition_experiment(shared, tmp_path):
    path, report = run_experiment("composition", out=tmp_path / "out", quick=True, device="cpu", shared=shared,
                                  data_root=tmp_path / "data")
    text = path.read_text()
    assert "| Model | Seeds | Prose val PPL | Technical val PPL | Mixture val PPL |" in text
    assert (tmp_path / "out" / "composition.png").stat().st_size > 0
    records = report.data["records"]
    assert {(r["seed"], r["model"]) for r in records} == {(s, m) for s in range(3) for m in MODELS}
    for row in report.data["summary"]:
        assert row["seeds"] == 3
        for split in SPLITS:
            assert math.isfinite(row[split].mean) and math.isfinite(row[split].half_width)
    assert [p["model"] for p in report.data["paired"]] == ["composite (mean)", "composite (mixture)",
                                                             "composite (gate)"]
    for paired in report.data["paired"]:
        assert math.isfinite(paired["mixture_vs_best"].half_width)
    # the probability mixture's loss is within ln 2 of the better expert's on every seed and split
    bound = report.data["mixture_bound"]
    assert bound["checked"] == 3 * len(SPLITS) and bound["held"] == bound["checked"]
    assert all(row[s] <= 1e-4 for row in bound["rows"] for s in SPLITS)
    # the gate's fine-tune kept both experts as trained: the composite holds the trained experts' tensors
    runs = tmp_path / "out" / "runs" / "seed=0"
    gate = storage.load_state(runs / "compose-gate" / "model")
    for index, role in enumerate(("prose", "technical")):
        trained = storage.load_state(storage.resolve_model_dir(runs / f"train-{role}" / "train"))
        assert all(torch.equal(gate[f"experts.{index}.{k}"], v) for k, v in trained.items())
    meta = json.loads((tmp_path / "out" / "experiment.json").read_text())
    assert meta["experiment"] == "composition" and meta["form"] == "quick" and len(meta["data"]["mix_train"]) == 3
    # an interrupted or repeated invocation reuses every finished unit
    again, _ = run_experiment("composition", out=tmp_path / "out", quick=True, device="cpu", shared=shared,
                              data_root=tmp_path / "data")
    assert again == path
