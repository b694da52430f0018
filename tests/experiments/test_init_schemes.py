"""`growlm experiment init-schemes --quick`: lossless schemes do not jump, zero growth never moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.experiments.conftest import run_quick


def test_quick_init_schemes(tmp_path: Path, shared: Path, experiment_data_root: Path):
    out = tmp_path / "init"
    text, meta, _ = run_quick("init-schemes", out, shared, experiment_data_root)
    records = meta["data"]["records"]
    schemes = ("preserve", "zero", "noise:0.1", "random")
    assert sorted((r["scheme"], r["seed"]) for r in records) == sorted((s, k) for s in schemes for k in (0, 1, 2))
    by = {(r["scheme"], r["seed"]): r for r in records}
    for seed in (0, 1, 2):
        base = by["preserve", seed]["base_loss"]
        assert all(by[s, seed]["base_loss"] == base for s in schemes)  # one base per seed
        for lossless in ("preserve", "zero"):  # the function is unchanged at growth (fp32 on the CPU)
            assert by[lossless, seed]["after_growth"] == pytest.approx(base, abs=1e-5)
        # ../shared/papers/NOTES.md §1: all-zero Nexus growth gets no gradient in any new block; preserve moves every one
        assert by["zero", seed]["blocks_moved"] == 0 and by["zero", seed]["rel_new"] == 0.0
        assert by["preserve", seed]["blocks_moved"] == by["preserve", seed]["blocks"] > 0
        assert by["preserve", seed]["rel_old"] > 0
        # the no-growth control: one per seed, the base continued at the grown continuation's compute
        control = by["preserve", seed]["no_growth_loss"]
        for s in schemes:
            assert by[s, seed]["no_growth_loss"] == control
            assert by[s, seed]["vs_no_growth"] == pytest.approx(by[s, seed]["after_training"] - control)
        assert by["preserve", seed]["no_growth_tokens"] > 512  # more tokens: the base costs less per token
    header = next(line for line in text.splitlines() if line.startswith("| Init |"))
    assert "Right after growth" in header and "New blocks moved" in header and "vs no growth" in header
    assert text.count("| zero | yes |") == 1 and "| zero | yes |" in text and "0/" in text
    assert (out / "init_schemes.png").stat().st_size > 1000
