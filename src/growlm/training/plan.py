"""Growth plans: a progressive-training recipe in one YAML file, run with ``growlm train PLAN.yaml``.

```yaml
out_dir: runs/my-plan
defaults:                 # training config keys shared by every stage
  data: {...}
  seq_len: 256
stages:
  - name: base
    model: nexus-240m     # the first stage names a preset (or init_from)
    tokens: 100_000_000   # token budget (or max_steps)
  - name: to-380m
    grow: {hidden_size: 800, nexus_m: 1340, nexus_a: 1530}
    init: preserve        # growth scheme (default preserve; stack, clone, ...: docs/growth.md)
    moments: carry        # optimizer moments across growth: carry (default) or fresh
    grow_options: {layers_at: end}
    tokens: 30_000_000
    lr: 1.0e-3            # any training config key overrides the defaults for this stage
    trainable: [...]      # glob patterns; frozen: [...]; lora: {...}
```

An optional plan-level ``schedule: {kind, warmup_steps, decay_fraction, min_lr_ratio}`` runs
ONE learning-rate schedule over all stages (warm-up once, growth inside it, one decay at the
end): each stage's config gets ``schedule_start_step`` (the steps of the stages before it)
and ``schedule_total_steps`` (the plan's steps), so its step s takes the schedule's value at
step start + s. The peak lr is the defaults' ``lr``; a stage scales it with ``lr_factor``.
Without ``schedule:`` every stage runs its own schedule from its own step 0.

Each stage grows the previous stage's final checkpoint (if it names ``grow``), trains
from it (``init_from``, with its optimizer moments and data position), and writes,
under ``OUT/stage-NN-name/``, the grown model (``grown/``), the run (``train/``, a normal
run folder) and ``stage.json``, whose presence marks the stage complete. ``ledger.json``
records per stage the tokens, steps, training FLOPs (``train_flops_per_token`` of what
actually trained, see ``accounting.training_flops_per_token``) and the cumulative
totals, so compute comparisons ("X% less compute") come straight from it; evaluation
and growth verification are not counted.

``growlm train --resume OUT`` continues an interrupted plan: completed stages are
skipped, a stage interrupted during training resumes from its newest good checkpoint
(exactly), and growth is redone only if its folder is missing. A plan run that failed before
any stage trained starts over when the corrected plan is run into the same ``out_dir``.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from growlm.errors import ConfigError, GrowlmError, GrowthError, unknown_key_message
from growlm.growth import grow_checkpoint, parse_init
from growlm.growth.grow import check_init, check_moments, check_request, growth_options
from growlm.growth.report import GROWTH_FILE, GrowthReport
from growlm.models import GrowLMConfig, storage
from growlm.models.accounting import model_cost
from growlm.models.presets import build_config
from growlm.models.storage import PLAN_FILE, STAGE_FILE
from growlm.overrides import coerce, read_yaml
from growlm.plotting import plot_loss_curves
from growlm.runtime import RuntimeOptions
from growlm.training.config import SCHEDULES, TrainConfig, build_train_config, field_types
from growlm.training.distributed import join_process_group, rank_device
from growlm.training.layerwise import expand_layerwise
from growlm.training.optim import lr_factor
from growlm.training.records import Ledger, StageRecord
from growlm.training.trainer import read_metrics, resume_run, start_run

logger = logging.getLogger(__name__)

STAGE_KEYS = {"name": str, "grow": dict, "init": str, "grow_options": dict, "grow_seed": int, "tokens": int,
              "moments": str}
PLAN_KEYS = ("out_dir", "defaults", "stages", "layerwise", "description", "schedule")
# keys of a plan's `schedule:` (one schedule over all stages) and their defaults (the training config's)
PLAN_SCHEDULE_KEYS: dict[str, type] = {"kind": str, "warmup_steps": int, "decay_fraction": float,
                                       "min_lr_ratio": float}
# training keys that a plan schedule sets in every stage: giving one in a stage, the defaults or
# --set as well would be silently overruled, so it is refused
SCHEDULE_OWNED = ("schedule", "warmup_steps", "decay_fraction", "min_lr_ratio", "schedule_start_step",
                  "schedule_total_steps")


@dataclass
class Stage:
    index: int
    name: str
    train: dict[str, Any]  # training config keys of this stage (defaults merged)
    grow: dict[str, Any] = field(default_factory=dict)
    init: str = "preserve"
    grow_options: dict[str, Any] = field(default_factory=dict)
    grow_seed: int = 0
    tokens: int | None = None
    moments: str = "carry"  # optimizer moments across this stage's growth: carry | fresh

    @property
    def folder_name(self) -> str:
        return f"stage-{self.index + 1:02d}-{self.name}"


@dataclass
class PlanSchedule:
    """One learning-rate schedule over all of a plan's stages (the plan's ``schedule:``)."""

    kind: str
    warmup_steps: int = TrainConfig.warmup_steps  # the training config's defaults
    decay_fraction: float = TrainConfig.decay_fraction
    min_lr_ratio: float = TrainConfig.min_lr_ratio
    total_steps: int = 0  # the plan's steps, summed over its stages
    starts: list[int] = field(default_factory=list)  # each stage's first step in the schedule

    def describe(self, lr: float) -> str:
        text = f"one {self.kind} schedule over all stages, {self.total_steps:,} steps, peak lr {lr:g}"
        if self.warmup_steps:
            text += f", warm-up {self.warmup_steps:,} steps"
        if self.kind == "wsd":
            decay = max(1, round(self.decay_fraction * self.total_steps))
            text += f", decay over the last {decay:,} (from step {self.total_steps - decay:,})"
        if self.kind != "constant":
            text += f" to {self.min_lr_ratio:g} x lr"
        return text


@dataclass
class Plan:
    out_dir: Path
    stages: list[Stage]
    description: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    schedule: PlanSchedule | None = None


def parse_schedule(values: Any) -> PlanSchedule:
    """A plan's ``schedule:`` mapping, every key and value checked."""
    if not isinstance(values, dict):
        raise ConfigError(f"the plan's schedule must be a mapping with keys {', '.join(PLAN_SCHEDULE_KEYS)}, "
                          f"got {values!r}")
    for key in values:
        if key not in PLAN_SCHEDULE_KEYS:
            raise ConfigError(unknown_key_message("plan schedule key", key, PLAN_SCHEDULE_KEYS))
    checked = {key: coerce(f"schedule.{key}", value, PLAN_SCHEDULE_KEYS[key]) for key, value in values.items()}
    if checked.get("kind") not in SCHEDULES:
        raise ConfigError(f"schedule.kind must be one of {', '.join(SCHEDULES)}, got {checked.get('kind')!r}")
    schedule = PlanSchedule(**checked)
    if schedule.warmup_steps < 0:
        raise ConfigError(f"schedule.warmup_steps must not be negative, got {schedule.warmup_steps}")
    for name in ("decay_fraction", "min_lr_ratio"):
        if not 0 <= getattr(schedule, name) <= 1:
            raise ConfigError(f"schedule.{name} must be in [0, 1], got {getattr(schedule, name)}")
    return schedule


def _check_schedule_keys(label: str, raw: dict[str, Any], defaults: dict[str, Any],
                         overrides: dict[str, Any]) -> None:
    """Under a plan schedule, the schedule's keys come from it alone, and the peak lr from the defaults."""
    if "lr" in raw:
        raise ConfigError(f"{label}: lr is set once for a plan schedule (in defaults: the peak); "
                          "scale one stage's lr with lr_factor instead")
    for where, values in (("", raw), ("defaults: ", defaults), ("--set ", overrides)):
        for key in SCHEDULE_OWNED:
            if key in values:
                raise ConfigError(f"{where or label + ': '}{key} is set by the plan's schedule: "
                                  f"(keys {', '.join(PLAN_SCHEDULE_KEYS)}); remove it here")


def _apply_schedule(schedule: PlanSchedule, stages: list[Stage], out_dir: Path) -> None:
    """Place every stage in the one schedule: its first step and the plan's total steps.

    The schedule counts optimizer steps, which are equal shares of the plan's tokens only when
    every stage takes the same tokens per step; plans that change the batch are refused rather
    than given a schedule that stretches or squeezes in tokens."""
    configs = [checked_stage_config(s, stages, out_dir) for s in stages]
    first = configs[0].tokens_per_step
    for stage, cfg in zip(stages, configs, strict=True):
        if cfg.tokens_per_step != first:
            raise ConfigError(
                f"stage {stage.index + 1} ({stage.name}): a plan schedule counts steps, so every stage needs the "
                f"same tokens per step (seq_len x micro_batch_size x grad_accum_steps): {stages[0].name} has "
                f"{first}, {stage.name} has {cfg.tokens_per_step}; drop schedule: to give each stage its own")
    schedule.starts = [sum(c.max_steps for c in configs[:i]) for i in range(len(configs))]
    schedule.total_steps = sum(c.max_steps for c in configs)
    for stage, start in zip(stages, schedule.starts, strict=True):
        stage.train.update(schedule=schedule.kind, warmup_steps=schedule.warmup_steps,
                           decay_fraction=schedule.decay_fraction, min_lr_ratio=schedule.min_lr_ratio,
                           schedule_start_step=start, schedule_total_steps=schedule.total_steps)


def is_plan(values: Any) -> bool:
    return isinstance(values, dict) and ("stages" in values or "layerwise" in values)


def parse_plan(values: dict[str, Any], overrides: dict[str, Any] | None = None) -> Plan:
    """Check every key of a plan mapping; ``overrides`` (``--set``) apply to every stage."""
    for key in values:
        if key not in PLAN_KEYS:
            raise ConfigError(unknown_key_message("plan key", key, PLAN_KEYS))
    overrides = dict(overrides or {})
    out_dir = overrides.pop("out_dir", values.get("out_dir"))
    if not out_dir:
        raise ConfigError("a plan needs out_dir (the folder its stages are written to)")
    defaults = values.get("defaults") or {}
    stages_in = values.get("stages")
    if "layerwise" in values:  # the layer-wise constructive recipe, expanded into stages
        if stages_in is not None:
            raise ConfigError("a plan gives either stages or layerwise, not both")
        stages_in = expand_layerwise(values["layerwise"])
    if not isinstance(stages_in, list) or not stages_in:
        raise ConfigError("stages must be a non-empty list of stage mappings")
    schedule = parse_schedule(values["schedule"]) if values.get("schedule") is not None else None
    train_types = field_types()
    stages, names = [], set()
    for i, raw in enumerate(stages_in):
        if not isinstance(raw, dict):
            raise ConfigError(f"stage {i + 1} must be a mapping, got {raw!r}")
        label = f"stage {i + 1} ({raw.get('name', 'unnamed')})"
        extra = {k: v for k, v in raw.items() if k in STAGE_KEYS}
        train = {**defaults, **{k: v for k, v in raw.items() if k not in STAGE_KEYS}}
        for key in train:
            if key not in train_types:
                raise ConfigError(f"{label}: " + unknown_key_message("key", key, [*STAGE_KEYS, *train_types]))
        if "out_dir" in train:
            raise ConfigError(f"{label}: out_dir belongs to the plan, not to a stage")
        name = str(extra.get("name") or f"stage{i + 1}")
        if name in names or "/" in name:
            raise ConfigError(f"{label}: stage names must be unique and contain no '/'")
        names.add(name)
        if i == 0 and extra.get("grow"):
            raise ConfigError(f"{label}: the first stage has nothing to grow; give it a model or init_from")
        if i > 0 and (train.get("model") or raw.get("init_from")):
            raise ConfigError(f"{label}: only the first stage names a model; later stages start from the previous one")
        if "tokens" in extra and "max_steps" in raw:
            raise ConfigError(f"{label}: give tokens or max_steps, not both")
        if schedule is not None:
            _check_schedule_keys(label, raw, defaults, overrides)
        stage = Stage(i, name, {**train, **overrides}, dict(extra.get("grow") or {}), str(extra.get("init", "preserve")),
                      dict(extra.get("grow_options") or {}), int(extra.get("grow_seed", 0)), extra.get("tokens"))
        stage.moments = str(extra.get("moments", "carry"))
        try:
            check_moments(stage.moments)
        except GrowthError as exc:
            raise ConfigError(f"{label}: {exc}") from exc
        scheme = parse_init(stage.init)
        if stage.grow:
            check_init(scheme, stage.grow)
        stages.append(stage)
    if schedule is not None:
        _apply_schedule(schedule, stages, Path(out_dir))
    return Plan(Path(out_dir), stages, str(values.get("description", "")), values, schedule)


def load_plan(path: str | Path, overrides: dict[str, Any] | None = None) -> Plan:
    values = read_yaml(path, "plan file")
    if not is_plan(values):
        raise ConfigError(f"{path} is not a plan (no 'stages' list or 'layerwise' recipe)")
    return parse_plan(values, overrides)


def stage_config(stage: Stage, out: Path, init_from: Path | None, check_data: bool = True,
                 prepared_later: frozenset[Path] = frozenset()) -> TrainConfig:
    """The training config of ``stage``. ``check_data=False`` (validating a plan before anything
    exists) accepts a data folder that does not exist yet if it is in ``prepared_later`` (the
    ``out`` of a ``data:`` mapping of the plan, prepared on first use); every other data
    problem -- no ``data`` at all above all -- is the error that training would give."""
    values = dict(stage.train)
    values["out_dir"] = str(out)
    if init_from is not None:
        values["model"] = None
        values["init_from"] = str(init_from)
    if stage.tokens is not None:
        values.pop("max_steps", None)
    if not check_data and isinstance(values.get("data"), str) and Path(values["data"]) in prepared_later:
        values["data"] = "."
    cfg = build_train_config(values)
    if stage.tokens is not None:
        cfg.max_steps = max(1, math.ceil(stage.tokens / cfg.tokens_per_step))
        cfg.validate()
    return cfg


def checked_stage_config(stage: Stage, stages: list[Stage], out_dir: Path) -> TrainConfig:
    """``stage``'s training config checked before anything exists (no model, no data prepared yet):
    what training would refuse is refused here, named by stage."""
    prepared_later = frozenset(Path(s.train["data"]["out"]) for s in stages
                               if isinstance(s.train.get("data"), dict) and s.train["data"].get("out"))
    try:
        return stage_config(stage, out_dir, None if stage.index == 0 else Path("."), check_data=False,
                            prepared_later=prepared_later)
    except ConfigError as exc:
        raise type(exc)(f"stage {stage.index + 1} ({stage.name}): {exc}") from exc


def plan_shapes(plan: Plan) -> list[dict[str, Any]]:
    """Validate every stage's model without building it: config, parameters, FLOPs per token, budget."""
    rows = []
    config: GrowLMConfig | None = None
    for stage in plan.stages:
        cfg = checked_stage_config(stage, plan.stages, plan.out_dir)
        if stage.index == 0:
            if cfg.model is not None:
                config = build_config(cfg.model, cfg.model_overrides)
            elif cfg.init_from is not None:
                config = storage.load_config(storage.resolve_model_dir(cfg.init_from))
            else:
                raise ConfigError(f"stage {stage.name}: the first stage needs model or init_from")
        assert config is not None  # the first stage set it
        changes = {}
        if stage.grow:
            for key in stage.grow_options:
                if key not in growth_options(config.architecture):
                    raise ConfigError(f"stage {stage.name}: " + unknown_key_message(
                        "growth option", key, growth_options(config.architecture)))
            try:
                changes = check_request(config, stage.grow)
            except GrowthError as exc:
                raise GrowthError(f"stage {stage.name}: {exc}") from exc
            config = copy.deepcopy(config)
            for name, (_, value) in changes.items():
                setattr(config, name, value)
            config.validate()
        cost = model_cost(config, cfg.seq_len)
        tokens = cfg.max_steps * cfg.tokens_per_step
        rows.append({"stage": stage.name, "architecture": config.architecture,
                     "changes": {k: [o, n] for k, (o, n) in changes.items()}, "init": stage.init if changes else None,
                     "config": config.field_values(), "parameters": cost.total_params,
                     "train_flops_per_token": cost.train_flops_per_token, "seq_len": cfg.seq_len,
                     "steps": cfg.max_steps, "tokens": tokens,
                     "train_flops_upper_bound": cost.train_flops_per_token * tokens,
                     # the learning rate this stage trains with: its schedule, where it starts in it,
                     # its peak and factor, and the lr of its first and last optimizer step
                     "schedule": cfg.schedule, "schedule_start_step": cfg.schedule_start_step,
                     "lr": cfg.lr, "lr_factor": cfg.lr_factor, "lr_first": cfg.lr * lr_factor(0, cfg),
                     "lr_last": cfg.lr * lr_factor(cfg.max_steps - 1, cfg)})
    return rows


def plan_lr_curve(plan: Plan) -> list[float]:
    """The learning rate of every optimizer step of the plan, stage after stage (what training will use)."""
    curve: list[float] = []
    for stage in plan.stages:
        cfg = checked_stage_config(stage, plan.stages, plan.out_dir)
        curve += [cfg.lr * lr_factor(step, cfg) for step in range(cfg.max_steps)]
    return curve


def sparkline(values: list[float], width: int = 64) -> str:
    """``values`` as one line of block characters (the largest is a full block), ``width`` wide at most."""
    if not values:
        return ""
    top = max(values) or 1.0
    blocks = " ▁▂▃▄▅▆▇█"
    picks = [values[min(len(values) - 1, i * len(values) // width)] for i in range(min(width, len(values)))]
    return "".join(blocks[max(1, round(v / top * (len(blocks) - 1)))] for v in picks)



def plan_lines(plan: Plan, rows: list[dict[str, Any]], name: str | Path) -> list[str]:
    """``growlm plan show``'s table of plan ``name``: each stage's shape, parameters, FLOPs and tokens
    (``rows`` from :func:`plan_shapes`), then the learning rate stage by stage and as a sparkline."""
    lines = [f"plan {name}: {len(rows)} stage(s), out_dir {plan.out_dir}"]
    width = max(16, *(len(r["stage"]) for r in rows))  # long names (blocks-07-09-holistic) keep the columns
    total = 0
    for r in rows:
        changes = ", ".join(f"{k} {o}->{n}" for k, (o, n) in r["changes"].items()) or "from " + (
            r["architecture"] + " preset/init")
        total += r["train_flops_upper_bound"]
        lines.append(f"  {r['stage']:<{width}} {r['architecture']:<11} {r['parameters'] / 1e6:9.2f}M params  "
                     f"{r['train_flops_per_token'] / 1e9:7.3f} GFLOP/token  {r['tokens']:>15,} tokens  "
                     f"{r['train_flops_upper_bound']:.3e} FLOPs  [{changes}"
                     f"{'; init ' + r['init'] if r['init'] else ''}]")
    lines.append(f"  total training FLOPs (everything trainable): {total:.3e}")
    curve = plan_lr_curve(plan)
    lines.append("learning rate: " + (plan.schedule.describe(rows[0]["lr"]) if plan.schedule
                                      else "each stage runs its own schedule from its own step 0"))
    start = 0
    for r in rows:
        factor = f" (lr_factor {r['lr_factor']:g})" if r["lr_factor"] != 1.0 else ""
        lines.append(f"  {r['stage']:<{width}} {r['schedule']:<8} plan steps {start:>9,} - "
                     f"{start + r['steps'] - 1:<9,} lr {r['lr_first']:.3e} -> {r['lr_last']:.3e}{factor}")
        start += r["steps"]
    lines.append(f"  {sparkline(curve)}  (lr over {len(curve):,} steps)")
    return lines

def _final_checkpoint(run_dir: Path) -> Path:
    found = storage.latest_good_checkpoint(run_dir)
    if found is None:
        raise GrowlmError(f"{run_dir} finished without a usable checkpoint")
    return found


def _process_group(plan: Plan) -> tuple[bool, Any]:
    """Under torchrun: join the process group now (for the device the stages train on), so that
    rank 0 can grow while the others wait."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        join_process_group(rank_device(str(plan.stages[0].train.get("device", "auto"))))
    main = not dist.is_initialized() or dist.get_rank() == 0
    return main, (dist.barrier if dist.is_initialized() else (lambda: None))


def run_plan(plan: Plan, resume: bool = False, options: RuntimeOptions | None = None) -> Ledger | None:
    """Run (or continue) every stage; returns the ledger (None on processes other than rank 0). Under
    torchrun all processes train; rank 0 alone grows models (on full checkpoints) and writes the stage
    records and the ledger, the others wait for it.

    A plan run that fails before any stage has trained is no dead end: the error says so, and
    running the corrected plan file into the same ``out_dir`` starts it over. ``options``: the fused
    paths and kernels every stage's model takes (default: auto)."""
    try:
        return _run_plan(plan, resume, options)
    except GrowlmError as exc:
        out = plan.out_dir
        if not ((out / PLAN_FILE).exists() and nothing_trained(out)):
            raise
        raise type(exc)(f"{exc} -- no stage of {out} has trained yet: fix the plan file and run "
                        f"`growlm train PLAN.yaml` again, which starts over in {out}") from exc


def _run_plan(plan: Plan, resume: bool, options: RuntimeOptions | None) -> Ledger | None:
    out = plan.out_dir
    main, barrier = _process_group(plan)
    plan_shapes(plan)  # every stage's request is checked before anything is written
    if (out / PLAN_FILE).exists() and not resume and main:
        if not nothing_trained(out):
            raise ConfigError(f"out_dir {out} already holds a plan run; continue it with "
                              f"`growlm train --resume {out}`")
        # nothing to lose: the earlier attempt failed before any stage trained, so this plan replaces it
        logger.info(f"out_dir {out} holds a plan run in which no stage has trained: starting it again with this plan")
        for folder in out.glob("stage-*"):
            shutil.rmtree(folder)
    barrier()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            (out / PLAN_FILE).write_text(yaml.safe_dump({**plan.source, "out_dir": str(out)}, sort_keys=False))
    records: list[StageRecord] = []
    previous: Path | None = None
    for stage in plan.stages:
        folder = out / stage.folder_name
        marker = folder / STAGE_FILE
        barrier()
        if marker.exists():
            record = StageRecord.read(folder)
            records.append(record)
            previous = Path(record.final_checkpoint)
            logger.info(f"stage {stage.index + 1}/{len(plan.stages)} {stage.name}: complete, skipped")
            continue
        if main:
            logger.info(f"stage {stage.index + 1}/{len(plan.stages)} {stage.name}")
            folder.mkdir(parents=True, exist_ok=True)
        started = time.time()
        source = previous
        growth: GrowthReport | None = None
        if stage.grow:
            if previous is None:  # parse_plan refuses a first stage that grows
                raise ConfigError(f"stage {stage.name}: the first stage cannot grow (nothing to grow yet)")
            grown = folder / "grown"
            if main and not (grown / GROWTH_FILE).exists():
                shutil.rmtree(grown, ignore_errors=True)
                grow_checkpoint(previous, grown, stage.grow, parse_init(stage.init), seed=stage.grow_seed,
                                options=stage.grow_options, moments=stage.moments)
            barrier()
            # read back from the file on every process (rank 0 alone grew), and on a resumed stage
            growth = GrowthReport.read(grown)
            check = growth.verification
            if check is not None and not check.passed:
                raise GrowlmError(f"stage {stage.name}: the grown model in {grown} failed its verification "
                                  f"({check.expectation}); see growth.json")
            source = grown
        run_dir = folder / "train"
        resuming = bool(storage.list_checkpoints(run_dir))
        barrier()
        if resuming:
            summary = resume_run(run_dir, options=options)
        else:
            if main:
                shutil.rmtree(run_dir, ignore_errors=True)
            barrier()
            summary = start_run(stage_config(stage, run_dir, source), options)
        barrier()
        if not main:
            previous = _final_checkpoint(run_dir)
            continue
        assert summary is not None  # rank 0 has the run's summary
        record = StageRecord(
            stage=stage.name,
            index=stage.index,
            grew=growth.changes if growth else {},
            init=growth.init if growth else None,
            growth_verified=growth.verification.passed if growth and growth.verification else None,
            parameters=summary.parameters,
            trainable_parameters=summary.trainable_parameters,
            steps=summary.steps,
            tokens=summary.tokens,
            train_flops_per_token=summary.train_flops_per_token,
            train_flops=summary.train_flops,
            final_train_loss=summary.final_train_loss,
            final_val_loss=summary.final_val_loss,
            seconds=round(time.time() - started, 1),
            # the trainer's own clock: the optimizer steps alone (no growth, loading, evaluation,
            # saving), summed over sessions; x the processes that trained: GPU-seconds
            train_seconds=summary.train_seconds,
            gpu_seconds=round(summary.train_seconds * (summary.world_size or 1), 2),
            # from the stage's start (growth included) to its first optimizer step, and the speeds
            # without (steady) and with (wall) loading, compiling, evaluating and saving
            stage_to_first_step_s=round(summary.first_step_at - started, 2) if summary.first_step_at else None,
            steady_tokens_per_s=summary.steady_tokens_per_s,
            wall_tokens_per_s=summary.wall_tokens_per_s,
            final_checkpoint=str(_final_checkpoint(run_dir)),
        )
        record.write(folder)
        records.append(record)
        Ledger.of(records).write(out)
        previous = Path(record.final_checkpoint)
    if not main:
        return None
    ledger = Ledger.of(records)
    ledger.write(out)
    plot_plan(out)
    plot_plan_lr(out)
    return ledger


def nothing_trained(out: Path) -> bool:
    """True when no stage of the plan run in ``out`` has finished or written a checkpoint."""
    return not any(out.glob(f"stage-*/{STAGE_FILE}")) and not any(
        storage.list_checkpoints(folder / "train") for folder in out.glob("stage-*"))


def resume_plan(out: str | Path, overrides: dict[str, Any] | None = None,
                options: RuntimeOptions | None = None) -> Ledger | None:
    """Continue the plan run in ``out`` with the plan it was started with (``OUT/plan.yaml``)."""
    out = Path(out)
    plan = load_plan(out / PLAN_FILE, {**(overrides or {}), "out_dir": str(out)})
    return run_plan(plan, resume=True, options=options)


def _stage_metrics(out: Path) -> Iterator[tuple[int, StageRecord, list[dict[str, Any]], int]]:
    """Each stage in the ledger of the plan run in ``out``, in order: its position, its record, the
    metrics its training logged, and the tokens trained before it (its offset on a cumulative axis)."""
    offset = 0
    for i, record in enumerate(Ledger.read(out).stages):
        folder = next(out.glob(f"stage-{record.index + 1:02d}-*"))
        yield i, record, read_metrics(folder / "train"), offset
        offset += record.tokens


def plot_plan(out: Path) -> Path | None:
    """Loss across all stages against cumulative tokens, growth points marked."""
    curves: list[dict[str, Any]] = []
    markers: list[tuple[float, str]] = []
    for i, record, rows, offset in _stage_metrics(out):
        colour = f"C{i % 10}"
        curves.append({"label": f"{record.stage}: train", "x": [r["tokens"] + offset for r in rows if "loss" in r],
                       "y": [r["loss"] for r in rows if "loss" in r], "color": colour})
        val = [r for r in rows if "val_loss" in r]
        curves.append({"label": f"{record.stage}: val", "x": [r["tokens"] + offset for r in val],
                       "y": [r["val_loss"] for r in val], "style": "o--", "color": colour})
        if record.grew:
            markers.append((offset, "grow " + ", ".join(f"{k}={c.new}" for k, c in record.grew.items())))
    if not curves:
        return None
    return plot_loss_curves(curves, out / "loss.png", title=f"{out.name}: loss across stages", markers=markers,
                            x_label="training tokens (cumulative)")


def plot_plan_lr(out: Path) -> Path | None:
    """The learning rate of every logged step across all stages against cumulative tokens
    (``OUT/lr.png``): one schedule over the plan, or each stage's own."""
    curves: list[dict[str, Any]] = []
    markers: list[tuple[float, str]] = []
    for i, record, rows, offset in _stage_metrics(out):
        lr_rows = [r for r in rows if "lr" in r]
        curves.append({"label": record.stage, "x": [r["tokens"] + offset for r in lr_rows],
                       "y": [r["lr"] for r in lr_rows], "color": f"C{i % 10}"})
        if record.grew:
            markers.append((offset, "grow"))
    if not any(c["x"] for c in curves):
        return None
    return plot_loss_curves(curves, out / "lr.png", title=f"{out.name}: learning rate across stages",
                            markers=markers, x_label="training tokens (cumulative)", y_label="learning rate")
