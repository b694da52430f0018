"""Nexusformer vs Qwen3 vs Transformer++ vs TokenFormer at matched parameters and tokens (paper Table 1/6/8).

Every architecture gets a model of the same total parameter count (recipe.MODELS, within
0.1%), the same data (the shared corpus, the same token budget, the same order for the
same seed), the same optimizer settings, and is then measured on

* the validation corpus: next-token loss and perplexity over the first ``ppl_batches``
  windows of the validation split (drawn from the same sources as the training data);
* ``paper5`` -- PIQA, OBQA, HellaSwag, ARC-E, ARC-C, the paper's five benchmarks (their
  validation splits; accuracy, the first ``bench_limit`` documents of each file);
* LAMBADA (OpenAI test split, the first ``bench_limit`` documents): last-word accuracy
  and perplexity.

Nothing is tuned on any of these: one learning rate for all, fixed before the runs.
"""

from __future__ import annotations

import logging
from typing import Any

from growlm.experiments.common import Context, Report, markdown_table
from growlm.experiments.compiling import speed_text
from growlm.experiments.recipe import (
    TITLES,
    architectures,
    benchmark_columns,
    check_options,
    compile_choice,
    corpus,
    model_costs,
    model_spec,
    paper_table1,
    pyplot,
    save_figure,
    sizing,
    train_values,
)
from growlm.stats import group_intervals

logger = logging.getLogger(__name__)

DESCRIPTION = "Nexusformer vs Qwen3 vs Transformer++ vs TokenFormer at matched parameters and tokens (Table 1)"
DEFAULT_SEEDS = 3
FULL_TOKENS = 5_000_000  # per model in the full form (12 runs of ~21M parameters: ~60M tokens in all)

TASKS = ["ppl", "paper5", "lambada_openai"]
BENCH = ["piqa", "openbookqa", "hellaswag", "arc_easy", "arc_challenge"]


def _record(arch: str, seed: int, costs: dict[str, int], run: dict[str, Any], results: dict[str, Any]) -> dict:
    res = results["results"]
    record = {"architecture": arch, "model": TITLES[arch], "seed": seed, "parameters": costs["total_params"],
              "non_embedding": costs["non_embedding_params"], "flops_per_token": costs["train_flops_per_token"],
              "tokens": run["summary"]["tokens"], "train_seconds": run["summary"]["train_seconds"],
              "val_loss": res["ppl"]["loss"], "val_ppl": res["ppl"]["perplexity"],
              "lambada_acc": 100 * res["lambada_openai"]["acc"], "lambada_ppl": res["lambada_openai"]["perplexity"]}
    for task in BENCH:
        record[task] = 100 * res[task]["acc"]
    record["paper5"] = sum(record[t] for t in BENCH) / len(BENCH)
    return record


def run(ctx: Context) -> Report:
    check_options(ctx, ["architectures"])
    size = sizing(ctx, **({} if ctx.quick else {"base_tokens": FULL_TOKENS}))
    data = corpus(ctx, size)
    archs = architectures(ctx)
    records, runs = [], []
    for seed in ctx.seeds:
        for arch in archs:
            preset, overrides = model_spec(ctx, arch)
            costs = model_costs(preset, overrides, size.seq_len)
            values = {**train_values(ctx, size, data, seed, size.base_tokens), "model": preset,
                      "model_overrides": overrides}
            logger.info(f"architectures: {arch} seed {seed} ({costs['total_params'] / 1e6:.2f}M parameters)")
            trained = ctx.train(f"{arch}/seed={seed}", values)
            runs.append(trained)

            def evaluate(folder, trained=trained):
                return ctx.evaluate(trained["summary"]["checkpoint"], TASKS, out=folder, ppl_data=data,
                                    limit=size.bench_limit, batch_size=size.bench_batch_size,
                                    max_batches=size.ppl_batches)

            results = ctx.unit(f"{arch}/seed={seed}/eval", evaluate)
            record = _record(arch, seed, costs, trained, results)
            ctx.unit(f"{arch}/seed={seed}/record", lambda folder, record=record: record)  # the raw per-run JSON
            records.append({**record, "curve": [{"tokens": r["tokens"], "val_loss": r["val_loss"]}
                                                for r in trained["metrics"] if "val_loss" in r]})

    metrics = ["parameters", "non_embedding", "flops_per_token", "val_loss", "val_ppl", *BENCH, "paper5",
               "lambada_acc", "lambada_ppl"]
    rows = group_intervals(records, ["model"], metrics)
    for row in rows:  # sizes are the same for every seed: print them plainly
        for key in ("parameters", "non_embedding"):
            row[key] = f"{row[key].mean / 1e6:.2f}M"
        row["flops_per_token"] = f"{row['flops_per_token'].mean / 1e6:.0f}M"
    table = markdown_table(rows, [("model", "Model"), ("parameters", "Params"), ("non_embedding", "Non-emb."),
                                  *benchmark_columns(), ("val_ppl", "Val PPL"), ("lambada_acc", "LAMBADA acc"),
                                  ("lambada_ppl", "LAMBADA PPL")], digits=2)
    cost_table = markdown_table(rows, [("model", "Model"), ("parameters", "Params"),
                                       ("flops_per_token", "Train FLOPs/token"), ("val_loss", "Val loss"),
                                       ("val_ppl", "Val PPL")], digits=3)
    figures = [_curves_figure(ctx, records, archs), _bars_figure(ctx, rows)]
    tokens = records[0]["tokens"] if records else 0
    body = "\n\n".join([
        f"Each model trained on {tokens:,} tokens of the shared corpus (sequence {size.seq_len}, batch "
        f"{size.micro_batch_size}, AdamW lr {size.lr:g} cosine, the same data order for the same seed), "
        f"then evaluated: validation loss over the first {size.ppl_batches} validation windows; paper5 "
        f"(validation splits) and LAMBADA (OpenAI test split) on the first {size.bench_limit} documents of each "
        "task. Accuracies in %, mean ± 95% t-interval over seeds. Paper Table 1 layout, with our perplexities "
        "appended.",
        table,
        "Cost at matched parameters (paper Table 8 analogue; FLOPs of forward and backward matmuls per "
        "training token, from `growlm.models.accounting`):",
        cost_table,
        "At this scale (a few million tokens) most benchmark accuracies sit near chance (PIQA 50, OBQA/HellaSwag/"
        "ARC 25); differences there are within the intervals unless the table says otherwise. The validation "
        "loss is the sensitive comparison.",
        speed_text(compile_choice(ctx, size), runs),
    ])
    paper = ("Table 1 (FineWeb, 100B tokens, context 4096, accuracy %; the paper gives no intervals or seeds):\n\n"
             + paper_table1() + "\n\nTable 8 validation PPL at 240M: NexusFormer 10.82, Qwen3 18.17 (PPL ratio "
             "0.60). The paper's claim: Nexusformer leads at matched parameters, most at the larger scales.")
    return Report("Architectures at matched parameters (Nexusformer Table 1/6/8)", body, figures,
                  {"records": [{k: v for k, v in r.items() if k != "curve"} for r in records],
                   "sizing": size.__dict__}, paper=paper)


def _curves_figure(ctx: Context, records: list[dict], archs: list[str]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, arch in enumerate(archs):
        for j, record in enumerate(r for r in records if r["architecture"] == arch):
            curve = record["curve"]
            ax.plot([p["tokens"] for p in curve], [p["val_loss"] for p in curve], "-", color=f"C{i}", alpha=0.8,
                    linewidth=1.2, label=TITLES[arch] if j == 0 else None)
    ax.set_xlabel("training tokens")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("Validation loss, one line per seed")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, ctx.path("val_loss.png"))


def _bars_figure(ctx: Context, rows: list[dict]):
    plt = pyplot()
    columns = [*BENCH, "paper5", "lambada_acc"]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        means = [row[c].mean for c in columns]
        errors = [0 if row[c].n < 2 else row[c].half_width for c in columns]
        ax.bar([k + i * width for k in range(len(columns))], means, width, yerr=errors, capsize=2, label=row["model"])
    ax.set_xticks([k + width * (len(rows) - 1) / 2 for k in range(len(columns))])
    ax.set_xticklabels(["PIQA", "OBQA", "HellaSwag", "ARC-E", "ARC-C", "Avg.", "LAMBADA"])
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Benchmarks (mean ± 95% interval over seeds)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return save_figure(fig, ctx.path("benchmarks.png"))
