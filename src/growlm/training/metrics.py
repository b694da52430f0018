"""What a run reports: ``metrics.jsonl``, TensorBoard, its speed, and ``summary.json`` at the end.

Rows and the summary are computed from the run's state and figures passed in; this
module reads no clock (the trainer does, so a test can drive its time).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from growlm.plotting import plot_loss_curves, run_curves
from growlm.training.records import RunSummary
from growlm.training.state import TrainState

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
# Steps at the start of a session (a run, or a resumed run) that the steady-state rate leaves
# out: the first compiles the model, the next may still recompile (automatic dynamic shapes).
STEADY_SKIP_STEPS = 3


class MetricsLog:
    """``metrics.jsonl``: one JSON object per logged step, appended and flushed as it happens."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (written after the checkpoint a run resumes from)."""
        if self.path.exists():
            rows = [line for line in self.path.read_text().splitlines() if line.strip()]
            kept = [line for line in rows if json.loads(line)["step"] <= step]
            self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    return MetricsLog(Path(run_dir) / METRICS_FILE).rows()


@dataclass(frozen=True)
class RunFacts:
    """What the summary says about a run that does not change while it trains."""

    world_size: int
    deterministic: bool
    parameters: int
    trainable_parameters: int
    train_flops_per_token: int
    compile: Any

    def mfu(self, tokens_per_s: float, peak_flops: float) -> float | None:
        """Model FLOPs utilisation against ``peak_flops`` per process; None when that is unknown (0)."""
        if not peak_flops:
            return None
        return self.train_flops_per_token * tokens_per_s / (peak_flops * self.world_size)


@dataclass
class SessionSpeed:
    """Speed of this session (a run, or one resumed part of it): the first step's end (time to
    the first optimizer step) and a steady-state window after ``STEADY_SKIP_STEPS`` steps."""

    started: float  # when the Trainer was created: loading and compiling count in wall-clock figures
    tokens_per_step: int
    steps: int = 0
    first_step_at: float = 0.0
    first_step_s: float = 0.0
    steady_tokens: int = 0
    steady_s: float = 0.0

    def add_step(self, tic: float, now: float) -> None:
        """A step that began at ``tic`` ended at ``now`` (for the first: with the device synchronised)."""
        self.steps += 1
        if self.steps == 1:
            self.first_step_at = now
            self.first_step_s = now - tic
        elif self.steps > STEADY_SKIP_STEPS:
            self.steady_tokens += self.tokens_per_step
            self.steady_s += now - tic

    def figures(self, now: float, facts: RunFacts, peak_flops: float) -> dict[str, Any]:
        """Steady-state (compilation and the first steps left out) and wall-clock (everything
        since the Trainer's creation: loading, compiling, evaluating, saving) figures."""
        if not self.steps:
            return {}
        tokens = self.steps * self.tokens_per_step
        steady = self.steady_tokens / self.steady_s if self.steady_s > 0 else None
        figures = {
            "session_steps": self.steps,
            "time_to_first_step_s": round(self.first_step_at - self.started, 2),
            "first_step_s": round(self.first_step_s, 2),
            "first_step_at": self.first_step_at,
            "steady_tokens_per_s": round(steady, 1) if steady else None,
            "wall_tokens_per_s": round(tokens / (now - self.started), 1),
            "wall_seconds": round(now - self.started, 2),
        }
        if steady and peak_flops:
            figures["steady_mfu"] = facts.mfu(steady, peak_flops)
        return figures


def step_row(state: TrainState, lr: float, grad_norm: float, seconds: float, window_tokens: int,
             facts: RunFacts, peak_flops: float, device: torch.device) -> dict[str, Any]:
    """The ``metrics.jsonl`` row of the logging window that ends at ``state.step`` (and starts the next)."""
    tokens_per_s = window_tokens / max(seconds, 1e-9)
    row: dict[str, Any] = {"step": state.step, "loss": state.take_window_loss(), "lr": lr, "grad_norm": grad_norm,
           "tokens": state.tokens, "tokens_per_s": tokens_per_s, "elapsed_s": state.elapsed_s}
    if peak_flops:
        row["mfu"] = facts.mfu(tokens_per_s, peak_flops)
    if device.type == "cuda":
        row["max_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


_TENSORBOARD_NOTED = False  # the missing-tensorboard note is said once per process (a plan has many stages)


def open_tensorboard(out: Path) -> Any:
    """A TensorBoard writer when tensorboard is installed; otherwise None, said once per process."""
    global _TENSORBOARD_NOTED
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _TENSORBOARD_NOTED:
            _TENSORBOARD_NOTED = True
            logger.info("note: tensorboard is not installed, so nothing is written to RUN/tensorboard (metrics.jsonl and "
                        "loss.png have everything); `pip install tensorboard` to get it, or set tensorboard: false")
        return None
    return SummaryWriter(str(out / "tensorboard"))


class MetricsLogger:
    """Where a run's rows go: ``metrics.jsonl`` and, while :meth:`open`, TensorBoard (rank 0 only)."""

    def __init__(self, out: Path, main: bool, tensorboard: bool) -> None:
        self.out = out
        self.main = main
        self.tensorboard = tensorboard
        self.log = MetricsLog(out / METRICS_FILE)
        self.board: Any = None  # a SummaryWriter between open() and close()

    def open(self) -> None:
        if self.main and self.tensorboard:
            self.board = open_tensorboard(self.out)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None

    def write(self, row: dict[str, Any]) -> None:
        if not self.main:
            return
        self.log.write(row)
        if self.board is not None:
            for key, value in row.items():
                if key != "step":
                    self.board.add_scalar(key, value, row["step"])

    def truncate_after(self, step: int) -> None:
        if self.main:
            self.log.truncate_after(step)

    def finish(self, state: TrainState, last_val: dict[str, float] | None, facts: RunFacts,
               speed: Callable[[], dict[str, Any]], checkpoint: Path | None, skipped_documents: int | None,
               architecture: str) -> RunSummary:
        """``loss.png`` and ``summary.json`` (returned) for the run as it stands; the summary line to stderr.

        ``speed()`` gives the session's speed figures, asked last so that wall-clock time counts the plot."""
        rows = self.log.rows()
        if rows:
            plot_loss_curves(run_curves(rows, architecture), self.out / "loss.png",
                             title=f"{self.out.name}: {architecture}")
        train_rows = [r for r in rows if "loss" in r]
        seconds = state.elapsed_s
        summary = RunSummary(
            steps=state.step,
            tokens=state.tokens,
            final_train_loss=train_rows[-1]["loss"] if train_rows else None,
            final_val_loss=last_val["loss"] if last_val else None,
            final_val_perplexity=last_val["perplexity"] if last_val else None,
            non_finite_steps=state.bad_steps_total,
            skipped_documents=skipped_documents,  # streaming sources only
            train_seconds=round(seconds, 2),
            tokens_per_s=round(state.tokens / seconds, 1) if seconds else None,
            world_size=facts.world_size,
            deterministic=facts.deterministic,
            parameters=facts.parameters,
            trainable_parameters=facts.trainable_parameters,
            train_flops_per_token=facts.train_flops_per_token,
            train_flops=facts.train_flops_per_token * state.tokens,
            mfu=train_rows[-1].get("mfu") if train_rows else None,
            max_memory_gb=train_rows[-1].get("max_memory_gb") if train_rows else None,
            checkpoint=str(checkpoint) if checkpoint else None,
            compile=facts.compile,
            **speed(),  # absent when this session made no step
        )
        summary.write(self.out)
        logger.info(summary_line(summary))
        return summary


# The end-of-run line's optional parts, in order: summary key, text, and whether a zero is shown
# (a figure that is 0 or absent was not measured; a loss or a time of 0 is still one).
_SUMMARY_PARTS = (
    ("tokens_per_s", "{:,.0f} tok/s", False),
    ("steady_tokens_per_s", "steady {:,.0f} tok/s", False),
    ("wall_tokens_per_s", "wall {:,.0f} tok/s", False),
    ("time_to_first_step_s", "first step after {:.1f} s", True),
    ("mfu", "MFU {:.1%}", False),
    ("max_memory_gb", "{:.1f} GiB peak", False),
    ("final_train_loss", "train loss {:.4f}", True),
    ("final_val_loss", "val loss {:.4f}", True),
    ("non_finite_steps", "{} non-finite steps skipped", False),
    ("skipped_documents", "{} documents without text skipped", False),
)


def summary_line(summary: RunSummary) -> str:
    """The compact end-of-run line."""
    parts = [f"{summary.steps} steps", f"{summary.tokens:,} tokens", f"{summary.train_seconds:.0f} s"]
    for key, text, zero_shown in _SUMMARY_PARTS:
        value = getattr(summary, key)
        if value is not None and (value or zero_shown):
            parts.append(text.format(value))
    return "done: " + ", ".join(parts)
