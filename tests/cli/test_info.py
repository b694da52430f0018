"""``growlm info``, and plan run folders standing for their last completed stage's newest checkpoint
wherever a model is expected (eval, generate, grow)."""

from __future__ import annotations

import json

import pytest

from growlm.cli.main import main
from growlm.errors import CheckpointError
from growlm.growth import grow_checkpoint, parse_init
from growlm.info import describe, info_lines
from growlm.models import storage
from growlm.models.accounting import model_cost
from tests.conftest import train_config


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    """A finished tiny run (10 steps, a checkpoint at 5 and 10) with some parameters frozen."""
    from growlm.training.trainer import start_run

    out = tmp_path_factory.mktemp("info") / "run"
    start_run(train_config(tiny_data, out, max_steps=10, checkpoint_every=5, eval_every=10,
                           frozen=["lm_head.weight"]))
    return out


def test_a_run_folder(run, tiny_data):
    info = describe(run)
    newest = storage.list_checkpoints(run)[-1]
    assert info["kind"] == "run" and info["model_folder"] == str(newest)
    assert info["run"]["finished"] and info["run"]["checkpoints"] == ["step-00000005", "step-00000010"]
    state = storage.load_trainer_state(newest)
    config = storage.load_config(newest)
    assert info["step"] == 10 and info["tokens_seen"] == state["tokens"] == 10 * 4 * 32
    assert info["data"] == {"dir": str(tiny_data), "position": state["data_position"], "seq_len": 32}
    total, head = model_cost(config).total_params, config.vocab_size * config.hidden_size
    assert info["parameters"]["total"] == total and info["parameters"]["trainable"] == total - head
    assert info["frozen"] == ["lm_head.weight (frozen:)"] and info["embedding"] == {"kind": "learned", "frozen": False}
    assert info["growth"] == []
    text = "\n".join(info_lines(info))
    assert f"{total:,} total" in text and "step 10, 1,280 tokens seen" in text and "never grown" in text


def test_growth_history_follows_the_chain(run, tmp_path):
    newest = storage.list_checkpoints(run)[-1]
    first, second = tmp_path / "g1", tmp_path / "g2"
    grow_checkpoint(run, first, {"nexus_m": 170}, parse_init("preserve"))
    grow_checkpoint(first, second, {"num_hidden_layers": 5}, parse_init("preserve"),
                    verify=False)
    info = describe(second)
    assert info["kind"] == "checkpoint"  # the optimizer state came along: a trainer_state.json too
    assert [g["changes"] for g in info["growth"]] == [{"nexus_m": [160, 170]}, {"num_hidden_layers": [4, 5]}]
    assert [g["source"] for g in info["growth"]] == [str(newest), str(first)]
    assert [g["verified"] for g in info["growth"]] == [True, None] and info["step"] == 10
    assert "growth history (2 step(s), oldest first)" in "\n".join(info_lines(info))


def test_a_plan_run_folder_stands_for_its_last_completed_stage(run, tmp_path, capsys):
    plan = tmp_path / "plan"
    (plan).mkdir()
    (plan / storage.PLAN_FILE).write_text("stages: []\n")
    with pytest.raises(CheckpointError, match="has no completed stage yet"):
        storage.resolve_model_dir(plan)
    assert "no stage has completed yet" in "\n".join(info_lines(describe(plan)))
    for name in ("stage-01-base", "stage-02-wider"):  # each stage's run: the same run, linked (no copying)
        (plan / name).mkdir()
        (plan / name / storage.PLAN_STAGE_RUN).symlink_to(run, target_is_directory=True)
    (plan / "stage-01-base" / storage.STAGE_FILE).write_text(json.dumps({"stage": "base", "grew": {}, "steps": 10}))
    # stage 2 has a newer checkpoint but is not complete: stage 1 is the plan's model
    newest_1 = storage.list_checkpoints(plan / "stage-01-base" / "train")[-1]
    assert storage.resolve_model_dir(plan) == newest_1
    (plan / "stage-02-wider" / storage.STAGE_FILE).write_text(json.dumps({"stage": "wider", "steps": 10}))
    newest_2 = storage.list_checkpoints(plan / "stage-02-wider" / "train")[-1]
    assert storage.resolve_model_dir(plan) == newest_2
    info = describe(plan)
    assert info["kind"] == "plan" and info["model_folder"] == str(newest_2)
    assert [s["complete"] for s in info["plan"]["stages"]] == [True, True]
    # the commands that take a model take the plan folder
    assert main(["generate", str(plan), "--prompt", "The", "--max-new-tokens", "2"]) == 0
    assert capsys.readouterr().out.startswith("The")
    assert main(["info", str(plan), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_folder"] == str(newest_2)


def test_info_of_nothing_is_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing'} does not exist"
    assert main(["info", str(tmp_path)]) == 2
    assert "neither a model folder" in capsys.readouterr().err
