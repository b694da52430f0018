"""The experiment framework: resumable units, reports with provenance, publishing into results.md."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from growlm.cli.main import main
from growlm.experiments import EXPERIMENTS, Report, run_experiment
from growlm.experiments.common import Context, markdown_table, publish
from growlm.stats import mean_interval


def test_unit_runs_once_and_is_reused(tmp_path: Path):
    ctx = Context("x", tmp_path / "out", quick=True, seeds=[0])
    calls = []

    def work(folder: Path) -> dict:
        calls.append(folder)
        return {"value": len(calls), "path": folder}

    first = ctx.unit("a/seed=0", work)
    second = ctx.unit("a/seed=0", work)
    assert first == second == {"value": 1, "path": str(tmp_path / "out" / "runs" / "a" / "seed=0")}
    assert len(calls) == 1
    with pytest.raises(ValueError, match="path-safe"):
        ctx.unit("../escape", work)


def test_markdown_table_prints_intervals():
    rows = [{"name": "a", "loss": mean_interval([1.0, 2.0, 3.0]), "n": 3, "x": 0.5}]
    text = markdown_table(rows, [("name", "model"), ("loss", "loss"), ("n", "n"), ("x", "x")], digits=2)
    assert text.splitlines()[0] == "| model | loss | n | x |"
    assert text.splitlines()[2] == "| a | 2.00 ± 2.48 | 3 | 0.50 |"


@pytest.fixture
def fake_experiment(monkeypatch: pytest.MonkeyPatch):
    module = types.ModuleType("growlm_fake_experiment")
    module.DESCRIPTION = "a stand-in"
    module.DEFAULT_SEEDS = 3

    def run(ctx: Context) -> Report:
        from growlm.plotting import subplots  # a figure of its own: the test process's backend stays

        values = [ctx.unit(f"point/seed={s}", lambda folder, s=s: {"score": float(s)})["score"] for s in ctx.seeds]
        fig, ax = subplots()
        ax.plot(values)
        figure = ctx.path("score.png")
        ctx.out.mkdir(parents=True, exist_ok=True)
        fig.savefig(figure)
        body = markdown_table([{"score": mean_interval(values)}], [("score", "score")])
        return Report("Fake experiment", body, [figure], {"values": values}, paper="The paper says 1.0.")

    module.run = run
    monkeypatch.setitem(sys.modules, "growlm_fake_experiment", module)
    monkeypatch.setitem(EXPERIMENTS, "fake", "growlm_fake_experiment")
    import growlm.experiments.common as common
    from growlm.provenance import Provenance

    monkeypatch.setattr(common, "provenance", lambda: Provenance("0.1.0", "abc1234", "0123456789ab"))
    return module


def test_report_carries_provenance_and_publishes(tmp_path: Path, fake_experiment):
    out = tmp_path / "exp"
    path, _ = run_experiment("fake", out=out, quick=True, argv=["experiment", "fake", "--quick"])
    text = path.read_text()
    assert "quick form; command `growlm experiment fake --quick`" in text
    assert "growlm 0.1.0 (commit `abc1234`, source `0123456789ab`)" in text
    assert "1.000 ± 2.484" in text and "The paper says 1.0." in text and "![score](score.png)" in text
    meta = json.loads((out / "experiment.json").read_text())
    assert meta["seeds"] == [0, 1, 2] and meta["data"] == {"values": [0.0, 1.0, 2.0]} and meta["device"]
    assert (meta["growlm"], meta["commit"], meta["source_hash"]) == ("0.1.0", "abc1234", "0123456789ab")

    results = tmp_path / "docs" / "results.md"
    results.parent.mkdir()
    results.write_text("# Results\n\nintro\n")
    assert publish(out, results) == "fake:quick"
    first = results.read_text()
    assert first.count("<!-- growlm-experiment fake:quick -->") == 1 and first.startswith("# Results\n\nintro")
    assert "![score](figures/fake-quick-score.png)" in first
    assert (tmp_path / "docs" / "figures" / "fake-quick-score.png").exists()
    publish(out, results)  # again: the section is replaced, not duplicated
    assert results.read_text() == first


def test_cli_runs_lists_and_publishes(tmp_path: Path, fake_experiment, capsys: pytest.CaptureFixture):
    assert main(["experiment", "list"]) == 0
    assert "a stand-in" in capsys.readouterr().out
    out = tmp_path / "e"
    assert main(["experiment", "fake", "--seeds", "2", "--out", str(out),
                 "--results-md", str(tmp_path / "r.md")]) == 0
    assert "<!-- growlm-experiment fake:full -->" in (tmp_path / "r.md").read_text()
    assert json.loads((out / "experiment.json").read_text())["seeds"] == [0, 1]
    assert main(["experiment", "fake", "--seeds", "0", "--out", str(out)]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["experiment", "publish", "--out", str(tmp_path / "nothing")]) == 2


def test_corpus_slices_every_source_and_train_resumes(tmp_path: Path, shared: Path):
    from growlm.data.dataset import load_meta

    ctx = Context("x", tmp_path / "out", quick=True, seeds=[0], shared=shared, data_root=tmp_path / "data",
                  device="cpu")
    data = ctx.corpus("c", max_docs_per_file=2, val_docs_per_file=1)
    meta = load_meta(data)
    assert meta["splits"]["train"]["documents"] == 8 and meta["splits"]["val"]["documents"] == 4
    assert ctx.corpus("c", max_docs_per_file=2, val_docs_per_file=1) == data  # cached
    values = {"model": "nexus-tiny", "model_overrides": {"num_hidden_layers": 1}, "data": str(data), "seq_len": 32,
              "micro_batch_size": 2, "max_steps": 4, "warmup_steps": 1, "eval_every": 4, "eval_batches": 1,
              "checkpoint_every": 2, "log_every": 2}
    result = ctx.train("run", values)
    assert result["summary"]["steps"] == 4 and [r["step"] for r in result["metrics"]] == [2, 4]
    assert ctx.train("run", values) == result


def test_a_report_outside_growlms_checkout_names_no_commit(tmp_path: Path, fake_experiment, monkeypatch):
    import growlm.experiments.common as common
    from growlm.provenance import Provenance

    monkeypatch.setattr(common, "provenance", lambda: Provenance("0.1.0", None, "0123456789ab"))
    path, _ = run_experiment("fake", out=tmp_path / "exp", quick=True, argv=["experiment", "fake"])
    assert "growlm 0.1.0 (source `0123456789ab`)" in path.read_text() and "commit" not in path.read_text()
    assert json.loads((tmp_path / "exp" / "experiment.json").read_text())["commit"] is None
