"""``growlm train``: CPU, one GPU or several processes (``training/distributed.py``), resumable exactly.

The loop is deliberately plain: take ``grad_accum_steps`` micro-batches from the
data position, back-propagate, clip, step AdamW and the LambdaLR schedule, log,
evaluate, checkpoint. Everything that decides what happens next -- weights,
optimizer and scheduler state, RNG, the data position and the loss accumulator of
the current logging window -- is in every checkpoint, so a run killed at any moment
and resumed with ``--resume`` logs the same losses as one that never stopped.

The :class:`Trainer` owns the model, optimizer and schedule and runs the loop; its parts
are components with their own state: the data (``data/loader.py``), the progress counters
(:class:`~growlm.training.state.TrainState`), the checkpoints
(:class:`~growlm.training.checkpoint_manager.CheckpointManager`) and what the run reports
(``training/metrics.py``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from growlm.data.loader import open_training_data, resolve_data  # noqa: F401  (resolve_data: kept importable here)
from growlm.errors import CheckpointError, ConfigError, GrowlmError
from growlm.evaluation.perplexity import autocast_context, evaluate_loss
from growlm.models import apply_runtime, storage
from growlm.models.accounting import model_cost, training_flops_per_token
from growlm.models.storage import base_model
from growlm.runtime import RuntimeOptions
from growlm.system import measure_matmul_flops, pick_autocast
from growlm.training.checkpoint_manager import CheckpointManager, resume_point
from growlm.training.compiling import compile_model
from growlm.training.config import TrainConfig, build_train_config, snapshot_steps
from growlm.training.determinism import deterministic_mode
from growlm.training.distributed import grad_norm_value, inner, sync_gradients, wrap
from growlm.training.distributed import setup as setup_runtime
from growlm.training.metrics import (  # noqa: F401  (read_metrics, summary_line, STEADY_SKIP_STEPS: kept importable)
    METRICS_FILE,
    STEADY_SKIP_STEPS,
    MetricsLogger,
    RunFacts,
    SessionSpeed,
    read_metrics,
    step_row,
    summary_line,
)
from growlm.training.model_setup import model_to_train
from growlm.training.optim import build_optimizer, build_scheduler, warmup_warning
from growlm.training.records import SUMMARY_FILE, RunSummary
from growlm.training.state import TrainState
from growlm.training.trainable import set_trainable

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"


class _StopRequest:
    """SIGTERM/SIGINT set a flag; the loop checkpoints at the end of the current step and exits."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: signals stay with the caller
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """One training run (or one resumed part of it): builds everything in ``__init__``, trains in :meth:`run`."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, options: RuntimeOptions | None = None) -> None:
        self.started = time.time()  # stage start: time to the first optimizer step is counted from here
        self.cfg = cfg
        self.options = options or RuntimeOptions()  # fused paths and kernels (growlm/runtime.py)
        self.out = Path(cfg.out_dir)
        # deterministic: set before anything touches CUDA (cuBLAS reads its workspace setting once);
        # undone when run() ends
        self._modes = contextlib.ExitStack()
        self._modes.enter_context(deterministic_mode(cfg.deterministic, cfg.seed))
        try:
            self.runtime, self.device = setup_runtime(cfg.distributed, cfg.device)
            self.autocast = pick_autocast(cfg.dtype, self.device)
            runtime = self.runtime
            self.data = open_training_data(cfg.data, cfg.seq_len, cfg.seed, runtime.rank, runtime.world,
                                           runtime.barrier)
            self.metrics = MetricsLogger(self.out, runtime.main, cfg.tensorboard)
            self.state = TrainState()
            self.bad_steps_in_a_row = 0  # not saved: a resumed run counts afresh
            resume_from = resume_point(self.out, runtime) if resume else None
            model, init_source = model_to_train(cfg, self.data.tokenizer, self.device, resume_from)
            self.trainable_params, self.total_params = set_trainable(model, cfg.trainable, cfg.frozen,
                                                                     cfg.lora is not None)
            if self.trainable_params == 0:
                raise ConfigError("no parameter is trainable: check 'trainable', 'frozen' and 'lora'")
            self.base = base_model(model)
            self.base.model.gradient_checkpointing = cfg.activation_checkpointing
            apply_runtime(model, self.options)  # before compiling: a graph keeps what it was traced with
            self.facts = RunFacts(world_size=runtime.world, deterministic=cfg.deterministic,
                                  parameters=model_cost(self.base.config, cfg.seq_len).total_params,
                                  trainable_parameters=self.trainable_params,
                                  train_flops_per_token=training_flops_per_token(model, cfg.seq_len),
                                  compile=cfg.compile)
            self.model = wrap(model, runtime, self.device, self.autocast)
            self.optimizer, self.param_names = build_optimizer(inner(self.model), cfg, self.device)
            self.scheduler = build_scheduler(self.optimizer, cfg)
            self.checkpoints = CheckpointManager(cfg, runtime, self.model, self.optimizer, self.scheduler,
                                                 self.param_names, self.data, self.state, self.facts)
            if resume_from is not None:
                self.checkpoints.restore(resume_from)
                self.metrics.truncate_after(self.state.step)
                self.say(f"resumed from {resume_from} at step {self.state.step}")
            elif init_source is not None:
                self.checkpoints.start_from(init_source)
            self.forward = compile_model(self.model, cfg.compile, self.device)
            self.peak_flops = cfg.mfu_peak_tflops * 1e12 if cfg.mfu_peak_tflops else (
                measure_matmul_flops(self.device) if self.device.type == "cuda" else 0.0)
            self.session = SessionSpeed(self.started, self.tokens_per_step)
        except BaseException:
            self._modes.close()
            raise

    def say(self, message: str) -> None:
        """Log ``message`` from rank 0 (every rank runs the loop; one says what happens)."""
        if self.runtime.main:
            logger.log(logging.WARNING if message.startswith("warning:") else logging.INFO, message)

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.tokens_per_step * self.runtime.world

    # -- the loop ----------------------------------------------------------------------------
    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the next global micro-batch."""
        micro = self.cfg.micro_batch_size
        batch = self.data.batch(self.state.data_position, self.runtime.rank, micro)
        self.state.data_position += micro * self.runtime.world
        return batch

    def _step(self) -> tuple[float, float]:
        cfg, runtime = self.cfg, self.runtime
        self.model.train()
        total = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum_steps):
            x, y = self._next_batch()
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with sync_gradients(self.model, runtime, micro == cfg.grad_accum_steps - 1), \
                    autocast_context(self.device, self.autocast):
                loss = self.forward(input_ids=x, shift_labels=y, use_cache=False,
                                    loss_chunk_tokens=cfg.loss_chunk_tokens).loss / cfg.grad_accum_steps
                loss.backward()
            total += loss.detach()
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = grad_norm_value(torch.nn.utils.clip_grad_norm_(params, max_norm))
        loss_value = float(runtime.mean(total))
        if math.isfinite(loss_value) and math.isfinite(grad_norm):
            self.optimizer.step()
            self.bad_steps_in_a_row = 0
        else:
            self.state.bad_steps_total += 1
            self.bad_steps_in_a_row += 1
            self.say(f"warning: non-finite loss or gradient at step {self.state.step + 1}; step skipped")
            if self.bad_steps_in_a_row >= cfg.max_bad_steps:
                self.save()
                raise GrowlmError(f"{cfg.max_bad_steps} non-finite steps in a row (last at step "
                                  f"{self.state.step + 1}); stopping. Lower lr or check the data.")
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, grad_norm

    def _time_step(self, tic: float) -> None:
        """Account one step of this session; the first one waits for the GPU, so that the time
        to the first optimizer step is real."""
        if self.session.steps == 0 and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.session.add_step(tic, time.time())

    def speed(self) -> dict[str, Any]:
        """This session's speed figures (:meth:`SessionSpeed.figures`)."""
        return self.session.figures(time.time(), self.facts, self.peak_flops)

    def validate(self) -> dict[str, float] | None:
        if self.data.val_split is None:
            return None
        return evaluate_loss(self.model, self.data.val_split, self.cfg.seq_len, self.cfg.micro_batch_size,
                             self.cfg.eval_batches, self.device, self.autocast, runtime=self.runtime)

    def save(self) -> Path | None:
        """A checkpoint of the full (unsharded) state, written by rank 0; collective under FSDP."""
        return self.checkpoints.save()

    def snapshot(self) -> Path | None:
        """A weights-only snapshot of the current step (training config ``snapshots``)."""
        return self.checkpoints.snapshot()

    def run(self) -> RunSummary | None:
        """Train to ``max_steps``; the run's summary (None on processes other than rank 0)."""
        with self._modes:
            return self._run()

    def _run(self) -> RunSummary | None:
        cfg, st, runtime = self.cfg, self.state, self.runtime
        if runtime.main:
            self.out.mkdir(parents=True, exist_ok=True)
        warning = warmup_warning(cfg) if cfg.schedule_start_step + st.step < cfg.warmup_steps else None
        if warning:
            self.say(warning)
        self.metrics.open()
        bar = tqdm(total=cfg.max_steps, initial=st.step, unit="step", disable=not (cfg.progress and runtime.main),
                   dynamic_ncols=True, desc=self.out.name)
        window_start, window_tokens = time.time(), 0
        last_val: dict[str, float] | None = None
        snapshots = set(snapshot_steps(cfg, self.tokens_per_step))
        if 0 in snapshots and st.step == 0:
            self.snapshot()  # the starting point: after growth, the growth point itself
        with _StopRequest() as stop:
            while st.step < cfg.max_steps:
                tic = time.time()
                loss, grad_norm = self._step()
                self._time_step(tic)
                st.step += 1
                st.tokens += self.tokens_per_step
                st.elapsed_s += time.time() - tic
                window_tokens += self.tokens_per_step
                if math.isfinite(loss):
                    st.window_loss_sum += loss
                    st.window_steps += 1
                step = st.step
                final = step == cfg.max_steps
                row: dict[str, Any] = {}
                is_eval = step % cfg.eval_every == 0 or final
                if (step % cfg.log_every == 0 or final or is_eval) and st.window_steps:
                    row = step_row(st, float(self.scheduler.get_last_lr()[0]), grad_norm, time.time() - window_start,
                                   window_tokens, self.facts, self.peak_flops, self.device)
                    window_start, window_tokens = time.time(), 0
                    bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
                if is_eval:
                    last_val = self.validate()
                    if last_val is not None and row:
                        row.update(val_loss=last_val["loss"], val_ppl=last_val["perplexity"],
                                   val_bpb=last_val["bits_per_byte"])
                        self.say(f"step {step}: val loss {last_val['loss']:.4f}, ppl {last_val['perplexity']:.2f}")
                    window_start = time.time()
                if row:
                    self.metrics.write(row)
                bar.update(1)
                if step in snapshots:
                    self.snapshot()
                stopping = runtime.anyone(stop.signal is not None, self.device)
                if step % cfg.checkpoint_every == 0 or final or stopping:
                    path = self.save()
                    if stopping:
                        bar.close()
                        self.say(f"stopped by a signal at step {step}; checkpoint {path}; "
                                 f"continue with `growlm train --resume {self.out}`")
                        raise SystemExit(128 + (stop.signal or signal.SIGTERM))
        bar.close()
        self.metrics.close()
        if last_val is None and self.session.steps == 0:
            last_val = self.validate()  # resumed at the final checkpoint (killed before its summary)
        return self.finish(last_val)

    def finish(self, last_val: dict[str, float] | None) -> RunSummary | None:
        stream = self.data.stream
        skipped = sum(self.runtime.gather(stream.skipped_documents)) if stream is not None else None
        if not self.runtime.main:
            return None
        checkpoints = storage.list_checkpoints(self.out)
        return self.metrics.finish(self.state, last_val, self.facts, self.speed,
                                   checkpoints[-1] if checkpoints else None, skipped, self.base.config.architecture)


def start_run(cfg: TrainConfig, options: RuntimeOptions | None = None) -> RunSummary | None:
    """Begin a new run in ``cfg.out_dir``, refusing to overwrite an existing one; returns its summary
    (None on processes other than rank 0). ``options``: the fused paths and kernels the model takes
    (default: auto)."""
    out = Path(cfg.out_dir)
    if storage.list_checkpoints(out) or (out / METRICS_FILE).exists():
        raise ConfigError(f"out_dir {out} already holds a run; continue it with `growlm train --resume {out}` "
                          "or choose another out_dir")
    if _is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return Trainer(cfg, options=options).run()


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _resume_config(run_dir: Path, overrides: dict[str, Any] | None) -> TrainConfig:
    config_path = run_dir / CONFIG_FILE
    if not config_path.exists():
        raise CheckpointError(f"{run_dir} is not a training run (no {CONFIG_FILE})")
    values = yaml.safe_load(config_path.read_text())
    values["out_dir"] = str(run_dir)
    return build_train_config(values, overrides)


def finished_step(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> int | None:
    """The step at which the run in ``run_dir`` finished, or None when ``--resume`` has work to do.

    A run is finished when it wrote ``summary.json`` and its newest good checkpoint is at (or
    past) ``max_steps`` -- the saved one, or the one ``overrides`` set, so ``--set max_steps=N``
    with a larger N still extends it. A run whose last checkpoint is final but whose summary
    is missing (killed while finishing) is not: resuming writes its summary."""
    run_dir = Path(run_dir)
    cfg = _resume_config(run_dir, overrides)
    if not (run_dir / SUMMARY_FILE).exists():
        return None
    checkpoints = storage.list_checkpoints(run_dir)
    if not checkpoints or _checkpoint_step(checkpoints[-1]) < cfg.max_steps:
        return None  # work to do: no checksums read (they are, once, when training resumes)
    newest = storage.latest_good_checkpoint(run_dir)
    step = _checkpoint_step(newest) if newest is not None else -1
    return step if step >= cfg.max_steps else None


def _checkpoint_step(folder: Path) -> int:
    try:
        return int(storage.load_trainer_state(folder)["step"])
    except (CheckpointError, ValueError, KeyError):
        return -1  # unreadable: not a finished run's checkpoint


def resume_run(run_dir: str | Path, overrides: dict[str, Any] | None = None,
               options: RuntimeOptions | None = None) -> RunSummary | None:
    """Continue the run in ``run_dir`` from its newest good checkpoint (``--set`` may extend it).

    A finished run (:func:`finished_step`) is left exactly as it is -- no file is rewritten --
    and its ``summary.json`` is returned."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    cfg = _resume_config(run_dir, overrides)
    if finished_step(run_dir, overrides) is not None:
        return RunSummary.read(run_dir) if _is_main_process() else None
    if overrides and _is_main_process():
        config_path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    with contextlib.suppress(FileExistsError):
        run_dir.mkdir(parents=True)
    return Trainer(cfg, resume=True, options=options).run()
