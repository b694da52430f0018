"""Nexusformer's growth ablations from one base per seed: Table 9 (axes) and Appendix I (dimension schedules).

Both parts grow the same trained base (per seed) and continue every grown model on the same
number of tokens with the same recipe, so they share one experiment (one base, one no-growth
control, one report; ``--set parts=axes`` or ``parts=schedules`` runs one part only).

**Scaling.** The paper grows nexusformer-240M (D 768, M 780, A 960) by +400 in M + A
(Table 9). Every (M, A) of the paper is multiplied by ``s = D / 768`` (full form: D 384,
s = 1/2; quick form: D 32, s = 1/24) and rounded, so the ratios M/D, A/D, M/A and the
increments' split between the axes are the paper's.

**Part `axes` (Table 9).** From the base (780, 960)·s:

* ``m-only``       -> (1180, 960)·s   M only, ends with M > A (the paper's first row);
* ``a-only``       -> (780, 1360)·s   A only;
* ``joint-m-led``  -> (1130, 1010)·s  both, most of the increment on M, M > A;
* ``joint-a-led``  -> (830, 1310)·s   both, most on A (the paper's best row; the reference);
* ``no-growth``    the base alone, continued for the compute of ``joint-a-led``'s continuation.

**Part `schedules` (Appendix I / §3.3).** The stored text of Appendix I holds only its
first section (the loss rebound and lr alignment); the dimension-schedule ablation it is
cited for (§3.3: "unstable jumps in a single step or premature bottlenecks [...] joint
expansion of M and A that prioritizes the A-axis consistently outperforms strategies that
expand only one axis or shrink dimensions first") is known from §3.3 alone. Two readings,
both run (docs/experiments.md says why):

* *the route* to the same target (830, 1310)·s: ``joint-a-led`` (one shot, the reference),
  ``two-steps`` (half of both increments at growth, the rest at ``stage_at`` of the
  continuation), ``a-then-m`` (A first, M at ``stage_at``), ``m-then-a`` (M first);
* *the dimension hierarchy* of the grown layer at the same M + A: progressive D < M < A
  (``joint-a-led``), a single-step jump M = A (``flat``: D -> A at the first map, then
  flat), and the A < M bottleneck (``joint-m-led``, from part `axes`). Shrinking (M < D)
  is not a growth: growlm grows losslessly and never removes units, so that schedule
  has no arm.

Every continuation is one growlm plan (its first stage ``init_from`` the grown model, a
staged arm's second stage ``grow``), under ONE WSD schedule over the continuation
(re-warm-up after growth, one decay), optimizer moments carried, and the FLOPs ledger of
the plan. Metric: validation perplexity exp(mean cross-entropy) over ``final_windows``
windows spread over the validation split, per seed; mean ± 95% t-interval over seeds, and
paired (same seed, same base) differences of ln PPL against the reference arm and the
no-growth control. Units run side by side (``common.run_jobs``) and resume after an
interruption.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from growlm.errors import ConfigError, GrowlmError, unknown_key_message
from growlm.experiments.common import (
    Context,
    Job,
    Report,
    default_parallel,
    form_values,
    markdown_table,
    run_jobs,
    throughput_text,
)
from growlm.experiments.compiling import CompileChoice, config_mode, form_choice, speed_text, trained_units
from growlm.experiments.recipe import model_costs, pyplot, save_figure
from growlm.logs import quiet
from growlm.stats import mean_interval

logger = logging.getLogger(__name__)

DESCRIPTION = "Nexusformer Table 9 (grow M only, A only, both; M > A too) and App. I dimension schedules, one base"
DEFAULT_SEEDS = 3
QUICK_SEEDS = 3
PRESET = "nexus-tiny"
PAPER_D = 768
PAPER_BASE = (780, 960)
REFERENCE = "joint-a-led"
CONTROL = "no-growth"
PARTS = ("axes", "schedules")


@dataclass(frozen=True)
class Arm:
    """One arm: the (M, A) of each growth, in the paper's units (x ``s`` at run time), in order."""

    name: str
    parts: tuple[str, ...]
    text: str
    route: tuple[tuple[int, int], ...] = ()  # empty: the no-growth control
    paper_ppl: float | None = None  # Table 9


ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("m-only", ("axes",), "M only (ends M > A)", ((1180, 960),), 10.89386732),
    Arm("a-only", ("axes",), "A only", ((780, 1360),), 10.89604631),
    Arm("joint-m-led", ("axes", "schedules"), "M and A, M-led (ends M > A; App. I: A < M bottleneck)",
        ((1130, 1010),), 10.89386732),
    Arm("joint-a-led", ("axes", "schedules"), "M and A, A-led, one shot (the paper's; App. I: D < M < A)",
        ((830, 1310),), 10.89016404),
    Arm(CONTROL, ("axes", "schedules"), "no growth: the base continued at joint-a-led's compute"),
    Arm("two-steps", ("schedules",), "half of both increments, then the rest", ((805, 1135), (830, 1310))),
    Arm("a-then-m", ("schedules",), "A first, then M", ((780, 1310), (830, 1310))),
    Arm("m-then-a", ("schedules",), "M first, then A", ((830, 960), (830, 1310))),
    Arm("flat", ("schedules",), "single-step jump M = A (same M + A as joint-a-led)", ((1070, 1070),)),
)}
TABLE9 = ("m-only", "a-only", "joint-m-led", "joint-a-led")
APPENDIX_I = ("joint-a-led", "two-steps", "a-then-m", "m-then-a", "flat", "joint-m-led")


@dataclass
class Settings:
    """Every size of the experiment; each is a ``--set KEY=VALUE`` option."""

    hidden_size: int  # D; the paper's (M, A) are scaled by D / 768
    layers: int
    heads: int
    head_dim: int
    intermediate_size: int
    seq_len: int
    micro_batch_size: int
    base_tokens: int
    grow_tokens: int  # every grown arm's continuation (the control gets equal compute instead)
    lr: float = 2e-3
    lr_factor: float = 1.0  # peak lr of the continuation, x lr (the paper raises it after growth)
    warmup_steps: int = 10
    grow_warmup_steps: int = 5
    decay_fraction: float = 0.2
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    stage_at: float = 0.5  # staged arms: the second growth after this fraction of the continuation
    eval_every: int = 25
    eval_batches: int = 4
    final_windows: int = 256
    parts: str = "axes,schedules"
    parallel: int = 0  # worker processes side by side (0: 8 on CUDA, 1 on the CPU)
    min_free_gb: float = 4.0
    compile: str = "auto"  # experiment setting (growlm.experiments.compiling); settings() resolves it
    docs_per_file: int = 0  # training documents per corpus source (0: all)
    val_docs_per_file: int = 0

    @property
    def scale(self) -> float:
        return self.hidden_size / PAPER_D

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.micro_batch_size

    def steps(self, tokens: int) -> int:
        return max(1, round(tokens / self.tokens_per_step))

    @property
    def part_list(self) -> list[str]:
        return [p.strip() for p in self.parts.split(",") if p.strip()]

    def dims(self, paper: tuple[int, int]) -> tuple[int, int]:
        """The paper's (M, A) at this model's width (rounded half up)."""
        return tuple(math.floor(v * self.scale + 0.5) for v in paper)  # type: ignore[return-value]

    def model(self, m: int, a: int) -> dict[str, Any]:
        small = self.hidden_size < 128
        return {"num_hidden_layers": self.layers, "hidden_size": self.hidden_size,
                "intermediate_size": self.intermediate_size, "num_attention_heads": self.heads,
                "head_dim": self.head_dim, "nexus_m": m, "nexus_a": a, "tie_word_embeddings": True,
                **({"max_position_embeddings": 128} if small else {})}


FORMS = {
    # full: D 384 (s = 1/2: base M 390, A 480), 4 layers, 6 x 64 heads, FFN 1024 (the paper's 2048/768
    # ratio), tied embeddings; 1M base tokens, 750k per continuation (8,192 tokens/step)
    "full": Settings(hidden_size=384, layers=4, heads=6, head_dim=64, intermediate_size=1024, seq_len=256,
                     micro_batch_size=32, base_tokens=1_000_000, grow_tokens=750_000),
    # quick: CPU, D 32 (s = 1/24: base M 33, A 40), 10 base steps and 8 continued steps of 2 x 32 tokens
    "quick": Settings(hidden_size=32, layers=2, heads=2, head_dim=16, intermediate_size=96, seq_len=32,
                      micro_batch_size=2, base_tokens=10 * 64, grow_tokens=8 * 64, warmup_steps=1,
                      grow_warmup_steps=1, eval_every=4, eval_batches=1, final_windows=8, docs_per_file=2,
                      val_docs_per_file=1),
}


def settings(ctx: Context) -> Settings:
    """The form's :class:`Settings` with ``ctx.options`` applied (unknown keys and parts refused, named)."""
    out = Settings(**form_values(ctx, FORMS["quick" if ctx.quick else "full"]))
    for part in out.part_list:
        if part not in PARTS:
            raise ConfigError(unknown_key_message("part", part, PARTS))
    if not out.part_list:
        raise ConfigError(f"parts must name at least one of {', '.join(PARTS)}")
    if not 0 < out.stage_at < 1:
        raise ConfigError(f"stage_at must lie in (0, 1), got {out.stage_at}")
    n = out.steps(out.grow_tokens)
    if round(out.stage_at * n) < 1 or round(out.stage_at * n) >= n:
        raise ConfigError(f"stage_at={out.stage_at} leaves no steps on one side of the second growth "
                          f"({n} continued steps): raise grow_tokens")
    if out.parallel == 0:
        out.parallel = default_parallel(ctx, 8)
    out.compile = compile_choice(ctx).label  # the resolved mode: what every run of this experiment uses
    return out


def compile_choice(ctx: Context) -> CompileChoice:
    """How this experiment's runs compile (:mod:`growlm.experiments.compiling`): on the GPU, CUDA
    graphs once its longest run is long enough to pay for compiling, for single runs and growth
    plans alike (a plan compiles again at each stage)."""
    return form_choice(ctx, FORMS, lambda values: values["base_tokens"] + values["grow_tokens"])


def arm_names(size: Settings) -> list[str]:
    return [name for name, arm in ARMS.items() if set(arm.parts) & set(size.part_list)]


def route(size: Settings, arm: Arm) -> list[tuple[int, int]]:
    """The arm's (M, A) after each growth, at this width."""
    return [size.dims(p) for p in arm.route]


def flops_per_token(size: Settings, m: int, a: int) -> int:
    return model_costs(PRESET, size.model(m, a), size.seq_len)["train_flops_per_token"]


def control_steps(size: Settings) -> int:
    """Continued steps of the base that cost what joint-a-led's continuation costs (FLOPs per token ratio)."""
    base = size.dims(PAPER_BASE)
    ref = route(size, ARMS[REFERENCE])[-1]
    return max(1, round(size.steps(size.grow_tokens) * flops_per_token(size, *ref) / flops_per_token(size, *base)))


# -- units ------------------------------------------------------------------------------------------
def _defaults(size: Settings, data: str, seed: int) -> dict[str, Any]:
    return {"data": data, "seq_len": size.seq_len, "micro_batch_size": size.micro_batch_size,
            "lr": size.lr * size.lr_factor, "weight_decay": size.weight_decay, "eval_every": size.eval_every,
            "eval_batches": size.eval_batches, "log_every": size.eval_every, "checkpoint_every": 10**9,
            "keep_last": 1, "seed": seed, "compile": config_mode(size.compile)}


def base_unit(ctx: Context, seed: int, data: str, size: dict[str, Any]) -> None:
    """A job: the base model of one seed (its own full WSD), then its validation loss."""
    from growlm.experiments.growth_recipes import final_losses

    s = Settings(**size)
    steps = s.steps(s.base_tokens)
    base = ctx.train(f"base/seed={seed}", {
        "model": PRESET, "model_overrides": s.model(*s.dims(PAPER_BASE)), "data": data, "seq_len": s.seq_len,
        "micro_batch_size": s.micro_batch_size, "max_steps": steps, "lr": s.lr, "weight_decay": s.weight_decay,
        "schedule": "wsd", "warmup_steps": s.warmup_steps, "decay_fraction": s.decay_fraction,
        "min_lr_ratio": s.min_lr_ratio, "eval_every": s.eval_every, "eval_batches": s.eval_batches,
        "log_every": s.eval_every, "checkpoint_every": steps, "keep_last": 1, "seed": seed,
        "compile": config_mode(s.compile)})
    ctx.unit(f"base/seed={seed}/final", lambda folder: {
        **final_losses(base["summary"]["checkpoint"], Path(data), s.seq_len, s.final_windows, s.micro_batch_size,
                       ctx.device), "checkpoint": base["summary"]["checkpoint"]})


def arm_plan(size: Settings, arm: Arm, start: str, data: str, seed: int) -> dict[str, Any]:
    """The continuation of one arm as a plan: stage 1 from ``start`` (the grown model, or the base for the
    control), a staged arm's stage 2 grows again after ``stage_at`` of the steps; ONE WSD over both."""
    n = control_steps(size) if arm.name == CONTROL else size.steps(size.grow_tokens)
    dims = route(size, arm)
    first = round(size.stage_at * n) if len(dims) > 1 else n
    stages: list[dict[str, Any]] = [{"name": "continued" if len(dims) < 2 else "stage1", "init_from": start,
                                     "max_steps": first}]
    for i, (m, a) in enumerate(dims[1:], start=2):
        stages.append({"name": f"stage{i}", "grow": {"nexus_m": m, "nexus_a": a}, "init": "preserve",
                       "grow_seed": seed, "max_steps": n - first})
    return {"description": f"{arm.name} seed {seed}", "defaults": _defaults(size, data, seed),
            "schedule": {"kind": "wsd", "warmup_steps": size.grow_warmup_steps,
                         "decay_fraction": size.decay_fraction, "min_lr_ratio": size.min_lr_ratio},
            "stages": stages}


def arm_unit(ctx: Context, seed: int, name: str, data: str, size: dict[str, Any]) -> None:
    """A job: grow the seed's base to the arm's first (M, A), run the continuation plan, evaluate, drop weights."""
    from growlm.experiments.growth_recipes import final_losses
    from growlm.growth import grow_checkpoint, parse_init

    s = Settings(**size)
    arm = ARMS[name]
    key = f"{name}/seed={seed}"
    base_ckpt = json.loads((ctx.out / "units" / f"base/seed={seed}/final.json").read_text())["checkpoint"]
    if not _has_weights(base_ckpt):
        raise GrowlmError(f"the base checkpoint of seed {seed} ({base_ckpt}) is gone (a folder carried without its "
                          "weights?): the unfinished arms must grow the same base; run into a fresh --out")
    drop_stale(ctx, key)
    start, verified = base_ckpt, None
    if arm.route:
        m, a = route(s, arm)[0]

        def grow(folder: Path) -> dict[str, Any]:
            shutil.rmtree(folder / "model", ignore_errors=True)  # an interrupted earlier attempt
            with quiet():
                report = grow_checkpoint(base_ckpt, folder / "model", {"nexus_m": m, "nexus_a": a},
                                         parse_init("preserve"), seed=seed)
            saved = report.to_json()  # the unit's JSON record holds growth.json's fields
            return {"model": str(folder / "model"), "verification": saved["verification"],
                    "parameters": saved["parameters"]}

        grown = ctx.unit(f"{key}/grown", grow)
        start, verified = grown["model"], (grown["verification"] or {}).get("passed")
    result = ctx.plan(f"{key}/plan", arm_plan(s, arm, start, data, seed))

    def evaluate(folder: Path) -> dict[str, Any]:
        final = result["stages"][-1]["final_checkpoint"]
        losses = final_losses(final, Path(data), s.seq_len, s.final_windows, s.micro_batch_size, ctx.device)
        loss = (losses["tune"] + losses["report"]) / 2  # both halves: no choice is made on this set
        for pattern in ("*.safetensors", "*.pt", "*.bin"):
            for path in list(Path(result["run"]).rglob(pattern)) + list((ctx.out / "runs" / key).rglob(pattern)):
                path.unlink(missing_ok=True)
        stages = result["stages"]
        return {"arm": name, "seed": seed, "loss": loss, "ppl": math.exp(loss), "windows": losses["windows"],
                "route": [list(d) for d in route(s, arm)], "flops": result["ledger"]["total"]["train_flops"],
                "tokens": result["ledger"]["total"]["tokens"], "parameters": stages[-1]["parameters"],
                "seconds": sum(st["seconds"] for st in stages),
                "growth_verified": [verified] + [st.get("growth_verified") for st in stages[1:]] if arm.route else [],
                "stage_steps": [st["steps"] for st in stages],
                "curve": [{"tokens": p["tokens"] + sum(x["tokens"] for x in stages[:i]), "loss": p["val_loss"]}
                          for i, st in enumerate(stages) for p in st["metrics"] if p.get("val_loss") is not None]}

    ctx.unit(f"{key}/final", evaluate)


def drop_stale(ctx: Context, key: str) -> None:
    """Forget the records of an unfinished arm whose weights are gone (deleted by an evaluation that was
    interrupted before it wrote its record): the plan and the growth are then redone, not read back."""
    units = ctx.out / "units" / key
    if (units / "final.json").exists():
        return
    plan = units / "plan.json"
    if plan.exists() and not _has_weights(json.loads(plan.read_text())["stages"][-1]["final_checkpoint"]):
        plan.unlink()
        shutil.rmtree(ctx.out / "runs" / key / "plan", ignore_errors=True)
    grown = units / "grown.json"
    if grown.exists() and not plan.exists() and not _has_weights(json.loads(grown.read_text())["model"]):
        grown.unlink()
        shutil.rmtree(ctx.out / "runs" / key / "grown", ignore_errors=True)


def _has_weights(folder: str | Path) -> bool:
    return any(Path(folder).glob("*.safetensors"))  # the evaluation deletes the files, not the folders


def _job(function: str, key: str, tokens: int, **args: Any) -> Job:
    return Job(key, f"growlm.experiments.nexus_ablations:{function}", args, f"{key}/final", tokens)


def _read(ctx: Context, key: str) -> dict[str, Any]:
    return json.loads((ctx.out / "units" / f"{key}/final.json").read_text())


# -- the experiment -----------------------------------------------------------------------------------
def run(ctx: Context) -> Report:
    size = settings(ctx)
    data = str(ctx.corpus("corpus", max_docs_per_file=size.docs_per_file or None,
                          val_docs_per_file=size.val_docs_per_file or None))
    fields = dataclasses.asdict(size)
    names = arm_names(size)
    base_jobs = [_job("base_unit", f"base/seed={seed}", size.steps(size.base_tokens) * size.tokens_per_step,
                      seed=seed, data=data, size=fields) for seed in ctx.seeds]
    run_jobs(ctx, base_jobs, min(size.parallel, len(base_jobs)), size.min_free_gb, phase="bases")
    arm_jobs = []
    for seed in ctx.seeds:
        for name in names:
            steps = control_steps(size) if name == CONTROL else size.steps(size.grow_tokens)
            arm_jobs.append(_job("arm_unit", f"{name}/seed={seed}", steps * size.tokens_per_step, seed=seed,
                                 name=name, data=data, size=fields))
    run_jobs(ctx, arm_jobs, size.parallel, size.min_free_gb, phase="arms")
    log = ctx.out / "runner.json"
    runner = json.loads(log.read_text()) if log.exists() else []
    return report(ctx, size, names, runner)


# -- analysis -------------------------------------------------------------------------------------------
def paired(ctx: Context, name: str, other: str) -> Any:
    """Per-seed ln PPL(name) - ln PPL(other) (same base), as a mean with its 95% t-interval."""
    return mean_interval(_read(ctx, f"{name}/seed={s}")["loss"] - _read(ctx, f"{other}/seed={s}")["loss"]
                         for s in ctx.seeds)


def verdict(interval: Any) -> str:
    """The pre-registered rule (docs/experiments.md): the 95% interval of a paired ln-PPL difference."""
    if interval.n < 2 or math.isnan(interval.low):
        return "n/a"
    if interval.high < 0:
        return "lower"
    if interval.low > 0:
        return "higher"
    return "tie"


def _row(ctx: Context, size: Settings, name: str, reference: str) -> dict[str, Any]:
    arm = ARMS[name]
    records = [_read(ctx, f"{name}/seed={s}") for s in ctx.seeds]
    base = size.dims(PAPER_BASE)
    dims = route(size, arm) or [base]
    paper_route = " → ".join(f"{m}/{a}" for m, a in [PAPER_BASE, *arm.route]) if arm.route else "780/960 (kept)"
    costs = model_costs(PRESET, size.model(*dims[-1]), size.seq_len)
    vs_ref = paired(ctx, name, reference) if name != reference else None
    vs_control = paired(ctx, name, CONTROL) if name != CONTROL else None
    return {"arm": name, "what": arm.text, "route": " → ".join(f"{m}/{a}" for m, a in [base, *route(size, arm)]),
            "paper_route": paper_route, "params": f"{costs['total_params'] / 1e6:.2f}M",
            "non_embedding": f"{costs['non_embedding_params'] / 1e6:.2f}M",
            "flops": f"{sum(r['flops'] for r in records) / len(records) / 1e12:.3f}",
            "ppl": mean_interval(r["ppl"] for r in records), "loss": mean_interval(r["loss"] for r in records),
            "vs_ref": vs_ref if vs_ref is not None else "reference",
            "vs_ref_verdict": verdict(vs_ref) if vs_ref is not None else "",
            "vs_control": vs_control if vs_control is not None else "—",
            "vs_control_verdict": verdict(vs_control) if vs_control is not None else "",
            "paper_ppl": f"{arm.paper_ppl:.8f}" if arm.paper_ppl else "—", "seeds": len(records),
            "verified": all(v is True for r in records for v in r["growth_verified"])
            if arm.route else None}


COLUMNS = [("arm", "Arm"), ("what", "Growth"), ("route", "M/A route (ours)"), ("paper_route", "M/A route (paper)"),
           ("params", "Params"), ("non_embedding", "Non-emb."), ("flops", "Continuation TFLOP"),
           ("ppl", "Val PPL (95% CI)"), ("vs_ref", "Δ ln PPL vs reference (paired)"), ("vs_ref_verdict", "vs ref."),
           ("vs_control", "Δ ln PPL vs no growth"), ("vs_control_verdict", "vs no growth"),
           ("paper_ppl", "Paper PPL (Table 9)"), ("seeds", "Seeds")]


def report(ctx: Context, size: Settings, names: list[str], runner: list[dict[str, Any]]) -> Report:
    bases = [_read(ctx, f"base/seed={s}") for s in ctx.seeds]
    base_loss = [(b["tune"] + b["report"]) / 2 for b in bases]
    m0, a0 = size.dims(PAPER_BASE)
    n = size.steps(size.grow_tokens)
    body = [
        f"One NexusFormer base per seed: {size.layers} layers, D {size.hidden_size}, FFN {size.intermediate_size}, "
        f"{size.heads}×{size.head_dim} heads, tied embeddings, (M, A) = ({m0}, {a0}) = the paper's 240M (780, 960) × "
        f"{size.scale:.4g} (D / 768); {size.steps(size.base_tokens)} steps ({size.base_tokens:,} tokens, own WSD), "
        f"validation PPL {mean_interval(math.exp(v) for v in base_loss).format(2)}. Every grown arm continues "
        f"{n} steps ({n * size.tokens_per_step:,} tokens; sequence {size.seq_len}, batch {size.micro_batch_size}) "
        f"under one WSD (warm-up {size.grow_warmup_steps} steps, decay over the last "
        f"{100 * size.decay_fraction:g}% to {size.min_lr_ratio:g}× the peak lr {size.lr * size.lr_factor:g}), "
        f"growth `preserve` (lossless), optimizer moments carried; staged arms grow again after "
        f"{round(size.stage_at * n)} steps. The no-growth control continues the base for {control_steps(size)} "
        f"steps: the FLOPs of {REFERENCE}'s continuation. Validation PPL = exp(mean cross-entropy over "
        f"{size.final_windows} windows spread over the validation split); mean ± 95% t-interval over seeds "
        f"{', '.join(map(str, ctx.seeds))}. Δ ln PPL: per-seed paired difference (same base) with its 95% "
        "interval; verdict (pre-registered, docs/experiments.md): 'lower'/'higher' when the interval excludes 0, "
        "else 'tie'.",
    ]
    rows: dict[str, dict[str, Any]] = {}
    if "axes" in size.part_list:
        table = [_row(ctx, size, a, REFERENCE) for a in (*TABLE9, CONTROL)]
        rows.update({r["arm"]: r for r in table})
        body += ["### Table 9: which axis to grow", markdown_table(table, COLUMNS, digits=4)]
    if "schedules" in size.part_list:
        table = [_row(ctx, size, a, REFERENCE) for a in APPENDIX_I]
        rows.update({r["arm"]: r for r in table})
        body += ["### Appendix I: the route to the target and the dimension hierarchy",
                 f"Route: the same target ({', '.join(map(str, route(size, ARMS[REFERENCE])[-1]))}) reached in one "
                 "shot (the reference), in two joint steps, A first or M first. Hierarchy at the same M + A: "
                 "D < M < A (the reference), M = A (`flat`: the single-step jump D → A), A < M (`joint-m-led`). "
                 "Shrinking (M < D) is not a growth and has no arm.",
                 markdown_table(table, [*COLUMNS[:-2], ("seeds", "Seeds")], digits=4)]
    verified = [r["verified"] for r in rows.values() if r["verified"] is not None]
    body.append(f"Growth verified lossless (growlm's check after every growth, every seed): "
                f"{'all' if all(verified) else 'NOT all'} {len(verified)} grown arms.")
    body.append(throughput_text(runner, compile=size.compile))
    body.append(speed_text(compile_choice(ctx), trained_units(ctx.out)))
    paper = ("Table 9 (nexusformer-280M grown from 240M, FineWeb; PPL as printed, its other columns lost in the "
             "text extraction): 1180/960 10.89386732, 780/1360 10.89604631, 1130/1010 10.89386732, 830/1310 "
             "10.89016404 -- the A-led joint growth lowest, by 0.003% to 0.005% of PPL (one run each; the two "
             "M > A rows print the same eight digits). §3.3 / Appendix I: joint expansion that prioritizes A "
             "'consistently outperforms' expanding one axis or shrinking first; single-step jumps and premature "
             "bottlenecks (M < D or A < M) are called unstable or lossy; no numbers survive in the stored text.")
    figures = [_figure_bars(ctx, size, rows), _figure_curves(ctx, names)]
    data = {"settings": dataclasses.asdict(size), "scale": size.scale, "base": {"dims": [m0, a0], "loss": base_loss},
            "records": [{k: v for k, v in _read(ctx, f"{a}/seed={s}").items() if k != "curve"}
                        for a in names for s in ctx.seeds],
            "rows": [{k: v for k, v in r.items()} for r in rows.values()], "runner": runner}
    return Report("Nexusformer growth ablations: Table 9 (axes) and Appendix I (schedules)", "\n\n".join(body),
                  figures, data, paper=paper)


def _figure_bars(ctx: Context, size: Settings, rows: dict[str, dict[str, Any]]) -> Path:
    plt = pyplot()
    names = [a for a in rows if a != CONTROL]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    ax = axes[0]
    means = [rows[a]["ppl"].mean for a in names]
    errors = [0.0 if math.isnan(rows[a]["ppl"].half_width) else rows[a]["ppl"].half_width for a in names]
    ax.bar(range(len(names)), means, yerr=errors, capsize=3, color=[f"C{i}" for i in range(len(names))])
    if CONTROL in rows:
        ax.axhline(rows[CONTROL]["ppl"].mean, color="black", linestyle="--", linewidth=1, label="no growth")
        ax.legend(fontsize=8)
    low = min(m - e for m, e in zip(means, errors, strict=True))
    high = max(m + e for m, e in zip(means, errors, strict=True))
    ax.set_ylim(low - 0.1 * (high - low + 1e-9), high + 0.1 * (high - low + 1e-9))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=25, ha="right")
    ax.set_title(f"validation PPL (mean, 95% CI; {len(ctx.seeds)} seeds)")
    ax.grid(alpha=0.3, axis="y")
    ax = axes[1]
    diffs = [a for a in names if a != REFERENCE]
    values = [paired(ctx, a, REFERENCE) for a in diffs]
    ax.bar(range(len(diffs)), [v.mean for v in values],
           yerr=[0.0 if math.isnan(v.half_width) else v.half_width for v in values], capsize=3,
           color=[f"C{names.index(a)}" for a in diffs])
    paper = [(i, p) for i, a in enumerate(diffs) if (p := ARMS[a].paper_ppl)]
    reference_ppl = ARMS[REFERENCE].paper_ppl
    if paper and reference_ppl:
        ax.plot([i for i, _ in paper], [math.log(p / reference_ppl) for _, p in paper], "k*",
                markersize=10, label="paper (Table 9)")
        ax.legend(fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(diffs)))
    ax.set_xticklabels(diffs, rotation=25, ha="right")
    ax.set_title(f"Δ ln PPL vs {REFERENCE} (paired by seed, 95% CI)")
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, ctx.path("nexus_ablations.png"))


def _figure_curves(ctx: Context, names: list[str]) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, name in enumerate(names):
        curves = [_read(ctx, f"{name}/seed={s}")["curve"] for s in ctx.seeds]
        length = min(len(c) for c in curves)
        if length == 0:
            continue
        tokens = [curves[0][k]["tokens"] for k in range(length)]
        loss = [sum(c[k]["loss"] for c in curves) / len(curves) for k in range(length)]
        ax.plot(tokens, loss, color=f"C{i}", label=name, marker="o" if length < 4 else None, markersize=3,
                linestyle="--" if name == CONTROL else "-")
    ax.set_xlabel("tokens of the continuation")
    ax.set_ylabel("validation loss during training (seed mean)")
    ax.set_title("continuation after growth")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, ctx.path("continuation_curves.png"))
