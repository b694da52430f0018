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
                                                             "composite (gate)", "composite (adapter)",
                                                             "composite (fine-tuned)"]
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
    # the fine-tunes after merging: the adapter kept the experts, the full fine-tune moved them but not the
    # substrate table; both started at the mean composite's loss (the same windows) and are in the comparisons
    adapter = storage.load_state(runs / "compose-ft-adapter" / "model")
    full = storage.load_state(runs / "compose-ft-full" / "model")
    table = storage.load_state(storage.resolve_model_dir(runs / "train-prose" / "train"))["model.embed_tokens.weight"]
    assert adapter["adapter.weight"].abs().sum() > 0 and "adapter.weight" not in full
    for index, role in enumerate(("prose", "technical")):
        trained = storage.load_state(storage.resolve_model_dir(runs / f"train-{role}" / "train"))
        assert all(torch.equal(adapter[f"experts.{index}.{k}"], v) for k, v in trained.items())
        assert torch.equal(full[f"experts.{index}.model.embed_tokens.weight"], table)
        assert not torch.equal(full[f"experts.{index}.lm_head.weight"], trained["lm_head.weight"])
    ft = report.data["finetune"]
    assert sorted((f["seed"], f["mode"]) for f in ft) == [(s, m) for s in range(3) for m in ("adapter", "full")]
    gate_before = {m["seed"]: m["val_loss_before"] for m in report.data["mix_train"]}
    assert all(abs(f["val_loss_before"] - gate_before[f["seed"]]) < 1e-5 for f in ft)  # all start at the mean
    assert len(report.data["versus"]) == 7 and all(math.isfinite(v["mixture"].half_width)
                                                  for v in report.data["versus"])
    assert "Pre-registered comparisons of the fine-tune arms" in text
    meta = json.loads((tmp_path / "out" / "experiment.json").read_text())
    assert meta["experiment"] == "composition" and meta["form"] == "quick" and len(meta["data"]["mix_train"]) == 3
    # an interrupted or repeated invocation reuses every finished unit
    again, _ = run_experiment("composition", out=tmp_path / "out", quick=True, device="cpu", shared=shared,
                              data_root=tmp_path / "data")
    assert again == path
