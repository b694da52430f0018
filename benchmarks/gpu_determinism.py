"""Driver of benchmarks/gpu_determinism.sh: are GPU runs with ``deterministic: true`` bit-identical?

Runs, each a fresh ``python -m growlm.cli.main train`` process on the same config:

* ``det-a``, ``det-b``: ``deterministic: true``, uninterrupted;
* ``det-killed``: the same, SIGKILLed a few logged steps after its middle checkpoint, then
  ``--resume``d to the end;
* ``off-a``, ``off-b``: ``deterministic: false`` (the default), uninterrupted.

Compared bit for bit: every logged (step, train loss, validation loss) of metrics.jsonl
(floats as JSON writes them, which round-trips exactly) and the SHA-256 of the final
checkpoint's model.safetensors. Throughput is the median logged tokens/s after the first
third of the steps (compilation and warm-up excluded) of det-a and off-a.

Usage: python3 benchmarks/gpu_determinism.py CONFIG WORK OUT [--set KEY=VALUE ...]
(the run settings are --set overrides of CONFIG; max_steps and checkpoint_every must be among them).
The runs go to WORK/NAME; their logs, metrics.jsonl files and OUT/determinism.json (also printed)
to OUT.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

TRAIN = [sys.executable, "-m", "growlm.cli.main", "train"]


def rows(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def losses(run: Path) -> list[tuple]:
    return [(r["step"], r.get("loss"), r.get("val_loss")) for r in rows(run)]


def weights_sha(run: Path) -> str | None:
    checkpoints = sorted((run / "checkpoints").glob("step-*"))
    if not checkpoints:
        return None
    manifest = json.loads((checkpoints[-1] / "manifest.json").read_text())
    return manifest["model.safetensors"]["sha256"]


def steady_tokens_per_s(run: Path) -> float | None:
    train = [r for r in rows(run) if "tokens_per_s" in r]
    if not train:
        return None
    last = train[-1]["step"]
    return statistics.median(r["tokens_per_s"] for r in train if r["step"] > last // 3)


def compare(a: Path, b: Path) -> dict:
    la, lb = losses(a), losses(b)
    first = next(({"step": x[0], "a": x[1:], "b": y[1:]} for x, y in zip(la, lb, strict=False) if x != y), None)
    diffs = [abs(x[1] - y[1]) for x, y in zip(la, lb, strict=False) if x[1] is not None and y[1] is not None]
    return {"identical_losses": la == lb and bool(la), "rows": [len(la), len(lb)], "first_difference": first,
            "max_abs_loss_difference": max(diffs) if diffs else None,
            "identical_final_weights": weights_sha(a) is not None and weights_sha(a) == weights_sha(b)}


def train(work: Path, out: Path, name: str, args: list[str], deterministic: bool) -> Path:
    run = work / name
    command = [*TRAIN, *args, "--set", f"deterministic={str(deterministic).lower()}", "--set", f"out_dir={run}"]
    with open(out / f"{name}.log", "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    return run


def killed_and_resumed(work: Path, out: Path, args: list[str], kill_after_step: int) -> dict:
    """SIGKILL once the checkpoint at ``kill_after_step`` exists and a later step is logged; then resume."""
    run = work / "det-killed"
    command = [*TRAIN, *args, "--set", "deterministic=true", "--set", f"out_dir={run}"]
    log = open(out / "det-killed.log", "w")  # noqa: SIM115 -- shared by the run and its resume below
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    checkpoint = run / "checkpoints" / f"step-{kill_after_step:08d}"
    while proc.poll() is None and not (checkpoint.exists() and any(r["step"] > kill_after_step for r in rows(run))):
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    logged_before = rows(run)[-1]["step"] if rows(run) else 0
    complete = [c for c in (run / "checkpoints").glob("step-*") if (c / "manifest.json").exists()]
    newest = max((int(c.name.split("-")[1]) for c in complete), default=0)
    subprocess.run([*TRAIN, "--resume", str(run)], check=True, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return {"killed": killed, "last_step_logged_before_kill": logged_before, "resumed_from_step": newest}


def main() -> None:
    config, work, out, *overrides = sys.argv[1:]
    work, out = Path(work), Path(out)
    for folder in (work, out):
        folder.mkdir(parents=True, exist_ok=True)
    args = [config, *overrides]
    settings = dict(o.split("=", 1) for o in overrides if "=" in o)
    max_steps, every = int(settings["max_steps"]), int(settings["checkpoint_every"])
    middle = (max_steps // 2) // every * every or every
    import torch

    result: dict = {"torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                    "cublas_workspace_config_in_environment": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
                    "config": config, "overrides": settings}
    started = time.time()
    det_a = train(work, out, "det-a", args, True)
    det_b = train(work, out, "det-b", args, True)
    kill = killed_and_resumed(work, out, args, middle)
    off_a = train(work, out, "off-a", args, False)
    off_b = train(work, out, "off-b", args, False)
    det_speed, off_speed = steady_tokens_per_s(det_a), steady_tokens_per_s(off_a)
    result.update({
        "deterministic_two_runs": compare(det_a, det_b),
        "deterministic_killed_and_resumed": {**kill, **compare(det_a, work / "det-killed")},
        "default_two_runs": compare(off_a, off_b),
        "tokens_per_s": {"deterministic": det_speed, "default": off_speed,
                         "deterministic_over_default": det_speed / off_speed if det_speed and off_speed else None},
        "final_train_loss": {"deterministic": losses(det_a)[-1][1], "default": losses(off_a)[-1][1]},
        "seconds": round(time.time() - started, 1),
    })
    result["verdict"] = {
        "two_deterministic_runs_bit_identical": result["deterministic_two_runs"]["identical_losses"]
        and result["deterministic_two_runs"]["identical_final_weights"],
        "killed_and_resumed_bit_identical": kill["killed"]
        and result["deterministic_killed_and_resumed"]["identical_losses"]
        and result["deterministic_killed_and_resumed"]["identical_final_weights"],
    }
    for name in ("det-a", "det-b", "det-killed", "off-a", "off-b"):
        shutil.copy(work / name / "metrics.jsonl", out / f"{name}.metrics.jsonl")
    text = json.dumps(result, indent=2)
    (out / "determinism.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
