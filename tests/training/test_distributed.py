"""Two CPU processes on gloo through torchrun: DDP and FSDP2 train like one process, a SIGKILLed
two-process run resumes exactly, and a two-process checkpoint resumes in one process. An explicit
ddp/fsdp strategy in a single process trains like no wrapping at all."""

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, wait_until

STEPS = 16
KILL_DELAY_S = random.Random(0).uniform(0.0, 0.5)  # seeded: the same delay after the checkpoint every run


def _config(tmp_path: Path, data: Path, name: str, **values) -> Path:
    config = {"model": "nexus-tiny", "model_overrides": {"num_hidden_layers": 2}, "data": str(data), "seq_len": 32,
              "micro_batch_size": 2, "max_steps": STEPS, "lr": 3e-3, "warmup_steps": 2, "log_every": 1,
              "eval_every": 8, "eval_batches": 2, "checkpoint_every": 4, "progress": False, "device": "cpu",
              "out_dir": str(tmp_path / name), **values}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _torchrun(nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "growlm.cli.main", "train", *args]


def _run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]


def _losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows]


def _close(a, b, rel=2e-3):
    assert [s for s, _ in a] == [s for s, _ in b]
    for (step, x), (_, y) in zip(a, b, strict=True):
        assert abs(x - y) <= rel * abs(y), (step, x, y)


@pytest.fixture(scope="module")
def one_process(tiny_data, tmp_path_factory):
    """The reference: one process, micro-batch 4 (= 2 processes x 2)."""
    tmp = tmp_path_factory.mktemp("single")
    _run([sys.executable, "-m", "growlm.cli.main", "train", str(_config(tmp, tiny_data, "one", micro_batch_size=4))])
    return tmp / "one"


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(tiny_data, tmp_path, one_process, strategy):
    _run(_torchrun(2, str(_config(tmp_path, tiny_data, strategy, distributed=strategy))))
    run = tmp_path / strategy
    _close(_losses(run), _losses(one_process))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["tokens"] == STEPS * 2 * 2 * 32
    state = json.loads((run / "checkpoints" / f"step-{STEPS:08d}" / "trainer_state.json").read_text())
    assert state["data_position"] == STEPS * 4 and state["world_size"] == 2


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_explicit_strategy_in_one_process(tiny_data, tmp_path, one_process, strategy):
    """`distributed: fsdp` in a plain process wraps the model in a one-process group and trains like `none`."""
    _run([sys.executable, "-m", "growlm.cli.main", "train",
          str(_config(tmp_path, tiny_data, strategy, distributed=strategy, micro_batch_size=4))])
    _close(_losses(tmp_path / strategy), _losses(one_process), rel=1e-5)
    assert json.loads((tmp_path / strategy / "summary.json").read_text())["world_size"] == 1


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_process_sigkill_resumes_exactly(tiny_data, tmp_path, strategy):
    _run(_torchrun(2, str(_config(tmp_path, tiny_data, "straight", distributed=strategy))))
    config = _config(tmp_path, tiny_data, "killed", distributed=strategy)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_torchrun(2, str(config)), cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "checkpoints" / "step-00000008"
    try:
        wait_until(checkpoint.exists, proc, time.time() + 300, "its step-8 checkpoint")
        time.sleep(KILL_DELAY_S)
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already when a wait above failed
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
        proc.wait()
    _run(_torchrun(2, "--resume", str(tmp_path / "killed")))
    assert _losses(tmp_path / "killed") == _losses(tmp_path / "straight")


def test_two_process_checkpoint_resumes_in_one_process(tiny_data, tmp_path, one_process):
    import shutil

    _run(_torchrun(2, str(_config(tmp_path, tiny_data, "pair", distributed="fsdp"))))
    for late in ("step-00000012", f"step-{STEPS:08d}"):  # as if the pair had stopped after step 8
        shutil.rmtree(tmp_path / "pair" / "checkpoints" / late)
    # one process continues with the same global batch (micro-batch 4) from the FSDP checkpoint
    _run([sys.executable, "-m", "growlm.cli.main", "train", "--resume", str(tmp_path / "pair"),
          "--set", "micro_batch_size=4", "--set", "distributed=auto"])
    _close(_losses(tmp_path / "pair"), _losses(one_process))


def test_lora_under_fsdp(tiny_data, tmp_path):
    """LoRA adapters on a frozen FSDP2-sharded model: same losses as one process, and the checkpoint
    (merged weights plus base and adapter under lora/) resumes in one process and in two."""
    import shutil

    import torch

    from growlm.models.storage import load_model

    lora = {"target_modules": ["o_proj", "gate_proj"], "r": 4, "alpha": 8}
    _run([sys.executable, "-m", "growlm.cli.main", "train",
          str(_config(tmp_path, tiny_data, "one", micro_batch_size=4, lora=lora))])
    _run(_torchrun(2, str(_config(tmp_path, tiny_data, "sharded", distributed="fsdp", lora=lora))))
    one, sharded = _losses(tmp_path / "one"), _losses(tmp_path / "sharded")
    _close(sharded, one)
    final = f"step-{STEPS:08d}"
    assert (tmp_path / "sharded" / "checkpoints" / final / "lora" / "adapter").is_dir()
    ids = torch.randint(0, 1000, (2, 16))
    with torch.no_grad():
        a = load_model(tmp_path / "one" / "checkpoints" / final)(ids).logits
        b = load_model(tmp_path / "sharded" / "checkpoints" / final)(ids).logits
    assert (a - b).abs().max() <= 2e-3 * a.abs().max()
    for late in ("step-00000012", final):
        shutil.rmtree(tmp_path / "sharded" / "checkpoints" / late)
    shutil.copytree(tmp_path / "sharded", tmp_path / "again")
    _run([sys.executable, "-m", "growlm.cli.main", "train", "--resume", str(tmp_path / "sharded"),
          "--set", "micro_batch_size=4", "--set", "distributed=auto"])
    _close(_losses(tmp_path / "sharded"), one)
    _run(_torchrun(2, "--resume", str(tmp_path / "again")))
    assert _losses(tmp_path / "again") == sharded


def test_growth_plan_under_fsdp(tiny_data, tmp_path):
    """Two FSDP processes train, rank 0 grows the gathered checkpoint, both re-shard and train on."""
    plan = {"out_dir": str(tmp_path / "plan"),
            "defaults": {"data": str(tiny_data), "seq_len": 32, "micro_batch_size": 2, "lr": 3e-3,
                         "warmup_steps": 1, "log_every": 2, "eval_every": 4, "eval_batches": 2,
                         "checkpoint_every": 4, "progress": False, "device": "cpu", "distributed": "fsdp"},
            "stages": [{"name": "base", "model": "nexus-tiny", "model_overrides": {"num_hidden_layers": 2},
                        "max_steps": 4},
                       {"name": "grown", "grow": {"nexus_m": 192, "nexus_a": 224, "num_hidden_layers": 3,
                                                  "hidden_size": 144}, "max_steps": 4}]}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    _run(_torchrun(2, str(path)))
    ledger = json.loads((tmp_path / "plan" / "ledger.json").read_text())
    assert [s["stage"] for s in ledger["stages"]] == ["base", "grown"]
    assert ledger["stages"][1]["growth_verified"] and ledger["stages"][1]["tokens"] == 4 * 2 * 2 * 32
    assert json.loads((tmp_path / "plan" / "stage-02-grown" / "train" / "summary.json").read_text())["world_size"] == 2
