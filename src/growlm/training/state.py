"""A run's progress: the counters a checkpoint saves and a resumed run continues from.

Together with the weights, the optimizer and scheduler state, the RNG state and the data
stream's state (``checkpoint_manager.py``), this is everything that decides what a run
does next: the loss accumulator of the current logging window is part of it, so a run
killed at any moment and resumed logs the same losses as one that never stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class TrainState:
    """Progress counters, saved in every checkpoint's ``trainer_state.json``."""

    step: int = 0  # optimizer steps taken
    tokens: int = 0  # training tokens seen, all processes together
    data_position: int = 0  # windows drawn, all processes together: where the next batch starts
    window_loss_sum: float = 0.0  # the current logging window's losses (finite ones) ...
    window_steps: int = 0  # ... and their number
    bad_steps_total: int = 0  # steps skipped for a non-finite loss or gradient
    elapsed_s: float = 0.0  # time spent in training steps, over every session of the run
    init_from: str | None = None  # the model folder the run started from (config init_from), if any

    def state_dict(self) -> dict[str, Any]:
        saved = asdict(self)
        if saved["init_from"] is None:  # only runs started from a model folder name one
            del saved["init_from"]
        return saved

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Take every counter ``saved`` holds (older checkpoints may lack some: those keep their value)."""
        for f in fields(self):
            if f.name in saved:
                setattr(self, f.name, saved[f.name])

    def take_window_loss(self) -> float:
        """The mean loss of the logging window that ends now; starts the next window."""
        loss = self.window_loss_sum / self.window_steps
        self.window_loss_sum, self.window_steps = 0.0, 0
        return loss
