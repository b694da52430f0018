"""``deterministic: true``: the config key, the process-wide switches, and exact resume under them.

On CPU training is bit-reproducible with or without the key, so what is tested here is
that the key is accepted and checked, that it turns PyTorch's deterministic settings on for
the run and puts them back after, and that a run with it on, killed with SIGKILL and
resumed, logs exactly the losses of an uninterrupted one. The GPU half (two identical runs
and a killed-and-resumed run bit-identical, and the cost in tokens/s) is
``benchmarks/gpu_determinism.sh``.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from growlm.errors import ConfigError
from growlm.training.config import build_train_config
from growlm.training.determinism import current_settings, deterministic_mode
from growlm.training.trainer import start_run
from tests.conftest import REPO, train_config, wait_until


def test_key_is_checked(tiny_data, tmp_path):
    assert build_train_config({"model": "nexus-tiny", "data": str(tiny_data)}).deterministic is False
    cfg = build_train_config({"model": "nexus-tiny", "data": str(tiny_data)}, {"deterministic": True})
    assert cfg.deterministic is True
    with pytest.raises(ConfigError, match="deterministic"):
        build_train_config({"model": "nexus-tiny", "data": str(tiny_data), "deterministic": "sometimes"})


def test_switches_on_inside_and_restored_after(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = current_settings()
    assert not before["algorithms"]
    with deterministic_mode(True, seed=5):
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        import torch._inductor.config as inductor

        assert inductor.deterministic and inductor.fallback_random
        first = torch.rand(3)
        torch.manual_seed(5)
        assert torch.equal(first, torch.rand(3))  # seeded from the config's seed
    assert current_settings() == before and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    with deterministic_mode(False, seed=5):
        assert current_settings() == before


def test_a_run_is_deterministic_while_it_runs_and_records_it(tiny_data, tmp_path, monkeypatch):
    seen = []
    import growlm.training.trainer as trainer

    original = trainer.Trainer._step

    def step(self):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return original(self)

    monkeypatch.setattr(trainer.Trainer, "_step", step)
    summary = start_run(train_config(tiny_data, tmp_path / "run", max_steps=3, deterministic=True))
    assert seen == [True, True, True] and summary.deterministic is True
    assert not torch.are_deterministic_algorithms_enabled()
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["deterministic"] is True


def _losses(run):
    return [(r["step"], r["loss"], r.get("val_loss"))
            for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def test_sigkill_then_resume_is_exact_with_deterministic_on(tiny_data, tmp_path):
    # two layers and 30 steps: exact resume does not depend on the model's depth or the run's length
    values = {"model": "nexus-tiny", "model_overrides": {"num_hidden_layers": 2}, "data": str(tiny_data),
              "seq_len": 32, "micro_batch_size": 4, "max_steps": 30, "lr": 3e-3, "warmup_steps": 2, "log_every": 2,
              "eval_every": 10, "eval_batches": 2, "checkpoint_every": 10, "progress": False, "device": "cpu",
              "tensorboard": False, "deterministic": True}
    start_run(build_train_config({**values, "out_dir": str(tmp_path / "straight")}))
    killed = tmp_path / "killed"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**values, "out_dir": str(killed)}))
    command = [sys.executable, "-m", "growlm.cli.main", "train"]
    proc = subprocess.Popen([*command, str(tmp_path / "config.yaml")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        wait_until((killed / "checkpoints" / "step-00000010").exists, proc, deadline, "its step-10 checkpoint")
        # a few steps past the checkpoint, before the next one
        wait_until(lambda: len(_losses(killed)) >= 7, proc, deadline, "its 7th logged row", poll_s=0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(_losses(killed)) < len(_losses(tmp_path / "straight"))
    result = subprocess.run([*command, "--resume", str(killed)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert _losses(killed) == _losses(tmp_path / "straight")
    assert json.loads((killed / "summary.json").read_text())["deterministic"] is True
