"""``growth.json`` as typed records: what one growth did and how it was verified.

The file format is JSON and stays so (``growlm info``, ``growlm analyze`` and people read
it); these records are how code reads and writes it. ``to_json()`` gives exactly the keys,
in the order, that ``growth.json`` has always had, and ``from_json()`` reads files written
before a field existed (reports older than the loss check and ``moments`` lack them): such
fields are ``None`` and stay out of ``to_json()``, so an old file round-trips unchanged.
Keys a reader does not know are kept in ``extra`` and written back after the known ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Region = list[list[list[int]]]  # per axis, the ``[start, stop]`` runs of positions (growth.base.ranges)


def _extra(data: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in known}


@dataclass
class ValueChange:
    """One grown config field (also a plan stage's ``grew`` entries)."""

    old: Any
    new: Any

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ValueChange:
        return cls(data["old"], data["new"])


@dataclass
class BlockRecord:
    """A block of new entries: the parameter, what the block is, how it was initialised, where it sits."""

    param: str
    label: str
    init: str
    region: Region

    def to_json(self) -> dict[str, Any]:
        return {"param": self.param, "label": self.label, "init": self.init, "region": self.region}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BlockRecord:
        return cls(data["param"], data["label"], data["init"], data["region"])


@dataclass
class PlacementRecord:
    """Where a grown parameter's old values sit: ``grown[positions] == scale * source``."""

    source: str | None
    positions: Region
    scale: float
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        out = {"source": self.source, "positions": self.positions, "scale": self.scale}
        return {**out, "note": self.note} if self.note else out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlacementRecord:
        return cls(data["source"], data["positions"], data["scale"], data.get("note", ""))


@dataclass
class LogitCheck:
    """Largest logit difference between the original and the grown model on one batch."""

    max_abs_diff: float
    max_rel_diff: float
    logit_scale: float

    def to_json(self) -> dict[str, Any]:
        return {"max_abs_diff": self.max_abs_diff, "max_rel_diff": self.max_rel_diff, "logit_scale": self.logit_scale}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogitCheck:
        return cls(data["max_abs_diff"], data["max_rel_diff"], data["logit_scale"])


@dataclass
class LossCheck:
    """Next-token loss of both models on the batch; ``jump = after - before``."""

    before: float
    after: float
    jump: float

    def to_json(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after, "jump": self.jump}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LossCheck:
        return cls(data["before"], data["after"], data["jump"])


@dataclass
class BlockReach:
    """One new block through the gradient check."""

    block: BlockRecord
    max_abs_grad_per_step: list[float]
    first_step_with_gradient: int | None
    moved: bool
    all_zero_after: bool

    def to_json(self) -> dict[str, Any]:
        return {**self.block.to_json(), "max_abs_grad_per_step": self.max_abs_grad_per_step,
                "first_step_with_gradient": self.first_step_with_gradient, "moved": self.moved,
                "all_zero_after": self.all_zero_after}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BlockReach:
        return cls(BlockRecord.from_json(data), data["max_abs_grad_per_step"], data["first_step_with_gradient"],
                   data["moved"], data["all_zero_after"])


@dataclass
class GradientReach:
    """Whether every new block received gradient (and moved) within ``steps`` AdamW steps."""

    steps: int
    lr: float
    blocks: list[BlockReach]
    every_block_got_gradient: bool
    every_block_moved: bool
    every_block_still_zero: bool
    no_block_moved: bool

    @classmethod
    def of(cls, steps: int, lr: float, blocks: list[BlockReach]) -> GradientReach:
        """The record of ``blocks``, with the summary flags computed from them."""
        return cls(steps, lr, blocks,
                   every_block_got_gradient=all(b.first_step_with_gradient is not None for b in blocks),
                   every_block_moved=all(b.moved for b in blocks),
                   every_block_still_zero=all(b.all_zero_after for b in blocks),
                   no_block_moved=not any(b.moved for b in blocks))

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "lr": self.lr, "blocks": [b.to_json() for b in self.blocks],
                "every_block_got_gradient": self.every_block_got_gradient,
                "every_block_moved": self.every_block_moved,
                "every_block_still_zero": self.every_block_still_zero, "no_block_moved": self.no_block_moved}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GradientReach:
        return cls(data["steps"], data["lr"], [BlockReach.from_json(b) for b in data["blocks"]],
                   data["every_block_got_gradient"], data["every_block_moved"], data["every_block_still_zero"],
                   data["no_block_moved"])


_VERIFICATION_KEYS = ("logits", "loss", "gradients", "expectation", "passed", "batch_shape", "seed")


@dataclass
class Verification:
    """The checks run on a grown model (growth/verify.py) and whether it passed what its scheme promises."""

    logits: LogitCheck
    gradients: GradientReach
    expectation: str
    passed: bool
    batch_shape: list[int]
    seed: int
    loss: LossCheck | None = None  # None in reports written before the loss check existed
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"logits": self.logits.to_json()}
        if self.loss is not None:
            out["loss"] = self.loss.to_json()
        out.update(gradients=self.gradients.to_json(), expectation=self.expectation, passed=self.passed,
                   batch_shape=self.batch_shape, seed=self.seed)
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verification:
        loss = data.get("loss")
        return cls(LogitCheck.from_json(data["logits"]), GradientReach.from_json(data["gradients"]),
                   data["expectation"], data["passed"], data["batch_shape"], data["seed"],
                   LossCheck.from_json(loss) if loss is not None else None, _extra(data, _VERIFICATION_KEYS))


@dataclass
class ParameterCounts:
    old: int
    new: int
    added: int

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "added": self.added}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ParameterCounts:
        return cls(data["old"], data["new"], data["added"])


@dataclass
class FlopsChange:
    """Training FLOPs per token before and after, at sequence length ``seq_len``."""

    old: int
    new: int
    seq_len: int

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "seq_len": self.seq_len}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FlopsChange:
        return cls(data["old"], data["new"], data["seq_len"])


_REPORT_KEYS = ("architecture", "init", "operators", "changes", "parameters", "train_flops_per_token", "options",
                "new_blocks", "placements", "verification", "warnings", "source", "out", "seed", "optimizer_state",
                "moments")
# written by grow_checkpoint after the growth's own fields; absent (None) when only the model was grown
_CHECKPOINT_KEYS = ("source", "out", "seed", "optimizer_state", "moments")

GROWTH_FILE = "growth.json"


@dataclass
class GrowthReport:
    """The content of ``growth.json``."""

    architecture: str
    init: str
    operators: list[str]
    changes: dict[str, ValueChange]
    parameters: ParameterCounts
    train_flops_per_token: FlopsChange
    options: dict[str, Any]
    new_blocks: list[BlockRecord]
    placements: dict[str, PlacementRecord]  # only the parameters not simply kept in place
    verification: Verification | None  # None: grown without verifying
    warnings: list[str]
    source: str | None = None
    out: str | None = None
    seed: int | None = None
    optimizer_state: str | None = None
    moments: str | None = None  # None in reports written before --moments existed
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "architecture": self.architecture,
            "init": self.init,
            "operators": self.operators,
            "changes": {k: c.to_json() for k, c in self.changes.items()},
            "parameters": self.parameters.to_json(),
            "train_flops_per_token": self.train_flops_per_token.to_json(),
            "options": self.options,
            "new_blocks": [b.to_json() for b in self.new_blocks],
            "placements": {k: p.to_json() for k, p in self.placements.items()},
            "verification": self.verification.to_json() if self.verification is not None else None,
            "warnings": self.warnings,
        }
        for key in _CHECKPOINT_KEYS:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GrowthReport:
        verification = data.get("verification")
        return cls(
            architecture=data["architecture"],
            init=data["init"],
            operators=list(data["operators"]),
            changes={k: ValueChange.from_json(c) for k, c in data["changes"].items()},
            parameters=ParameterCounts.from_json(data["parameters"]),
            train_flops_per_token=FlopsChange.from_json(data["train_flops_per_token"]),
            options=dict(data.get("options", {})),
            new_blocks=[BlockRecord.from_json(b) for b in data.get("new_blocks", [])],
            placements={k: PlacementRecord.from_json(p) for k, p in data.get("placements", {}).items()},
            verification=Verification.from_json(verification) if verification is not None else None,
            warnings=list(data.get("warnings", [])),
            **{key: data.get(key) for key in _CHECKPOINT_KEYS},
            extra=_extra(data, _REPORT_KEYS),
        )

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / GROWTH_FILE
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path

    @classmethod
    def read(cls, folder: str | Path) -> GrowthReport:
        """The report in ``folder/growth.json``."""
        return cls.from_json(json.loads((Path(folder) / GROWTH_FILE).read_text()))
