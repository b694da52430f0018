"""Does growth pay? The literature's growth recipes against a curve of annealed scratch endpoints.

Issue 19's fair test (the design and the saving are pre-registered in docs/experiments.md):

* **shapes** whose non-embedding parameters carry most of the training FLOPs: tied
  embeddings, the 32k vocabulary, a Llama target of 8 x 512 (:data:`SHAPES`);
* **arms** per seed, with the same init seed and data order across a seed's arms:
  the scratch target at >= 3 budgets (each its own full WSD, annealed, so loss against
  compute is a curve of endpoints); identity depth growth (``init: preserve``), stacking
  (``init: stack``, G_stack) x2 and x4, width cloning (``init: clone``) x4 in
  non-embedding parameters; the no-growth control (the base alone, continued at the
  grown arm's compute, same schedule); Nexus M/A growth from a non-bottlenecked base
  (M >= D) and TokenFormer slot growth, each against its own scratch curve and against
  each other (the paper's 41.5% comparison);
* **one WSD schedule per arm** over all its stages: warm-up once, growth at
  ``growth_at`` of the steps (default 10%) inside the stable phase, one decay over the
  last ``decay_fraction`` of the steps, an optional ``lr_factor`` after growth;
  optimizer moments carried (``moments: fresh`` is the ``stack-d2-fresh`` arm);
* a **learning-rate pilot** per scratch shape (Llama, Nexus and TokenFormer targets):
  ``lrs`` at ``pilot_budget`` x the budget, chosen on the tuning half of the validation
  windows; the chosen lr serves that architecture's scratch and growth arms;
* **saving** (``saving.py``): ``1 - C_grown / C_scratch(L_grown)``, every seed counted,
  mean, 95% t-interval, positive count, ΔL at equal compute, token speedup, GPU seconds.

Every unit (one plan: scratch, control, or base + grown stage) is independent, so the
experiment runs them side by side in ``parallel`` worker processes (``common.run_jobs``)
and resumes after an interruption (finished units are kept).
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
from growlm.experiments.recipe import pyplot, save_figure
from growlm.experiments.saving import Endpoint, saving, saving_against, summarise
from growlm.logs import quiet
from growlm.stats import mean_interval

logger = logging.getLogger(__name__)

DESCRIPTION = "growth recipes (identity, stack, clone, Nexus M/A, TokenFormer slots) vs annealed scratch curves"
DEFAULT_SEEDS = 8
QUICK_SEEDS = 2
ARCHS = ("llama", "nexus", "tokenformer")
TITLES = {"llama": "Llama (Transformer++)", "nexus": "NexusFormer", "tokenformer": "TokenFormer"}
PRESETS = {"llama": "llama-tiny", "nexus": "nexus-tiny", "tokenformer": "tokenformer-tiny"}


def _llama(layers: int, width: int, heads: int, ffn: int, quick: bool) -> dict[str, Any]:
    return {"num_hidden_layers": layers, "hidden_size": width, "intermediate_size": ffn,
            "num_attention_heads": heads, "num_key_value_heads": heads, "head_dim": 16 if quick else 64,
            "tie_word_embeddings": True, **({"max_position_embeddings": 128} if quick else {})}


# form -> architecture -> {"target": overrides, base name: overrides of the base}; every base grows into the target
SHAPES: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "full": {
        "llama": {"target": _llama(8, 512, 8, 1536, False), "d2": _llama(4, 512, 8, 1536, False),
                  "d4": _llama(2, 512, 8, 1536, False), "w4": _llama(8, 256, 4, 768, False)},
        "nexus": {"target": {**_llama(4, 512, 8, 1536, False), "nexus_m": 1024, "nexus_a": 1280},
                  "m2": {**_llama(4, 512, 8, 1536, False), "nexus_m": 512, "nexus_a": 640}},
        "tokenformer": {"target": {**_llama(4, 512, 8, 1536, False), "qkv_slots": 1536, "proj_slots": 1536,
                                   "ffn_slots": 4096},
                        "s2": {**_llama(4, 512, 8, 1536, False), "qkv_slots": 768, "proj_slots": 768,
                               "ffn_slots": 2048}},
    },
    "quick": {
        "llama": {"target": _llama(4, 32, 2, 96, True), "d2": _llama(2, 32, 2, 96, True),
                  "d4": _llama(1, 32, 2, 96, True), "w4": _llama(4, 16, 1, 48, True)},
        "nexus": {"target": {**_llama(2, 32, 2, 96, True), "nexus_m": 64, "nexus_a": 96},
                  "m2": {**_llama(2, 32, 2, 96, True), "nexus_m": 32, "nexus_a": 48}},
        "tokenformer": {"target": {**_llama(2, 32, 2, 96, True), "qkv_slots": 64, "proj_slots": 64,
                                   "ffn_slots": 192},
                        "s2": {**_llama(2, 32, 2, 96, True), "qkv_slots": 32, "proj_slots": 32,
                               "ffn_slots": 96}},
    },
}


SHORT = {"num_hidden_layers": "layers", "hidden_size": "D", "intermediate_size": "FFN", "num_attention_heads": "heads",
         "num_key_value_heads": "KV heads", "nexus_m": "M", "nexus_a": "A", "qkv_slots": "qkv slots",
         "proj_slots": "proj slots", "ffn_slots": "FFN slots"}


@dataclass(frozen=True)
class Arm:
    """A growth or control arm: its architecture, base shape, and (growth) init scheme and moments."""

    arch: str
    kind: str  # grow | control
    base: str
    init: str = "preserve"
    moments: str = "carry"
    text: str = ""


ARMS: dict[str, Arm] = {
    "preserve-d2": Arm("llama", "grow", "d2", "preserve", text="identity depth (preserve, appended)"),
    "preserve-d4": Arm("llama", "grow", "d4", "preserve", text="identity depth (preserve, appended)"),
    "stack-d2": Arm("llama", "grow", "d2", "stack", text="G_stack depth (stack)"),
    "stack-d4": Arm("llama", "grow", "d4", "stack", text="G_stack depth (stack)"),
    "stack-d2-fresh": Arm("llama", "grow", "d2", "stack", "fresh", text="G_stack depth (stack), fresh moments"),
    "clone-w4": Arm("llama", "grow", "w4", "clone", text="width cloning (clone)"),
    # clone alone keeps every copy equal to its source for ever (equal gradients, carried moments):
    # the noise breaks that symmetry (docs/growth.md)
    "clone-w4-noise": Arm("llama", "grow", "w4", "clone:0.01", text="width cloning with symmetry-breaking noise"),
    "control-d2": Arm("llama", "control", "d2", text="no growth, the base alone at the grown arm's compute"),
    "control-d4": Arm("llama", "control", "d4", text="no growth, the base alone at the grown arm's compute"),
    "control-w4": Arm("llama", "control", "w4", text="no growth, the base alone at the grown arm's compute"),
    "nexus-grow": Arm("nexus", "grow", "m2", "preserve", text="Nexus M/A (preserve), base M ≥ D"),
    "tokenformer-grow": Arm("tokenformer", "grow", "s2", "preserve", text="TokenFormer slots (preserve)"),
}
DEFAULT_ARMS = ("preserve-d2", "stack-d2", "stack-d4", "clone-w4", "control-d2", "control-d4", "control-w4",
                "nexus-grow", "tokenformer-grow")
PAPER_ARMS = ("nexus-grow",)  # run at every scratch budget: the curve the cross comparison reads TokenFormer's loss on


@dataclass
class Settings:
    """Every size of the experiment; each is a ``--set KEY=VALUE`` option."""

    tokens: int  # the grown arms' total tokens (base + grown stage); the 1.0 budget of the scratch curve
    seq_len: int
    micro_batch_size: int
    scratch_budgets: str = "0.5,1,1.5"  # scratch endpoints, as fractions of ``tokens``
    growth_at: float = 0.1  # fraction of a grown arm's steps spent on the base
    warmup_steps: int = 10
    decay_fraction: float = 0.2
    min_lr_ratio: float = 0.1
    lr_factor: float = 1.0  # learning rate after growth, x the architecture's lr
    lrs: str = "1e-3,2e-3,4e-3"  # pilot candidates (one value: no pilot)
    pilot_budget: float = 0.5  # pilot runs' tokens, as a fraction of ``tokens``
    eval_every: int = 25
    eval_batches: int = 4
    final_windows: int = 256  # validation windows of the final evaluation: tuning half + report half
    arms: str = ",".join(DEFAULT_ARMS)
    paper_seeds: int = 4  # seeds of the Nexus/TokenFormer arms (the first N of --seeds)
    parallel: int = 0  # worker processes side by side (0: 6 on CUDA, 1 on the CPU)
    min_free_gb: float = 6.0
    compile: str = "auto"  # experiment setting (growlm.experiments.compiling); settings() resolves it
    docs_per_file: int = 0  # training documents per corpus source (0: all)
    val_docs_per_file: int = 0
    weight_decay: float = 0.1
    dry_run: bool = False  # only the shapes and the budget table, nothing trained

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.micro_batch_size

    def steps(self, fraction: float = 1.0) -> int:
        return max(1, round(fraction * self.tokens / self.tokens_per_step))

    @property
    def budgets(self) -> list[float]:
        return sorted(float(b) for b in self.scratch_budgets.split(",") if b.strip())

    @property
    def lr_list(self) -> list[float]:
        return [float(v) for v in self.lrs.split(",") if v.strip()]

    @property
    def arm_list(self) -> list[str]:
        return [a.strip() for a in self.arms.split(",") if a.strip()]


FORMS = {
    # full: 2M tokens per grown arm (245 steps of 32 x 256), growth after 24 steps
    "full": Settings(tokens=2_000_000, seq_len=256, micro_batch_size=32),
    # quick: CPU, a dozen steps of 2 x 32 tokens, tiny models, a slice of the corpus
    "quick": Settings(tokens=12 * 64, seq_len=32, micro_batch_size=2, warmup_steps=1, lrs="3e-3,6e-3", growth_at=0.25,
                      eval_every=4, eval_batches=1, final_windows=8, paper_seeds=2, docs_per_file=2,
                      val_docs_per_file=1, arms="stack-d2,stack-d4,clone-w4,control-d2,nexus-grow,tokenformer-grow"),
}


def settings(ctx: Context) -> Settings:
    """The form's :class:`Settings` with ``ctx.options`` applied (unknown keys refused, named)."""
    out = Settings(**form_values(ctx, FORMS["quick" if ctx.quick else "full"]))
    for arm in out.arm_list:
        if arm not in ARMS:
            raise ConfigError(unknown_key_message("arm", arm, ARMS))
    if len(out.budgets) < 3 and not ctx.quick:
        raise ConfigError(f"scratch_budgets needs at least 3 budgets (a curve of endpoints), got {out.scratch_budgets}")
    if not 0 < out.growth_at < 1 - out.decay_fraction:
        raise ConfigError(f"growth_at must lie in (0, 1 - decay_fraction) (growth inside the stable phase), "
                          f"got {out.growth_at}")
    if out.steps(out.growth_at) <= out.warmup_steps:
        raise ConfigError(f"growth at step {out.steps(out.growth_at)} falls inside the warm-up "
                          f"({out.warmup_steps} steps): lower warmup_steps or raise tokens/growth_at")
    if out.parallel == 0:
        out.parallel = default_parallel(ctx, 6)
    out.compile = compile_choice(ctx).label  # the resolved mode: what every run of this experiment uses
    return out


def compile_choice(ctx: Context) -> CompileChoice:
    """How this experiment's runs compile (:mod:`growlm.experiments.compiling`): on the GPU, CUDA
    graphs once its longest run is long enough to pay for compiling, for single runs and growth
    plans alike (a plan compiles again at each stage)."""
    return form_choice(ctx, FORMS, longest_run)


def longest_run(values: dict[str, Any]) -> int:
    """Tokens of the longest run of a form's values: the grown arms' total or a longer scratch budget."""
    budgets = [float(b) for b in str(values["scratch_budgets"]).split(",") if b.strip()]
    return round(values["tokens"] * max([1.0, *budgets]))


# -- plan features (growth operators and the cross-stage schedule that older checkouts may lack) --
def features() -> dict[str, bool]:
    """Which plan keys this growlm has: ``init: stack``/``clone``, plan ``schedule``, ``lr_factor``, ``moments``.

    Read from the plan module's own key tables (not by parsing a probe plan, which other checks,
    such as a stage needing ``data:``, can refuse for reasons that have nothing to do with the key)."""
    from growlm.growth.schemes import scheme_names
    from growlm.training import plan as plans
    from growlm.training.config import field_types

    schemes = {name.split(":")[0] for name in scheme_names()}
    return {"stack": "stack" in schemes, "clone": "clone" in schemes,
            "schedule": "schedule" in plans.PLAN_KEYS,
            "lr_factor": "lr_factor" in field_types(),
            "moments": "moments" in plans.STAGE_KEYS}


def missing_feature(arm: Arm, have: dict[str, bool]) -> str | None:
    if arm.kind == "grow" and arm.init in ("stack", "clone") and not have[arm.init]:
        return f"needs init: {arm.init}"
    return None


# -- plans --------------------------------------------------------------------------------------
def _defaults(size: Settings, data: Path, seed: int, lr: float) -> dict[str, Any]:
    return {"data": str(data), "seq_len": size.seq_len, "micro_batch_size": size.micro_batch_size, "lr": lr,
            "min_lr_ratio": size.min_lr_ratio, "weight_decay": size.weight_decay, "eval_every": size.eval_every,
            "eval_batches": size.eval_batches, "log_every": size.eval_every, "checkpoint_every": 10**9,
            "keep_last": 1, "seed": seed, "compile": config_mode(size.compile)}


def one_run(arch: str, overrides: dict[str, Any], steps: int, size: Settings, data: Path, seed: int,
            lr: float, name: str) -> dict[str, Any]:
    """A one-stage plan: the shape from a random start, its own full WSD (warm-up, stable, decay)."""
    return {"description": name, "defaults": _defaults(size, data, seed, lr),
            "stages": [{"name": "run", "model": PRESETS[arch], "model_overrides": overrides, "max_steps": steps,
                        "schedule": "wsd", "warmup_steps": size.warmup_steps, "decay_fraction": size.decay_fraction}]}


def grown_plan(arm: Arm, shapes: dict[str, dict[str, Any]], steps: int, size: Settings, data: Path, seed: int,
               lr: float, have: dict[str, bool], name: str) -> dict[str, Any]:
    """Base stage + grown stage under ONE WSD over the plan's steps (warm-up once, growth inside the
    stable phase, one decay at the end). With the plan-level ``schedule`` key when this growlm has it;
    otherwise the same curve from per-stage keys: the base stage warms up and stays flat
    (``constant``), the grown stage is a WSD with no warm-up whose decay is the plan's last
    ``round(decay_fraction * steps)`` steps -- the learning rate of every step is the one of a
    single WSD over all steps (``optim.lr_factor``)."""
    base, target = shapes[arm.base], shapes["target"]
    request = {k: v for k, v in target.items() if base.get(k) != v}
    base_steps = max(1, round(size.growth_at * steps))
    grown_steps = steps - base_steps
    decay = max(1, round(size.decay_fraction * steps))
    stage1: dict[str, Any] = {"name": "base", "model": PRESETS[arm.arch], "model_overrides": base,
                              "max_steps": base_steps}
    stage2: dict[str, Any] = {"name": "grown", "grow": request, "init": arm.init, "grow_seed": seed,
                              "max_steps": grown_steps}
    if arm.init in ("preserve", "stack") and "num_hidden_layers" in request:
        stage2["grow_options"] = {"layers_at": "end"}
    if arm.moments != "carry":
        if have["moments"]:
            stage2["moments"] = arm.moments
        else:
            stage2["init_optimizer"] = False  # fresh moments: AdamW starts over (step 0, zero moments)
    plan: dict[str, Any] = {"description": name, "defaults": _defaults(size, data, seed, lr)}
    if have["schedule"]:
        plan["defaults"].pop("min_lr_ratio")  # the plan's schedule owns it
        plan["schedule"] = {"kind": "wsd", "warmup_steps": size.warmup_steps, "decay_fraction": size.decay_fraction,
                            "min_lr_ratio": size.min_lr_ratio}
        if size.lr_factor != 1.0:
            if have["lr_factor"]:
                stage2["lr_factor"] = size.lr_factor
            else:
                raise ConfigError("lr_factor needs the plan-level lr_factor stage key, which this growlm lacks")
    else:
        stage1.update({"schedule": "constant", "warmup_steps": size.warmup_steps})
        stage2.update({"schedule": "wsd", "warmup_steps": 0, "decay_fraction": decay / grown_steps,
                       "lr": lr * size.lr_factor})
    plan["stages"] = [stage1, stage2]
    return plan


def flops_per_token(arch: str, overrides: dict[str, Any], seq_len: int) -> int:
    from growlm.experiments.recipe import model_costs

    return model_costs(PRESETS[arch], overrides, seq_len)["train_flops_per_token"]


def control_steps(arm: Arm, shapes: dict[str, dict[str, Any]], size: Settings, steps: int) -> int:
    """Steps of the base alone that cost what the grown arm from that base costs (its ledger)."""
    f_base = flops_per_token(arm.arch, shapes[arm.base], size.seq_len)
    f_target = flops_per_token(arm.arch, shapes["target"], size.seq_len)
    base_steps = max(1, round(size.growth_at * steps))
    grown = (f_base * base_steps + f_target * (steps - base_steps)) * size.tokens_per_step
    return max(1, round(grown / (f_base * size.tokens_per_step)))


# -- one unit: a plan, then its final evaluation on both halves of the validation windows ----------
def final_losses(model: str | Path, data: Path, seq_len: int, windows: int, batch_size: int,
                 device: str) -> dict[str, Any]:
    """Validation loss on ``windows`` windows spread over the split: the even-numbered ones are the
    tuning half (the pilot chooses on it), the odd-numbered ones the report half (every result)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from growlm.data.dataset import TokenSplit, evaluation_windows
    from growlm.evaluation.perplexity import autocast_context
    from growlm.models import storage
    from growlm.system import pick_autocast

    dev = torch.device("cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    with quiet(storage.__name__):
        net = storage.load_model(model, dev).eval()
    split = TokenSplit(data, "val")
    index = evaluation_windows(split, seq_len, windows)
    losses: list[float] = []
    with torch.no_grad():
        for start in range(0, len(index), batch_size):
            rows = torch.from_numpy(np.stack([split.window(int(i), seq_len) for i in index[start:start + batch_size]]))
            x, y = rows[:, :-1].to(dev), rows[:, 1:].to(dev)
            with autocast_context(dev, pick_autocast("auto", dev)):
                logits = net(input_ids=x, use_cache=False).logits
            per = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
            losses += per.mean(dim=1).double().tolist()
    tune, report = losses[0::2], losses[1::2]
    return {"tune": float(np.mean(tune)), "report": float(np.mean(report)), "windows": len(losses)}


def run_unit(ctx: Context, key: str, plan: dict[str, Any], data: str, seq_len: int, windows: int,
             batch_size: int) -> None:
    """A job: the plan (``KEY/plan``), then its final two-half evaluation (``KEY/final``); weights are
    deleted afterwards (the ledger, metrics and summaries stay), so hundreds of runs fit the disk."""
    _drop_stale_run(ctx, key)
    try:
        result = ctx.plan(f"{key}/plan", plan)
    except GrowlmError as error:
        # A run that diverges (non-finite loss) is a result, not a crash of the experiment: it is
        # recorded with infinite losses and no FLOPs, so its saving is "undefined" and it counts
        # against its recipe (every seed counts, failures included).
        message = str(error)
        logger.info(f"growth-recipes: {key} failed: {message}")
        ctx.unit(f"{key}/final", lambda folder: {"tune": math.inf, "report": math.inf, "windows": 0,
                                                 "flops": math.nan, "tokens": math.nan, "seconds": math.nan,
                                                 "train_seconds": math.nan, "failed": message,
                                                 "stages": [{"growth_verified": None}]})
        return
    if not (ctx.out / "units" / f"{key}/final.json").exists() and \
            not Path(result["stages"][-1]["final_checkpoint"]).exists():  # finished elsewhere, weights not carried
        (ctx.out / "units" / f"{key}/plan.json").unlink()
        shutil.rmtree(ctx.out / "runs" / key / "plan", ignore_errors=True)
        result = ctx.plan(f"{key}/plan", plan)

    def evaluate(folder: Path) -> dict[str, Any]:
        final = result["stages"][-1]["final_checkpoint"]
        losses = final_losses(final, Path(data), seq_len, windows, batch_size, ctx.device)
        for pattern in ("*.safetensors", "*.pt", "*.bin"):
            for path in Path(result["run"]).rglob(pattern):
                path.unlink()
        for grown in Path(result["run"]).glob("stage-*/grown"):
            shutil.rmtree(grown, ignore_errors=True)
        return {**losses, "flops": result["ledger"]["total"]["train_flops"],
                "tokens": result["ledger"]["total"]["tokens"],
                "seconds": sum(s["seconds"] for s in result["stages"]),
                "train_seconds": sum(s["metrics"][-1].get("elapsed_s", 0) if s["metrics"] else 0
                                     for s in result["stages"]),
                "stages": [{k: s.get(k) for k in ("stage", "parameters", "steps", "tokens", "train_flops_per_token",
                                                   "train_flops", "cumulative_train_flops", "final_val_loss",
                                                   "seconds", "growth_verified", "steady_tokens_per_s",
                                                   "wall_tokens_per_s", "init")} for s in result["stages"]]}

    ctx.unit(f"{key}/final", evaluate)


def _drop_stale_run(ctx: Context, key: str) -> None:
    """An unfinished plan whose completed stages lost their checkpoints (its folder carried to a fresh
    machine without weights) cannot resume: start it over. One with its checkpoints resumes as usual."""
    if (ctx.out / "units" / f"{key}/plan.json").exists():
        return
    run = ctx.out / "runs" / key / "plan" / "plan"
    for marker in run.glob("stage-*/stage.json"):
        if not Path(json.loads(marker.read_text())["final_checkpoint"]).exists():
            shutil.rmtree(run.parent)
            return


def _job(ctx: Context, size: Settings, data: Path, key: str, plan: dict[str, Any]) -> Job:
    steps = sum(s["max_steps"] for s in plan["stages"])
    return Job(key, "growlm.experiments.growth_recipes:run_unit",
               {"key": key, "plan": plan, "data": str(data), "seq_len": size.seq_len, "windows": size.final_windows,
                "batch_size": size.micro_batch_size}, f"{key}/final", steps * size.tokens_per_step)


def _read(ctx: Context, key: str) -> dict[str, Any]:
    return json.loads((ctx.out / "units" / f"{key}/final.json").read_text())


def _curve(ctx: Context, key: str) -> list[dict[str, float]]:
    """Validation points during training against the ledger's cumulative FLOPs (for the figure)."""
    from growlm.experiments.recipe import plan_curve

    path = ctx.out / "units" / f"{key}/plan.json"
    return plan_curve(json.loads(path.read_text())) if path.exists() else []  # a failed run has no curve


# -- the experiment ------------------------------------------------------------------------------
def run(ctx: Context) -> Report:
    size = settings(ctx)
    have = features()
    shapes = SHAPES["quick" if ctx.quick else "full"]
    if size.dry_run:
        return plan_report(ctx, size, shapes, have)
    data = ctx.corpus("corpus", max_docs_per_file=size.docs_per_file or None,
                      val_docs_per_file=size.val_docs_per_file or None)
    arm_names = size.arm_list
    skipped = {a: why for a in arm_names if (why := missing_feature(ARMS[a], have))}
    for skipped_arm, why in skipped.items():
        logger.info(f"growth-recipes: arm {skipped_arm} skipped ({why})")
    arms = [a for a in arm_names if a not in skipped]
    archs = [a for a in ARCHS if a == "llama" or any(ARMS[x].arch == a for x in arms)]
    paper_seeds = ctx.seeds[:max(1, size.paper_seeds)]

    # 1. learning-rate pilot per scratch shape: chosen on the tuning half
    lrs = size.lr_list
    pilot_jobs = []
    if len(lrs) > 1:
        for arch in archs:
            for lr in lrs:
                key = f"pilot/{arch}/lr={lr:g}"
                pilot_jobs.append(_job(ctx, size, data, key, one_run(
                    arch, shapes[arch]["target"], size.steps(size.pilot_budget), size, data, 0, lr, key)))
    run_jobs(ctx, pilot_jobs, size.parallel, size.min_free_gb, probe=True, phase="pilot")
    chosen: dict[str, float] = {}
    pilot_rows = []
    for arch in archs:
        if len(lrs) == 1:
            chosen[arch] = lrs[0]
            continue
        results = {lr: _read(ctx, f"pilot/{arch}/lr={lr:g}") for lr in lrs}
        finite = {lr: r for lr, r in results.items() if math.isfinite(r["tune"])}
        chosen[arch] = min(finite, key=lambda lr: finite[lr]["tune"]) if finite else lrs[0]
        for lr, r in results.items():
            pilot_rows.append({"arch": TITLES[arch], "lr": f"{lr:g}", "tune": r["tune"], "report": r["report"],
                               "chosen": "✓" if lr == chosen[arch] else ""})

    # 2. every arm of every seed, side by side
    jobs: list[Job] = []
    for seed in ctx.seeds:
        for arch in archs:
            if arch != "llama" and seed not in paper_seeds:
                continue
            for b in size.budgets:
                key = f"{arch}/scratch-b{b:g}/seed={seed}"
                jobs.append(_job(ctx, size, data, key, one_run(arch, shapes[arch]["target"], size.steps(b), size,
                                                               data, seed, chosen[arch], key)))
        for name in arms:
            arm = ARMS[name]
            if arm.arch != "llama" and seed not in paper_seeds:
                continue
            lr = chosen[arm.arch]
            budgets = size.budgets if name in PAPER_ARMS else [1.0]
            for b in budgets:
                n = size.steps(b)
                key = f"{arm.arch}/{name}-b{b:g}/seed={seed}"
                if arm.kind == "control":
                    plan = one_run(arm.arch, shapes[arm.arch][arm.base], control_steps(arm, shapes[arm.arch],
                                   size, n), size, data, seed, lr, key)
                else:
                    plan = grown_plan(arm, shapes[arm.arch], n, size, data, seed, lr, have, key)
                jobs.append(_job(ctx, size, data, key, plan))
    log = ctx.out / "runner.json"
    probed = log.exists() and any(r.get("alone") for r in json.loads(log.read_text()))
    run_jobs(ctx, jobs, size.parallel, size.min_free_gb, probe=not probed, phase="arms")
    runner = json.loads(log.read_text()) if log.exists() else []  # every invocation's throughput record
    return _report(ctx, size, shapes, arms, archs, chosen, pilot_rows, skipped, have, runner, paper_seeds)


# -- analysis --------------------------------------------------------------------------------------
def _endpoints(ctx: Context, size: Settings, arch: str, seed: int) -> list[Endpoint]:
    points = []
    for b in size.budgets:
        r = _read(ctx, f"{arch}/scratch-b{b:g}/seed={seed}")
        points.append(Endpoint(r["flops"], r["report"], r["seconds"], r["tokens"]))
    return points


def shape_table(shapes: dict[str, dict[str, dict[str, Any]]], seq_len: int) -> list[dict[str, Any]]:
    """Parameters and training FLOPs per token of every shape: embedding vs non-embedding share."""
    from growlm.experiments.recipe import model_costs

    rows = []
    for arch, named in shapes.items():
        for name, overrides in named.items():
            c = model_costs(PRESETS[arch], overrides, seq_len)
            head = 6 * c["embedding_params"]  # the tied LM head's matmul: 6 FLOPs per weight per token
            rows.append({"arch": TITLES[arch], "shape": name, "params": f"{c['total_params'] / 1e6:.2f}M",
                         "non_embedding": f"{c['non_embedding_params'] / 1e6:.2f}M",
                         "flops": f"{c['train_flops_per_token'] / 1e6:.1f}M",
                         "embedding_share": f"{100 * head / c['train_flops_per_token']:.0f}%",
                         "non_embedding_share": f"{100 * (1 - head / c['train_flops_per_token']):.0f}%",
                         "_f": c["train_flops_per_token"], "_arch": arch, "_name": name})
    return rows


def budget_table(shapes: dict[str, dict[str, dict[str, Any]]], size: Settings, arms: list[str], seeds: int,
                 paper_seeds: int) -> tuple[list[dict[str, Any]], float]:
    """Planned training FLOPs per unit kind and in all (what to scale with --set)."""
    f = {(r["_arch"], r["_name"]): r["_f"] for r in shape_table(shapes, size.seq_len)}
    tps = size.tokens_per_step
    rows: list[dict[str, Any]] = []
    lrs = size.lr_list
    archs = [a for a in ARCHS if a == "llama" or any(ARMS[x].arch == a for x in arms)]
    if len(lrs) > 1:
        for arch in archs:
            flops = len(lrs) * size.steps(size.pilot_budget) * tps * f[arch, "target"]
            rows.append({"unit": f"pilot {arch}", "runs": len(lrs), "tokens": size.steps(size.pilot_budget) * tps,
                         "flops": flops})
    for arch in archs:
        n = seeds if arch == "llama" else paper_seeds
        for b in size.budgets:
            rows.append({"unit": f"{arch} scratch x{b:g}", "runs": n, "tokens": size.steps(b) * tps,
                         "flops": n * size.steps(b) * tps * f[arch, "target"]})
    for name in arms:
        arm = ARMS[name]
        n = seeds if arm.arch == "llama" else paper_seeds
        for b in (size.budgets if name in PAPER_ARMS else [1.0]):
            steps = size.steps(b)
            if arm.kind == "control":
                cs = control_steps(arm, shapes[arm.arch], size, steps)
                tokens, flops = cs * tps, cs * tps * f[arm.arch, arm.base]
            else:
                s1 = max(1, round(size.growth_at * steps))
                tokens = steps * tps
                flops = s1 * tps * f[arm.arch, arm.base] + (steps - s1) * tps * f[arm.arch, "target"]
            rows.append({"unit": f"{name} x{b:g}", "runs": n, "tokens": tokens, "flops": n * flops})
    total = sum(r["flops"] for r in rows)
    for r in rows:
        r["pflops"] = r["flops"] / 1e15
        r["share"] = f"{100 * r['flops'] / total:.1f}%"
    return rows, total


def _report(ctx: Context, size: Settings, shapes: dict[str, Any], arms: list[str], archs: list[str],
            chosen: dict[str, float], pilot_rows: list[dict[str, Any]], skipped: dict[str, str],
            have: dict[str, bool], runner: list[dict[str, Any]], paper_seeds: list[int]) -> Report:
    records: list[dict[str, Any]] = []
    summary_rows: list[dict[str, Any]] = []
    controls: dict[tuple[str, int], float] = {}
    for name in arms:
        if ARMS[name].kind == "control":
            for seed in ctx.seeds:
                if ARMS[name].arch == "llama" or seed in paper_seeds:
                    controls[ARMS[name].base, seed] = _read(ctx, f"{ARMS[name].arch}/{name}-b1/seed={seed}")["report"]
    for name in arms:
        arm = ARMS[name]
        seeds = ctx.seeds if arm.arch == "llama" else paper_seeds
        f_target = flops_per_token(arm.arch, shapes[arm.arch]["target"], size.seq_len)
        per_seed = []
        for seed in seeds:
            r = _read(ctx, f"{arm.arch}/{name}-b1/seed={seed}")
            s = saving(_endpoints(ctx, size, arm.arch, seed), r["flops"], r["report"], r["tokens"], r["seconds"],
                       f_target)
            control = controls.get((arm.base, seed)) if arm.kind == "grow" else None
            record = {"arm": name, "seed": seed, **s.as_dict(), "tune_loss": r["tune"],
                      "vs_control": None if control is None else r["report"] - control,
                      "growth_verified": r["stages"][-1].get("growth_verified")}
            per_seed.append(s)
            records.append(record)
        summ = summarise(per_seed)
        # a diverged run (infinite loss) has no paired difference; it shows as "undefined" in the saving
        vs = [x["vs_control"] for x in records if x["arm"] == name and x["vs_control"] is not None
              and math.isfinite(x["vs_control"])]
        ratio = _non_embedding(arm.arch, shapes[arm.arch]["target"]) / _non_embedding(arm.arch,
                                                                                     shapes[arm.arch][arm.base])
        target = shapes[arm.arch]["target"]
        changed = ", ".join((f"{SHORT.get(k, k)} {v}" if arm.kind == "control" else f"{SHORT.get(k, k)} {v}→{target[k]}")
                            for k, v in shapes[arm.arch][arm.base].items() if target.get(k) != v)
        summary_rows.append({
            "arm": name, "what": f"{arm.text}: {changed}", "ratio": f"x{ratio:.2f}",
            "growth": "—" if arm.kind == "control" else f"{100 * size.growth_at:g}%",
            "saving": _pct(summ.saving), "positive": f"{summ.positive}/{summ.n}",
            "extrapolated": f"{summ.extrapolated}" + (f" (+{summ.undefined} undefined)" if summ.undefined else ""),
            "delta_loss": summ.delta_loss, "vs_control": mean_interval(vs) if vs else "",
            "speedup": summ.token_speedup, "seconds": _pct(summ.seconds_saving),
            "pays": "yes" if summ.pays else "no", "_summary": summ.as_dict()})
    cross = _cross(ctx, size, paper_seeds) if {"nexus-grow", "tokenformer-grow"} <= set(arms) else None

    shape_rows = shape_table(shapes, size.seq_len)
    budget_rows, total = budget_table(shapes, size, arms, len(ctx.seeds), len(paper_seeds))
    figures = [_figure_curves(ctx, size, arms, archs, paper_seeds), _figure_savings(ctx, summary_rows)]
    sched = ("the plan-level `schedule: {kind: wsd}`" if have["schedule"] else
             "per-stage keys that give the same learning rate at every step (base stage `constant` after the "
             "warm-up, grown stage `wsd` without warm-up whose decay is the plan's last steps; the plan-level "
             "`schedule` key was not in this growlm)")
    body = [
        f"Every run: sequence {size.seq_len}, batch {size.micro_batch_size} ({size.tokens_per_step:,} tokens/step), "
        f"AdamW (wd {size.weight_decay:g}), one WSD per run (warm-up {size.warmup_steps} steps, decay over the last "
        f"{100 * size.decay_fraction:g}% of the steps to {size.min_lr_ratio:g}× lr). Grown arms: "
        f"{size.steps():,} steps ({size.steps() * size.tokens_per_step:,} tokens), growth after "
        f"{max(1, round(size.growth_at * size.steps()))} steps ({100 * size.growth_at:g}%), one schedule over both "
        f"stages through {sched}, lr × {size.lr_factor:g} after growth, optimizer moments carried unless the arm "
        f"says fresh. Scratch endpoints at {', '.join(f'{b:g}' for b in size.budgets)} × that budget, each its own "
        f"WSD. Llama arms: seeds {', '.join(map(str, ctx.seeds))}; Nexus/TokenFormer arms: seeds "
        f"{', '.join(map(str, paper_seeds))}. Losses: final (annealed) validation loss on the report half "
        f"({size.final_windows // 2} windows) of {size.final_windows} windows spread over the validation split.",
        "**Shapes** (tied embeddings, 32k vocabulary; FLOPs per token of training at this sequence length; the "
        "embedding share is the tied LM head's matmul):",
        markdown_table(shape_rows, [("arch", "Architecture"), ("shape", "Shape"), ("params", "Params"),
                                    ("non_embedding", "Non-embedding"), ("flops", "Train FLOPs/token"),
                                    ("embedding_share", "Embedding share"),
                                    ("non_embedding_share", "Non-embedding share")]),
    ]
    if pilot_rows:
        body += ["**Learning-rate pilot** (each architecture's target from scratch on "
                 f"{size.steps(size.pilot_budget) * size.tokens_per_step:,} tokens, seed 0; chosen on the tuning "
                 "half, shown on the report half too):",
                 markdown_table(pilot_rows, [("arch", "Architecture"), ("lr", "lr"), ("tune", "Tuning-half loss"),
                                             ("report", "Report-half loss"), ("chosen", "Chosen")], digits=4)]
    else:
        body.append(f"Learning rate {', '.join(f'{a} {v:g}' for a, v in chosen.items())} (no pilot: one lr given).")
    body += [
        "**Saving** (pre-registered, docs/experiments.md): saving = 1 − C_grown / C_scratch(L_grown), C from the "
        "plans' FLOPs ledgers (base stage counted), C_scratch(L) linear in ln C between the same seed's scratch "
        "endpoints; every seed counts (negative savings kept; values outside the endpoints' range extrapolated and "
        "counted in 'Extrapolated'). ΔL = L_grown − L_scratch(C_grown) (negative: growth better at equal compute). "
        "'vs no-growth' = L_grown − L of the base alone at the same compute (paired by seed). Token speedup = "
        "tokens scratch needs for L_grown / grown tokens (G_stack). GPU-seconds saving: the same with the runs' "
        "wall seconds (side-by-side processes: indicative). Growth pays for a recipe if the 95% interval of its "
        "saving lies above 0 ('Pays').",
        markdown_table(summary_rows, [
            ("arm", "Arm"), ("what", "Recipe"), ("ratio", "Non-emb. ratio"), ("growth", "Growth at"),
            ("saving", "Saving % (95% CI)"), ("positive", "Seeds > 0"), ("extrapolated", "Extrapolated"),
            ("delta_loss", "ΔL at equal compute"), ("vs_control", "vs no-growth (ΔL)"),
            ("speedup", "Token speedup"), ("seconds", "GPU-s saving %"), ("pays", "Pays")], digits=3),
    ]
    if cross is not None:
        body += [f"**Nexus vs TokenFormer (the paper's 41.5%)**: the compute grown Nexus needs to reach grown "
                 f"TokenFormer's final loss (Nexus's grown endpoints at {', '.join(f'{b:g}' for b in size.budgets)} × "
                 f"budget, linear in ln C), against TokenFormer's own: saving {_pct(cross['interval'])} % "
                 f"({cross['positive']}/{cross['n']} seeds positive, {cross['extrapolated']} extrapolated)."]
    if skipped:
        body.append("**Skipped arms**: " + "; ".join(f"`{a}` ({why})" for a, why in skipped.items()) + ".")
    body += [throughput_text(runner, "every invocation of this folder; a later one runs only what was left",
                             size.compile),
             speed_text(compile_choice(ctx), trained_units(ctx.out)),
             f"**Budget** (planned training FLOPs; evaluation excluded): {total / 1e15:.2f} PFLOP in all.",
             markdown_table(budget_rows, [("unit", "Unit"), ("runs", "Runs"), ("tokens", "Tokens/run"),
                                          ("pflops", "PFLOP"), ("share", "Share")], digits=3)]
    paper = ("G_stack (Du et al. 2024): depth x4 by stacking at ~3% of the budget, 54.6% fewer tokens to the "
             "scratch loss at 7B. bert2BERT/LiGO ~45% FLOPs; HyperCloning 2–4x faster. Nexusformer §4.3: grown "
             "Nexusformer reaches grown TokenFormer's perplexity with 41.5% less compute (GPU hours), one run.")
    data_out = {"settings": dataclasses.asdict(size), "features": have, "skipped": skipped, "chosen_lr": chosen,
                "pilot": pilot_rows, "records": records,
                "summary": [{k: v for k, v in r.items() if not k.startswith("_") and k not in
                             ("delta_loss", "vs_control", "speedup")} | {"detail": r["_summary"]}
                            for r in summary_rows],
                "cross": cross, "runner": runner, "budget_pflop": total / 1e15,
                "shapes": [{k: v for k, v in r.items() if not k.startswith("_")} for r in shape_rows]}
    return Report("Does growth pay? Growth recipes vs annealed scratch curves (issue 19)", "\n\n".join(body),
                  figures, data_out, paper=paper)


def plan_report(ctx: Context, size: Settings, shapes: dict[str, Any], have: dict[str, bool]) -> Report:
    """``--set dry_run=1``: the shapes and the budget of these settings, nothing trained."""
    arms = [a for a in size.arm_list if not missing_feature(ARMS[a], have)]
    paper = len(ctx.seeds[:max(1, size.paper_seeds)])
    rows, total = budget_table(shapes, size, arms, len(ctx.seeds), paper)
    shape_rows = shape_table(shapes, size.seq_len)
    body = "\n\n".join([
        markdown_table(shape_rows, [("arch", "Architecture"), ("shape", "Shape"), ("params", "Params"),
                                    ("non_embedding", "Non-embedding"), ("flops", "Train FLOPs/token"),
                                    ("embedding_share", "Embedding share"),
                                    ("non_embedding_share", "Non-embedding share")]),
        f"Budget: {total / 1e15:.2f} PFLOP of training in all ({len(ctx.seeds)} seeds, {paper} for "
        f"Nexus/TokenFormer; {sum(r['runs'] for r in rows)} runs).",
        markdown_table(rows, [("unit", "Unit"), ("runs", "Runs"), ("tokens", "Tokens/run"), ("pflops", "PFLOP"),
                              ("share", "Share")], digits=3)])
    return Report("growth-recipes: shapes and budget (dry run)", body, [], {"budget_pflop": total / 1e15,
                                                                              "budget": rows})


def _non_embedding(arch: str, overrides: dict[str, Any]) -> int:
    from growlm.experiments.recipe import model_costs

    return model_costs(PRESETS[arch], overrides, 16)["non_embedding_params"]


def _pct(interval: Any) -> str:
    if interval.n == 0 or math.isnan(interval.mean):
        return "n/a"
    return interval.format(1, scale=100.0)


def _cross(ctx: Context, size: Settings, seeds: list[int]) -> dict[str, Any]:
    """Per seed: 1 - C_Nexus-grown(L_TF-grown) / C_TF-grown, over Nexus's grown endpoints (all budgets)."""
    values = []
    for seed in seeds:
        nexus = [(_read(ctx, f"nexus/nexus-grow-b{b:g}/seed={seed}")) for b in size.budgets]
        tf = _read(ctx, f"tokenformer/tokenformer-grow-b1/seed={seed}")
        points = [Endpoint(r["flops"], r["report"], r["seconds"], r["tokens"]) for r in nexus]
        values.append(saving_against(points, tf["flops"], tf["report"], tf["tokens"], tf["seconds"]))
    summ = summarise(values)
    return {"interval": summ.saving, "positive": summ.positive, "n": summ.n, "extrapolated": summ.extrapolated,
            "values": [v.as_dict() for v in values]}


def _figure_curves(ctx: Context, size: Settings, arms: list[str], archs: list[str], paper_seeds: list[int]) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(archs), figsize=(6 * len(archs), 4.2), squeeze=False)
    for ax, arch in zip(axes.flat, archs, strict=True):
        seeds = ctx.seeds if arch == "llama" else paper_seeds
        for j, seed in enumerate(seeds):
            ends = sorted(_endpoints(ctx, size, arch, seed), key=lambda e: e.flops)
            ax.plot([e.flops / 1e12 for e in ends], [e.loss for e in ends], "o-", color="black", alpha=0.5,
                    label="scratch endpoints" if j == 0 else None)
        for i, name in enumerate(a for a in arms if ARMS[a].arch == arch):
            for j, seed in enumerate(seeds):
                key = f"{arch}/{name}-b1/seed={seed}"
                curve = _curve(ctx, key)
                ax.plot([p["flops"] / 1e12 for p in curve], [p["loss"] for p in curve], "-", color=f"C{i}",
                        alpha=0.35, linewidth=0.8)
                r = _read(ctx, key)
                ax.plot([r["flops"] / 1e12], [r["report"]], "s", color=f"C{i}", label=name if j == 0 else None)
        ax.set_xscale("log")
        ax.set_title(f"{TITLES[arch]}: validation loss vs training FLOPs")
        ax.set_xlabel("training FLOPs (TF, ledger; log)")
        ax.set_ylabel("validation loss (lines: during training; markers: final, report half)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, ctx.path("loss_vs_flops.png"))


def _figure_savings(ctx: Context, rows: list[dict[str, Any]]) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows)), 4))
    means, errors = [], []
    for row in rows:
        s = row["_summary"]["saving"]
        means.append(100 * s["mean"] if s["mean"] == s["mean"] else 0.0)
        half = s["half_width"]
        errors.append(100 * half if half == half else 0.0)
    ax.bar(range(len(rows)), means, yerr=errors, capsize=3, color=[f"C{i}" for i in range(len(rows))])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["arm"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("compute saving % (mean, 95% CI)")
    ax.set_title("saving = 1 − C_grown / C_scratch(L_grown)")
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, ctx.path("savings.png"))
