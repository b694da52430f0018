"""`growlm experiment paper5-growth --quick`: every unit, seed, table column and figure; ledger sums; savings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from growlm.experiments import progressive as p
from tests.experiments.conftest import run_quick


def test_quick_paper5_growth(tmp_path: Path, shared: Path, experiment_data_root: Path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core: tiny models gain nothing from more threads on a shared machine
    try:
        out = tmp_path / "p5"
        text, meta, _ = run_quick("paper5-growth", out, shared, experiment_data_root)
    finally:
        torch.set_num_threads(threads)
    assert p.DEFAULT_SEEDS >= 3 and p.QUICK_SEEDS >= 2  # a 95% interval in the full form; one here too
    check_output(out, text, meta, list(range(p.QUICK_SEEDS)))


def check_output(out: Path, text: str, meta: dict, seeds: list[int]) -> None:
    data = meta["data"]
    shapes = p.SHAPES["quick"]
    for arch in ("nexus", "tokenformer", "qwen3"):
        for name in ("base", *p.SIZES):
            records = data["records"][f"{arch}/{name}"]
            assert len(records) == len(seeds)
            for seed, r in zip(seeds, records, strict=True):
                unit = json.loads((out / "units" / arch / name / f"seed={seed}" / "final.json").read_text())
                assert r["flops"] == unit["ledger"]["total"]["train_flops"] > 0  # from the ledger
                assert r["gpu_seconds"] == unit["ledger"]["total"]["gpu_seconds"] > 0
                assert r["parameters"] == p.costs(arch, shapes[arch][name], 32)["total_params"]
                assert math.isfinite(r["ppl"]) and r["ppl"] > 1
                stage = unit["ledger"]["stages"][-1]  # the plan ledger's GPU-seconds: the trainer's clock x processes
                assert stage["gpu_seconds"] == pytest.approx(stage["train_seconds"], abs=0.01)
                assert stage["cumulative_gpu_seconds"] == pytest.approx(r["gpu_seconds"])
                if arch != "qwen3" and name != "base":  # grown: its ledger sums its base's and its own stage
                    base = json.loads((out / "units" / arch / "base" / f"seed={seed}" / "final.json").read_text())
                    assert r["growth_verified"] is True
                    stages = unit["ledger"]["stages"]
                    assert len(stages) == 2 and stages[0] == base["ledger"]["stages"][0]
                    assert r["flops"] == pytest.approx(base["flops"] + stages[1]["train_flops"])
                    assert r["tokens"] == base["tokens"] + stages[1]["tokens"]
                    assert unit["curve"][-1]["flops"] == pytest.approx(r["flops"])
                    assert r["request"] == p.growth_request(shapes[arch]["base"], shapes[arch][name])
                if name != "base":
                    assert all(0 <= r[t] <= 100 for t in (*p.BENCH, "paper5"))
    # Qwen3 at every target size: matched on parameters to the Nexus size, the grown model's tokens
    for name in p.SIZES:
        q, n = data["records"][f"qwen3/{name}"][0], data["records"][f"nexus/{name}"][0]
        assert abs(q["parameters"] - n["parameters"]) / n["parameters"] < 0.01
        assert q["tokens"] == n["tokens"]
    # Table 2, Table 8 and the savings: every column, every row
    header2 = next(line for line in text.splitlines() if line.startswith("| Model | Size | Trained | PIQA"))
    assert all(c in header2 for c in ("OBQA", "HellaSwag", "ARC-E", "ARC-C", "Avg."))
    assert len(data["table2"]) == 3 * len(p.SIZES)
    header8 = next(line for line in text.splitlines() if "PPL/FLOPs" in line and line.startswith("| Model"))
    for column in ("Params", "Training FLOPs (TF, ledger)", "Training time (GPU-s, ledger)", "PPL"):
        assert column in header8
    assert len(data["table8"]) == 3 * 4
    assert len(data["savings"]) == 2 * len(p.SIZES)
    for row in data["savings"]:
        assert len(row["per_seed"]) == len(seeds)
        for s in row["per_seed"]:
            assert ("flops_saving" in s and "gpu_seconds_saving" in s) and s["reached"] == (s["flops_saving"] is not None)
    assert "FLOPs saving %" in text and "GPU-seconds saving %" in text
    assert "41.5%" in text and "Table 8" in text and "79.79" in text  # the paper's numbers beside ours
    assert (out / "ppl_vs_compute.png").stat().st_size > 1000
    assert not list((out / "runs").rglob("*.safetensors"))  # no weights left


def test_compare_reads_the_curve():
    """1 - C_reader(L*) / C_other, interpolated; a curve that never reaches L* gives None and a bound."""
    reader = {"curve": [{"flops": 0.0, "gpu_seconds": 0.0, "loss": 6.0}, {"flops": 10.0, "gpu_seconds": 5.0, "loss": 4.0}],
              "flops": 10.0, "gpu_seconds": 5.0}
    other = {"curve": [{"flops": 20.0, "gpu_seconds": 20.0, "loss": 5.0}], "flops": 20.0, "gpu_seconds": 20.0}
    c = p.compare(reader, other)
    assert c["reached"] and c["flops_to_target"] == pytest.approx(5.0) and c["flops_saving"] == pytest.approx(0.75)
    assert c["gpu_seconds_saving"] == pytest.approx(1 - 2.5 / 20)
    other["curve"][-1]["loss"] = 3.0
    c = p.compare(reader, other)
    assert not c["reached"] and c["flops_saving"] is None and c["flops_bound"] == pytest.approx(0.5)


def test_shapes_follow_table7():
    """The full-form shapes keep Table 7's growth: M and A (and D for 380M/440M) widths / 3."""
    full = p.SHAPES["full"]
    paper = {"300m": (768, 1088, 1228), "380m": (800, 1340, 1530), "440m": (1024, 1540, 1730)}
    for name, (d, m, a) in paper.items():
        nexus = full["nexus"][name]
        assert (nexus["hidden_size"], nexus["nexus_m"], nexus["nexus_a"]) == (round(d / 3), round(m / 3), round(a / 3))
    assert p.growth_request(full["nexus"]["base"], full["nexus"]["300m"]) == {"nexus_m": 363, "nexus_a": 409}
    assert set(p.growth_request(full["tokenformer"]["base"], full["tokenformer"]["440m"])) == {"hidden_size",
                                                                                                "qkv_slots"}
    for name in ("base", *p.SIZES):  # Qwen3 matched on total parameters to the Nexus size (within 0.1%)
        q, n = (p.costs(a, full[a][name], 256)["total_params"] for a in ("qwen3", "nexus"))
        assert abs(q - n) / n < 0.001
