"""Modular composition end to end: a prose expert and a technical expert on one frozen substrate, merged.

The shared corpus splits into two domains: **prose** (``gutenberg``, ``sotu``: books and
speeches) and **technical** (``pydocs``, ``linuxdocs``: Python and Linux documentation).
Per seed:

1. The substrate: the frozen table of the model config field ``embedding`` (``glyph``, the
   paper's, in the full form; ``binary`` in the quick form, which builds in a second),
   built by :func:`growlm.substrate.install_substrate` from the 32k tokenizer. With
   ``embedding=learned`` (``options={"embedding": "learned"}``) it is instead one randomly
   initialised table per seed (the model's initialisation at seed ``1000 s``), frozen in
   every run with ``frozen: [model.embed_tokens.weight]``.
2. Three models start on that table with blocks of their own (seeds ``1000 s + 0, 1, 2``):
   the **prose expert** trains on prose, the **technical expert** on technical text, each
   for ``expert_steps``; the **joint** baseline trains on the mixture of both for twice
   as many steps (the two experts' tokens together), so it saw as much text as the pair.
3. ``growlm compose`` merges the two experts: **composite (mean)** is the paper's
   mean-logits merge, untrained; **composite (gate)** adds a token-conditioned mixing gate
   trained for ``mix_steps`` on the mixture's *training* split with the experts frozen;
   **composite (mixture)** (``--mixing prob``) averages the experts' next-token
   probabilities instead of their logits, untrained: its loss is at most the better
   expert's plus ln 2 on every token, so on the same windows also on average, which the
   report checks per seed and split. Then the paper's brief fine-tune after merging
   (``growlm compose --finetune``), on the same ``mix_steps`` x ``mix_batch_size`` windows
   of the mixture's training split as the gate: **composite (fine-tuned)** trains every
   weight of the mean composite except the frozen substrate (``--finetune full``, lr
   ``ft_lr``), **composite (adapter)** trains only a zero-initialised linear adapter over
   the experts' concatenated final hidden states, experts frozen (``--finetune adapter``,
   lr ``adapter_lr``). Both start exactly at composite (mean).
4. Every model's validation perplexity is measured (``growlm eval``'s ppl code,
   :func:`growlm.evaluation.perplexity.evaluate_loss`, the same evenly spread windows every time)
   on the prose, the technical and the mixed validation splits (``corpus/val``, documents
   never trained on).

Reported: perplexity per model and split, mean ± 95% t-interval over the seeds, and per
seed paired comparisons: the composite against the better single expert on the mixture,
and against each expert on its own domain (ratios of perplexities); for the fine-tuned arms
the pre-registered ratios (docs/composition.md): fine-tuned / mean, adapter / mean,
adapter / fine-tuned, both / gate and both / joint, per split.

The training runs (``parallel`` > 1) and then the composites with their evaluations run
side by side in worker processes (:func:`growlm.experiments.common.run_jobs`); every unit
is resumable and the results do not depend on which process ran it.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from growlm.experiments.common import Context, Report, markdown_table
from growlm.experiments.compiling import CompileChoice, choose, config_mode, speed_text, trained_units
from growlm.stats import group_intervals, mean_interval

logger = logging.getLogger(__name__)

DESCRIPTION = "modular composition: prose and technical experts on one frozen substrate, merged by mean logits"
DEFAULT_SEEDS = 3

DOMAINS = {"prose": ("gutenberg", "sotu"), "technical": ("pydocs", "linuxdocs")}
SPLITS = ("prose", "technical", "mixture")
# New models come last so that the evaluation units of the older ones keep their keys (eval-N).
MODELS = ("prose expert", "technical expert", "joint (mixture, 2x steps)", "composite (mean)", "composite (gate)",
          "composite (mixture)", "composite (fine-tuned)", "composite (adapter)")
COMPOSITES = ("composite (mean)", "composite (mixture)", "composite (gate)", "composite (adapter)",
              "composite (fine-tuned)")
# Each composite: its unit key, mixing, whether its mixer trains (experts frozen), its fine-tune mode.
ARMS = {"composite (mean)": ("compose-mean", "mean", False, None),
        "composite (gate)": ("compose-gate", "gate", True, None),
        "composite (mixture)": ("compose-prob", "prob", False, None),
        "composite (fine-tuned)": ("compose-ft-full", "mean", False, "full"),
        "composite (adapter)": ("compose-ft-adapter", "mean", False, "adapter")}
# The pre-registered comparisons of the fine-tune arms (docs/composition.md): (arm, reference).
VERSUS = (("composite (fine-tuned)", "composite (mean)"), ("composite (adapter)", "composite (mean)"),
          ("composite (adapter)", "composite (fine-tuned)"), ("composite (adapter)", "composite (gate)"), ("composite (fine-tuned)", "composite (gate)"),
          ("composite (fine-tuned)", "joint (mixture, 2x steps)"), ("composite (adapter)", "joint (mixture, 2x steps)"))


@dataclass(frozen=True)
class Size:
    embedding: str  # the substrate kind; learned = one random table per seed, frozen
    preset: str
    overrides: dict[str, Any]
    seq_len: int
    micro_batch_size: int
    expert_steps: int
    lr: float
    warmup_steps: int
    mix_steps: int  # the gate's, the adapter's and the full fine-tune's steps (the same windows for all three)
    mix_batch_size: int
    eval_batches: int
    eval_batch_size: int
    max_docs_per_file: int | None
    val_docs_per_file: int | None
    ft_lr: float = 3e-4  # the full fine-tune's (AdamW, constant, clipped at 1)
    adapter_lr: float = 1e-3
    parallel: int = 1  # worker processes side by side (1: every unit in this process, in order)
    compile: str = "auto"  # experiment setting (growlm.experiments.compiling); sizing() resolves it


QUICK = Size(embedding="binary", preset="nexus-tiny", overrides={"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64,
                                             "num_attention_heads": 2, "head_dim": 16, "nexus_m": 16, "nexus_a": 24,
                                             "max_position_embeddings": 256},
             seq_len=64, micro_batch_size=4, expert_steps=20, lr=3e-3, warmup_steps=2, mix_steps=8, mix_batch_size=4,
             eval_batches=2, eval_batch_size=4, max_docs_per_file=6, val_docs_per_file=2)
# The full form fits about 3 minutes on one H100 (benchmarks/gpu_composition.sh): experts 250 steps (the
# 2026-12-01 result used 400), mixer and fine-tunes 150 steps, nine training runs side by side.
FULL = Size(embedding="glyph", preset="nexus-tiny", overrides={}, seq_len=256, micro_batch_size=32, expert_steps=250,
            lr=3e-3, warmup_steps=25, mix_steps=150, mix_batch_size=16, eval_batches=24, eval_batch_size=16,
            max_docs_per_file=None, val_docs_per_file=None, parallel=9)
# The full form uses every training and validation document, so that the mixture's training split (on which
# the gate trains) holds prose and technical text in the proportions of its validation split (34% vs 32% prose
# tokens); capping documents per file would make the gate learn a prose-heavy prior the validation set lacks.


def sizing(ctx: Context) -> Size:
    """The form's sizes, with any ``ctx.options`` of the same name applied (e.g. ``expert_steps``)."""
    from growlm.errors import ConfigError, unknown_key_message

    base = QUICK if ctx.quick else FULL
    for key in ctx.options:
        if key not in Size.__dataclass_fields__:
            raise ConfigError(unknown_key_message("composition option", key, Size.__dataclass_fields__))
    changes = dict(ctx.options)
    changes["compile"] = compile_choice(ctx).label  # the resolved mode: what every expert's run uses
    return Size(**{**asdict(base), **changes})


def compile_choice(ctx: Context) -> CompileChoice:
    """How the experts' training runs compile (:mod:`growlm.experiments.compiling`): on the GPU,
    CUDA graphs for expert runs long enough to pay for compiling. The gate, adapter and fine-tune
    loops of ``growlm.composition`` are their own short eager loops, and evaluation is eager."""
    base = QUICK if ctx.quick else FULL
    steps, seq, batch = (int(ctx.options.get(k, getattr(base, k))) for k in ("expert_steps", "seq_len", "micro_batch_size"))
    return choose(ctx.options.get("compile", base.compile), ctx.device, experiment=ctx.name, tokens=steps * seq * batch)


def _substrate_overrides(size: Size) -> dict[str, Any]:
    return {} if size.embedding == "learned" else {"embedding": size.embedding}


def _initial_models(ctx: Context, size: Size, seed: int, folder: Path) -> dict[str, Any]:
    """Three starting points on one embedding table (the first model's), saved with the tokenizer."""
    import torch

    from growlm.data.tokenizer import load_tokenizer
    from growlm.models import model_class_for, storage
    from growlm.models.presets import build_config

    overrides = {**size.overrides, **_substrate_overrides(size), "tie_word_embeddings": False,
                 "bos_token_id": 1, "eos_token_id": 2}
    config = build_config(size.preset, overrides)
    tokenizer = load_tokenizer(ctx.tokenizer)
    table = None
    paths = {}
    for index, role in enumerate(("prose", "technical", "joint")):
        torch.manual_seed(1000 * seed + index)
        model = model_class_for(config)(config)
        if table is None and getattr(config, "frozen_embedding", False):
            from growlm.substrate import install_substrate

            install_substrate(model, tokenizer)
        with torch.no_grad():
            if table is None:
                table = model.get_input_embeddings().weight.detach().clone()
            model.get_input_embeddings().weight.copy_(table)
        paths[role] = str(folder / role)
        storage.save_model(model, folder / role, tokenizer)
    return {"paths": paths, "frozen_by_field": "embedding" in overrides}


def _train_values(size: Size, init: str, data: Path, steps: int, seed: int, freeze: bool) -> dict[str, Any]:
    return {"init_from": init, "data": str(data), "frozen": ["model.embed_tokens.weight"] if freeze else [],
            "seq_len": size.seq_len, "micro_batch_size": size.micro_batch_size, "max_steps": steps,
            "lr": size.lr, "warmup_steps": size.warmup_steps, "schedule": "cosine", "seed": seed,
            "eval_every": steps, "eval_batches": size.eval_batches, "checkpoint_every": steps,
            "log_every": max(1, steps // 20), "compile": config_mode(size.compile)}


def _compose_unit(ctx: Context, key: str, experts: list[str], mixing: str, mix_data: Path | None,
                  size: Size, seed: int, finetune_mode: str | None = None) -> dict[str, Any]:
    from growlm.composition import compose, finetune, train_mixer

    def work(folder: Path) -> dict[str, Any]:
        model = folder / "model"
        shutil.rmtree(model, ignore_errors=True)  # an interrupted earlier attempt
        record = compose(experts, model, mixing=mixing)
        if mix_data is not None and finetune_mode is None:
            record["mix_train"] = train_mixer(model, mix_data, size.mix_steps, seq_len=size.seq_len,
                                              batch_size=size.mix_batch_size, seed=seed, device=ctx.device,
                                              eval_batches=size.eval_batches)
        if finetune_mode is not None:
            assert mix_data is not None  # a fine-tuning arm trains on the mixture (model_job passes it)
            lr = size.ft_lr if finetune_mode == "full" else size.adapter_lr
            record["finetune"] = finetune(model, mix_data, size.mix_steps, mode=finetune_mode, lr=lr,
                                          seq_len=size.seq_len, batch_size=size.mix_batch_size, seed=seed,
                                          device=ctx.device, eval_batches=size.eval_batches)
        return {**record, "model": str(model)}

    return ctx.unit(key, work)


def _evaluate_unit(ctx: Context, key: str, checkpoint: str, data: dict[str, Path], size: Size) -> dict[str, Any]:
    """Validation loss of one model on every split (the model loaded once)."""
    from growlm.data.dataset import TokenSplit
    from growlm.evaluation.perplexity import evaluate_loss
    from growlm.models import storage
    from growlm.system import pick_autocast, pick_device

    def work(folder: Path) -> dict[str, Any]:
        device = pick_device(ctx.device)
        model = storage.load_model(checkpoint, device).eval()
        autocast = pick_autocast("auto", device)
        return {split: evaluate_loss(model, TokenSplit(path, "val"), size.seq_len, size.eval_batch_size,
                                     size.eval_batches, device, autocast) for split, path in data.items()}

    return ctx.unit(key, work)


def _data(ctx: Context, size: Size) -> dict[str, Path]:
    data = {name: ctx.corpus(f"composition-{name}", sources=sources, max_docs_per_file=size.max_docs_per_file,
                             val_docs_per_file=size.val_docs_per_file) for name, sources in DOMAINS.items()}
    data["mixture"] = ctx.corpus("composition-mixture", sources=[s for v in DOMAINS.values() for s in v],
                                 max_docs_per_file=size.max_docs_per_file, val_docs_per_file=size.val_docs_per_file)
    return data


def train_job(ctx: Context, key: str, values: dict[str, Any]) -> None:
    """One training run (a :class:`~growlm.experiments.common.Job`, in this or a worker process)."""
    ctx.train(key, values)


def model_job(ctx: Context, seed: int, name: str, checkpoint: str | None, experts: list[str]) -> dict[str, Any]:
    """One model of one seed: composed (and trained) first if it is a composite, then evaluated on every split.

    Returns ``(compose record or None, scores)``; run as a Job and again, reading its units, to report."""
    size = sizing(ctx)
    data = _data(ctx, size)
    record = None
    if name in ARMS:
        key, mixing, mix_train, finetune_mode = ARMS[name]
        record = _compose_unit(ctx, f"seed={seed}/{key}", experts, mixing,
                               data["mixture"] if mix_train or finetune_mode else None, size, seed, finetune_mode)
        checkpoint = record["model"]
    assert checkpoint is not None  # a single model's run, or the composite just made
    scores = _evaluate_unit(ctx, f"seed={seed}/eval-{MODELS.index(name)}", checkpoint,
                            {s: data[s] for s in SPLITS}, size)
    return {"compose": record, "scores": scores}


def run(ctx: Context) -> Report:
    from growlm.experiments.common import Job, run_jobs

    size = sizing(ctx)
    data = _data(ctx, size)
    tokens = size.seq_len * size.micro_batch_size
    train_jobs, values = [], {}
    for seed in ctx.seeds:
        init = ctx.unit(f"seed={seed}/init", lambda folder, seed=seed: _initial_models(ctx, size, seed, folder))
        freeze = not init["frozen_by_field"]
        for role, split, steps in (("joint", "mixture", 2 * size.expert_steps),  # the longest first
                                   ("prose", "prose", size.expert_steps),
                                   ("technical", "technical", size.expert_steps)):
            key = f"seed={seed}/train-{role}"
            values[seed, role] = _train_values(size, init["paths"][role], data[split], steps, seed, freeze)
            train_jobs.append(Job(key, "growlm.experiments.composition:train_job",
                                  {"key": key, "values": values[seed, role]}, key, tokens * steps))
    train_jobs.sort(key=lambda j: -j.tokens)
    run_jobs(ctx, train_jobs, size.parallel, phase="train")
    runs = {k: ctx.train(f"seed={k[0]}/train-{k[1]}", v)["run"] for k, v in values.items()}
    singles = {"prose expert": "prose", "technical expert": "technical", "joint (mixture, 2x steps)": "joint"}
    model_args: list[dict[str, Any]] = []
    for seed in ctx.seeds:
        experts = [runs[seed, "prose"], runs[seed, "technical"]]
        for name in MODELS:
            model_args.append({"seed": seed, "name": name, "experts": experts,
                               "checkpoint": runs[seed, singles[name]] if name in singles else None})
    # the fine-tunes (which train the experts) first, then the mixers, then the rest
    cost = {"composite (fine-tuned)": 3, "composite (adapter)": 2, "composite (gate)": 2}
    model_args.sort(key=lambda a: -cost.get(a["name"], 1))
    run_jobs(ctx, [Job(f"seed={a['seed']}/model-{MODELS.index(a['name'])}", "growlm.experiments.composition:model_job",
                       a, f"seed={a['seed']}/eval-{MODELS.index(a['name'])}") for a in model_args],
             size.parallel, phase="composites")
    records: list[dict[str, Any]] = []
    mix_records, ft_records = [], []
    for seed in ctx.seeds:
        for name in MODELS:
            args = next(a for a in model_args if a["seed"] == seed and a["name"] == name)
            done = model_job(ctx, **args)  # every unit finished: read back
            scores, compose_record = done["scores"], done["compose"] or {}
            if compose_record.get("mix_train"):
                mix_records.append({"seed": seed, **compose_record["mix_train"]})
            if compose_record.get("finetune"):
                ft_records.append({"seed": seed, "model": name, **compose_record["finetune"]})
            records.append({"seed": seed, "model": name, **{s: scores[s]["perplexity"] for s in SPLITS},
                            **{f"{s}_loss": scores[s]["loss"] for s in SPLITS},
                            **{f"{s}_tokens": scores[s]["tokens"] for s in SPLITS}})
    return _report(ctx, size, records, mix_records, ft_records)


def _paired(records: list[dict[str, Any]], seeds: list[int], composite: str) -> dict[str, Any]:
    """Per seed: the composite's mixture perplexity over the better expert's, and its own-domain ratios."""
    def value(seed: int, model: str, split: str) -> float:
        return next(r[split] for r in records if r["seed"] == seed and r["model"] == model)

    mix, prose, tech, better = [], [], [], 0
    for seed in seeds:
        best = min(value(seed, "prose expert", "mixture"), value(seed, "technical expert", "mixture"))
        mix.append(value(seed, composite, "mixture") / best)
        better += value(seed, composite, "mixture") < best
        prose.append(value(seed, composite, "prose") / value(seed, "prose expert", "prose"))
        tech.append(value(seed, composite, "technical") / value(seed, "technical expert", "technical"))
    return {"model": composite, "mixture_vs_best": mean_interval(mix), "better_seeds": f"{better}/{len(seeds)}",
            "prose_vs_expert": mean_interval(prose), "technical_vs_expert": mean_interval(tech)}


def _bound(records: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Per seed and split: the mixture's loss minus (the better expert's + ln 2); ≤ 0 up to rounding."""
    def loss(seed: int, model: str, split: str) -> float:
        return next(r[f"{split}_loss"] for r in records if r["seed"] == seed and r["model"] == model)

    rows, held, checked = [], 0, 0
    for seed in seeds:
        row: dict[str, Any] = {"seed": seed}
        for split in SPLITS:
            best = min(loss(seed, "prose expert", split), loss(seed, "technical expert", split))
            row[split] = loss(seed, "composite (mixture)", split) - best - math.log(2)
            held += row[split] <= 1e-4  # autocast and summation order round the losses apart slightly
            checked += 1
        rows.append(row)
    return {"rows": rows, "held": held, "checked": checked}


def _versus(records: list[dict[str, Any]], seeds: list[int]) -> list[dict[str, Any]]:
    """The pre-registered ratios: per seed, arm PPL / reference PPL on each split; mean ± 95% t-interval.

    Decision rule (docs/composition.md): the arm is *better* than the reference on a split when the
    interval lies below 1, *worse* when it lies above 1, otherwise not distinguishable."""
    def value(seed: int, model: str, split: str) -> float:
        return next(r[split] for r in records if r["seed"] == seed and r["model"] == model)

    rows = []
    for arm, reference in VERSUS:
        row: dict[str, Any] = {"arm": arm, "reference": reference}
        for split in SPLITS:
            ratio = mean_interval([value(seed, arm, split) / value(seed, reference, split) for seed in seeds])
            row[split] = ratio
            row[f"{split}_verdict"] = "better" if ratio.high < 1 else ("worse" if ratio.low > 1 else "n.d.")
        rows.append(row)
    return rows


def _report(ctx: Context, size: Size, records: list[dict[str, Any]], mix_records: list[dict[str, Any]],
            ft_records: list[dict[str, Any]]) -> Report:
    rows = group_intervals(records, ["model"], list(SPLITS))
    table = markdown_table(rows, [("model", "Model"), ("seeds", "Seeds"), ("prose", "Prose val PPL"),
                                  ("technical", "Technical val PPL"), ("mixture", "Mixture val PPL")], digits=2)
    paired = [_paired(records, ctx.seeds, name) for name in COMPOSITES]
    bound = _bound(records, ctx.seeds)
    paired_table = markdown_table(paired, [
        ("model", "Composite"), ("mixture_vs_best", "Mixture PPL / better expert's"),
        ("better_seeds", "Seeds better than both experts on the mixture"),
        ("prose_vs_expert", "Prose PPL / prose expert's"), ("technical_vs_expert", "Technical PPL / technical expert's")],
        digits=3)
    versus = _versus(records, ctx.seeds)
    versus_rows = [{"arm": v["arm"], "reference": v["reference"],
                    **{s: f"{v[s].format(3)} ({v[f'{s}_verdict']})" for s in SPLITS}} for v in versus]
    ft_rows = [{"seed": f["seed"], "model": f["model"], "trainable": f"{f['trainable_params']:,}",
                "before": f["val_loss_before"], "after": f["val_loss_after"]} for f in ft_records]
    gate_rows = [{"seed": m["seed"], "before": m["val_loss_before"], "after": m["val_loss_after"],
                  "weights": ", ".join(f"{w:.2f}" for w in m["bias_weights"])} for m in mix_records]
    substrate = (f"the frozen `{size.embedding}` substrate (`embedding: {size.embedding}`, built from the 32k "
                 "tokenizer)" if size.embedding != "learned" else
                 "one randomly initialised embedding table per seed, frozen (`frozen: [model.embed_tokens.weight]`)")
    tokens = size.seq_len * size.micro_batch_size * size.expert_steps
    overrides = ", ".join(f"{k}={v}" for k, v in size.overrides.items()) or "as the preset"
    body = [
        f"Experts: `{size.preset}` ({overrides}; untied head) on {substrate}; each expert {size.expert_steps} steps "
        f"x {size.micro_batch_size} x {size.seq_len} = {tokens:,} tokens of its domain; the joint baseline "
        f"{2 * size.expert_steps} steps on the mixture ({2 * tokens:,} tokens, as many as both experts). Prose = "
        "gutenberg + sotu, technical = pydocs + linuxdocs (the shared corpus, "
        f"{size.max_docs_per_file or 'all'} training documents per file). Composite (mean): `growlm compose`, the "
        "mean of the two experts' logits, nothing trained. Composite (mixture): `growlm compose --mixing prob`, the "
        "mean of the two experts' next-token probabilities (log-sum-exp of their log-softmaxes minus ln 2), nothing "
        "trained. Composite (gate): softmax weights per token from the "
        f"experts' final hidden states, trained {size.mix_steps} steps x {size.mix_batch_size} windows on the "
        "mixture's *training* split, experts frozen (bit-identical). Composite (fine-tuned): the mean composite, "
        f"every weight but the frozen substrate tables fine-tuned on the same {size.mix_steps} x "
        f"{size.mix_batch_size} windows (AdamW lr {size.ft_lr}, clip 1). Composite (adapter): the mean composite "
        "plus a zero-initialised linear adapter over the experts' concatenated final hidden states, trained on the "
        f"same windows (lr {size.adapter_lr}), experts frozen. Validation perplexity on "
        f"{size.eval_batches} batches of {size.eval_batch_size} x {size.seq_len}-token windows spread evenly over "
        "each validation split (held-out documents; mixture = the four sources' validation files together); "
        "mean ± 95% t-interval over seeds.",
        table,
        "Paired per seed (ratios below 1 mean the composite has the lower perplexity):",
        paired_table,
        "The gate's fine-tune (mixture validation loss in nats before → after; its per-expert bias weights, "
        "prose first):",
        markdown_table(gate_rows, [("seed", "Seed"), ("before", "Before"), ("after", "After"),
                                   ("weights", "Bias weights")], digits=4),
        "The fine-tunes after merging (the paper's step; both start exactly at composite (mean): a full fine-tune "
        "changes nothing before its first step and the adapter starts at zero). Mixture validation loss in nats "
        "before → after, and the parameters trained:",
        markdown_table(ft_rows, [("seed", "Seed"), ("model", "Arm"), ("trainable", "Trained parameters"),
                                 ("before", "Before"), ("after", "After")], digits=4),
        "Pre-registered comparisons of the fine-tune arms (docs/composition.md): per seed, the arm's perplexity "
        "over the reference's on each validation split, mean ± 95% t-interval; *better* when the interval lies "
        "below 1, *worse* above 1, *n.d.* otherwise:",
        markdown_table(versus_rows, [("arm", "Arm"), ("reference", "Reference"), ("prose", "Prose"),
                                     ("technical", "Technical"), ("mixture", "Mixture (primary)")]),
        "The mixture's bound: its validation loss minus (the better expert's loss + ln 2), in nats, per seed and "
        "split (the same windows for every model; the bound holds token by token, so it must be ≤ 0 here, and a "
        "mean of logits has no such bound):",
        markdown_table(bound["rows"], [("seed", "Seed"), *((s, s.capitalize()) for s in SPLITS)], digits=4),
        _verdict(rows, paired) + f"\n* composite (mixture): within ln 2 of the better expert on "
        f"{bound['held']}/{bound['checked']} seed x split pairs.",
        speed_text(compile_choice(ctx), trained_units(ctx.out)),
    ]
    figure = _figure(ctx, rows)
    paper = ("Bochkov (arXiv 2507.07129, ../shared/papers/NOTES.md section 2) merges models trained on different data (languages) "
             "on the same frozen embeddings by averaging their logits, reports that the merged model starts near "
             "its experts' loss and improves with a brief fine-tune of a small adapter, and gives no perplexity "
             "table for the merge; our check is the claim itself, on two domains of one language.")
    return Report("Modular composition: experts on one frozen substrate, merged (Bochkov 2025)", "\n\n".join(body),
                  [figure], {"records": records, "summary": rows, "paired": paired, "mix_train": mix_records,
                             "finetune": ft_records, "versus": versus,
                             "mixture_bound": bound,
                             "sizing": asdict(size)}, paper=paper)


def _verdict(rows: list[dict[str, Any]], paired: list[dict[str, Any]]) -> str:
    lines = []
    for p in paired:
        mix = p["mixture_vs_best"]
        where = "lower" if mix.high < 1 else ("higher" if mix.low > 1 else "not distinguishable from")
        lines.append(f"* {p['model']}: mixture perplexity {mix.format(3)} times the better expert's "
                     f"({where} {'than ' if where != 'not distinguishable from' else ''}it at 95%); on their own "
                     f"domains {p['prose_vs_expert'].format(3)} (prose) and {p['technical_vs_expert'].format(3)} "
                     "(technical) times the expert's.")
    return "What we see:\n\n" + "\n".join(lines)


def _figure(ctx: Context, rows: list[dict[str, Any]]) -> Path:
    from growlm.plotting import subplots

    fig, ax = subplots(figsize=(8, 4.8), dpi=120)
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        means = [row[s].mean for s in SPLITS]
        errors = [0.0 if math.isnan(row[s].half_width) else row[s].half_width for s in SPLITS]
        ax.bar([j + (i - (len(rows) - 1) / 2) * width for j in range(len(SPLITS))], means, width, yerr=errors,
               capsize=3, label=row["model"])
    ax.set_xticks(range(len(SPLITS)), [f"{s} val" for s in SPLITS])
    ax.set_yscale("log")
    ax.set_ylabel("perplexity (log scale)")
    ax.set_title("Experts, joint baseline and composites (mean ± 95% interval over seeds)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    ctx.out.mkdir(parents=True, exist_ok=True)
    path = ctx.path("composition.png")
    fig.savefig(path)
    return path
