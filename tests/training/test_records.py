"""summary.json, stage.json and ledger.json through their typed records: old files load and come back
byte for byte, records made in code write today's keys in today's order."""

import json
from pathlib import Path

import pytest

from growlm.errors import CheckpointError
from growlm.growth.report import ValueChange
from growlm.training.metrics import summary_line
from growlm.training.records import Ledger, RunSummary, StageRecord

# the first summary.json growlm wrote (2026-11-23): ten keys, in this order
FIRST_SUMMARY = {"steps": 20, "tokens": 2560, "final_train_loss": 9.1, "final_val_loss": None,
                 "final_val_perplexity": None, "non_finite_steps": 0, "train_seconds": 3.5,
                 "parameters": 8974976, "train_flops": 75436032000, "checkpoint": "runs/a/checkpoints/step-00000020"}
# today's (trainer.finish), with the speed figures of a session that stepped
TODAY_KEYS = ["steps", "tokens", "final_train_loss", "final_val_loss", "final_val_perplexity", "non_finite_steps",
              "train_seconds", "tokens_per_s", "world_size", "deterministic", "parameters", "trainable_parameters",
              "train_flops_per_token", "train_flops", "mfu", "max_memory_gb", "checkpoint", "compile",
              "session_steps", "time_to_first_step_s", "first_step_s", "first_step_at", "steady_tokens_per_s",
              "wall_tokens_per_s", "wall_seconds"]
# ledgers of today (GPU-seconds per stage and in total) and of before GPU-seconds were kept
LEDGER = Path(__file__).with_name("ledger-with-gpu-seconds.json")
OLD_LEDGER = Path(__file__).with_name("ledger-before-gpu-seconds.json")


def _today(**changes):
    values = dict(steps=30, tokens=7680, final_train_loss=7.5, final_val_loss=7.7, final_val_perplexity=2311.4,
                  non_finite_steps=0, train_seconds=144.54, tokens_per_s=53.1, world_size=1, deterministic=False,
                  parameters=11326240, trainable_parameters=11326240, train_flops_per_token=37429248,
                  train_flops=287456624640, mfu=None, max_memory_gb=None, checkpoint="c", compile="auto",
                  session_steps=30, time_to_first_step_s=3.98, first_step_s=2.59, first_step_at=1796541351.0,
                  steady_tokens_per_s=52.5, wall_tokens_per_s=50.4, wall_seconds=152.25)
    return RunSummary(**{**values, **changes})


def test_the_first_summary_format_loads_and_round_trips():
    text = json.dumps(FIRST_SUMMARY, indent=2)
    summary = RunSummary.from_json(json.loads(text))
    assert summary.steps == 20 and summary.world_size is None and summary.first_step_at is None
    assert json.dumps(summary.to_json(), indent=2) == text
    assert summary_line(summary).startswith("done: 20 steps, 2,560 tokens, 4 s")


def test_a_summary_made_in_code_writes_todays_keys(tmp_path):
    summary = _today()
    assert list(summary.to_json()) == TODAY_KEYS  # None-valued mfu stays (as null), absent figures do not
    assert list(_today(skipped_documents=3).to_json()) == [*TODAY_KEYS[:6], "skipped_documents", *TODAY_KEYS[6:]]
    short = _today(session_steps=None, time_to_first_step_s=None, first_step_s=None, first_step_at=None,
                   steady_tokens_per_s=None, wall_tokens_per_s=None, wall_seconds=None)
    assert list(short.to_json()) == TODAY_KEYS[:18]  # a session with no step has no speed figures
    path = summary.write(tmp_path)
    assert path.name == "summary.json" and RunSummary.read(tmp_path) == summary
    assert RunSummary.read(tmp_path).to_json() == summary.to_json()
    assert "steady 52 tok/s" in summary_line(summary)


def test_unknown_keys_keep_their_place_and_missing_ones_are_named(tmp_path):
    data = {**FIRST_SUMMARY, "gpu_seconds": 7.0}
    data = {k: data[k] for k in ["steps", "gpu_seconds", *[k for k in FIRST_SUMMARY if k != "steps"]]}
    summary = RunSummary.from_json(data)
    assert summary.extra == {"gpu_seconds": 7.0} and list(summary.to_json()) == list(data)
    with pytest.raises(CheckpointError, match=r"summary\.json lacks train_flops"):
        RunSummary.from_json({k: v for k, v in FIRST_SUMMARY.items() if k != "train_flops"})
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        RunSummary.read(tmp_path)


@pytest.mark.parametrize("path", [LEDGER, OLD_LEDGER], ids=["today", "before-gpu-seconds"])
def test_ledgers_old_and_new_load_and_round_trip(path):
    text = path.read_text()
    ledger = Ledger.from_json(json.loads(text))
    assert json.dumps(ledger.to_json(), indent=2) == text
    wider = ledger.stages[1]
    assert wider.grew["hidden_size"] == ValueChange(128, 160) and wider.growth_verified is True
    if path == LEDGER:
        assert ledger.total.gpu_seconds == 260.43 and wider.gpu_seconds is not None and wider.gpu_seconds > 0
    else:
        assert ledger.total.gpu_seconds is None and wider.cumulative_gpu_seconds is None and not wider.extra
    assert ledger.lines()[-1].split()[0] == "total"


def test_ledger_keys_this_version_does_not_know_stay_where_they_were():
    data = json.loads(LEDGER.read_text())
    data["stages"][0] = {"energy_kwh": 0.1, **data["stages"][0]}
    data["total"]["energy_kwh"] = 0.3
    ledger = Ledger.from_json(data)
    assert ledger.stages[0].extra == {"energy_kwh": 0.1} and ledger.total.extra == {"energy_kwh": 0.3}
    assert json.dumps(ledger.to_json()) == json.dumps(data)


def test_stage_records_make_the_ledger_and_come_back_from_it(tmp_path):
    base = StageRecord(stage="base", index=0, parameters=10, trainable_parameters=10, steps=2, tokens=64,
                       train_flops_per_token=6, train_flops=384, final_train_loss=9.0, final_val_loss=None,
                       seconds=1.0, stage_to_first_step_s=0.5, steady_tokens_per_s=None, wall_tokens_per_s=40.0,
                       final_checkpoint="s1")
    wider = StageRecord(stage="wider", index=1, grew={"nexus_m": ValueChange(64, 80)}, init="preserve",
                        growth_verified=True, parameters=12, trainable_parameters=12, steps=2, tokens=64,
                        train_flops_per_token=8, train_flops=512, final_train_loss=8.0, final_val_loss=8.5,
                        seconds=1.0, train_seconds=0.8, gpu_seconds=1.6, stage_to_first_step_s=0.5,
                        steady_tokens_per_s=None, wall_tokens_per_s=40.0, final_checkpoint="s2")
    assert list(wider.to_json()) == ["stage", "index", "grew", "init", "growth_verified", "parameters",
                                     "trainable_parameters", "steps", "tokens", "train_flops_per_token",
                                     "train_flops", "final_train_loss", "final_val_loss", "seconds",
                                     "train_seconds", "gpu_seconds", "stage_to_first_step_s", "steady_tokens_per_s", "wall_tokens_per_s",
                                     "final_checkpoint"]
    assert wider.to_json()["grew"] == {"nexus_m": {"old": 64, "new": 80}}
    wider.write(tmp_path)
    assert StageRecord.read(tmp_path) == wider
    ledger = Ledger.of([base, StageRecord.read(tmp_path)])
    assert [r.cumulative_tokens for r in ledger.stages] == [64, 128] and ledger.total.train_flops == 896
    assert ledger.total.gpu_seconds == 1.6  # the base stage's record has none: it counts 0
    assert ledger.stages[1].to_json() == {**wider.to_json(), "cumulative_tokens": 128, "cumulative_train_flops": 896,
                                          "cumulative_gpu_seconds": 1.6}
    ledger.write(tmp_path)
    assert Ledger.read(tmp_path) == ledger
    assert json.loads((tmp_path / "ledger.json").read_text())["convention"].startswith("matmul FLOPs")
