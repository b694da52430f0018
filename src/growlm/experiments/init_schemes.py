"""How to fill the new blocks: preserve vs zero vs noise:0.1 vs random growth of the same base.

For each seed one base Nexusformer trains on ``base_tokens``; its final checkpoint is grown
(by M and A, recipe.GROWTH) four times, once per init scheme (growlm.growth.base):

* ``preserve`` -- growlm's default: zero only the blocks through which new units reach old
  outputs, random elsewhere (lossless and trainable);
* ``zero`` -- the paper's literal scheme, every new block zero (lossless; ../shared/papers/NOTES.md §1 argues
  that no new block then receives gradient);
* ``noise:0.1`` -- zero plus Gaussian noise of 0.1 x the pretrained matrix's std (the
  paper's Table 4 ablation);
* ``random`` -- every new block random at the pretrained scale (naive growth).

Each grown model continues on the same ``grow_tokens`` with the same settings. Measured:

* validation loss of the base, of the grown model right after growth, and after the
  continued training (the first ``ppl_batches`` windows of the validation split, the same
  windows every time);
* whether the new blocks moved: over the entries of every new block (``growth.json``'s
  ``new_blocks``; norm gains, which every scheme sets to a fixed value, left out),
  ``rel_new = RMS(W_after - W_grown | new) / RMS(W_grown | old)`` -- the change of the new
  entries in units of the typical size of the pretrained entries of the same tensors --
  the same for the old entries (``rel_old``), and the fraction of new blocks with any
  non-zero change.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from growlm.experiments.common import Context, Report, markdown_table
from growlm.experiments.compiling import speed_text
from growlm.experiments.recipe import (
    check_options,
    compile_choice,
    corpus,
    growth_spec,
    model_costs,
    model_spec,
    pyplot,
    save_figure,
    sizing,
    train_values,
)
from growlm.stats import group_intervals, mean_interval

logger = logging.getLogger(__name__)

DESCRIPTION = "growth init schemes (preserve, zero, noise:0.1, random): loss at growth, after training, movement"
DEFAULT_SEEDS = 3
SCHEMES = ("preserve", "zero", "noise:0.1", "random")
ARCHITECTURE = "nexus"


def scheme_key(scheme: str) -> str:
    return scheme.replace(":", "-")


def val_loss(ctx: Context, model: str | Path, data: Path, size: Any, out: Path) -> float:
    """Validation loss of a model folder on the first ``ppl_batches`` windows (``seq_len`` long)."""
    from growlm.evaluation.runner import evaluate_checkpoint

    result = evaluate_checkpoint(model, ["ppl"], out=out, ppl_data=data, batch_size=size.micro_batch_size,
                                 device=ctx.device, seq_len=size.seq_len, max_batches=size.ppl_batches,
                                 progress=False)
    return float(result["results"]["ppl"]["loss"])


def block_index(region: list[list[list[int]]]) -> tuple[Any, ...]:
    """``growth.json``'s region (per axis, ``[start, stop]`` runs) as an index for a tensor."""
    import torch

    axes = [torch.cat([torch.arange(a, b) for a, b in runs]) if runs else torch.zeros(0, dtype=torch.long)
            for runs in region]
    return tuple(torch.meshgrid(*axes, indexing="ij")) if len(axes) > 1 else tuple(axes)


def movement(grown: Path, trained: Path, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """How far the new entries moved in training, relative to the pretrained entries (module docstring)."""
    import torch

    from growlm.models import storage

    before, after = storage.load_state(grown), storage.load_state(trained)
    masks: dict[str, torch.Tensor] = {}
    moved = total = 0
    for block in blocks:
        if block["init"] == "fixed":
            continue
        name = block["param"]
        if name not in before or name not in after:
            raise KeyError(f"new block of '{name}' has no tensor of that name in {grown} and {trained}")
        index = block_index(block["region"])
        masks.setdefault(name, torch.zeros_like(before[name], dtype=torch.bool))[index] = True
        total += 1
        moved += bool((after[name][index].float() - before[name][index].float()).abs().max() > 0)
    sums = dict.fromkeys(("new_change", "old_change", "old_size"), 0.0)
    counts = {"new": 0, "old": 0}
    for name, mask in masks.items():
        b, a = before[name].float(), after[name].float()
        delta = (a - b) ** 2
        sums["new_change"] += float(delta[mask].sum())
        sums["old_change"] += float(delta[~mask].sum())
        sums["old_size"] += float((b[~mask] ** 2).sum())
        counts["new"] += int(mask.sum())
        counts["old"] += int((~mask).sum())
    old_rms = math.sqrt(sums["old_size"] / max(1, counts["old"]))
    return {"blocks": total, "blocks_moved": moved, "moved_fraction": moved / total if total else float("nan"),
            "rel_new": math.sqrt(sums["new_change"] / max(1, counts["new"])) / old_rms,
            "rel_old": math.sqrt(sums["old_change"] / max(1, counts["old"])) / old_rms,
            "new_entries": counts["new"], "old_entries": counts["old"]}


def run(ctx: Context) -> Report:
    from growlm.growth import grow_checkpoint, parse_init

    check_options(ctx, ["schemes"])
    schemes = [s.strip() for s in str(ctx.options.get("schemes", ",".join(SCHEMES))).split(",") if s.strip()]
    for scheme in schemes:
        parse_init(scheme)  # a bad scheme fails before any data or training, naming the valid ones
    size = sizing(ctx)
    data = corpus(ctx, size)
    preset, overrides = model_spec(ctx, ARCHITECTURE)
    growth = growth_spec(ctx, ARCHITECTURE)
    records: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for seed in ctx.seeds:
        logger.info(f"init-schemes: base seed {seed}")
        base = ctx.train(f"base/seed={seed}", {**train_values(ctx, size, data, seed, size.base_tokens),
                                                "model": preset, "model_overrides": overrides})
        base_ckpt = base["summary"]["checkpoint"]
        base_loss = ctx.unit(f"base/seed={seed}/val", lambda folder, c=base_ckpt: {
            "loss": val_loss(ctx, c, data, size, folder)})["loss"]
        # the no-growth control: the base alone, continued at the compute of a grown continuation
        # (grow_tokens x the grown model's FLOPs per token / the base's), with the same settings
        f_base = model_costs(preset, overrides, size.seq_len)["train_flops_per_token"]
        f_grown = model_costs(preset, {**overrides, **growth}, size.seq_len)["train_flops_per_token"]
        control_tokens = round(size.grow_tokens * f_grown / f_base)
        control = ctx.train(f"no-growth/seed={seed}/continued", {
            **train_values(ctx, size, data, seed, control_tokens), "init_from": base_ckpt,
            "lr": size.lr * size.grow_lr_ratio, "warmup_steps": size.grow_warmup_steps})
        runs += [base, control]
        control_loss = ctx.unit(f"no-growth/seed={seed}/val-after-training",
                                lambda folder, c=control["summary"]["checkpoint"]: {
                                    "loss": val_loss(ctx, c, data, size, folder)})["loss"]
        for scheme in schemes:
            key = f"{scheme_key(scheme)}/seed={seed}"
            logger.info(f"init-schemes: {scheme} seed {seed}")

            def grow(folder: Path, scheme: str = scheme, base_ckpt: str = base_ckpt, seed: int = seed) -> dict[str, Any]:
                report = grow_checkpoint(base_ckpt, folder / "model", growth, parse_init(scheme), seed=seed)
                saved = report.to_json()  # the unit's JSON record holds growth.json's fields
                return {"model": str(folder / "model"), "new_blocks": saved["new_blocks"],
                        "verification": saved["verification"], "parameters": saved["parameters"]}

            grown = ctx.unit(f"{key}/grown", grow)
            after_growth = ctx.unit(f"{key}/val-after-growth", lambda folder, m=grown["model"]: {
                "loss": val_loss(ctx, m, data, size, folder)})["loss"]
            values = {**train_values(ctx, size, data, seed, size.grow_tokens), "init_from": grown["model"],
                      "lr": size.lr * size.grow_lr_ratio, "warmup_steps": size.grow_warmup_steps}
            trained = ctx.train(f"{key}/continued", values)
            runs.append(trained)
            final = trained["summary"]["checkpoint"]
            after_training = ctx.unit(f"{key}/val-after-training", lambda folder, c=final: {
                "loss": val_loss(ctx, c, data, size, folder)})["loss"]
            moved = ctx.unit(f"{key}/movement", lambda folder, g=grown, c=final: movement(
                Path(g["model"]), Path(c), g["new_blocks"]))
            record = {"scheme": scheme, "seed": seed, "base_loss": base_loss, "after_growth": after_growth,
                      "growth_jump": after_growth - base_loss, "after_training": after_training,
                      "gain": base_loss - after_training, "no_growth_loss": control_loss,
                      "no_growth_tokens": control["summary"]["tokens"],
                      "vs_no_growth": after_training - control_loss, **moved,
                      "verification_passed": (grown["verification"] or {}).get("passed"),
                      "curve": [{"tokens": r["tokens"], "val_loss": r["val_loss"]}
                                for r in trained["metrics"] if "val_loss" in r]}
            ctx.unit(f"{key}/record", lambda folder, r=record: r)  # the raw per-run JSON
            records.append(record)

    reference = {r["seed"]: r["after_training"] for r in records if r["scheme"] == schemes[0]}
    for r in records:  # paired with the first scheme (preserve by default) of the same seed and base
        r["vs_preserve"] = r["after_training"] - reference[r["seed"]]
    rows = group_intervals(records, ["scheme"], ["base_loss", "after_growth", "growth_jump", "after_training",
                                                  "vs_preserve", "gain", "vs_no_growth", "moved_fraction",
                                                  "rel_new", "rel_old"])
    for row in rows:
        first = next(r for r in records if r["scheme"] == row["scheme"])
        row["blocks"] = f"{first['blocks_moved']}/{first['blocks']}" if all(
            r["blocks_moved"] == first["blocks_moved"] for r in records if r["scheme"] == row["scheme"]) else \
            f"{row['moved_fraction'].mean * first['blocks']:.1f}/{first['blocks']} (mean)"
        row["lossless"] = "yes" if parse_init(row["scheme"]).lossless else "no"
    table = markdown_table(rows, [
        ("scheme", "Init"), ("lossless", "Lossless by design"), ("base_loss", "Base val loss"),
        ("after_growth", "Right after growth"), ("growth_jump", "Jump at growth"),
        ("after_training", "After continued training"), ("vs_preserve", f"vs {schemes[0]} (paired)"),
        ("gain", "Gain over base"), ("vs_no_growth", "vs no growth (paired, equal compute)"),
        ("blocks", "New blocks moved"), ("rel_new", "Rel. change, new entries"),
        ("rel_old", "Rel. change, old entries")], digits=4)
    costs = model_costs(preset, {**overrides, **growth}, size.seq_len)
    body = "\n\n".join([
        f"NexusFormer base ({model_costs(preset, overrides, size.seq_len)['total_params'] / 1e6:.2f}M parameters) "
        f"trained on {size.base_tokens:,} tokens, grown by {', '.join(f'{k}→{v}' for k, v in growth.items())} "
        f"({costs['total_params'] / 1e6:.2f}M) with each scheme, then {size.grow_tokens:,} more tokens (lr "
        f"{size.lr * size.grow_lr_ratio:g}, warm-up {size.grow_warmup_steps} steps, cosine, optimizer moments "
        "carried over). Validation loss on the first "
        f"{size.ppl_batches} validation windows of {size.seq_len} tokens; mean ± 95% t-interval over seeds.",
        "Rel. change = RMS(W_after − W_grown) over the new (resp. old) entries of the grown tensors, divided by the "
        "RMS of their pretrained entries at growth. New blocks moved = blocks (norm gains excluded) with any "
        f"entry changed by the continued training. 'vs {schemes[0]} (paired)' = loss after continued training minus "
        f"that of {schemes[0]} grown from the same base (same seed), so the base's seed-to-seed spread cancels.",
        f"'vs no growth' = loss after continued training minus that of the **base alone** continued from the same "
        "checkpoint with the same settings for as many FLOPs as the grown continuation costs (the no-growth "
        "control; paired by seed): 'gain over base' alone also counts what the extra tokens give any model. "
        f"No-growth control's final loss: {mean_interval(r['no_growth_loss'] for r in records if r['scheme'] == schemes[0]).format(4)}.",
        table,
        speed_text(compile_choice(ctx, size), runs),
    ])
    paper = ("The paper grows with every new block zero (§3, Eq. 14) and reports that zero initialization gives "
             "a structured diverge-then-converge trajectory of its radial energy while 10% or 20% Gaussian noise "
             "turns it into unstructured exploration (Table 4; the table's numbers were lost in the text "
             "extraction). It gives no loss comparison of the schemes. ../shared/papers/NOTES.md §1: with GELU(0) = 0 every new "
             "block of an all-zero Nexus growth has exactly zero gradient, so the zero scheme cannot move them; "
             "the 'New blocks moved' column tests that.")
    figures = [_figure(ctx, rows)]
    return Report("Growth init schemes: preserve vs zero vs noise vs random (Nexusformer §3, Table 4)", body,
                  figures, {"records": [{k: v for k, v in r.items() if k != "curve"} for r in records],
                            "sizing": size.__dict__}, paper=paper)


def _figure(ctx: Context, rows: list[dict[str, Any]]):
    plt = pyplot()
    panels = [("growth_jump", "jump at growth (val loss)"),
              ("vs_preserve", "after training − preserve (paired)"),
              ("rel_new", "rel. change of new entries")]
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.8))
    names = [row["scheme"] for row in rows]
    for ax, (key, title) in zip(axes, panels, strict=True):
        means = [row[key].mean for row in rows]
        errors = [0.0 if row[key].n < 2 or math.isnan(row[key].half_width) else row[key].half_width for row in rows]
        ax.bar(range(len(rows)), means, yerr=errors, capsize=3, color=[f"C{i}" for i in range(len(rows))])
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names)
        ax.set_title(title + " (95% CI)")
        ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, ctx.path("init_schemes.png"))
