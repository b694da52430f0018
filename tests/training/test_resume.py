"""A run killed with SIGKILL and resumed logs exactly the losses of an uninterrupted run.

This is the issue's acceptance test, run on the shipped config: the whole shared
corpus is tokenized once into data/ (the config's data spec) and reused. The
windows are made shorter and the batches smaller than the config's so the two
200-step runs take seconds, not minutes; everything else is as shipped.
"""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, wait_until

# seeded, so every run of the test kills at the same delay after the checkpoint
KILL_DELAY_S = random.Random(0).uniform(0.0, 1.0)
SPEED = ["--set", "seq_len=64", "--set", "micro_batch_size=4", "--set", "eval_batches=4", "--set", "device=cpu",
         "--set", "log_every=5", "--set", "eval_every=50"]


def _train(*args: str) -> list[str]:
    return [sys.executable, "-m", "growlm.cli.main", "train", *args]


def _losses(run: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r.get("val_loss")) for r in rows]


def test_sigkill_then_resume_is_exact(tmp_path, shared):
    common = ["configs/nexus-tiny.yaml", "--set", "max_steps=200", "--set", "checkpoint_every=50", *SPEED]
    straight = tmp_path / "straight"
    subprocess.run(_train(*common, "--set", f"out_dir={straight}"), cwd=REPO, check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train(*common, "--set", f"out_dir={killed}"), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until((killed / "checkpoints" / "step-00000100").exists, proc, time.time() + 300,
                   "its step-100 checkpoint", poll_s=0.05)
        time.sleep(KILL_DELAY_S)  # somewhere between two checkpoints
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    interrupted_at = len(_losses(killed))
    assert interrupted_at < len(_losses(straight)), "the run finished before it could be killed"

    result = subprocess.run(_train("--resume", str(killed)), cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert _losses(killed) == _losses(straight)


def test_sigterm_saves_a_checkpoint_and_resumes(tmp_path, shared):
    run = tmp_path / "run"
    args = ["configs/nexus-tiny.yaml", "--set", "max_steps=400", "--set", "checkpoint_every=1000", *SPEED,
            "--set", f"out_dir={run}"]
    proc = subprocess.Popen(_train(*args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        metrics = run / "metrics.jsonl"
        wait_until(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 3, proc,
                   time.time() + 300, "3 logged rows", poll_s=0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # a failed wait above: leave no run behind
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "continue with `growlm train --resume" in err
    checkpoints = sorted((run / "checkpoints").iterdir())
    assert len(checkpoints) == 1
    step = json.loads((checkpoints[0] / "trainer_state.json").read_text())["step"]
    assert 15 <= step < 400
