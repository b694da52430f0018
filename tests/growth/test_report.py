"""growth.json through its typed record: the same bytes out as in, for new and old reports."""

import json
from pathlib import Path

from growlm.growth import parse_init
from growlm.growth.grow import grow_checkpoint, grow_model, growth_report, verify_growth
from growlm.growth.report import GrowthReport, Verification
from growlm.models import storage
from tests.conftest import make_model, small_config

OLD_REPORT = Path(__file__).with_name("growth-before-moments.json")


def test_a_report_written_before_moments_and_the_loss_check_loads_and_round_trips():
    text = OLD_REPORT.read_text()
    report = GrowthReport.from_json(json.loads(text))
    assert report.moments is None and report.verification is not None and report.verification.loss is None
    assert report.changes["num_hidden_layers"].new == 3 and report.parameters.added == 543040
    assert report.verification.passed and report.verification.gradients.blocks[1].block.init == "random"
    assert report.placements["model.layers.2.input_layernorm.weight"].source is None
    assert json.dumps(report.to_json(), indent=2) == text
    assert "moments" not in report.to_json() and "loss" not in report.to_json()["verification"]


def test_unknown_keys_are_kept_after_the_known_ones():
    data = json.loads(OLD_REPORT.read_text())
    data["verification"]["tolerance"] = 1e-5
    data["written_by"] = "a later growlm"
    back = GrowthReport.from_json(data).to_json()
    assert back == data and list(back)[-1] == "written_by"


def test_a_fresh_report_round_trips_and_matches_the_file(tmp_path):
    config = small_config("nexus", seed=3)
    model = make_model(config, seed=0, perturb=0.02)
    result = grow_model(model, {"nexus_m": config.nexus_m + 8}, parse_init("preserve"))
    verification = verify_growth(model, result)
    assert Verification.from_json(json.loads(json.dumps(verification.to_json()))) == verification
    report = growth_report(result, verification, source="a", out="b", seed=0, optimizer_state="none", moments="carry")
    data = report.to_json()
    assert list(data) == ["architecture", "init", "operators", "changes", "parameters", "train_flops_per_token",
                          "options", "new_blocks", "placements", "verification", "warnings", "source", "out",
                          "seed", "optimizer_state", "moments"]
    assert list(data["verification"]) == ["logits", "loss", "gradients", "expectation", "passed", "batch_shape",
                                          "seed"]
    assert GrowthReport.from_json(json.loads(json.dumps(data))) == report

    storage.save_model(model, tmp_path / "src")
    written = grow_checkpoint(tmp_path / "src", tmp_path / "grown", {"nexus_m": config.nexus_m + 8},
                              parse_init("preserve"))
    on_disk = (tmp_path / "grown" / "growth.json").read_text()
    assert json.dumps(written.to_json(), indent=2) == on_disk
    assert GrowthReport.read(tmp_path / "grown") == written and written.moments == "carry"
