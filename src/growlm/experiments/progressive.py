"""Nexusformer §4.3, scaled down: one base grown to three sizes vs Qwen3 from scratch (Tables 2, 8, Figure 2).

The paper pretrains a 240M Nexusformer base on 100B tokens, grows it (Table 7: M and A
together, plus D for 380M/440M, new blocks zero, ``preserve``) into 300M, 380M and 440M
models and continues each on ~30B unseen tokens at a higher learning rate; TokenFormer is
grown the same way (qkv slots, plus D); Qwen3 is trained from scratch at every size. It
reports benchmarks of the grown models (Table 2), validation perplexity against compute
(Figure 2), and parameters, FLOPs, training time, PPL and PPL/FLOPs (Table 8), and says
that grown Nexusformer reaches grown TokenFormer's perplexity with 41.5% less compute
(GPU hours).

Here every width of Table 7 is divided by 3 (rounded; 4 layers instead of 12, 4 heads of
64 instead of 12, the 32k vocabulary kept), so the base has ~21.5M parameters and the three
targets keep the paper's M, A and D ratios (:data:`SHAPES`). Each Qwen3 is matched on total
parameters to the Nexus size it stands beside (within 0.1%; tied embeddings, as the
Qwen3 presets). Per seed:

* **bases** (Nexus, TokenFormer): ``base_tokens`` from scratch, one-stage growlm plans;
* **grown** (3 sizes x 2 architectures): the base's final checkpoint grown with
  ``init: preserve`` (verified lossless), then ``grow_tokens`` more at ``grow_lr_factor`` x
  the learning rate, optimizer moments and data position carried (``init_from``);
* **Qwen3 from scratch** at the base's size on ``base_tokens`` (Table 8's 240M row) and at
  each target size on ``base_tokens + grow_tokens`` (the same data the grown model saw).

Every compute figure comes from the ledgers: a plan's ``ledger.json`` (training FLOPs and
GPU-seconds, the trainer's clock over optimizer steps) for the bases and Qwen3, and for a
grown model its base's ledger plus its grown stage (the same sums). The units run side by
side in worker processes (``common.run_jobs``), bases and Qwen3 first, then the grown
models; everything is resumable. The pre-registered metrics and decision rules are in
docs/experiments.md (``paper5-growth``).
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

from growlm.errors import ConfigError, GrowlmError
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
from growlm.experiments.recipe import flops_to_reach, pyplot, save_figure
from growlm.stats import Interval, mean_interval

logger = logging.getLogger(__name__)

DESCRIPTION = "one Nexus base grown to three sizes (Table 7) vs Qwen3 from scratch and grown TokenFormer: Tables 2, 8, Fig. 2"
DEFAULT_SEEDS = 3
QUICK_SEEDS = 2  # the CPU test: every seed, file and column, under 90 s of one core
SIZES = ("300m", "380m", "440m")
LABELS = {"base": "240M", "300m": "300M", "380m": "380M", "440m": "440M"}
TITLES = {"nexus": "NexusFormer", "tokenformer": "TokenFormer", "qwen3": "Qwen3"}
PRESETS = {"nexus": "nexus-240m", "tokenformer": "tokenformer-240m", "qwen3": "qwen3-240m"}
GROWN = ("nexus", "tokenformer")
BENCH = ("piqa", "openbookqa", "hellaswag", "arc_easy", "arc_challenge")


def _nexus(layers: int, d: int, ffn: int, m: int, a: int, heads: int, head_dim: int, pos: int) -> dict[str, Any]:
    return {"num_hidden_layers": layers, "hidden_size": d, "intermediate_size": ffn, "nexus_m": m, "nexus_a": a,
            "num_attention_heads": heads, "head_dim": head_dim, "max_position_embeddings": pos}


def _tokenformer(layers: int, d: int, ffn: int, qkv: int, proj: int, heads: int, head_dim: int,
                 pos: int) -> dict[str, Any]:
    return {"num_hidden_layers": layers, "hidden_size": d, "intermediate_size": ffn, "ffn_slots": ffn,
            "qkv_slots": qkv, "proj_slots": proj, "num_attention_heads": heads, "head_dim": head_dim,
            "max_position_embeddings": pos}


def _qwen3(layers: int, d: int, ffn: int, heads: int, head_dim: int, pos: int) -> dict[str, Any]:
    return {"num_hidden_layers": layers, "hidden_size": d, "intermediate_size": ffn, "num_attention_heads": heads,
            "num_key_value_heads": max(1, heads // 2), "head_dim": head_dim, "max_position_embeddings": pos}


# form -> architecture -> size -> overrides of PRESETS[arch]. Full: Table 7's widths / 3 (D 768/800/1024
# -> 256/267/341, FFN 2048 -> 680, M 780/1088/1340/1540 -> 260/363/447/513, A 960/1228/1530/1730 ->
# 320/409/510/577; TokenFormer qkv slots 2088/2952/3960/4824 -> 696/984/1320/1608, FFN slots 3072 -> 1024,
# proj 768 -> 256), 4 layers, 4 heads x 64. Qwen3 matched on total parameters to the Nexus size
# (21.53/22.88/25.29/32.40M vs Nexus 21.52/22.89/25.28/32.38M). Quick: widths / 24, 2 layers.
SHAPES: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "full": {
        "nexus": {"base": _nexus(4, 256, 680, 260, 320, 4, 64, 1024), "300m": _nexus(4, 256, 680, 363, 409, 4, 64, 1024),
                  "380m": _nexus(4, 267, 680, 447, 510, 4, 64, 1024), "440m": _nexus(4, 341, 680, 513, 577, 4, 64, 1024)},
        "tokenformer": {"base": _tokenformer(4, 256, 1024, 696, 256, 4, 64, 1024),
                        "300m": _tokenformer(4, 256, 1024, 984, 256, 4, 64, 1024),
                        "380m": _tokenformer(4, 267, 1024, 1320, 256, 4, 64, 1024),
                        "440m": _tokenformer(4, 341, 1024, 1608, 256, 4, 64, 1024)},
        "qwen3": {"base": _qwen3(4, 396, 1608, 4, 64, 1024), "300m": _qwen3(4, 420, 1616, 4, 64, 1024),
                  "380m": _qwen3(4, 444, 1824, 4, 64, 1024), "440m": _qwen3(4, 532, 2152, 4, 64, 1024)},
    },
    "quick": {
        "nexus": {"base": _nexus(2, 32, 88, 32, 40, 2, 16, 128), "300m": _nexus(2, 32, 88, 45, 51, 2, 16, 128),
                  "380m": _nexus(2, 33, 88, 56, 64, 2, 16, 128), "440m": _nexus(2, 43, 88, 64, 72, 2, 16, 128)},
        "tokenformer": {"base": _tokenformer(2, 32, 128, 87, 32, 2, 16, 128),
                        "300m": _tokenformer(2, 32, 128, 123, 32, 2, 16, 128),
                        "380m": _tokenformer(2, 33, 128, 165, 32, 2, 16, 128),
                        "440m": _tokenformer(2, 43, 128, 201, 32, 2, 16, 128)},
        "qwen3": {"base": _qwen3(2, 62, 248, 2, 16, 128), "300m": _qwen3(2, 62, 280, 2, 16, 128),
                  "380m": _qwen3(2, 64, 304, 2, 16, 128), "440m": _qwen3(2, 86, 128, 2, 16, 128)},
    },
}


@dataclass
class Settings:
    """Every size of the experiment; each is a ``--set KEY=VALUE`` option."""

    base_tokens: int  # the bases (and Qwen3 at the base size); paper: 100B
    grow_tokens: int  # after growth; paper: ~30B. Qwen3 at a target size trains on base + grow tokens
    seq_len: int
    micro_batch_size: int
    lr: float = 2e-3
    grow_lr_factor: float = 1.5  # the paper raises the learning rate after growth
    warmup_steps: int = 10
    grow_warmup_steps: int = 5
    eval_every: int = 10  # validation during training (Figure 2's points)
    eval_batches: int = 4
    ppl_batches: int = 32  # final validation perplexity (Table 8's PPL)
    bench_limit: int = 200  # documents per paper5 task (Table 2)
    bench_batch_size: int = 64
    parallel: int = 0  # worker processes side by side (0: 6 on CUDA -- 9 ran out of memory on an 80 GB H100 -- 1 on the CPU)
    min_free_gb: float = 4.0
    compile: str = "auto"  # experiment setting (growlm.experiments.compiling); settings() resolves it
    docs_per_file: int = 0  # training documents per corpus source (0: all)
    val_docs_per_file: int = 0
    weight_decay: float = 0.1

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.micro_batch_size

    def steps(self, tokens: int) -> int:
        return max(1, math.ceil(tokens / self.tokens_per_step))


FORMS = {
    # full: 0.9M + 0.3M tokens (the paper's 100B + 30B ratio, 10:3), batches of 32 x 256 tokens
    "full": Settings(base_tokens=900_000, grow_tokens=300_000, seq_len=256, micro_batch_size=32),
    # quick: CPU, a few steps of 2 x 32 tokens, tiny shapes, a slice of the corpus, 1 document per task
    "quick": Settings(base_tokens=4 * 64, grow_tokens=2 * 64, seq_len=32, micro_batch_size=2, lr=3e-3,
                      warmup_steps=1, grow_warmup_steps=1, eval_every=2, eval_batches=1, ppl_batches=1,
                      bench_limit=1, bench_batch_size=8, docs_per_file=2, val_docs_per_file=1),
}


def settings(ctx: Context) -> Settings:
    """The form's :class:`Settings` with ``ctx.options`` applied (unknown keys refused, named)."""
    out = Settings(**form_values(ctx, FORMS["quick" if ctx.quick else "full"]))
    if out.base_tokens < 1 or out.grow_tokens < 1:
        raise ConfigError(f"base_tokens and grow_tokens must be positive, got {out.base_tokens}, {out.grow_tokens}")
    if out.parallel == 0:
        out.parallel = default_parallel(ctx, 6)
    out.compile = compile_choice(ctx).label  # the resolved mode: what every run of this experiment uses
    return out


def compile_choice(ctx: Context) -> CompileChoice:
    """How this experiment's runs compile (:mod:`growlm.experiments.compiling`): on the GPU, CUDA
    graphs once its longest run is long enough to pay for compiling, for single runs and growth
    plans alike (a plan compiles again at each stage)."""
    return form_choice(ctx, FORMS, lambda values: values["base_tokens"] + values["grow_tokens"])


def shapes(ctx: Context) -> dict[str, dict[str, dict[str, Any]]]:
    return SHAPES["quick" if ctx.quick else "full"]


def growth_request(base: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """The growth request that turns ``base`` into ``target`` (the fields that differ)."""
    return {k: v for k, v in target.items() if base.get(k) != v}


def costs(arch: str, overrides: dict[str, Any], seq_len: int) -> dict[str, int]:
    from growlm.experiments.recipe import model_costs

    return model_costs(PRESETS[arch], overrides, seq_len)


# -- units ---------------------------------------------------------------------------------------
def _defaults(size: Settings, data: str, seed: int) -> dict[str, Any]:
    return {"data": data, "seq_len": size.seq_len, "micro_batch_size": size.micro_batch_size, "lr": size.lr,
            "weight_decay": size.weight_decay, "schedule": "cosine", "eval_every": size.eval_every,
            "eval_batches": size.eval_batches, "log_every": size.eval_every, "checkpoint_every": 10**9,
            "keep_last": 1, "seed": seed, "compile": config_mode(size.compile)}


def scratch_plan(arch: str, overrides: dict[str, Any], tokens: int, size: Settings, data: str, seed: int,
                 name: str) -> dict[str, Any]:
    """A one-stage plan: the shape from a random start, warm-up then cosine."""
    return {"description": name, "defaults": _defaults(size, data, seed),
            "stages": [{"name": "scratch", "model": PRESETS[arch], "model_overrides": overrides, "tokens": tokens,
                        "warmup_steps": size.warmup_steps}]}


def _evaluate(ctx: Context, key: str, checkpoint: str, data: str, size: Settings, benchmarks: bool) -> dict[str, Any]:
    tasks = ["ppl", "paper5"] if benchmarks else ["ppl"]
    return ctx.unit(f"{key}/eval", lambda folder: ctx.evaluate(
        checkpoint, tasks, out=folder, ppl_data=Path(data), limit=size.bench_limit,
        batch_size=size.bench_batch_size, max_batches=size.ppl_batches))


def _scores(results: dict[str, Any], benchmarks: bool) -> dict[str, Any]:
    res = results["results"]
    out = {"ppl": res["ppl"]["perplexity"], "ppl_loss": res["ppl"]["loss"]}
    if benchmarks:
        for task in BENCH:
            out[task] = 100 * res[task]["acc"]
        out["paper5"] = sum(out[t] for t in BENCH) / len(BENCH)
    return out


def run_scratch(ctx: Context, key: str, plan: dict[str, Any], data: str, settings: dict[str, Any],
                benchmarks: bool) -> None:
    """A job: a from-scratch plan (a base, or Qwen3), its final evaluation, one ``KEY/final`` record."""
    size = Settings(**settings)
    result = ctx.plan(f"{key}/plan", plan)
    stage = result["stages"][0]
    results = _evaluate(ctx, key, stage["final_checkpoint"], data, size, benchmarks)
    curve = [{"tokens": r["tokens"], "flops": stage["train_flops_per_token"] * r["tokens"],
              "gpu_seconds": r["elapsed_s"], "loss": r["val_loss"]} for r in stage["metrics"]
             if r.get("val_loss") is not None]
    # the plan's ledger.json as written (ctx.plan keeps the stages apart, with their metrics)
    ledger = {**result["ledger"], "stages": [{k: v for k, v in s.items() if k not in ("metrics", "folder")}
                                             for s in result["stages"]]}
    ctx.unit(f"{key}/final", lambda folder: {
        "parameters": stage["parameters"], "train_flops_per_token": stage["train_flops_per_token"],
        "tokens": ledger["total"]["tokens"], "flops": ledger["total"]["train_flops"],
        "gpu_seconds": ledger["total"]["gpu_seconds"], "ledger": ledger,
        "checkpoint": stage["final_checkpoint"], "curve": curve, **_scores(results, benchmarks)})


def run_grown(ctx: Context, key: str, base_key: str, request: dict[str, Any], data: str, settings: dict[str, Any],
              seed: int) -> None:
    """A job: grow the base's final checkpoint (``preserve``, verified), continue training it, evaluate.

    Its ledger is the base's plan ledger plus the grown stage, summed the way a plan sums its
    stages, so the grown model's compute and GPU-seconds include the base it came from."""
    from growlm.growth import grow_checkpoint, parse_init

    size = Settings(**settings)
    base = json.loads((ctx.out / "units" / f"{base_key}/final.json").read_text())

    def grow(folder: Path) -> dict[str, Any]:
        grown = folder / "grown"
        shutil.rmtree(grown, ignore_errors=True)
        report = grow_checkpoint(base["checkpoint"], grown, request, parse_init("preserve"), seed=seed)
        verification = report.verification
        if verification is not None and not verification.passed:
            raise GrowlmError(f"{key}: the grown model failed its verification ({verification.to_json()})")
        return {"folder": str(grown), "changes": report.to_json()["changes"],
                "verified": verification.passed if verification else None}

    growth = ctx.unit(f"{key}/grow", grow)
    trained = ctx.train(f"{key}/train", {
        **_defaults(size, data, seed), "init_from": growth["folder"], "max_steps": size.steps(size.grow_tokens),
        "lr": size.lr * size.grow_lr_factor, "warmup_steps": size.grow_warmup_steps})
    summary = trained["summary"]
    results = _evaluate(ctx, key, summary["checkpoint"], data, size, True)
    base_total = base["ledger"]["total"]
    gpu_seconds = round(summary["train_seconds"] * summary.get("world_size", 1), 2)
    stage = {"stage": "grown", "grew": growth["changes"], "growth_verified": growth["verified"],
             "parameters": summary["parameters"], "tokens": summary["tokens"],
             "train_flops_per_token": summary["train_flops_per_token"], "train_flops": summary["train_flops"],
             "train_seconds": summary["train_seconds"], "gpu_seconds": gpu_seconds,
             "cumulative_tokens": base_total["tokens"] + summary["tokens"],
             "cumulative_train_flops": base_total["train_flops"] + summary["train_flops"],
             "cumulative_gpu_seconds": round(base_total["gpu_seconds"] + gpu_seconds, 2)}
    ledger = {"stages": [*base["ledger"]["stages"], stage],
              "total": {"tokens": stage["cumulative_tokens"], "train_flops": stage["cumulative_train_flops"],
                        "gpu_seconds": stage["cumulative_gpu_seconds"]}, "convention": base["ledger"]["convention"]}
    curve = base["curve"] + [
        {"tokens": base_total["tokens"] + r["tokens"],
         "flops": base_total["train_flops"] + summary["train_flops_per_token"] * r["tokens"],
         "gpu_seconds": base_total["gpu_seconds"] + r["elapsed_s"], "loss": r["val_loss"]}
        for r in trained["metrics"] if r.get("val_loss") is not None]
    ctx.unit(f"{key}/final", lambda folder: {
        "parameters": summary["parameters"], "train_flops_per_token": summary["train_flops_per_token"],
        "tokens": ledger["total"]["tokens"], "flops": ledger["total"]["train_flops"],
        "gpu_seconds": ledger["total"]["gpu_seconds"], "ledger": ledger, "growth_verified": growth["verified"],
        "request": request, "checkpoint": summary["checkpoint"], "curve": curve, **_scores(results, True)})


def _settings_dict(size: Settings) -> dict[str, Any]:
    return dataclasses.asdict(size)


def _read(ctx: Context, key: str) -> dict[str, Any]:
    return json.loads((ctx.out / "units" / f"{key}/final.json").read_text())


# -- the experiment ------------------------------------------------------------------------------
def run(ctx: Context) -> Report:
    size = settings(ctx)
    shape = shapes(ctx)
    data = str(ctx.corpus("corpus", max_docs_per_file=size.docs_per_file or None,
                          val_docs_per_file=size.val_docs_per_file or None))
    args = _settings_dict(size)
    first: list[Job] = []
    second: list[Job] = []
    both = size.base_tokens + size.grow_tokens
    for seed in ctx.seeds:
        # longest first, so that the short units fill the gaps at the end of the first phase
        for name in SIZES:
            key = f"qwen3/{name}/seed={seed}"
            first.append(Job(key, "growlm.experiments.progressive:run_scratch",
                             {"key": key, "plan": scratch_plan("qwen3", shape["qwen3"][name], both, size, data, seed,
                                                               key),
                              "data": data, "settings": args, "benchmarks": True}, f"{key}/final", both))
        for arch in (*GROWN, "qwen3"):
            key = f"{arch}/base/seed={seed}"
            first.append(Job(key, "growlm.experiments.progressive:run_scratch",
                             {"key": key, "plan": scratch_plan(arch, shape[arch]["base"], size.base_tokens, size,
                                                               data, seed, key),
                              "data": data, "settings": args, "benchmarks": False}, f"{key}/final",
                             size.base_tokens))
        for arch in GROWN:
            for name in SIZES:
                key = f"{arch}/{name}/seed={seed}"
                second.append(Job(key, "growlm.experiments.progressive:run_grown",
                                  {"key": key, "base_key": f"{arch}/base/seed={seed}",
                                   "request": growth_request(shape[arch]["base"], shape[arch][name]), "data": data,
                                   "settings": args, "seed": seed}, f"{key}/final", size.grow_tokens))
    first.sort(key=lambda j: -j.tokens)
    log = ctx.out / "runner.json"
    # no one-unit-alone probe: it would cost a unit's time serially, and the budget is 240 s
    run_jobs(ctx, first, size.parallel, size.min_free_gb, phase="bases and Qwen3")
    run_jobs(ctx, second, size.parallel, size.min_free_gb, phase="grown")
    _drop_weights(ctx)
    runner = json.loads(log.read_text()) if log.exists() else []
    return report(ctx, size, shape, runner)


def _drop_weights(ctx: Context) -> None:
    """Every unit is finished and evaluated: its weights are no longer needed (the records stay)."""
    for pattern in ("*.safetensors", "*.pt", "*.bin"):
        for path in (ctx.out / "runs").rglob(pattern):
            path.unlink()


# -- analysis ------------------------------------------------------------------------------------
def reach(curve: list[dict[str, float]], target: float, axis: str) -> float | None:
    """The ``axis`` value (``flops`` or ``gpu_seconds``) at which a validation curve first reaches ``target``."""
    return flops_to_reach([p[axis] for p in curve], [p["loss"] for p in curve], target)


def compare(reader: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """How much less compute ``reader``'s curve needs to reach ``other``'s final validation loss than ``other``
    used: ``1 - C_reader(L_other) / C_other`` in ledger FLOPs and in ledger GPU-seconds (the paper's 41.5%
    with reader = grown Nexus, other = grown TokenFormer). ``None`` when the curve never reaches it; then
    ``bound`` = 1 - C_reader,total / C_other (the saving would be below it)."""
    target = other["curve"][-1]["loss"]
    out: dict[str, Any] = {"target_loss": target}
    for axis, total in (("flops", "flops"), ("gpu_seconds", "gpu_seconds")):
        at = reach(reader["curve"], target, axis)
        out[f"{axis}_to_target"] = at
        out[f"{axis}_saving"] = None if at is None else 1.0 - at / other[total]
        out[f"{axis}_bound"] = 1.0 - reader[total] / other[total]
    out["reached"] = out["flops_to_target"] is not None
    return out


def _pct(values: list[float | None]) -> Interval | str:
    finite = [100 * v for v in values if v is not None and math.isfinite(v)]
    return mean_interval(finite) if finite else "n/a"


def _paired(a: list[float], b: list[float]) -> Interval:
    return mean_interval(x - y for x, y in zip(a, b, strict=True))


def report(ctx: Context, size: Settings, shape: dict[str, Any], runner: list[dict[str, Any]]) -> Report:
    seeds = ctx.seeds
    rec: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for arch in (*GROWN, "qwen3"):
        for name in ("base", *SIZES):
            rec[arch, name] = [_read(ctx, f"{arch}/{name}/seed={s}") for s in seeds]

    # Table 2: benchmarks of the grown models and of Qwen3 from scratch at the same sizes
    table2 = []
    for name in SIZES:
        for arch in (*GROWN, "qwen3"):
            members = rec[arch, name]
            row: dict[str, Any] = {"model": TITLES[arch], "size": f"{LABELS[name]}-scaled",
                   "how": "grown" if arch in GROWN else "scratch"}
            for task in (*BENCH, "paper5"):
                row[task] = mean_interval(m[task] for m in members)
            table2.append(row)

    # Table 8: parameters, FLOPs, training time, PPL, PPL/FLOPs (Nexus and Qwen3, as the paper; TokenFormer too)
    table8 = []
    for name in ("base", *SIZES):
        for arch in ("nexus", "qwen3", "tokenformer"):
            members = rec[arch, name]
            fwd = members[0]["train_flops_per_token"] / 3  # forward only, as CalFlops measures
            ppl = mean_interval(m["ppl"] for m in members)
            how = "from scratch" if arch == "qwen3" or name == "base" else "grown (base included)"
            table8.append({
                "model": TITLES[arch], "size": f"{LABELS[name]}-scaled", "how": how,
                "params": f"{members[0]['parameters'] / 1e6:.2f}M", "fwd": f"{fwd / 1e6:.1f}",
                "flops": mean_interval(m["flops"] / 1e12 for m in members),
                "gpu_s": mean_interval(m["gpu_seconds"] for m in members), "ppl": ppl,
                "ppl_per_flops": mean_interval(m["ppl"] / (fwd / 1e6) for m in members),
                "_arch": arch, "_name": name})

    # compute savings: Nexus grown vs TokenFormer grown (the paper's 41.5%) and vs Qwen3 from scratch
    savings = []
    decisions: dict[str, Any] = {}
    ppl_diffs: dict[str, Interval] = {}
    for name in SIZES:
        for other in ("tokenformer", "qwen3"):
            per = [compare(n, o) for n, o in zip(rec["nexus", name], rec[other, name], strict=True)]
            reached = sum(p["reached"] for p in per)
            flops = _pct([p["flops_saving"] for p in per])
            secs = _pct([p["gpu_seconds_saving"] for p in per])
            pays = reached == len(per) and isinstance(flops, Interval) and flops.n >= 2 and flops.low > 0
            row = {"size": f"{LABELS[name]}-scaled", "against": f"{TITLES[other]} "
                   + ("grown" if other in GROWN else "from scratch"),
                   "target": mean_interval(p["target_loss"] for p in per), "reached": f"{reached}/{len(per)}",
                   "flops": flops, "seconds": secs,
                   "bound": _pct([p["flops_bound"] for p in per if not p["reached"]]) if reached < len(per) else "",
                   "saves": "yes" if pays else "no", "_per_seed": per}
            savings.append(row)
            decisions[f"{name}:{other}"] = pays
        # PPL at matched size: Nexus grown vs Qwen3 from scratch, paired by seed, in ln PPL
        diff = _paired([math.log(m["ppl"]) for m in rec["qwen3", name]], [math.log(m["ppl"]) for m in rec["nexus", name]])
        ppl_diffs[name] = diff
        decisions[f"{name}:ppl_vs_qwen3"] = {"ln_ppl_qwen3_minus_nexus": diff.as_dict(),
                                             "nexus_better": diff.n >= 2 and diff.low > 0}

    figures = [_figure(ctx, rec)]
    paper = paper_tables()
    rows_shape = []
    for arch in ("nexus", "tokenformer", "qwen3"):
        for name in ("base", *SIZES):
            o = shape[arch][name]
            c = costs(arch, o, size.seq_len)
            keys = ("hidden_size", "intermediate_size", "nexus_m", "nexus_a", "qkv_slots")
            rows_shape.append({"model": TITLES[arch], "size": LABELS[name], "shape": ", ".join(
                f"{k.replace('_size', '').replace('intermediate', 'FFN').replace('hidden', 'D')} {o[k]}"
                for k in keys if k in o), "params": f"{c['total_params'] / 1e6:.2f}M",
                "non_emb": f"{c['non_embedding_params'] / 1e6:.2f}M",
                "flops": f"{c['train_flops_per_token'] / 1e6:.1f}M"})
    body = [
        f"Scaled-down §4.3: Table 7's widths / {24 if ctx.quick else 3}, {shape['nexus']['base']['num_hidden_layers']} "
        "layers, 32k vocabulary. "
        f"Bases (NexusFormer, TokenFormer) and Qwen3 at the base size: {size.base_tokens:,} tokens from scratch. "
        f"Grown: the base's final checkpoint grown with `preserve` (lossless, verified), then {size.grow_tokens:,} "
        f"tokens at {size.grow_lr_factor:g} x lr (warm-up {size.grow_warmup_steps} steps, cosine), optimizer "
        f"moments and data position carried. Qwen3 at each target size: "
        f"{size.base_tokens + size.grow_tokens:,} tokens from scratch (the data the grown model saw). Sequence "
        f"{size.seq_len}, batch {size.micro_batch_size}, AdamW lr {size.lr:g} (wd {size.weight_decay:g}), warm-up "
        f"{size.warmup_steps} steps, cosine. Seeds {', '.join(map(str, seeds))}; every value is the mean ± 95% "
        "t-interval over seeds. The sizes keep the paper's labels with '-scaled': the true counts are in the "
        "first table (with a 32k vocabulary the embeddings are most of each model, so the targets are only "
        "x1.06-1.5 the base, where the paper's are x1.25-1.83).",
        "**Shapes** (training FLOPs per token at this sequence length, from `growlm.models.accounting`):",
        markdown_table(rows_shape, [("model", "Model"), ("size", "Size (paper)"), ("shape", "Shape"),
                                    ("params", "Params"), ("non_emb", "Non-emb."), ("flops", "Train FLOPs/token")]),
        f"**Table 2** (accuracy %, paper5 on the first {size.bench_limit} documents of each task's standard "
        "split, as `growlm eval --limit`):",
        markdown_table(table2, [("model", "Model"), ("size", "Size"), ("how", "Trained"), ("piqa", "PIQA"),
                                ("openbookqa", "OBQA"), ("hellaswag", "HellaSwag"), ("arc_easy", "ARC-E"),
                                ("arc_challenge", "ARC-C"), ("paper5", "Avg.")], digits=2),
        "**Table 8**: FLOPs = cumulative training FLOPs from the ledgers (TF = 10^12; a grown model's include its "
        "base's); training time = GPU-seconds from the ledgers (the trainer's clock over optimizer steps x "
        "processes; units ran side by side on one GPU, so every unit's seconds are under the same sharing); PPL "
        f"= validation perplexity over the first {size.ppl_batches} validation batches; PPL/FLOPs = PPL ÷ forward "
        "MFLOPs per token (the paper's FLOPs column is CalFlops' forward count; its unit is not printed, so the "
        "ratio's scale differs from the paper's, only its ordering compares).",
        markdown_table(table8, [("model", "Model"), ("size", "Size"), ("how", "Trained"), ("params", "Params"),
                                ("fwd", "Fwd MFLOPs/token"), ("flops", "Training FLOPs (TF, ledger)"),
                                ("gpu_s", "Training time (GPU-s, ledger)"), ("ppl", "PPL"),
                                ("ppl_per_flops", "PPL/FLOPs")], digits=3),
        "**Compute saving** (pre-registered, docs/experiments.md): per seed, 1 − C_Nexus(L*) / C_other, L* the "
        "other model's final validation loss (its last evaluation during training, the same windows as every "
        "curve point), C_Nexus(L*) where grown Nexus's loss-vs-compute curve (base stage included) first reaches "
        "L* (linear interpolation), C_other the other model's total; in ledger FLOPs and in ledger GPU-seconds "
        "(the paper's 41.5% is GPU hours). A seed that never reaches L* is 'not reached' (its bound, "
        "1 − C_Nexus,total / C_other, is shown). Nexus 'saves' at a size if every seed reaches L* and the 95% "
        "interval of the FLOPs saving lies above 0.",
        markdown_table(savings, [("size", "Size"), ("against", "Against"), ("target", "L* (val loss)"),
                                 ("reached", "Reached"), ("flops", "FLOPs saving %"),
                                 ("seconds", "GPU-seconds saving %"), ("bound", "Bound if not reached %"),
                                 ("saves", "Saves")], digits=2),
        "**PPL at matched size** (pre-registered): ln PPL(Qwen3 scratch) − ln PPL(Nexus grown), paired by seed: "
        + "; ".join(f"{LABELS[n]}-scaled {ppl_diffs[n].format(3)} (Nexus better: "
                    f"{'yes' if decisions[f'{n}:ppl_vs_qwen3']['nexus_better'] else 'no'})" for n in SIZES)
        + ".",
        throughput_text(runner, compile=size.compile),
        speed_text(compile_choice(ctx), trained_units(ctx.out)),
    ]
    data_out = {"settings": dataclasses.asdict(size), "shapes": shape, "decisions": decisions,
                "records": {f"{a}/{n}": [{k: v for k, v in m.items() if k not in ("curve", "checkpoint")}
                                         for m in ms] for (a, n), ms in rec.items()},
                "table2": [_plain(r) for r in table2], "table8": [_plain(r) for r in table8],
                "savings": [{**_plain(r), "per_seed": r["_per_seed"]} for r in savings], "runner": runner}
    return Report("Progressive growth to three sizes vs Qwen3 from scratch (Nexusformer §4.3: Tables 2, 8, Figure 2)",
                  "\n\n".join(body), figures, data_out, paper=paper)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.as_dict() if isinstance(v, Interval) else v) for k, v in row.items() if not k.startswith("_")}


def paper_tables() -> str:
    """The paper's numbers (transcribed): Table 2, Table 8 and §4.3's saving."""
    t2 = [("NexusFormer", "300M", 67.25, 31.80, 40.41, 51.81, 27.80, 43.81),
          ("TokenFormer", "300M", 67.02, 32.20, 40.83, 50.04, 28.07, 43.63),
          ("Qwen3", "300M", 56.42, 26.40, 28.48, 39.56, 23.98, 34.97),
          ("NexusFormer", "380M", 68.17, 34.00, 44.27, 55.01, 30.29, 46.35),
          ("TokenFormer", "380M", 66.70, 33.20, 40.71, 49.57, 28.32, 43.70),
          ("Qwen3", "380M", 54.84, 26.40, 28.27, 35.19, 22.10, 33.36),
          ("NexusFormer", "440M", 67.14, 33.40, 43.77, 55.72, 29.35, 45.88),
          ("TokenFormer", "440M", 60.66, 31.40, 32.27, 43.26, 25.34, 38.59),
          ("Qwen3", "440M", 55.17, 26.80, 27.97, 36.83, 23.98, 34.15)]
    lines = ["Paper **Table 2** (FineWeb, base 100B + ~30B tokens after growth; Qwen3 from scratch; accuracy %, "
             "one run each):", "",
             "| Model | Size | PIQA | OBQA | HellaSwag | ARC-E | ARC-C | Avg. |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {m} | {s} | " + " | ".join(f"{v:.2f}" for v in vals) + " |" for m, s, *vals in t2]
    # Table 8: FLOPs and PPL/FLOPs were lost in the text extraction except the ratios quoted in Appendix G.3;
    # FLOPs = PPL / (PPL/FLOPs). The train-time column matches §4.3's GPU hours (Nexus 300M: 79.79 h, and
    # 56.5 h = 41.5% of TokenFormer's 136.1 h).
    t8 = [("NexusFormer", "240M", 47, 10.8157, 2.54), ("Qwen3", "240M", 46.1, 18.1741, 4.30),
          ("NexusFormer", "300M", 79.79, 9.4216, 1.67), ("Qwen3", "300M", 87.75, 13.7495, 2.28),
          ("NexusFormer", "380M", 96.3, 8.3981, 1.17), ("Qwen3", "380M", 117, 12.8842, 1.70),
          ("NexusFormer", "440M", 110.36, 9.1706, 1.09), ("Qwen3", "440M", 129, 12.2500, 1.41)]
    lines += ["", "Paper **Table 8** (Appendix G; FLOPs from CalFlops, unit not printed, recovered as PPL ÷ "
              "(PPL/FLOPs) with the ratios quoted in G.3; training time in GPU hours, A800):", "",
              "| Model | Size | FLOPs (recovered) | Train time (GPU h) | PPL | PPL/FLOPs |", "|---|---|---|---|---|---|"]
    lines += [f"| {m} | {s} | {ppl / r:.2f} | {t:g} | {ppl:.4f} | {r:.2f} |" for m, s, t, ppl, r in t8]
    lines += ["", "§4.3 / Figure 2: grown Nexusformer-300M reaches grown TokenFormer-300M's perplexity with 56.5 "
              "fewer GPU hours, a **41.5%** reduction (GPU hours, not FLOPs); Figure 2 plots PPL against compute "
              "for grown Nexusformer, grown TokenFormer and Qwen3 from scratch at 240M-440M; the 240M Nexusformer "
              "already beats Qwen3-440M. No seeds or intervals."]
    return "\n".join(lines)


def _figure(ctx: Context, rec: dict[tuple[str, str], list[dict[str, Any]]]) -> Path:
    """Figure 2: validation PPL against cumulative training compute (ledger FLOPs; and GPU-seconds)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    colours = {"nexus": "C0", "tokenformer": "C1", "qwen3": "C3"}
    styles = {"base": ":", "300m": "-", "380m": "--", "440m": "-."}
    for ax, axis, label in ((axes[0], "flops", "cumulative training FLOPs (TF, ledger)"),
                            (axes[1], "gpu_seconds", "cumulative training time (GPU-s, ledger)")):
        for arch in ("nexus", "tokenformer", "qwen3"):
            for name in ("base", *SIZES):
                for j, m in enumerate(rec[arch, name]):
                    # a grown curve starts at its base's last point (the growth point: the same function)
                    curve = m["curve"] if arch == "qwen3" or name == "base" else \
                        m["curve"][max(0, len(rec[arch, "base"][j]["curve"]) - 1):]
                    scale = 1e12 if axis == "flops" else 1.0
                    ax.plot([p[axis] / scale for p in curve], [math.exp(p["loss"]) for p in curve],
                            styles[name], marker="." if name != "base" else None, markersize=3,
                            color=colours[arch], alpha=0.9 if j == 0 else 0.3, linewidth=1.2,
                            label=f"{TITLES[arch]} {LABELS[name]}" + (" (grown)" if arch in GROWN and name != "base"
                                                                      else "") if j == 0 else None)
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("validation PPL (log)")
        ax.grid(alpha=0.3)
    axes[0].set_title("Figure 2 (scaled): PPL vs compute; grown curves continue from their base")
    axes[1].set_title("the same against GPU-seconds")
    axes[1].legend(fontsize=7, ncol=2)
    return save_figure(fig, ctx.path("ppl_vs_compute.png"))
