"""growlm demo --quick: every stage runs and the report tells the growth story."""

import json

from growlm.demo import run_demo


def test_quick_demo(tmp_path, shared):
    results = run_demo(tmp_path / "demo", shared=shared, quick=True)
    growth = results["growth"]
    assert growth["max_rel_logit_diff"] <= 1e-5
    assert abs(growth["val_loss_after_growth"] - results["base"]["val_loss_before_growth"]) < 1e-5
    assert growth["every_new_block_got_gradient"]
    assert results["grown_continued"]["steps"] == results["control"]["steps"]
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "grown, continued" in report and "ungrown control" in report and "curves.png" in report
    assert (tmp_path / "demo" / "curves.png").stat().st_size > 5000
    assert json.loads((tmp_path / "demo" / "results.json").read_text())["plan"]["base_steps"] > 0
    data = json.loads((tmp_path / "demo" / "results.json").read_text())["data"]
    drawn = data["train_slice"]
    assert set(drawn) == set(data["validation"]) == {"gutenberg", "sotu", "pydocs", "linuxdocs"}
    assert sum(v["documents"] for v in drawn.values()) == results["plan"]["train_docs"]
    total = sum(v["documents_in_source"] for v in drawn.values())
    for source, row in drawn.items():  # in proportion to the sources' sizes, within rounding
        assert abs(row["documents"] - results["plan"]["train_docs"] * row["documents_in_source"] / total) < 1, source
        assert f"| {source} | {row['documents_in_source']:,} | {row['documents']} |" in report
    assert "## Data" in report and "Validation set: the whole validation split" in report
