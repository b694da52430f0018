"""How an experiment's training runs are compiled: the experiment setting ``compile``.

Every experiment reads one setting, ``compile`` (``growlm experiment NAME --set compile=...``),
and writes the mode it resolves to into the ``compile`` key of every training config it
builds (single runs and the ``defaults`` of growth plans); :mod:`growlm.training.compiling`
does the compiling. Choices:

* ``auto`` (default) -- eager on the CPU (the ``--quick`` forms and CI train a few steps of
  tiny models, where compiling costs more than it saves); on CUDA, eager while the
  experiment's longest training run (or plan stage: each stage compiles again) is shorter
  than :data:`COMPILE_PAYS_TOKENS`, else the fastest mode that is safe for the experiment:
  ``graphs`` (``torch.compile`` with CUDA graphs; 2.4x eager's steady tokens/s for the
  experiments' 21M models on an H100), or ``true`` where the experiment says why CUDA graphs
  do not fit its training (see :func:`choose`'s ``no_graphs``). The threshold is measured
  (docs/benchmarks.md round three (d2)): with a cold compile cache the compiled run's first
  step took 15.4 s against eager's 2.5 s, and each token then saved 0.79 us (1.75M against
  0.73M tokens/s), so compiling pays from ~16M tokens per run; the experiments' default full
  forms train 0.8-4.5M tokens per run, where a 120-step run measured 113k wall tokens/s
  compiled against 320k eager. A run whose shapes are already in the cache (a later seed)
  starts in ~1 s and would gain from compiling: ``--set compile=graphs`` asks for it.
* ``false`` (eager), ``true``, ``regional``, ``graphs`` -- as the training config key.
  ``graphs`` asked of an experiment that cannot take it runs ``true``, with the reason logged.

What stays as it was, on purpose:

* Evaluation (validation loss during training, ``growlm eval``, an experiment's own
  evaluation units) runs the eager model: the trainer compiles only its training step.
* A growth plan compiles again at each stage (growth changes the parameter shapes); the
  stage's first step holds that compilation, and :func:`speed_text` reports it.
* Units run side by side (:func:`growlm.experiments.common.run_jobs`) each compile in their
  own process; they share Inductor's on-disk cache (``$TORCHINDUCTOR_CACHE_DIR``, default
  ``/tmp/torchinductor_$USER``), which is safe across processes (entries are keyed by a hash
  of the graph and written atomically: a per-process temporary file renamed into place) and
  lets the second unit of a shape load the first one's kernels. Each worker's Inductor
  compile pool is limited to its share of the cores (``_worker_setup`` in common.py).
* Multi-GPU (DDP/FSDP) runs cannot capture CUDA graphs; the trainer falls back to ``true``
  there with a message (experiments train in one process per unit).
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from growlm.errors import ConfigError
from growlm.experiments.common import Context, form_values, on_cuda

logger = logging.getLogger(__name__)

SETTING = "compile"
# Tokens from which one compiled training run (cold cache) finishes sooner than an eager one (module doc).
COMPILE_PAYS_TOKENS = 16_000_000
CHOICES = ("auto", "false", "true", "regional", "graphs")
_FALSE = ("false", "0", "no", "off", "eager")
_TRUE = ("true", "1", "yes", "on")
_said: set[str] = set()


def parse_setting(value: Any) -> str:
    """The ``compile`` setting as one of :data:`CHOICES` (``--set`` gives strings or YAML booleans);
    anything else is an error naming the choices."""
    text = str(value).strip().lower()
    if text in _FALSE:
        return "false"
    if text in _TRUE:
        return "true"
    if text in CHOICES:
        return text
    raise ConfigError(f"experiment setting compile must be one of {', '.join(CHOICES)}; got {value!r}")


def config_mode(setting: Any) -> bool | str:
    """The training config's ``compile`` value of a resolved setting (a :attr:`CompileChoice.label`):
    ``false``/``eager`` -> False, ``true`` -> True, the others as they are."""
    text = parse_setting(setting)
    return {"true": True, "false": False}.get(text, text)


@dataclass(frozen=True)
class CompileChoice:
    """The training config's ``compile`` value an experiment uses, and why."""

    mode: bool | str  # False, True, "regional" or "graphs": what goes into the training config
    reason: str

    @property
    def label(self) -> str:
        return "eager" if self.mode is False else "true" if self.mode is True else str(self.mode)

    def text(self) -> str:
        return f"compile {self.label} ({self.reason})"


def choose(setting: Any, device: str, no_graphs: str | None = None, experiment: str = "",
           tokens: int | None = None) -> CompileChoice:
    """The compile mode for an experiment's training runs (module doc).

    ``no_graphs``: why this experiment's training cannot use CUDA graphs (None when it can);
    ``auto`` then picks ``true`` on CUDA, and an explicit ``graphs`` becomes ``true``.
    ``tokens``: the most tokens one training run or plan stage of the experiment trains (None:
    not known, taken as long enough); ``auto`` stays eager below :data:`COMPILE_PAYS_TOKENS`. The
    choice is logged with its reason, once per process and text."""
    requested = parse_setting(setting)
    if requested == "auto":
        if not on_cuda(device):
            choice = CompileChoice(False, "auto: eager without CUDA, where compiling short runs costs more than it saves")
        elif tokens is not None and tokens < COMPILE_PAYS_TOKENS:
            choice = CompileChoice(False, f"auto on CUDA: eager, the longest run trains {tokens:,} tokens, fewer than "
                                          f"the {COMPILE_PAYS_TOKENS:,} from which compiling pays; --set compile=graphs "
                                          "to compile anyway")
        elif no_graphs:
            choice = CompileChoice(True, f"auto on CUDA, without CUDA graphs: {no_graphs}")
        else:
            choice = CompileChoice("graphs", "auto on CUDA: torch.compile with CUDA graphs")
    elif requested == "graphs" and no_graphs:
        choice = CompileChoice(True, f"graphs asked for, compiling without CUDA graphs: {no_graphs}")
    else:
        choice = CompileChoice(config_mode(requested), "set by the experiment's compile setting")
    message = f"{experiment or 'experiment'}: training with {choice.text()}"
    if message not in _said:  # experiments ask once per run they build; say it once
        _said.add(message)
        logger.info(message)
    return choice


def form_choice(ctx: Context, forms: dict[str, Any], longest_run: Callable[[dict[str, Any]], int]) -> CompileChoice:
    """:func:`choose` for an experiment sized by a quick and a full form (``forms``, read with the
    ``--set`` options applied by :func:`growlm.experiments.common.form_values`): its ``compile``
    setting, and ``longest_run`` of the form's values as the tokens of its longest run."""
    values = form_values(ctx, forms["quick" if ctx.quick else "full"])
    return choose(values["compile"], ctx.device, experiment=ctx.name, tokens=longest_run(values))


def trained_units(out: Path) -> list[dict[str, Any]]:
    """The training results an experiment's folder holds: every ``Context.train`` and
    ``Context.plan`` unit record under ``OUT/units`` (finished in this or an earlier invocation)."""
    found = []
    for record in sorted((Path(out) / "units").rglob("*.json")):
        try:
            result = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and "run" in result and ("stages" in result or "summary" in result):
            found.append(result)
    return found


def _stage_speeds(results: Iterable[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Steady tokens/s and seconds to the first step of every training run in ``results``
    (``Context.train`` results and ``Context.plan`` results, whose stages count one each)."""
    speeds: list[float] = []
    first: list[float] = []
    for result in results:
        records = result.get("stages") or [result.get("summary") or {}]
        for r in records:
            if r.get("steady_tokens_per_s"):
                speeds.append(float(r["steady_tokens_per_s"]))
            start = r.get("stage_to_first_step_s", r.get("time_to_first_step_s"))
            if start is not None:
                first.append(float(start))
    return speeds, first


def speed_text(choice: CompileChoice, results: Iterable[dict[str, Any]] = ()) -> str:
    """One report line: the compile mode with its reason, and the training runs' steady tokens/s
    (median over runs and plan stages) and time to the first step, which holds the compilation
    (a plan compiles again at each stage)."""
    speeds, first = _stage_speeds(results)
    parts = [f"**Compile**: {choice.text()}"]
    if speeds:
        parts.append(f"steady training speed {statistics.median(speeds):,.0f} tokens/s "
                     f"(median of {len(speeds)} runs or plan stages; range {min(speeds):,.0f}-{max(speeds):,.0f})")
    if first:
        parts.append(f"first step after {statistics.median(first):.1f} s (median; max {max(first):.1f} s; "
                     "includes compiling, which a growth plan does again at each stage)")
    return "; ".join(parts) + "."
