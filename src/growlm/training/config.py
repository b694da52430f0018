"""The training configuration: one flat YAML mapping, every key checked.

A config names a model (a preset plus field overrides, or ``init_from`` a saved
model), a prepared data folder, and the optimisation and bookkeeping settings below.
``--set KEY=VALUE`` overrides any key; ``--set model_overrides.FIELD=VALUE`` sets one
field of the model config. Unknown keys and values of the wrong type are errors
that name the key and the valid choices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from growlm.errors import ConfigError, unknown_key_message
from growlm.overrides import coerce, read_yaml

SCHEDULES = ("cosine", "wsd", "constant")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    # what to train
    model: str | None = None  # preset name, e.g. nexus-tiny
    model_overrides: dict = field(default_factory=dict)  # model config fields to change
    init_from: str | None = None  # a saved model or checkpoint folder, or a run folder (its latest checkpoint)
    init_optimizer: bool = True  # with init_from: also take its optimizer moments when it has them
    continue_data: bool = True  # with init_from: start the data stream where that run stopped
    trainable: list | None = None  # glob patterns: only matching parameters train
    frozen: list = field(default_factory=list)  # glob patterns: parameters to freeze
    lora: dict | None = None  # LoRA adapters through peft: {target_modules, r, alpha, dropout}
    # data
    data: Any = None  # a folder written by `growlm data prepare`, or a mapping to prepare one (DATA_SPEC_KEYS)
    seq_len: int = 256
    micro_batch_size: int = 16
    grad_accum_steps: int = 1
    # schedule
    max_steps: int = 1000
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # final learning rate as a fraction of lr
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | wsd (warmup-stable-decay) | constant (after warmup)
    decay_fraction: float = 0.2  # wsd: the last fraction of steps spent decaying
    lr_factor: float = 1.0  # multiplies the scheduled lr (a plan stage's post-growth lr raise)
    # One schedule spread over several runs (a plan's `schedule:`): this run's step s is the
    # schedule's step schedule_start_step + s of schedule_total_steps (0: this run's own max_steps).
    schedule_start_step: int = 0
    schedule_total_steps: int = 0
    # optimizer (AdamW)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    # system
    device: str = "auto"  # auto picks cuda when available
    dtype: str = "auto"  # auto: bf16 autocast on cuda, fp32 on cpu
    compile: Any = "auto"  # torch.compile: auto (on CUDA), true, false, regional (per layer), graphs (+CUDA graphs)
    distributed: str = "auto"  # under torchrun: auto (= ddp), ddp, fsdp; none for one process
    activation_checkpointing: bool = False  # recompute each block in backward to save memory
    loss_chunk_tokens: int = 0  # > 0: cross-entropy in chunks of this many tokens, logits never all at once
    mfu_peak_tflops: float = 0.0  # for the MFU column; 0 measures the bf16 matmul rate at start (CUDA)
    tensorboard: bool = True  # also log to OUT/tensorboard when tensorboard is installed
    seed: int = 0
    deterministic: bool = False  # bit-identical GPU runs and resumes: deterministic kernels, slower (determinism.py)
    # bookkeeping
    out_dir: str = "runs/run"
    log_every: int = 10
    eval_every: int = 100
    eval_batches: int = 20
    checkpoint_every: int = 200
    keep_last: int = 0  # keep only the newest N checkpoints; 0 keeps all
    snapshots: int = 0  # >= 2: weights-only snapshots at N evenly spaced steps, the start (step 0) and end included
    snapshot_every_tokens: int = 0  # > 0: a weights-only snapshot at step 0 and every time this many tokens pass
    max_bad_steps: int = 10  # stop after this many non-finite losses in a row
    progress: bool = True

    def validate(self) -> None:
        if (self.model is None) == (self.init_from is None):
            raise ConfigError("set exactly one of 'model' (a preset name) and 'init_from' (a saved model)")
        if self.init_from is not None and self.model_overrides:
            raise ConfigError("model_overrides apply to a preset ('model'); a saved model is changed with "
                              "`growlm grow`, not with overrides")
        check_data_spec(self.data)
        if self.lora is not None:
            from growlm.training.trainable import check_lora_spec

            check_lora_spec(self.lora)
        for name in ("seq_len", "micro_batch_size", "grad_accum_steps", "max_steps", "log_every",
                     "eval_every", "eval_batches", "checkpoint_every", "max_bad_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.snapshots < 0 or self.snapshots == 1:
            raise ConfigError(f"snapshots must be 0 (off) or at least 2 (the start and the end), got {self.snapshots}")
        if self.snapshot_every_tokens < 0:
            raise ConfigError(f"snapshot_every_tokens must not be negative, got {self.snapshot_every_tokens}")
        if self.snapshots and self.snapshot_every_tokens:
            raise ConfigError("give snapshots (a count) or snapshot_every_tokens (an interval), not both")
        for name in ("warmup_steps", "keep_last", "schedule_start_step", "schedule_total_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("lr", "eps", "lr_factor"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("beta1", "beta2", "min_lr_ratio", "decay_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        from growlm.training.compiling import check_mode

        check_mode(self.compile)
        if self.loss_chunk_tokens < 0 or self.mfu_peak_tflops < 0:
            raise ConfigError("loss_chunk_tokens and mfu_peak_tflops must not be negative")
        if self.model is not None:
            from growlm.models.presets import build_config

            build_config(self.model, self.model_overrides)  # a bad model field fails here, named
        for name, choices in (("schedule", SCHEDULES), ("device", DEVICES), ("dtype", DTYPES),
                              ("distributed", ("auto", "none", "ddp", "fsdp"))):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.micro_batch_size * self.grad_accum_steps


def snapshot_steps(cfg: TrainConfig, tokens_per_step: int) -> list[int]:
    """The steps after which a weights-only snapshot is kept (0: before the first step).

    ``snapshots: N`` spaces N snapshots evenly over the run, ``round(k * max_steps / (N - 1))``
    for k = 0..N-1 (fewer when the run has fewer than N - 1 steps); ``snapshot_every_tokens: T``
    takes step 0 and, for every k >= 1 with ``k * T`` within the run, the first step at which
    at least ``k * T`` tokens have been seen, ``ceil(k * T / tokens_per_step)``.
    """
    if cfg.snapshots:
        return sorted({round(k * cfg.max_steps / (cfg.snapshots - 1)) for k in range(cfg.snapshots)})
    if cfg.snapshot_every_tokens:
        every, total = cfg.snapshot_every_tokens, cfg.max_steps * tokens_per_step
        return sorted({-(-k * every // tokens_per_step) for k in range(total // every + 1)})
    return []


_OPTIONAL = {"model", "init_from", "trainable", "lora"}
_TYPES = {"trainable": list, "frozen": list, "lora": dict, "model_overrides": dict, "compile": object}

# Keys of a `data:` mapping: the arguments of `growlm data prepare`, prepared once into `out`.
DATA_SPEC_KEYS: dict[str, type] = {
    "inputs": list,
    "val": list,
    "tokenizer": str,
    "out": str,
    "val_fraction": float,
    "text_field": str,
    "max_docs_per_file": int,
    "max_tokens": int,
}


STREAM_KEYS = {"sources": list, "tokenizer": str, "val": dict}


def check_data_spec(data: Any) -> None:
    """``data`` is a prepared folder, a mapping that says how to prepare one, or a mapping of ``sources``."""
    if isinstance(data, dict) and "sources" in data:
        from growlm.data.sources import check_source

        for key in data:
            if key not in STREAM_KEYS:
                raise ConfigError(unknown_key_message("data key (with sources)", key, STREAM_KEYS))
        if not isinstance(data["sources"], list) or not data["sources"]:
            raise ConfigError("data.sources must be a non-empty list of sources")
        for i, source in enumerate(data["sources"]):
            check_source(source, f"data.sources[{i}]")
        if any("dataset" in s for s in data["sources"]) and not data.get("tokenizer"):
            raise ConfigError("data.tokenizer is required when a source is a dataset")
        if not data.get("tokenizer"):
            first = data["sources"][0]["prepared"]
            data["tokenizer"] = str(Path(first) / "tokenizer")
        if data.get("val") is not None:
            check_source(data["val"], "data.val")
        return
    if isinstance(data, str):
        if not Path(data).exists():
            raise ConfigError(f"data folder '{data}' does not exist; prepare it with `growlm data prepare`")
        return
    if not isinstance(data, dict):
        raise ConfigError("'data' must name a folder written by `growlm data prepare`, or be a mapping with "
                          f"keys {', '.join(DATA_SPEC_KEYS)} (inputs, tokenizer and out required)")
    for key, value in data.items():
        if key not in DATA_SPEC_KEYS:
            raise ConfigError(unknown_key_message("data key", key, DATA_SPEC_KEYS))
        coerce(f"data.{key}", value, DATA_SPEC_KEYS[key], optional=True)
    for key in ("inputs", "tokenizer", "out"):
        if not data.get(key):
            raise ConfigError(f"data.{key} is required when 'data' is a mapping")


def field_types() -> dict[str, type]:
    """Every training config key with the type its value must have."""
    types: dict[str, type] = {}
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        types[f.name] = _TYPES.get(f.name, str if default is None else type(default))
    return types


def build_train_config(values: dict[str, Any], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A validated :class:`TrainConfig` from a mapping plus ``--set`` overrides."""
    types = field_types()
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for key, value in (overrides or {}).items():
        head, dot, rest = key.partition(".")
        if dot:
            nested = head in ("model_overrides", "lora") or (head == "data" and isinstance(merged.get(head), dict))
            if not nested:
                raise ConfigError(unknown_key_message("training config key", key, types))
            merged.setdefault(head, {})
            merged[head] = {**(merged[head] or {}), rest: value}
        else:
            merged[key] = value
    checked: dict[str, Any] = {}
    for key, value in merged.items():
        if key not in types:
            raise ConfigError(unknown_key_message("training config key", key, types))
        if key == "data":
            checked[key] = dict(value) if isinstance(value, dict) else value
        elif key == "model_overrides":
            value = value or {}
            if not isinstance(value, dict):
                raise ConfigError(f"{key} must be a mapping, got {value!r}")
            checked[key] = value
        else:
            checked[key] = coerce(key, value, types[key], optional=key in _OPTIONAL)
    config = TrainConfig(**checked)
    config.validate()
    return config


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    values = read_yaml(path, "config file") or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values")
    return build_train_config(values, overrides)
