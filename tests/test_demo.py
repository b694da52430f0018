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
