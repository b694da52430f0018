"""What every experiment shares: its folder, its data, resumable runs, tables, reports and publishing.

An experiment is a function ``run(ctx: Context) -> Report``. The :class:`Context` gives it

* the output folder (``ctx.out``), whether this is the ``--quick`` CPU form, the seeds;
* the data: :meth:`Context.corpus` prepares (once, cached under ``ctx.data_root``) the shared
  corpus or a part of it with the paper's 32k tokenizer;
* resumable units of work: :meth:`Context.unit` runs a function once and keeps its JSON
  result under ``OUT/units/KEY.json``; a second invocation of the experiment (after a
  crash, a timeout, or with more seeds) skips finished units and redoes only the rest.
  :meth:`Context.train` is such a unit around ``growlm train`` (it resumes an interrupted
  run from its last checkpoint) and :meth:`Context.plan` around a growth plan;
* evaluation through ``growlm eval``'s library call (:meth:`Context.evaluate`).

The experiment returns a :class:`Report` (title, Markdown body, figures, the paper's
numbers beside ours). :func:`finish` writes ``OUT/report.md`` and ``OUT/experiment.json``
with the command, device, date and the code that ran (growlm's version, its checkout's commit
when it runs from one, a hash of its source: :mod:`growlm.provenance`), and :func:`publish`
copies the report and its figures into ``docs/results.md`` / ``docs/figures/`` (replacing an
earlier section of the same experiment and form).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import platform
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from growlm.data.shared import CORPUS_SOURCES, TOKENIZER_32K, locate_shared
from growlm.errors import ConfigError, GrowlmError, unknown_key_message
from growlm.folders import atomic_write_text
from growlm.logs import show_messages, shown_level
from growlm.provenance import provenance
from growlm.stats import Interval

logger = logging.getLogger(__name__)


@dataclass
class Context:
    """One invocation of an experiment: where it writes, what form it runs in, and its helpers."""

    name: str
    out: Path
    quick: bool
    seeds: list[int]
    device: str = "auto"
    shared: Path | None = None
    data_root: Path = Path("data/experiments")
    benchmarks: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.data_root = Path(self.data_root)
        if not self.seeds:
            raise ConfigError("an experiment needs at least one seed")

    # -- paths --------------------------------------------------------------------------------
    @property
    def shared_dir(self) -> Path:
        if self.shared is None:
            self.shared = locate_shared()
        return self.shared

    @property
    def tokenizer(self) -> str:
        return str(self.shared_dir / TOKENIZER_32K)

    @property
    def benchmarks_dir(self) -> Path | None:
        if self.benchmarks is not None:
            return self.benchmarks
        from growlm.evaluation.tasks import default_benchmarks_dir

        found = default_benchmarks_dir()
        if found is None and (self.shared_dir / "benchmarks").is_dir():
            found = self.shared_dir / "benchmarks"
        return found

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    # -- data ---------------------------------------------------------------------------------
    def corpus(self, name: str = "corpus", sources: Sequence[str] = CORPUS_SOURCES,
               max_docs_per_file: int | None = None, val_docs_per_file: int | None = None,
               max_tokens: int | None = None) -> Path:
        """The shared corpus (or the named sources of it) prepared with the 32k tokenizer, once.

        Training documents come from ``corpus/train/SOURCE.jsonl.gz`` (the first
        ``max_docs_per_file`` of each), validation documents from ``corpus/val/SOURCE.jsonl.gz``
        (the first ``val_docs_per_file`` of each); every source contributes in the same way, so
        the validation set is drawn like the training data. The folder is reused by every
        experiment asking for the same slice (its name encodes the slice).
        """
        from growlm.data.prepare import prepare

        unknown = [s for s in sources if s not in CORPUS_SOURCES]
        if unknown:
            raise ConfigError(f"unknown corpus source(s) {unknown}; the shared corpus has {', '.join(CORPUS_SOURCES)}")
        tag = "-".join([name, *([f"d{max_docs_per_file}"] if max_docs_per_file else []),
                        *([f"v{val_docs_per_file}"] if val_docs_per_file else []),
                        *([f"t{max_tokens}"] if max_tokens else [])])
        out = self.data_root / tag
        if (out / "meta.json").exists():
            return out
        # Experiments run side by side on one machine share the data folder: the first one
        # prepares a slice while the others wait on the lock, then find it ready.
        self.data_root.mkdir(parents=True, exist_ok=True)
        with open(self.data_root / f".{tag}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (out / "meta.json").exists():
                return out
            logger.info(f"preparing {out} ({', '.join(sources)})")
            train = [self.shared_dir / "corpus" / "train" / f"{s}.jsonl.gz" for s in sources]
            val = [self.shared_dir / "corpus" / "val" / f"{s}.jsonl.gz" for s in sources]
            if val_docs_per_file:
                val = [_head_documents(p, val_docs_per_file, self.data_root / ".val-slices" / tag) for p in val]
            prepare(train, self.tokenizer, out, val_inputs=val, max_docs_per_file=max_docs_per_file,
                    max_tokens=max_tokens, show_progress=False, overwrite=True)
        return out

    # -- resumable units ----------------------------------------------------------------------
    # Callable[..., ...]: callers bind their loop variables as lambda defaults, which mypy cannot infer
    def unit(self, key: str, work: Callable[..., dict[str, Any]]) -> dict[str, Any]:
        """``work(folder)`` once; its JSON result is kept in ``OUT/units/KEY.json`` and reused after.

        The result is returned as read back from that file, on the first call too, so an
        experiment sees the same values whether a unit ran now or in an earlier invocation."""
        if not re.fullmatch(r"[A-Za-z0-9_.=+-]+(/[A-Za-z0-9_.=+-]+)*", key) or \
                any(part in (".", "..") for part in key.split("/")):
            raise ValueError(f"unit key {key!r} must be path-safe")
        record = self.out / "units" / f"{key}.json"
        if record.exists():
            return json.loads(record.read_text())
        folder = self.out / "runs" / key
        folder.mkdir(parents=True, exist_ok=True)
        result = work(folder)
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(record, json.dumps(result, indent=2, default=_json_default))
        return json.loads(record.read_text())  # the same form a later invocation reads back

    def train(self, key: str, values: dict[str, Any]) -> dict[str, Any]:
        """A training run as a unit: the run summary plus its logged rows (resumed if interrupted)."""
        from growlm.training.config import build_train_config
        from growlm.training.trainer import read_metrics, resume_run, start_run

        def work(folder: Path) -> dict[str, Any]:
            run = folder / "train"
            settings = {"device": self.device, "progress": False, "tensorboard": False, **values,
                        "out_dir": str(run)}
            if (run / "config.yaml").exists():
                summary = resume_run(run)
            else:
                summary = start_run(build_train_config(settings))
            assert summary is not None  # experiments train in one process
            return {"summary": summary.to_json(), "metrics": read_metrics(run), "run": str(run)}

        return self.unit(key, work)

    def plan(self, key: str, values: dict[str, Any]) -> dict[str, Any]:
        """A growth plan as a unit: its ledger, each stage's logged rows and final checkpoint."""
        from growlm.training.plan import PLAN_FILE, parse_plan, resume_plan, run_plan
        from growlm.training.trainer import read_metrics

        def work(folder: Path) -> dict[str, Any]:
            run = folder / "plan"
            defaults = {"device": self.device, "progress": False, "tensorboard": False,
                        **values.get("defaults", {})}
            plan_values = {**values, "defaults": defaults, "out_dir": str(run)}
            ledger = resume_plan(run) if (run / PLAN_FILE).exists() else run_plan(parse_plan(plan_values))
            assert ledger is not None  # experiments run in one process
            stages = []
            for record in ledger.stages:
                stage_dir = next(run.glob(f"stage-{record.index + 1:02d}-*"))
                stages.append({**record.to_json(), "metrics": read_metrics(stage_dir / "train"),
                               "folder": str(stage_dir)})
            totals = {k: v for k, v in ledger.to_json().items() if k != "stages"}
            return {"ledger": totals, "stages": stages, "run": str(run)}

        return self.unit(key, work)

    def evaluate(self, checkpoint: str | Path, tasks: Sequence[str], out: Path, ppl_data: Path | None = None,
                 limit: int | None = None, batch_size: int = 16, max_batches: int | None = None) -> dict[str, Any]:
        """``growlm eval`` on one checkpoint; returns its results.json content."""
        from growlm.evaluation.runner import evaluate_checkpoint

        return evaluate_checkpoint(checkpoint, list(tasks), out=out, data_dir=self.benchmarks_dir,
                                   ppl_data=ppl_data, limit=limit, batch_size=batch_size, device=self.device,
                                   max_batches=max_batches, progress=False)


def _head_documents(path: Path, count: int, folder: Path) -> Path:
    """The first ``count`` lines of a JSONL(.gz) file as a small file of their own (a validation slice)."""
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name.replace(".gz", "")
    if not target.exists():
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as src, open(target, "w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i >= count:
                    break
                dst.write(line)
    return target


def _json_default(value: Any) -> Any:
    if isinstance(value, Interval):
        return value.as_dict()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# -- reports --------------------------------------------------------------------------------------
@dataclass
class Report:
    """What an experiment found: Markdown body (tables, prose), PNG figures, raw summary data."""

    title: str
    body: str
    figures: list[Path] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    paper: str = ""  # the paper's numbers and claims, beside ours


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], digits: int = 3) -> str:
    """A Markdown table; ``columns`` are ``(key, header)``; Intervals print as ``mean ± half-width``."""
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row.get(key)
            if isinstance(value, Interval):
                cells.append(value.format(digits))
            elif isinstance(value, float):
                cells.append(f"{value:.{digits}f}")
            else:
                cells.append("" if value is None else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def device_description(device: str = "auto") -> str:
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        count = torch.cuda.device_count()
        return f"{count}x {torch.cuda.get_device_name(0)}" if count > 1 else torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU ({os.cpu_count()} cores, {cpu})"


def _code_that_ran() -> dict[str, str | None]:
    code = provenance()
    return {"growlm": code.version, "commit": code.commit, "source_hash": code.source_hash}


def environment(ctx: Context, argv: Sequence[str] | None = None) -> dict[str, Any]:
    import torch
    import transformers

    command = "growlm " + " ".join(argv if argv is not None else sys.argv[1:])
    return {"experiment": ctx.name, "form": "quick" if ctx.quick else "full", "seeds": ctx.seeds,
            "command": command, "device": device_description(ctx.device),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **_code_that_ran(),
            "torch": torch.__version__, "transformers": transformers.__version__}


def finish(ctx: Context, report: Report, argv: Sequence[str] | None = None) -> Path:
    """Write ``OUT/report.md`` and ``OUT/experiment.json``; returns the report's path."""
    env = environment(ctx, argv)
    code = ([f"commit `{env['commit']}`"] if env["commit"] else []) + [f"source `{env['source_hash']}`"]
    header = [f"## {report.title}", "",
              f"*{env['form']} form; command `{env['command']}`; device {env['device']}; {env['date']}; "
              f"growlm {env['growlm']} ({', '.join(code)}); torch {env['torch']}; "
              f"seeds {', '.join(map(str, ctx.seeds))}.*", ""]
    figures = [f"![{p.stem}]({p.relative_to(ctx.out).as_posix()})" for p in report.figures]
    parts = ["\n".join(header), report.body.strip()]
    if report.paper:
        parts.append("**The paper, for comparison.** " + report.paper.strip())
    if figures:
        parts.append("\n\n".join(figures))
    text = "\n\n".join(parts) + "\n"
    ctx.out.mkdir(parents=True, exist_ok=True)
    (ctx.out / "report.md").write_text(text)
    (ctx.out / "experiment.json").write_text(json.dumps(
        {**env, "title": report.title, "figures": [p.relative_to(ctx.out).as_posix() for p in report.figures],
         "data": report.data}, indent=2, default=_json_default))
    return ctx.out / "report.md"


BEGIN = "<!-- growlm-experiment {key} -->"
END = "<!-- /growlm-experiment {key} -->"


def publish(out: str | Path, results_md: str | Path, figures_dir: str | Path | None = None) -> str:
    """Copy an experiment's report into ``results_md`` (replacing the section of the same experiment and
    form) and its figures into ``figures_dir`` (default: ``figures/`` beside ``results_md``)."""
    out, results_md = Path(out), Path(results_md)
    meta_path = out / "experiment.json"
    if not meta_path.exists() or not (out / "report.md").exists():
        raise GrowlmError(f"{out} holds no finished experiment (report.md and experiment.json)")
    meta = json.loads(meta_path.read_text())
    key = f"{meta['experiment']}:{meta['form']}"
    figures_dir = Path(figures_dir) if figures_dir else results_md.parent / "figures"
    text = (out / "report.md").read_text()
    for rel in meta.get("figures", []):
        name = f"{meta['experiment']}-{meta['form']}-{Path(rel).name}"
        figures_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / rel, figures_dir / name)
        link = os.path.relpath(figures_dir / name, results_md.parent)
        text = text.replace(f"]({rel})", f"]({Path(link).as_posix()})")
    section = f"{BEGIN.format(key=key)}\n{text.strip()}\n{END.format(key=key)}\n"
    existing = results_md.read_text() if results_md.exists() else "# Results\n\n"
    pattern = re.compile(re.escape(BEGIN.format(key=key)) + r".*?" + re.escape(END.format(key=key)) + r"\n?",
                         re.S)
    updated = pattern.sub(lambda _: section, existing) if pattern.search(existing) else \
        existing.rstrip() + "\n\n" + section
    results_md.parent.mkdir(parents=True, exist_ok=True)
    results_md.write_text(updated)
    return key


# -- independent units side by side ---------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One independent unit of an experiment, run by :func:`run_jobs` in this or a worker process.

    ``function`` is ``"module:name"``, called as ``name(ctx, **args)``; ``done`` is the unit key
    whose record (``OUT/units/DONE.json``) marks the job finished, so finished jobs are skipped
    when the experiment runs again. ``tokens`` is what it will train (for the throughput record)."""

    key: str
    function: str
    args: dict[str, Any]
    done: str
    tokens: int = 0


def _context_fields(ctx: Context) -> dict[str, Any]:
    return {"name": ctx.name, "out": str(ctx.out), "quick": ctx.quick, "seeds": list(ctx.seeds),
            "device": ctx.device, "shared": str(ctx.shared) if ctx.shared else None,
            "data_root": str(ctx.data_root), "benchmarks": str(ctx.benchmarks) if ctx.benchmarks else None,
            "options": dict(ctx.options)}


def _worker_setup(threads: int, messages: int | None = None) -> None:
    """A worker process's entry: the settings of a growlm program (as the parent's ``growlm``
    command made them), its share of the cores, and the parent's messages shown as it shows them."""
    import torch

    from growlm.system import configure_process

    configure_process()
    torch.set_num_threads(max(1, threads))
    # Inductor compiles in a pool of as many processes as the machine has cores; N workers
    # compiling at once (each compiles its own unit) would start N times that. Each worker
    # keeps to its share; read when torch's Inductor config is first imported (after this).
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(max(1, threads)))
    if messages is not None:
        show_messages(messages)


def _run_job(fields: dict[str, Any], function: str, args: dict[str, Any]) -> tuple[float, int]:
    """A job in a worker: rebuild the context, call the function; returns its wall seconds and process id."""
    import importlib
    import time

    import torch

    start = time.time()
    ctx = Context(**{**fields, "out": Path(fields["out"]), "data_root": Path(fields["data_root"]),
                     "shared": Path(fields["shared"]) if fields["shared"] else None,
                     "benchmarks": Path(fields["benchmarks"]) if fields["benchmarks"] else None})
    module, name = function.split(":")
    getattr(importlib.import_module(module), name)(ctx, **args)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the next job of this worker, and the memory check, see the freed memory
    return time.time() - start, os.getpid()


def free_gpu_gb(device: str) -> float | None:
    """Free memory of the current CUDA device in GiB (``torch.cuda.mem_get_info``); None off CUDA."""
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info()
    return free / 2**30


def form_values(ctx: Context, form: Any) -> dict[str, Any]:
    """The fields of an experiment's sizing dataclass ``form`` (its full or quick form) with
    ``ctx.options`` (``--set KEY=VALUE``) applied, each cast to the field's type; an unknown key is
    refused, naming the valid ones."""
    import dataclasses

    values = dataclasses.asdict(form)
    for key, value in ctx.options.items():
        if key not in values:
            raise ConfigError(unknown_key_message(f"option of experiment {ctx.name}", key, list(values)))
        current = values[key]
        if isinstance(current, bool):
            values[key] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        else:
            values[key] = str(value) if isinstance(current, str) else type(current)(value)
    return values


def on_cuda(device: str) -> bool:
    """Whether an experiment with this ``--device`` trains on a CUDA GPU."""
    import torch

    return device != "cpu" and torch.cuda.is_available()


def default_parallel(ctx: Context, on_gpu: int) -> int:
    """How many units run side by side when the experiment's ``parallel`` option is 0: ``on_gpu``
    on CUDA (what one 80 GB H100 holds for that experiment's models), one on the CPU."""
    return on_gpu if on_cuda(ctx.device) else 1


def throughput_text(runner: list[dict[str, Any]], note: str = "", compile: str = "") -> str:
    """One line for a report: tokens/s of each phase :func:`run_jobs` ran (``runner`` records);
    ``compile``: the compile mode the runs used (``growlm.experiments.compiling.CompileChoice.label``)."""
    note = "; ".join(n for n in (f"compile {compile}" if compile else "", note) if n)
    parts = []
    for r in runner:
        if r.get("alone"):
            parts.append(f"one unit alone ({r['alone']['key']}): {r['alone']['tokens_per_s']:,.0f} tokens/s")
        if r.get("side_by_side"):
            s = r["side_by_side"]
            parts.append(f"{r['phase']}: {s['jobs']} units, {r['parallel']} side by side: "
                         f"{s['tokens_per_s']:,.0f} tokens/s aggregate over {s['seconds']:.0f} s")
    if not parts:
        return "**Throughput**: every unit was already finished (read back)."
    return "**Throughput**" + (f" ({note})" if note else "") + ": " + "; ".join(parts) + "."


def run_jobs(ctx: Context, jobs: Sequence[Job], parallel: int = 1, min_free_gb: float = 6.0,
             probe: bool = False, phase: str = "jobs") -> dict[str, Any]:
    """Run the unfinished ``jobs`` (independent units), up to ``parallel`` at once in worker processes.

    Small models leave a large GPU mostly idle, so several processes train side by side. A
    further job starts only while fewer than ``parallel`` run and (on CUDA) at least
    ``min_free_gb`` GiB of GPU memory are free (``torch.cuda.mem_get_info``); otherwise it
    waits for a running one to finish. With ``probe`` the first unfinished job runs alone
    first, so the record holds one-at-a-time and side-by-side throughput of the same form.
    ``parallel <= 1`` runs every job in this process, in order. Each job writes its own
    unit records, so the results do not depend on the process that ran it (the test checks
    this on the CPU). Returns (and appends to ``OUT/runner.json``) the throughput record:
    tokens trained, wall seconds, aggregate tokens/s, alone and side by side."""
    import concurrent.futures as futures
    import multiprocessing
    import time

    import torch

    pending = [j for j in jobs if not (ctx.out / "units" / f"{j.done}.json").exists()]
    record: dict[str, Any] = {"phase": phase, "jobs": len(jobs), "ran": len(pending), "parallel": parallel}
    if not pending:
        return record
    fields = _context_fields(ctx)
    if probe and parallel > 1 and len(pending) > 1:
        first = pending.pop(0)
        logger.info(f"{phase}: {first.key} alone (throughput probe)")
        seconds, _ = _run_job(fields, first.function, first.args)
        record["alone"] = {"key": first.key, "tokens": first.tokens, "seconds": round(seconds, 2),
                           "tokens_per_s": round(first.tokens / seconds, 1) if seconds else None}
    start = time.time()
    pids: set[int] = set()
    if parallel <= 1:
        for job in pending:
            logger.info(f"{phase}: {job.key}")
            pids.add(_run_job(fields, job.function, job.args)[1])
    else:
        threads = max(1, torch.get_num_threads() // parallel) if ctx.device == "cpu" or \
            not torch.cuda.is_available() else max(1, (os.cpu_count() or 1) // parallel)
        queue = list(pending)
        with futures.ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_worker_setup, initargs=(threads, shown_level())) as pool:
            running: dict[futures.Future, Job] = {}
            while queue or running:
                while queue and len(running) < parallel:
                    free = free_gpu_gb(ctx.device)
                    if running and free is not None and free < min_free_gb:
                        break  # wait for a running job to free its memory
                    job = queue.pop(0)
                    logger.info(f"{phase}: {job.key} ({len(running) + 1} running"
                                + (f", {free:.0f} GiB free)" if free is not None else ")"))
                    running[pool.submit(_run_job, fields, job.function, job.args)] = job
                done, _ = futures.wait(list(running), timeout=5.0, return_when=futures.FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    pids.add(future.result()[1])  # a failed job stops the experiment with its own error
    seconds = time.time() - start
    tokens = sum(j.tokens for j in pending)
    record.update({"processes": sorted(pids),
                   "side_by_side": {"jobs": len(pending), "tokens": tokens, "seconds": round(seconds, 2),
                                    "tokens_per_s": round(tokens / seconds, 1) if seconds else None}})
    log = ctx.out / "runner.json"
    history = json.loads(log.read_text()) if log.exists() else []
    history.append(record)
    ctx.out.mkdir(parents=True, exist_ok=True)
    log.write_text(json.dumps(history, indent=2))
    return record
