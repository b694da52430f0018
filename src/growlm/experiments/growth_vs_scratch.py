"""Does growth pay? Base -> grown target vs the target trained from scratch, in training FLOPs.

For each architecture (recipe.GROWTH says how it grows: Nexus by M and A, TokenFormer by
parameter slots, Qwen3 by width, Llama by depth) and each seed, two growth plans run on
the same data:

* **grown**: the base model trains on ``base_tokens``, is grown losslessly (``preserve``) into
  the target shape and trains on ``grow_tokens`` more (warm-up again, cosine);
* **scratch**: the target shape trains from a random start on ``base_tokens + grow_tokens``
  (the paper's protocol: the same total tokens).

Both are growlm plans, so their compute comes from the plan's FLOPs ledger: a validation
point ``t`` tokens into stage ``k`` sits at ``F = F_{<k} + t * f_k`` (``F_{<k}`` the ledger's
cumulative training FLOPs of the stages before, ``f_k`` the stage's training FLOPs per
token). Validation loss is measured every ``eval_every`` steps on the same first
``eval_batches`` windows of the validation split.

The target loss is the scratch run's final validation loss ``L*``. The compute each run
needs to reach it, ``F_grown(L*)`` and ``F_scratch(L*)``, is read off its loss-vs-FLOPs curve
at the first crossing, linearly interpolated between the two evaluations that bracket it
(:func:`recipe.flops_to_reach`); for the scratch run this is at most its total. The saving
is ``1 - F_grown(L*) / F_scratch(L*)``, per seed, then mean and 95% t-interval over the
seeds. A grown run that never reaches ``L*`` has no saving; it is counted as "not reached",
left out of the interval, and the table gives the bound ``saving < 1 - F_grown,total /
F_scratch(L*)`` (what it would be had it reached the target at its very last step).

The paper's 41.5% compares *Nexusformer grown* with *TokenFormer grown* (the compute
Nexusformer needs to reach TokenFormer's perplexity); the same formula with TokenFormer's
final loss as the target is reported too when both architectures run.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from growlm.experiments.common import Context, Report, markdown_table
from growlm.experiments.compiling import speed_text
from growlm.experiments.recipe import (
    GROWTH_OPTIONS,
    TITLES,
    architectures,
    check_options,
    compile_choice,
    corpus,
    flops_to_reach,
    growth_spec,
    model_costs,
    model_spec,
    plan_curve,
    pyplot,
    save_figure,
    sizing,
    train_values,
)
from growlm.stats import mean_interval

logger = logging.getLogger(__name__)

DESCRIPTION = "growth vs training the target from scratch: validation loss against ledger FLOPs, compute saving"
DEFAULT_SEEDS = 3
# full form: 4 architectures x 3 seeds x (2.4M + 1.2M grown, 3.6M scratch) = 86M tokens in all
FULL_TOKENS = {"base_tokens": 2_400_000, "grow_tokens": 1_200_000}
QUICK_ARCHITECTURES = ("nexus", "tokenformer")  # the paper's pair; the CPU form stays under a minute


def _plan_values(ctx: Context, size: Any, data: Any, seed: int, arch: str, grown: bool) -> dict[str, Any]:
    preset, overrides = model_spec(ctx, arch)
    growth = growth_spec(ctx, arch)
    defaults = train_values(ctx, size, data, seed, size.base_tokens)
    defaults.pop("max_steps")
    defaults["checkpoint_every"] = 10**9  # the final step always checkpoints; nothing in between is needed
    if grown:
        stages = [{"name": "base", "model": preset, "model_overrides": overrides, "tokens": size.base_tokens},
                  {"name": "grown", "grow": growth, "init": "preserve", "grow_seed": seed,
                   "grow_options": GROWTH_OPTIONS.get(arch, {}), "tokens": size.grow_tokens,
                   "lr": size.lr * size.grow_lr_ratio, "warmup_steps": size.grow_warmup_steps}]
    else:
        stages = [{"name": "scratch", "model": preset, "model_overrides": {**overrides, **growth},
                   "tokens": size.base_tokens + size.grow_tokens}]
    return {"description": f"{arch} {'grown' if grown else 'scratch'} seed {seed}", "defaults": defaults,
            "stages": stages}


def compare(grown: list[dict[str, Any]], scratch: list[dict[str, Any]]) -> dict[str, Any]:
    """Compute to the scratch run's final loss for both curves, and the saving (None when not reached)."""
    target = scratch[-1]["loss"]
    f_scratch = flops_to_reach([p["flops"] for p in scratch], [p["loss"] for p in scratch], target)
    f_grown = flops_to_reach([p["flops"] for p in grown], [p["loss"] for p in grown], target)
    total_grown = grown[-1]["flops"]
    assert f_scratch is not None  # the scratch curve ends at the target: it reaches it
    return {"target_loss": target, "scratch_final_loss": target, "grown_final_loss": grown[-1]["loss"],
            "scratch_total_flops": scratch[-1]["flops"], "grown_total_flops": total_grown,
            "scratch_flops_to_target": f_scratch, "grown_flops_to_target": f_grown, "reached": f_grown is not None,
            "saving": None if f_grown is None else 1.0 - f_grown / f_scratch,
            "saving_bound": 1.0 - total_grown / f_scratch}


def run(ctx: Context) -> Report:
    check_options(ctx, ["architectures"])
    size = sizing(ctx, **({} if ctx.quick else FULL_TOKENS))
    data = corpus(ctx, size)
    archs = architectures(ctx, QUICK_ARCHITECTURES if ctx.quick else None)
    records: list[dict[str, Any]] = []
    plans: list[dict[str, Any]] = []
    for seed in ctx.seeds:
        for arch in archs:
            logger.info(f"growth-vs-scratch: {arch} seed {seed}")
            grown_plan = ctx.plan(f"{arch}/seed={seed}/grown", _plan_values(ctx, size, data, seed, arch, True))
            scratch_plan = ctx.plan(f"{arch}/seed={seed}/scratch", _plan_values(ctx, size, data, seed, arch, False))
            plans += [grown_plan, scratch_plan]
            g, s = plan_curve(grown_plan), plan_curve(scratch_plan)
            preset, overrides = model_spec(ctx, arch)
            record = {"architecture": arch, "model": TITLES[arch], "seed": seed,
                      "growth": growth_spec(ctx, arch),
                      "base_parameters": model_costs(preset, overrides, size.seq_len)["total_params"],
                      "target_parameters": scratch_plan["stages"][0]["parameters"],
                      "grown_ledger": grown_plan["ledger"], "scratch_ledger": scratch_plan["ledger"],
                      "growth_flops": grown_plan["stages"][0]["cumulative_train_flops"],
                      "growth_verified": grown_plan["stages"][1]["growth_verified"],
                      **compare(g, s), "grown_curve": g, "scratch_curve": s}
            ctx.unit(f"{arch}/seed={seed}/record", lambda folder, record=record: record)  # raw per-run JSON
            records.append(record)

    rows = [_summary_row(arch, [r for r in records if r["architecture"] == arch]) for arch in archs]
    table = markdown_table(rows, [
        ("model", "Architecture"), ("growth", "Growth"), ("params", "Params base → target"),
        ("scratch_final_loss", "Scratch final val loss (L*)"), ("grown_final_loss", "Grown final val loss"),
        ("scratch_flops", "Scratch FLOPs to L* (TF)"), ("grown_flops", "Grown FLOPs to L* (TF)"),
        ("reached", "Grown reached L*"), ("saving", "Saving (%)"), ("bound", "Saving bound if not reached (%)")],
        digits=3)
    cross = _cross_architecture(records, ctx.seeds) if {"nexus", "tokenformer"} <= set(archs) else None
    figures = [_figure(ctx, records, archs)]
    body = [
        f"Grown: base on {size.base_tokens:,} tokens, grown with `preserve` (lossless, verified), then "
        f"{size.grow_tokens:,} tokens at lr {size.lr * size.grow_lr_ratio:g} (warm-up {size.grow_warmup_steps} steps, "
        f"cosine). Scratch: the target shape on {size.base_tokens + size.grow_tokens:,} tokens from a random start. "
        f"Sequence {size.seq_len}, batch {size.micro_batch_size}, validation every {size.eval_every} steps on the "
        f"first {size.eval_batches} validation batches. FLOPs from the plans' ledgers (forward + backward matmuls "
        "of what trained; TF = 10^12).",
        "Saving = 1 − F_grown(L*) / F_scratch(L*), L* the scratch run's final validation loss, F(L) the cumulative "
        "training FLOPs at which a run's validation-loss curve first reaches L (linear interpolation between the "
        "two evaluations around the crossing). Mean ± 95% t-interval over the seeds that reached L*; a run that "
        "never reaches L* counts as not reached and its bound 1 − F_grown,total / F_scratch(L*) is shown "
        "(the saving would be below it).",
        table,
    ]
    body.append(speed_text(compile_choice(ctx, size), plans))
    if cross is not None:
        body += ["The paper's comparison (its 41.5%): the compute grown Nexusformer needs to reach grown "
                 "TokenFormer's final validation loss, against TokenFormer's own compute to reach it: "
                 f"saving {cross['text']} (reached in {cross['reached']}/{cross['n']} seeds)."]
    paper = ("§4.3 / Figure 2: grown from a 240M base (100B tokens) with ~30B more tokens, Nexusformer-300M "
             "reaches TokenFormer-300M's perplexity with 41.5% less training compute (56.5 fewer GPU hours); "
             "one run each, no interval. Qwen3 at 300M/380M/440M is trained from scratch on ~130B tokens "
             "(Table 8 PPL: Qwen3 13.75/12.88/12.25 vs grown Nexusformer 9.42/8.40/9.17). Table 2 paper5 average: "
             "Nexusformer 43.81/46.35/45.88, TokenFormer 43.63/43.70/38.59, Qwen3 34.97/33.36/34.15 at "
             "300M/380M/440M. The paper gives no grown-vs-scratch comparison of the same architecture; ours is that.")
    data_out = {"records": [{k: v for k, v in r.items() if not k.endswith("_curve")} for r in records],
                "summary": [{k: v for k, v in row.items()} for row in rows], "cross": cross, "sizing": size.__dict__}
    return Report("Growth vs training from scratch (Nexusformer §4.3, Figure 2)", "\n\n".join(body), figures,
                  data_out, paper=paper)


def _summary_row(arch: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    reached = [m for m in members if m["reached"]]
    first = members[0]
    row: dict[str, Any] = {
        "model": TITLES[arch], "growth": ", ".join(f"{k}→{v}" for k, v in first["growth"].items()),
        "params": f"{first['base_parameters'] / 1e6:.2f}M → {first['target_parameters'] / 1e6:.2f}M",
        "scratch_final_loss": mean_interval(m["scratch_final_loss"] for m in members),
        "grown_final_loss": mean_interval(m["grown_final_loss"] for m in members),
        "scratch_flops": mean_interval(m["scratch_flops_to_target"] / 1e12 for m in members),
        "grown_flops": mean_interval(m["grown_flops_to_target"] / 1e12 for m in reached) if reached else "never",
        "reached": f"{len(reached)}/{len(members)}",
        "saving": mean_interval(100 * m["saving"] for m in reached) if reached else "n/a",
        "bound": (mean_interval(100 * m["saving_bound"] for m in members if not m["reached"])
                  if len(reached) < len(members) else ""),
    }
    return row


def _cross_architecture(records: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    savings, reached = [], 0
    for seed in seeds:
        nexus = next(r for r in records if r["architecture"] == "nexus" and r["seed"] == seed)
        tf = next(r for r in records if r["architecture"] == "tokenformer" and r["seed"] == seed)
        target = tf["grown_curve"][-1]["loss"]
        f_tf = flops_to_reach([p["flops"] for p in tf["grown_curve"]], [p["loss"] for p in tf["grown_curve"]], target)
        f_nx = flops_to_reach([p["flops"] for p in nexus["grown_curve"]],
                              [p["loss"] for p in nexus["grown_curve"]], target)
        assert f_tf is not None  # the target is the TokenFormer curve's own final loss
        if f_nx is not None:
            reached += 1
            savings.append(100 * (1 - f_nx / f_tf))
    interval = mean_interval(savings)
    return {"savings_percent": savings, "interval": interval, "reached": reached, "n": len(seeds),
            "text": interval.format(1) + " %" if not math.isnan(interval.mean) else "n/a (never reached)"}


def _figure(ctx: Context, records: list[dict[str, Any]], archs: list[str]):
    plt = pyplot()
    cols = min(2, len(archs))
    rows = math.ceil(len(archs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.8 * rows), squeeze=False)
    for ax, arch in zip(axes.flat, archs, strict=False):
        members = [r for r in records if r["architecture"] == arch]
        for j, r in enumerate(members):
            g, s = r["grown_curve"], r["scratch_curve"]
            ax.plot([p["flops"] / 1e12 for p in g], [p["loss"] for p in g], "-", color="C0", alpha=0.8,
                    label="grown" if j == 0 else None)
            ax.plot([p["flops"] / 1e12 for p in s], [p["loss"] for p in s], "--", color="C3", alpha=0.8,
                    label="scratch" if j == 0 else None)
            ax.axvline(r["growth_flops"] / 1e12, color="grey", linestyle=":", linewidth=0.8)
        target = sum(r["target_loss"] for r in members) / len(members)
        ax.axhline(target, color="black", linewidth=0.8, label="L* (mean)")
        ax.set_title(f"{TITLES[arch]}: grown vs scratch")
        ax.set_xlabel("cumulative training FLOPs (TF, from the ledger)")
        ax.set_ylabel("validation loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(archs):]:
        ax.set_visible(False)
    return save_figure(fig, ctx.path("loss_vs_flops.png"))
