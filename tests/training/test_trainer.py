"""The training loop: learning, bookkeeping, checkpoints, continuation, fault handling."""

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from growlm.errors import CheckpointError, ConfigError, GrowlmError
from growlm.models import storage
from growlm.training.config import build_train_config
from growlm.training.optim import lr_factor
from growlm.training.trainer import Trainer, read_metrics, resume_run, start_run
from tests.conftest import train_config


def _cfg(data, out, **values):
    return train_config(data, out, **{"max_steps": 30, "warmup_steps": 3, **values})


def test_learns_and_writes_everything(tiny_data, tmp_path):
    summary = start_run(_cfg(tiny_data, tmp_path / "run", max_steps=60, checkpoint_every=20))
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(5, 61, 5))
    assert all({"step", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(r) for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.0
    assert [r["step"] for r in rows if "val_loss" in r] == [10, 20, 30, 40, 50, 60]
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert summary.steps == 60 and summary.tokens == 60 * 4 * 32
    assert [p.name for p in storage.list_checkpoints(tmp_path / "run")] == ["step-00000020", "step-00000040",
                                                                        "step-00000060"]
    final = storage.list_checkpoints(tmp_path / "run")[-1]
    state = json.loads((final / "trainer_state.json").read_text())
    assert state["step"] == 60 and state["data_position"] == 60 * 4
    model = AutoModelForCausalLM.from_pretrained(final)  # transformers loads a checkpoint folder directly
    assert model.config.eos_token_id == 2


def test_refuses_to_start_over_an_existing_run(tiny_data, tmp_path):
    start_run(_cfg(tiny_data, tmp_path / "run", max_steps=5, checkpoint_every=5))
    with pytest.raises(ConfigError, match="already holds a run"):
        start_run(_cfg(tiny_data, tmp_path / "run", max_steps=5))


def test_resume_extends_a_finished_run(tiny_data, tmp_path):
    start_run(_cfg(tiny_data, tmp_path / "a", max_steps=20))
    resume_run(tmp_path / "a", {"max_steps": 30})
    start_run(_cfg(tiny_data, tmp_path / "b", max_steps=30))
    # same schedule only if max_steps was 30 from the start: compare data and step bookkeeping instead
    a = json.loads((storage.list_checkpoints(tmp_path / "a")[-1] / "trainer_state.json").read_text())
    assert a["step"] == 30 and a["data_position"] == 30 * 4


def _files(run):
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_resume_of_a_finished_run_leaves_it_untouched(tiny_data, tmp_path, capsys):
    from growlm.cli.main import main

    run = tmp_path / "run"
    start_run(_cfg(tiny_data, run, max_steps=10, checkpoint_every=5))
    before = _files(run)
    assert json.loads(before[Path("summary.json")])["final_val_loss"] is not None
    capsys.readouterr()
    for extra in ([], ["--set", "max_steps=5"], ["--set", "max_steps=10"]):
        assert main(["train", "--resume", str(run), *extra]) == 0
        out = capsys.readouterr().out
        assert out.splitlines() == [f"nothing to do: {run} finished at step 10 "
                                    "(to train it further: --set max_steps=N with N > 10)"]
        assert _files(run) == before  # summary.json (and everything else) byte for byte
    assert resume_run(run).to_json() == json.loads(before[Path("summary.json")])  # the library call: same, untouched
    assert _files(run) == before

    assert main(["train", "--resume", str(run), "--set", "max_steps=15"]) == 0  # extending still works
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 15 and summary["final_val_loss"] is not None
    assert storage.list_checkpoints(run)[-1].name == "step-00000015"


def test_a_long_warm_up_and_a_missing_tensorboard_are_said_once(tiny_data, tmp_path, capsys, monkeypatch):
    import sys

    import growlm.training.metrics as metrics_module
    from growlm.training.optim import warmup_warning

    assert warmup_warning(_cfg(tiny_data, tmp_path, max_steps=20, warmup_steps=10)) is None
    assert warmup_warning(_cfg(tiny_data, tmp_path, max_steps=20, warmup_steps=0)) is None
    assert "is 60% of max_steps=10" in warmup_warning(_cfg(tiny_data, tmp_path, max_steps=10, warmup_steps=6))
    long = _cfg(tiny_data, tmp_path / "a", max_steps=4, warmup_steps=10)
    assert f"ends at 0.40 x its peak lr={long.lr:g}" in warmup_warning(long)
    assert lr_factor(long.max_steps - 1, long) == pytest.approx(0.4)  # the last update's learning rate

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    monkeypatch.setattr(metrics_module, "_TENSORBOARD_NOTED", False)
    capsys.readouterr()
    start_run(long)
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "warmup_steps" in line] == [warmup_warning(long)]
    assert len([line for line in err if "tensorboard is not installed" in line]) == 1
    assert not (tmp_path / "a" / "tensorboard").exists()
    start_run(_cfg(tiny_data, tmp_path / "b", max_steps=2, warmup_steps=1))  # a plan's next stage, say
    err = capsys.readouterr().err
    assert "tensorboard" not in err and "warmup_steps" not in err


def test_corrupt_newest_checkpoint_falls_back(tiny_data, tmp_path, capsys, caplog):
    start_run(_cfg(tiny_data, tmp_path / "run", max_steps=20))
    newest = storage.list_checkpoints(tmp_path / "run")[-1]
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert storage.latest_good_checkpoint(tmp_path / "run").name == "step-00000010"
    assert f"{weights} is truncated" in caplog.text
    resume_run(tmp_path / "run", {"max_steps": 20})
    assert "resumed from" in capsys.readouterr().err
    assert json.loads((storage.list_checkpoints(tmp_path / "run")[-1] / "trainer_state.json").read_text())["step"] == 20


def test_load_model_reports_corrupt_files(tiny_data, tmp_path):
    start_run(_cfg(tiny_data, tmp_path / "run", max_steps=10))
    folder = storage.list_checkpoints(tmp_path / "run")[-1]
    (folder / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(CheckpointError, match=r"model\.safetensors is corrupt"):
        storage.load_model(folder)
    with pytest.raises(CheckpointError, match="does not exist"):
        storage.load_model(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="has no usable checkpoint"):
        storage.load_model(tmp_path / "run")


def test_init_from_continues_data_and_moments(tiny_data, tmp_path, capsys):
    start_run(_cfg(tiny_data, tmp_path / "base", max_steps=20))
    source = storage.list_checkpoints(tmp_path / "base")[-1]
    trainer = Trainer(_cfg(tiny_data, tmp_path / "next", model=None, init_from=str(source), max_steps=5))
    assert trainer.state.data_position == 20 * 4
    assert "63 tensors loaded, 0 started fresh" in capsys.readouterr().err
    saved = torch.load(source / "optimizer.pt", weights_only=False)
    first = trainer.optimizer.state[trainer.optimizer.param_groups[0]["params"][0]]
    assert torch.equal(first["exp_avg"], saved["state"][0]["exp_avg"])
    fresh = Trainer(_cfg(tiny_data, tmp_path / "next2", model=None, init_from=str(source), max_steps=5,
                         continue_data=False, init_optimizer=False))
    assert fresh.state.data_position == 0 and not fresh.optimizer.state


def test_non_finite_losses_are_skipped_then_stop(tiny_data, tmp_path, monkeypatch):
    trainer = Trainer(_cfg(tiny_data, tmp_path / "run", max_steps=10, max_bad_steps=3))
    original = trainer.model.forward
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        out = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] in (2, 5, 6, 7):
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(trainer, "forward", flaky)
    with pytest.raises(GrowlmError, match="3 non-finite steps in a row"):
        trainer.run()
    assert trainer.state.bad_steps_total == 4
    assert all(math.isfinite(p.detach().sum()) for p in trainer.model.parameters())


def test_vocab_mismatch_is_reported(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match=r"set model_overrides\.vocab_size to at least 32000"):
        Trainer(_cfg(tiny_data, tmp_path / "run", model_overrides={"vocab_size": 1000}))


@pytest.mark.parametrize("schedule", ["cosine", "wsd", "constant"])
def test_schedules(schedule):
    cfg = build_train_config({"model": "nexus-tiny", "data": ".", "max_steps": 100, "warmup_steps": 10,
                              "schedule": schedule, "min_lr_ratio": 0.1, "decay_fraction": 0.2})
    factors = [lr_factor(s, cfg) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    if schedule == "constant":
        assert factors[-1] == 1.0
    elif schedule == "wsd":
        assert factors[79] == 1.0 and factors[80] < 1.0 and factors[-1] == pytest.approx(0.1)
    else:
        assert all(a >= b for a, b in itertools.pairwise(factors[10:])) and factors[-1] == pytest.approx(0.1)


def test_keep_last_prunes_old_checkpoints(tiny_data, tmp_path):
    start_run(_cfg(tiny_data, tmp_path / "run", max_steps=40, checkpoint_every=10, keep_last=2))
    assert [p.name for p in storage.list_checkpoints(tmp_path / "run")] == ["step-00000030", "step-00000040"]
