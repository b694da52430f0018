"""`growlm experiment architectures --quick`: every architecture and seed, matched sizes, tables, figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.experiments.conftest import run_quick


def test_quick_architectures(tmp_path: Path, shared: Path, experiment_data_root: Path):
    out = tmp_path / "arch"
    text, meta, _ = run_quick("architectures", out, shared, experiment_data_root)
    records = meta["data"]["records"]
    assert sorted((r["architecture"], r["seed"]) for r in records) == sorted(
        (a, s) for a in ("nexus", "qwen3", "llama", "tokenformer") for s in (0, 1, 2))
    params = [r["parameters"] for r in records]
    assert max(params) / min(params) < 1.01  # matched parameter count
    for r in records:
        assert r["tokens"] == records[0]["tokens"]  # the same tokens for every model
        assert 0 <= r["paper5"] <= 100 and math.isfinite(r["val_loss"]) and r["val_ppl"] == math.exp(r["val_loss"])
        raw = json.loads((out / "units" / r["architecture"] / f"seed={r['seed']}" / "record.json").read_text())
        assert raw["val_loss"] == r["val_loss"]  # the raw per-run JSON
    header = next(line for line in text.splitlines() if line.startswith("| Model | Params"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "Model", "Params", "Non-emb.", "PIQA", "OBQA", "HellaSwag", "ARC-E", "ARC-C", "Avg.", "Val PPL",
        "LAMBADA acc", "LAMBADA PPL"]
    rows = [line for line in text.splitlines() if line.startswith("| NexusFormer | 2.")]
    assert len(rows) == 2 and all("±" in row and "nan" not in row for row in rows)  # benchmark and cost tables
    assert "Table 1 (FineWeb" in text and "| NexusFormer | 240M | 66.27" in text  # the paper beside ours
    for name in meta["figures"]:
        assert (out / name).stat().st_size > 1000
