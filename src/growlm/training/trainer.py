"""``growlm train``: CPU, one GPU or several processes (``training/distributed.py``), resumable exactly.

The loop is deliberately plain: take ``grad_accum_steps`` micro-batches from the
data position, back-propagate, clip, step AdamW and the LambdaLR schedule, log,
evaluate, checkpoint. Everything that decides what happens next -- weights,
optimizer and scheduler state, RNG, the data position and the loss accumulator of
the current logging window -- is in every checkpoint, so a run killed at any moment
and resumed with ``--resume`` logs the same losses as one that never stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from growlm.data.dataset import TokenSplit, WindowSampler, load_meta
from growlm.data.prepare import prepare
from growlm.data.sources import InMemorySplit, build_stream, check_source, combined_state
from growlm.data.tokenizer import load_tokenizer
from growlm.errors import CheckpointError, ConfigError, DataError, GrowlmError
from growlm.evaluation.perplexity import autocast_context, evaluate_loss
from growlm.models import GrowLMForCausalLM, model_class_for, model_from_state, storage
from growlm.models.accounting import model_cost, training_flops_per_token
from growlm.models.presets import build_config
from growlm.models.storage import base_model, canonical_name, state_by_name
from growlm.plotting import plot_loss_curves, run_curves
from growlm.substrate import install_substrate
from growlm.system import measure_matmul_flops, pick_autocast, tune_cpu_allocator
from growlm.training import checkpoint as ckpt
from growlm.training.compiling import compile_model
from growlm.training.config import TrainConfig, build_train_config, snapshot_steps
from growlm.training.determinism import deterministic_mode
from growlm.training.distributed import (
    full_state,
    grad_norm_value,
    inner,
    load_fsdp_optimizer,
    sync_gradients,
    wrap,
)
from growlm.training.distributed import setup as setup_runtime
from growlm.training.optim import build_optimizer, build_scheduler, load_state_by_name, warmup_warning
from growlm.training.trainable import (
    apply_lora,
    is_lora,
    load_lora,
    merged_model,
    save_lora,
    set_trainable,
)

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
# Steps at the start of a session (a run, or a resumed run) that the steady-state rate leaves
# out: the first compiles the model, the next may still recompile (automatic dynamic shapes).
STEADY_SKIP_STEPS = 3


def _say(message: str) -> None:
    """Progress messages go to stderr with the progress bar; stdout carries only results."""
    tqdm.write(message, file=sys.stderr)


def resolve_data(spec: Any) -> Path:
    """The prepared data folder of a config's ``data`` entry, preparing it on first use."""
    if isinstance(spec, str):
        load_meta(spec)
        return Path(spec)
    out = Path(spec["out"])
    wanted = {k: spec.get(k) for k in sorted(spec) if k != "out"}
    if (out / "meta.json").exists():
        meta = load_meta(out)
        if meta.get("spec") not in (None, wanted):
            raise DataError(f"{out} was prepared from a different data spec; delete it or change data.out")
        return out
    _say(f"preparing {out} from {', '.join(spec['inputs'])} (first use of this data spec)")
    meta = prepare(spec["inputs"], spec["tokenizer"], out, val_inputs=spec.get("val") or (),
                   val_fraction=spec.get("val_fraction", 0.01), text_field=spec.get("text_field", "text"),
                   max_docs_per_file=spec.get("max_docs_per_file"), max_tokens=spec.get("max_tokens"))
    meta["spec"] = wanted
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return out


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


def _new_model(cfg: TrainConfig, tokenizer: Any) -> GrowLMForCausalLM:
    overrides = dict(cfg.model_overrides)
    for field_name, token in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                              ("pad_token_id", "pad_token_id")):
        value = getattr(tokenizer, token, None)
        if value is not None:
            overrides.setdefault(field_name, int(value))
    config = build_config(cfg.model, overrides)
    torch.manual_seed(cfg.seed)
    model = model_class_for(config)(config)
    if config.frozen_embedding:  # a frozen substrate is built from the data's tokenizer (docs/substrate.md)
        install_substrate(model, tokenizer)
    return model


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False) -> None:
        self.started = time.time()  # stage start: time to the first optimizer step is counted from here
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        # deterministic: set before anything touches CUDA (cuBLAS reads its workspace setting once);
        # undone when run() ends
        self._modes = contextlib.ExitStack()
        self._modes.enter_context(deterministic_mode(cfg.deterministic, cfg.seed))
        try:
            self._setup(resume)
        except BaseException:
            self._modes.close()
            raise

    def _setup(self, resume: bool) -> None:
        cfg = self.cfg
        self.runtime, self.device = setup_runtime(cfg.distributed, cfg.device)
        if self.device.type == "cpu":
            tune_cpu_allocator()
        self.autocast = pick_autocast(cfg.dtype, self.device)
        self._setup_data()
        self.metrics = MetricsLog(self.out / METRICS_FILE)
        self.state: dict[str, Any] = {"step": 0, "tokens": 0, "data_position": 0, "window_loss_sum": 0.0,
                                      "window_steps": 0, "bad_steps_total": 0, "elapsed_s": 0.0}
        resume_from = self._resume_point() if resume else None
        self._build(resume_from)

    def say(self, message: str) -> None:
        if self.runtime.main:
            _say(message)

    def _setup_data(self) -> None:
        """A prepared folder (memory-mapped, random access by position) or a stream of sources."""
        cfg = self.cfg
        self.stream = None
        if isinstance(cfg.data, dict) and "sources" in cfg.data:
            self.data_dir = None
            self.tokenizer = load_tokenizer(cfg.data["tokenizer"])
            self.stream = build_stream(cfg.data, self.tokenizer, cfg.seq_len, cfg.seed, self.runtime.rank,
                                       self.runtime.world)  # this process's share of the sources
            val = cfg.data.get("val")
            if val is None:
                self.val_split = None
            elif "prepared" in check_source(val, "data.val"):
                self.val_split = TokenSplit(val["prepared"], "val")
            else:
                self.val_split = InMemorySplit(val, self.tokenizer)
                if self.val_split.skipped:
                    self.say(f"validation data: {self.val_split.skipped} documents without text skipped")
        else:
            if self.runtime.main:  # rank 0 prepares the data on first use of a spec; the others wait
                self.data_dir = resolve_data(cfg.data)
            self.runtime.barrier()
            if not self.runtime.main:
                self.data_dir = resolve_data(cfg.data)
            self.tokenizer = load_tokenizer(self.data_dir / "tokenizer")
            self.train_split = TokenSplit(self.data_dir, "train")
            self.sampler = WindowSampler(self.train_split, cfg.seq_len, cfg.seed)
            has_val = "val" in load_meta(self.data_dir)["splits"]
            self.val_split = TokenSplit(self.data_dir, "val") if has_val else None
        if self.val_split is not None and self.val_split.num_windows(cfg.seq_len) == 0:
            self.say("warning: the validation data is shorter than one window; validation is off")
            self.val_split = None

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the next global micro-batch."""
        cfg, runtime = self.cfg, self.runtime
        if self.stream is not None:  # each process draws from its own share of the sources
            tokens = torch.from_numpy(self.stream.next_windows(cfg.micro_batch_size))
            self.state["data_position"] += cfg.micro_batch_size * runtime.world
            return tokens[:, :-1], tokens[:, 1:]
        start = self.state["data_position"] + runtime.rank * cfg.micro_batch_size
        self.state["data_position"] += cfg.micro_batch_size * runtime.world
        return self.sampler.batch(start, cfg.micro_batch_size)

    # -- setup -------------------------------------------------------------------------------
    def _resume_point(self) -> Path | None:
        found = storage.latest_good_checkpoint(self.out, self.say) if self.runtime.main else None
        found = self.runtime.broadcast(str(found) if found else None)
        if found is None:
            self.say(f"no usable checkpoint in {self.out}; starting from step 0")
        return Path(found) if found else None

    def _build(self, resume_from: Path | None) -> None:
        cfg, runtime = self.cfg, self.runtime
        init_state: dict[str, Any] | None = None
        init_moments: dict[str, Any] | None = None
        if resume_from is not None and (resume_from / "lora").is_dir():
            model = load_lora(resume_from / "lora", storage.load_config(resume_from), cfg.lora, self.device)
        elif resume_from is not None:
            model = storage.load_model(resume_from, self.device, self.say)
        elif cfg.init_from is not None:
            source = storage.resolve_model_dir(cfg.init_from, self.say)
            model = storage.load_model(source, self.device, self.say)
            if (source / storage.TRAINER_STATE).exists():
                init_state = storage.load_trainer_state(source)
                if cfg.init_optimizer and (source / storage.OPTIMIZER).exists():
                    saved = torch.load(source / storage.OPTIMIZER, map_location="cpu", weights_only=False)
                    init_moments = state_by_name(saved, init_state["param_names"])
            self.state["init_from"] = str(source)
        else:
            model = _new_model(cfg, self.tokenizer)
        model = model.float().to(self.device)
        if base_model(model).config.frozen_embedding and bool(base_model(model).model.embed_tokens.weight.isnan().any()):
            raise ConfigError("the model's frozen substrate embedding was never built (its table is NaN): create "
                              "the model with `growlm init --tokenizer` or from a preset in the training config")
        vocab = len(self.tokenizer)
        if vocab > model.config.vocab_size:
            raise ConfigError(f"the data's tokenizer has {vocab} tokens but the model's vocab_size is "
                              f"{model.config.vocab_size}; set model_overrides.vocab_size to at least {vocab}")
        if cfg.lora is not None and not is_lora(model):
            model = apply_lora(model, cfg.lora)
        self.trainable_params, self.total_params = set_trainable(model, cfg.trainable, cfg.frozen,
                                                                 cfg.lora is not None)
        if self.trainable_params == 0:
            raise ConfigError("no parameter is trainable: check 'trainable', 'frozen' and 'lora'")
        self.base = base_model(model)
        self.base.model.gradient_checkpointing = cfg.activation_checkpointing
        self.cost = model_cost(self.base.config, cfg.seq_len)
        self.flops_per_token = training_flops_per_token(model, cfg.seq_len)
        self.model = wrap(model, runtime, self.device, self.autocast)
        self.optimizer, self.param_names = build_optimizer(inner(self.model), cfg, self.device)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        if resume_from is not None:
            self._restore(resume_from)
        elif init_state is not None:
            if init_moments is not None:
                loaded, skipped = self._load_moments(init_moments)
                self.say(f"optimizer moments from {cfg.init_from}: {len(loaded)} tensors loaded, "
                         f"{len(skipped)} started fresh")
            if cfg.continue_data:
                self.state["data_position"] = int(init_state.get("data_position", 0))
                if self.stream is not None and init_state.get("data_state"):
                    self.stream.load_state(init_state["data_state"])
        self.forward = compile_model(self.model, cfg.compile, self.device, say=self.say)
        self.peak_flops = cfg.mfu_peak_tflops * 1e12 if cfg.mfu_peak_tflops else (
            measure_matmul_flops(self.device) if self.device.type == "cuda" else 0.0)

    def _load_moments(self, by_name: dict[str, dict[str, Any]],
                      group_settings: list[dict[str, Any]] | None = None) -> tuple[list[str], list[str]]:
        """AdamW moments by parameter name, into a plain, DDP or FSDP optimizer.

        ``group_settings``: saved param groups whose settings (the current lr above all) to
        restore too, as ``optimizer.load_state_dict`` would; by default the groups keep theirs."""
        if self.runtime.strategy != "fsdp":
            return load_state_by_name(self.optimizer, self.param_names, by_name, group_settings)
        params = {canonical_name(n): (n, p.shape) for n, p in inner(self.model).named_parameters()}
        usable = [n for n, e in by_name.items() if n in params and e["exp_avg"].shape == params[n][1]]
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [params[n][0] for n in names]}
                  for g, names in zip(group_settings or self.optimizer.param_groups, self._group_names(),
                                      strict=True)]
        load_fsdp_optimizer(self.model, self.optimizer,
                            {"state": {params[n][0]: by_name[n] for n in usable}, "param_groups": groups})
        return usable, [n for n in self.param_names if n not in usable]

    def _group_names(self) -> list[list[str]]:
        sizes = [len(g["params"]) for g in self.optimizer.param_groups]
        return [self.param_names[sum(sizes[:i]): sum(sizes[: i + 1])] for i in range(len(sizes))]

    def _restore(self, folder: Path) -> None:
        state = storage.load_trainer_state(folder)
        if state.get("param_names") != self.param_names:
            raise CheckpointError(f"{folder}: the optimizer state was saved for different parameters")
        saved = torch.load(folder / storage.OPTIMIZER, map_location="cpu", weights_only=False)
        self._load_moments(state_by_name(saved, self.param_names), saved["param_groups"])
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=False))
        ckpt.set_rng_state(torch.load(folder / "rng.pt", weights_only=False))
        self.state.update({k: v for k, v in state.items() if k in self.state or k == "init_from"})
        if self.stream is not None:
            self.stream.load_state(state["data_state"])
        if self.runtime.main:
            self.metrics.truncate_after(self.state["step"])
        self.say(f"resumed from {folder} at step {self.state['step']}")

    # -- the loop ----------------------------------------------------------------------------
    @property
    def tokens_per_step(self) -> int:
        return self.cfg.tokens_per_step * self.runtime.world

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
            self.state["bad_steps_in_a_row"] = 0
        else:
            self.state["bad_steps_total"] += 1
            self.state["bad_steps_in_a_row"] = self.state.get("bad_steps_in_a_row", 0) + 1
            self.say(f"warning: non-finite loss or gradient at step {self.state['step'] + 1}; step skipped")
            if self.state["bad_steps_in_a_row"] >= cfg.max_bad_steps:
                self.save()
                raise GrowlmError(f"{cfg.max_bad_steps} non-finite steps in a row (last at step "
                                  f"{self.state['step'] + 1}); stopping. Lower lr or check the data.")
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, grad_norm

    def _time_step(self, tic: float) -> None:
        """Account one step of this session: the first step's end (waiting for the GPU, so the time
        to the first optimizer step is real) and the steady-state window after ``STEADY_SKIP_STEPS``."""
        session = self.session
        session["steps"] += 1
        if session["steps"] == 1:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            session["first_step_at"] = time.time()
            session["first_step_s"] = session["first_step_at"] - tic
        elif session["steps"] > STEADY_SKIP_STEPS:
            session["steady_tokens"] += self.tokens_per_step
            session["steady_s"] += time.time() - tic

    def speed(self) -> dict[str, Any]:
        """This session's speed figures: steady-state (compilation and the first steps left out) and
        wall-clock (everything from the Trainer's creation: loading, compiling, evaluating, saving)."""
        session = getattr(self, "session", {"steps": 0})
        if not session["steps"]:
            return {}
        now = time.time()
        tokens = session["steps"] * self.tokens_per_step
        steady = session["steady_tokens"] / session["steady_s"] if session["steady_s"] > 0 else None
        figures = {
            "session_steps": session["steps"],
            "time_to_first_step_s": round(session["first_step_at"] - self.started, 2),
            "first_step_s": round(session["first_step_s"], 2),
            "first_step_at": session["first_step_at"],
            "steady_tokens_per_s": round(steady, 1) if steady else None,
            "wall_tokens_per_s": round(tokens / (now - self.started), 1),
            "wall_seconds": round(now - self.started, 2),
        }
        if steady and self.peak_flops:
            figures["steady_mfu"] = self.flops_per_token * steady / (self.peak_flops * self.runtime.world)
        return figures

    def validate(self) -> dict[str, float] | None:
        if self.val_split is None:
            return None
        return evaluate_loss(self.model, self.val_split, self.cfg.seq_len, self.cfg.micro_batch_size,
                             self.cfg.eval_batches, self.device, self.autocast, runtime=self.runtime)

    def save(self) -> Path | None:
        """A checkpoint of the full (unsharded) state, written by rank 0; collective under FSDP."""
        weights, fsdp_optimizer = full_state(self.model, self.optimizer, self.runtime)
        data_state = combined_state(self.runtime.gather(self.stream.state())) if self.stream is not None else None
        if not self.runtime.main:
            self.runtime.barrier()
            return None
        if fsdp_optimizer is not None:
            index = {fqn: self.param_names.index(canonical_name(fqn)) for g in fsdp_optimizer["param_groups"]
                     for fqn in g["params"]}  # FSDP names what peft wraps by its full path
            optimizer_state = {"state": {index[n]: v for n, v in fsdp_optimizer["state"].items()},
                               "param_groups": [{**{k: v for k, v in g.items() if k != "params"},
                                                 "params": [index[n] for n in g["params"]]}
                                                for g in fsdp_optimizer["param_groups"]]}
            unsharded = self._unsharded(weights)
        else:
            optimizer_state = self.optimizer.state_dict()
            unsharded = inner(self.model)
        plain = merged_model(unsharded)
        state = {**self.state, "param_names": self.param_names, "seq_len": self.cfg.seq_len,
                 "data_dir": str(self.data_dir) if self.data_dir else None, "config": self.cfg.to_dict(),
                 "world_size": self.runtime.world,
                 **({"data_state": data_state} if data_state is not None else {}),
                 "trainable_params": self.trainable_params, "train_flops_per_token": self.flops_per_token}
        extra = (lambda folder: save_lora(unsharded, folder / "lora")) if is_lora(unsharded) else None
        path = ckpt.save_checkpoint(self.out, self.state["step"], plain, self.tokenizer, optimizer_state,
                                    self.scheduler, state, self.cfg.keep_last, extra)
        self.runtime.barrier()
        return path

    def snapshot(self) -> Path | None:
        """A weights-only snapshot of the current step (training config ``snapshots``); collective
        under FSDP (the weights are gathered, the optimizer state is not)."""
        weights, _ = full_state(self.model, None, self.runtime)
        if not self.runtime.main:
            self.runtime.barrier()
            return None
        unsharded = self._unsharded(weights) if self.runtime.strategy == "fsdp" else inner(self.model)
        info = {"tokens": self.state["tokens"], "init_from": self.state.get("init_from")}
        path = ckpt.save_snapshot(self.out, self.state["step"], merged_model(unsharded), self.tokenizer, info)
        growth = Path(self.state["init_from"]) / "growth.json" if self.state.get("init_from") else None
        if self.state["step"] == 0 and growth is not None and growth.exists():
            # the growth point travels with the run: `growlm analyze` reads which entries are new here
            shutil.copy(growth, self.out / storage.SNAPSHOTS / "growth.json")
        self.runtime.barrier()
        return path

    def _unsharded(self, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        """A CPU replica of the FSDP-sharded model from its gathered full state (rank 0): the plain
        model, or the same LoRA wrapping, so that merging and adapter saving work as without FSDP."""
        if not is_lora(inner(self.model)):
            return model_from_state(self.base.config, weights, "the gathered FSDP state")
        base = {canonical_name(k): v for k, v in weights.items() if ".lora_" not in k}
        replica = apply_lora(model_from_state(self.base.config, base, "the gathered FSDP state"), self.cfg.lora)
        replica.load_state_dict(weights)
        return replica

    def _row(self, step: int, grad_norm: float, seconds: float, window_tokens: int) -> dict[str, Any]:
        st = self.state
        tokens_per_s = window_tokens / max(seconds, 1e-9)
        row = {"step": step, "loss": st["window_loss_sum"] / st["window_steps"],
               "lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm, "tokens": st["tokens"],
               "tokens_per_s": tokens_per_s, "elapsed_s": st["elapsed_s"]}
        if self.peak_flops:
            row["mfu"] = self.flops_per_token * tokens_per_s / (self.peak_flops * self.runtime.world)
        if self.device.type == "cuda":
            row["max_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return row

    def run(self) -> dict[str, Any]:
        with self._modes:
            return self._run()

    def _run(self) -> dict[str, Any]:
        cfg, st, runtime = self.cfg, self.state, self.runtime
        if runtime.main:
            self.out.mkdir(parents=True, exist_ok=True)
        warning = warmup_warning(cfg) if cfg.schedule_start_step + st["step"] < cfg.warmup_steps else None
        if warning:
            self.say(warning)
        board = open_tensorboard(self.out, self.say) if runtime.main and cfg.tensorboard else None
        bar = tqdm(total=cfg.max_steps, initial=st["step"], unit="step", disable=not (cfg.progress and runtime.main),
                   dynamic_ncols=True, desc=self.out.name)
        window_start, window_tokens = time.time(), 0
        last_val: dict[str, float] | None = None
        self.session = {"steps": 0, "steady_tokens": 0, "steady_s": 0.0}
        snapshots = set(snapshot_steps(cfg, self.tokens_per_step))
        if 0 in snapshots and st["step"] == 0:
            self.snapshot()  # the starting point: after growth, the growth point itself
        with _StopRequest() as stop:
            while st["step"] < cfg.max_steps:
                tic = time.time()
                loss, grad_norm = self._step()
                self._time_step(tic)
                st["step"] += 1
                st["tokens"] += self.tokens_per_step
                st["elapsed_s"] += time.time() - tic
                window_tokens += self.tokens_per_step
                if math.isfinite(loss):
                    st["window_loss_sum"] += loss
                    st["window_steps"] += 1
                step = st["step"]
                final = step == cfg.max_steps
                row: dict[str, Any] = {}
                is_eval = step % cfg.eval_every == 0 or final
                if (step % cfg.log_every == 0 or final or is_eval) and st["window_steps"]:
                    row = self._row(step, grad_norm, time.time() - window_start, window_tokens)
                    st["window_loss_sum"], st["window_steps"] = 0.0, 0
                    window_start, window_tokens = time.time(), 0
                    bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
                if is_eval:
                    last_val = self.validate()
                    if last_val is not None and row:
                        row.update(val_loss=last_val["loss"], val_ppl=last_val["perplexity"],
                                   val_bpb=last_val["bits_per_byte"])
                        self.say(f"step {step}: val loss {last_val['loss']:.4f}, ppl {last_val['perplexity']:.2f}")
                    window_start = time.time()
                if row and runtime.main:
                    self.metrics.write(row)
                    if board is not None:
                        for key, value in row.items():
                            if key != "step":
                                board.add_scalar(key, value, step)
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
        if board is not None:
            board.close()
        if last_val is None and self.session["steps"] == 0:
            last_val = self.validate()  # resumed at the final checkpoint (killed before its summary)
        return self.finish(last_val)

    def finish(self, last_val: dict[str, float] | None) -> dict[str, Any]:
        skipped = sum(self.runtime.gather(self.stream.skipped_documents)) if self.stream is not None else None
        if not self.runtime.main:
            return {}
        rows = self.metrics.rows()
        if rows:
            plot_loss_curves(run_curves(rows, self.base.config.architecture), self.out / "loss.png",
                             title=f"{self.out.name}: {self.base.config.architecture}")
        train_rows = [r for r in rows if "loss" in r]
        seconds = self.state["elapsed_s"]
        checkpoints = storage.list_checkpoints(self.out)
        summary = {
            "steps": self.state["step"],
            "tokens": self.state["tokens"],
            "final_train_loss": train_rows[-1]["loss"] if train_rows else None,
            "final_val_loss": last_val["loss"] if last_val else None,
            "final_val_perplexity": last_val["perplexity"] if last_val else None,
            "non_finite_steps": self.state["bad_steps_total"],
            **({"skipped_documents": skipped} if skipped is not None else {}),
            "train_seconds": round(seconds, 2),
            "tokens_per_s": round(self.state["tokens"] / seconds, 1) if seconds else None,
            "world_size": self.runtime.world,
            "deterministic": self.cfg.deterministic,
            "parameters": self.cost.total_params,
            "trainable_parameters": self.trainable_params,
            "train_flops_per_token": self.flops_per_token,
            "train_flops": self.flops_per_token * self.state["tokens"],
            "mfu": train_rows[-1].get("mfu") if train_rows else None,
            "max_memory_gb": train_rows[-1].get("max_memory_gb") if train_rows else None,
            "checkpoint": str(checkpoints[-1]) if checkpoints else None,
            "compile": self.cfg.compile,
            **self.speed(),
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        _say(summary_line(summary))
        return summary


def summary_line(summary: dict[str, Any]) -> str:
    """The compact end-of-run line."""
    parts = [f"{summary['steps']} steps", f"{summary['tokens']:,} tokens", f"{summary['train_seconds']:.0f} s"]
    if summary.get("tokens_per_s"):
        parts.append(f"{summary['tokens_per_s']:,.0f} tok/s")
    if summary.get("steady_tokens_per_s"):
        parts.append(f"steady {summary['steady_tokens_per_s']:,.0f} tok/s")
    if summary.get("wall_tokens_per_s"):
        parts.append(f"wall {summary['wall_tokens_per_s']:,.0f} tok/s")
    if summary.get("time_to_first_step_s") is not None:
        parts.append(f"first step after {summary['time_to_first_step_s']:.1f} s")
    if summary.get("mfu"):
        parts.append(f"MFU {100 * summary['mfu']:.1f}%")
    if summary.get("max_memory_gb"):
        parts.append(f"{summary['max_memory_gb']:.1f} GiB peak")
    if summary.get("final_train_loss") is not None:
        parts.append(f"train loss {summary['final_train_loss']:.4f}")
    if summary.get("final_val_loss") is not None:
        parts.append(f"val loss {summary['final_val_loss']:.4f}")
    if summary.get("non_finite_steps"):
        parts.append(f"{summary['non_finite_steps']} non-finite steps skipped")
    if summary.get("skipped_documents"):
        parts.append(f"{summary['skipped_documents']} documents without text skipped")
    return "done: " + ", ".join(parts)


_TENSORBOARD_NOTED = False  # the missing-tensorboard note is said once per process (a plan has many stages)


def open_tensorboard(out: Path, say: Callable[[str], None] = _say) -> Any:
    """A TensorBoard writer when tensorboard is installed; otherwise None, said once per process."""
    global _TENSORBOARD_NOTED
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _TENSORBOARD_NOTED:
            _TENSORBOARD_NOTED = True
            say("note: tensorboard is not installed, so nothing is written to RUN/tensorboard (metrics.jsonl and "
                "loss.png have everything); `pip install tensorboard` to get it, or set tensorboard: false")
        return None
    return SummaryWriter(str(out / "tensorboard"))


def start_run(cfg: TrainConfig) -> dict[str, Any]:
    """Begin a new run in ``cfg.out_dir``, refusing to overwrite an existing one."""
    out = Path(cfg.out_dir)
    if storage.list_checkpoints(out) or (out / METRICS_FILE).exists():
        raise ConfigError(f"out_dir {out} already holds a run; continue it with `growlm train --resume {out}` "
                          "or choose another out_dir")
    if _is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return Trainer(cfg).run()


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
    if not (run_dir / "summary.json").exists():
        return None
    checkpoints = storage.list_checkpoints(run_dir)
    if not checkpoints or _checkpoint_step(checkpoints[-1]) < cfg.max_steps:
        return None  # work to do: no checksums read (they are, once, when training resumes)
    newest = storage.latest_good_checkpoint(run_dir, _say)
    step = _checkpoint_step(newest) if newest is not None else -1
    return step if step >= cfg.max_steps else None


def _checkpoint_step(folder: Path) -> int:
    try:
        return int(storage.load_trainer_state(folder)["step"])
    except (CheckpointError, ValueError, KeyError):
        return -1  # unreadable: not a finished run's checkpoint


def resume_run(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its newest good checkpoint (``--set`` may extend it).

    A finished run (:func:`finished_step`) is left exactly as it is -- no file is rewritten --
    and its ``summary.json`` is returned."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    cfg = _resume_config(run_dir, overrides)
    if finished_step(run_dir, overrides) is not None:
        return json.loads((run_dir / "summary.json").read_text()) if _is_main_process() else {}
    if overrides and _is_main_process():
        config_path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    with contextlib.suppress(FileExistsError):
        run_dir.mkdir(parents=True)
    return Trainer(cfg, resume=True).run()
