"""A run's ``summary.json``, a plan stage's ``stage.json`` and a plan's ``ledger.json`` as typed records.

JSON stays the file format (``growlm info``, ``growlm plan report``, experiments and people read
it); these records are how code reads and writes it. Each is a flat JSON object whose keys grew
over time, so a record remembers the keys, in order, of the file it was read from: ``to_json()``
of a record read from an old file gives that file back key for key, and keys a reader does not
know are kept in ``extra``. A record made in code writes its fields in declaration order, leaving
out the optional ones that are ``None`` (``OMIT_WHEN_NONE``: figures only some runs have).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from growlm.errors import CheckpointError
from growlm.growth.report import ValueChange
from growlm.models.storage import STAGE_FILE

J = TypeVar("J", bound="JsonFile")
R = TypeVar("R", bound="FlatRecord")

SUMMARY_FILE = "summary.json"
LEDGER_FILE = "ledger.json"


def unknown_keys(data: dict[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """The items of ``data`` whose keys a record does not know, in file order (kept in its ``extra``)."""
    names = set(known)
    return {k: v for k, v in data.items() if k not in names}


class JsonFile:
    """A record stored as ``folder/FILE``, one JSON object; subclasses say how it maps to JSON."""

    FILE: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_json(cls: type[J], data: dict[str, Any]) -> J:
        raise NotImplementedError

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / self.FILE
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path

    @classmethod
    def read(cls: type[J], folder: str | Path) -> J:
        """The record in ``folder/FILE``."""
        path = Path(folder) / cls.FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {path}: {exc}") from exc
        return cls.from_json(data)


@dataclass(kw_only=True)
class FlatRecord(JsonFile):
    """A dataclass written as one flat JSON object (subclasses declare the fields in file order)."""

    REQUIRED: ClassVar[tuple[str, ...]] = ()  # keys every file of this kind has had
    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()

    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know
    keys: tuple[str, ...] | None = field(default=None, repr=False, compare=False)  # the read file's key order

    @classmethod
    def _names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name not in ("extra", "keys")]

    def _encode(self, name: str) -> Any:
        return getattr(self, name)

    @classmethod
    def _decode(cls, name: str, value: Any) -> Any:
        return value

    def to_json(self) -> dict[str, Any]:
        names = self._names()
        if self.keys is not None:
            return {k: self._encode(k) if k in names else self.extra[k] for k in self.keys
                    if k in names or k in self.extra}
        out = {n: self._encode(n) for n in names if not (n in self.OMIT_WHEN_NONE and getattr(self, n) is None)}
        return {**out, **self.extra}

    @classmethod
    def from_json(cls: type[R], data: dict[str, Any]) -> R:
        missing = [k for k in cls.REQUIRED if k not in data]
        if missing:
            raise CheckpointError(f"{cls.FILE or cls.__name__} lacks {', '.join(missing)}: not a growlm record")
        names = cls._names()
        values = {n: cls._decode(n, data[n]) for n in names if n in data}
        return cls(**values, extra=unknown_keys(data, names), keys=tuple(data))


@dataclass(kw_only=True)
class RunSummary(FlatRecord):
    """``RUN/summary.json``: what a finished training run did. Fields after ``train_flops`` were added
    over time (None: a summary from before); the speed figures exist only when the last session
    made an optimizer step."""

    FILE: ClassVar[str] = SUMMARY_FILE
    REQUIRED: ClassVar[tuple[str, ...]] = ("steps", "tokens", "train_seconds", "parameters", "train_flops")
    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({
        "skipped_documents", "session_steps", "time_to_first_step_s", "first_step_s", "first_step_at",
        "steady_tokens_per_s", "wall_tokens_per_s", "wall_seconds", "steady_mfu"})

    steps: int
    tokens: int
    final_train_loss: float | None = None
    final_val_loss: float | None = None
    final_val_perplexity: float | None = None
    non_finite_steps: int = 0
    skipped_documents: int | None = None  # streaming sources: documents without text
    train_seconds: float
    tokens_per_s: float | None = None
    world_size: int | None = None
    deterministic: bool | None = None
    parameters: int
    trainable_parameters: int | None = None
    train_flops_per_token: int | None = None
    train_flops: int
    mfu: float | None = None
    max_memory_gb: float | None = None
    checkpoint: str | None = None  # the newest checkpoint
    compile: Any = None
    # the last session's speed (Trainer.speed)
    session_steps: int | None = None
    time_to_first_step_s: float | None = None
    first_step_s: float | None = None
    first_step_at: float | None = None  # epoch seconds
    steady_tokens_per_s: float | None = None
    wall_tokens_per_s: float | None = None
    wall_seconds: float | None = None
    steady_mfu: float | None = None


@dataclass(kw_only=True)
class StageRecord(FlatRecord):
    """``OUT/stage-NN-NAME/stage.json``: one completed stage of a plan run (also a ledger row's start)."""

    FILE: ClassVar[str] = STAGE_FILE
    REQUIRED: ClassVar[tuple[str, ...]] = ("stage", "index", "tokens", "train_flops", "final_checkpoint")

    stage: str
    index: int
    grew: dict[str, ValueChange] = field(default_factory=dict)  # empty: the stage grew nothing
    init: str | None = None  # the growth's init scheme
    growth_verified: bool | None = None  # None: no growth, or grown without verifying
    parameters: int | None = None
    trainable_parameters: int | None = None
    steps: int | None = None
    tokens: int
    train_flops_per_token: int | None = None
    train_flops: int
    final_train_loss: float | None = None
    final_val_loss: float | None = None
    seconds: float | None = None  # the stage's wall time, growth included
    train_seconds: float | None = None  # the trainer's clock: optimizer steps alone, summed over sessions
    gpu_seconds: float | None = None  # train_seconds x the processes that trained
    stage_to_first_step_s: float | None = None
    steady_tokens_per_s: float | None = None
    wall_tokens_per_s: float | None = None
    final_checkpoint: str

    def _encode(self, name: str) -> Any:
        if name == "grew":
            return {k: c.to_json() for k, c in self.grew.items()}
        return getattr(self, name)

    @classmethod
    def _decode(cls, name: str, value: Any) -> Any:
        if name == "grew":
            return {k: ValueChange.from_json(c) for k, c in (value or {}).items()}
        return value


@dataclass(kw_only=True)
class LedgerRow(StageRecord):
    """A stage's record in the ledger, with the totals up to and including it."""

    REQUIRED: ClassVar[tuple[str, ...]] = (*StageRecord.REQUIRED, "cumulative_tokens", "cumulative_train_flops")

    cumulative_tokens: int
    cumulative_train_flops: int
    cumulative_gpu_seconds: float | None = None  # None: a ledger from before GPU-seconds were kept


LEDGER_CONVENTION = ("matmul FLOPs of forward, input-gradient and weight-gradient passes of what trained; "
                     "evaluation and growth verification excluded")


@dataclass
class LedgerTotal:
    tokens: int
    train_flops: int
    gpu_seconds: float | None = None  # None: a ledger from before GPU-seconds were kept
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tokens": self.tokens, "train_flops": self.train_flops}
        if self.gpu_seconds is not None:
            out["gpu_seconds"] = self.gpu_seconds
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerTotal:
        return cls(data["tokens"], data["train_flops"], data.get("gpu_seconds"),
                   unknown_keys(data, ("tokens", "train_flops", "gpu_seconds")))


@dataclass
class Ledger(JsonFile):
    """``OUT/ledger.json``: every completed stage of a plan run with running totals of tokens and FLOPs."""

    stages: list[LedgerRow]
    total: LedgerTotal
    convention: str = LEDGER_CONVENTION
    extra: dict[str, Any] = field(default_factory=dict)

    FILE: ClassVar[str] = LEDGER_FILE

    @classmethod
    def of(cls, records: list[StageRecord]) -> Ledger:
        """The ledger of these stage records, in order."""
        rows, tokens, flops, gpu_s = [], 0, 0, 0.0
        for record in records:
            tokens += record.tokens
            flops += record.train_flops
            gpu_s += record.gpu_seconds or 0.0  # records of older runs lack it
            data = {**record.to_json(), "cumulative_tokens": tokens, "cumulative_train_flops": flops,
                    "cumulative_gpu_seconds": round(gpu_s, 2)}
            rows.append(LedgerRow.from_json(data))
        return cls(rows, LedgerTotal(tokens, flops, round(gpu_s, 2)))

    def to_json(self) -> dict[str, Any]:
        return {"stages": [r.to_json() for r in self.stages], "total": self.total.to_json(),
                "convention": self.convention, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ledger:
        return cls([LedgerRow.from_json(r) for r in data["stages"]], LedgerTotal.from_json(data["total"]),
                   data.get("convention", LEDGER_CONVENTION),
                   unknown_keys(data, ("stages", "total", "convention")))

    def lines(self) -> list[str]:
        """The ledger as a table for the terminal."""
        lines = [f"{'stage':<20} {'params':>12} {'trainable':>12} {'tokens':>14} {'train FLOPs':>12} "
                 f"{'cumulative':>12} {'val loss':>9}"]
        for s in self.stages:
            val = f"{s.final_val_loss:.4f}" if s.final_val_loss is not None else "-"
            lines.append(f"{s.stage:<20} {s.parameters or 0:>12,} {s.trainable_parameters or 0:>12,} "
                         f"{s.tokens:>14,} {s.train_flops:>12.3e} {s.cumulative_train_flops:>12.3e} {val:>9}")
        lines.append(f"{'total':<20} {'':>12} {'':>12} {self.total.tokens:>14,} {self.total.train_flops:>12.3e}")
        return lines
