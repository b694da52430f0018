"""``growlm eval``: run tasks on a checkpoint (or every checkpoint of a run) and write the results.

Per checkpoint, ``OUT/`` receives

* ``results.json``: every metric with its standard error and count, group averages,
  the model (architecture, parameters, FLOPs per token, tokens seen) and the settings;
* ``samples.jsonl``: one line per scored document (log-likelihoods, prediction, gold,
  correctness; the generated answer for SQuAD);
* ``results.md``: the same numbers as a markdown table.

Metrics follow lm-evaluation-harness: ``acc`` is the argmax of the continuation
log-likelihoods, ``acc_norm`` the argmax after dividing each by the length of its choice
in characters; LAMBADA's ``acc`` is whether greedy decoding reproduces the last word and
its ``perplexity`` is ``exp(-mean log-likelihood)`` (per target, not per token);
``bits_per_byte`` divides the summed negative log-likelihood by ln 2 and the targets' UTF-8 bytes. Standard errors are those of a mean
(sample standard deviation over sqrt(n)); for perplexities, by the delta method
(``ppl * stderr(mean log-likelihood)``).

With ``scoring="generate"`` multiple-choice tasks are scored by a generated answer letter
instead (:mod:`growlm.evaluation.letters`): ``acc`` counts unparsed answers as wrong, and
``unparsed``, ``chance`` and ``answer_counts`` are reported beside it. ``mmlu`` adds
per-subject and per-category scores (:mod:`growlm.evaluation.mmlu`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from tqdm.auto import tqdm

from growlm.data.tokenizer import load_tokenizer
from growlm.errors import unknown_key_message
from growlm.evaluation.letters import MAX_NEW_TOKENS, lettered_prompt, letters_for, parse_letter
from growlm.evaluation.loglikelihood import LoglikelihoodScorer
from growlm.evaluation.mmlu import aggregate
from growlm.evaluation.squad import best_over_answers, generate_answers
from growlm.evaluation.tasks import (
    GROUPS,
    SCORINGS,
    TASKS,
    EvalError,
    Example,
    build_examples,
    load_task_docs,
    resolve_splits,
    resolve_task_data,
    resolve_tasks,
)
from growlm.models import GrowLMForCausalLM, apply_runtime, storage
from growlm.models.accounting import model_cost
from growlm.runtime import RuntimeOptions

logger = logging.getLogger(__name__)

# "auto": fp32 weights, bf16 autocast on CUDA; the others set the weights' dtype, no autocast
EVAL_DTYPES = {"auto": torch.float32, "float32": torch.float32, "float64": torch.float64,
               "bfloat16": torch.bfloat16}


def mean_stderr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def _summary(values: dict[str, list[float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, column in values.items():
        out[name] = float(np.mean(column))
        out[f"{name}_stderr"] = mean_stderr(column)
    return out


def model_info(folder: Path, model: GrowLMForCausalLM) -> dict[str, Any]:
    config = model.config
    cost = model_cost(config)
    info = {"checkpoint": str(folder), "architecture": config.architecture, "parameters": cost.total_params,
            "non_embedding_parameters": cost.non_embedding_params,
            "forward_flops_per_token": cost.forward_flops_per_token,
            "train_flops_per_token": cost.train_flops_per_token, "flops_seq_len": cost.seq_len}
    state = folder / storage.TRAINER_STATE
    if state.exists():
        trainer = json.loads(state.read_text())
        info.update(step=trainer.get("step"), tokens_seen=trainer.get("tokens"), trained_seq_len=trainer.get("seq_len"))
    return info


class Evaluator:
    """Runs tasks on one loaded model."""

    def __init__(self, model, tokenizer, device: torch.device, autocast: torch.dtype | None, batch_size: int,
                 progress: bool = True, scoring: str = "loglikelihood", num_fewshot: int = 0) -> None:
        if scoring not in SCORINGS:
            raise EvalError(unknown_key_message("scoring", scoring, SCORINGS))
        self.model, self.tokenizer, self.device, self.autocast = model, tokenizer, device, autocast
        self.batch_size, self.progress, self.scoring, self.num_fewshot = batch_size, progress, scoring, num_fewshot
        self.scorer = LoglikelihoodScorer(model, tokenizer, device, autocast, batch_size)

    def multiple_choice(self, name: str, docs: list[dict], fewshot_docs: list[dict] | None = None
                        ) -> tuple[dict, list[dict]]:
        examples = build_examples(name, docs, fewshot_docs, self.num_fewshot)
        score = self._by_letter if self.scoring == "generate" else self._by_loglikelihood
        metrics, samples = score(name, examples)
        for example, sample in zip(examples, samples, strict=True):
            if example.subject is not None:
                sample["subject"] = example.subject
        if any(e.subject is not None for e in examples):
            metrics.update(aggregate([e.subject or "" for e in examples], [s["acc"] for s in samples]))
        return {**metrics, "scoring": self.scoring, "num_fewshot": self.num_fewshot}, samples

    def _by_loglikelihood(self, name: str, examples: list[Example]) -> tuple[dict, list[dict]]:
        scores = self.scorer.score([(e.context, [" " + c for c in e.choices]) for e in examples], desc=name,
                                   progress=self.progress)
        acc, acc_norm, samples = [], [], []
        for i, (example, score) in enumerate(zip(examples, scores, strict=True)):
            lls = np.array([s.loglikelihood for s in score])
            lengths = np.array([float(len(c)) for c in example.choices])
            pred, pred_norm = int(np.argmax(lls)), int(np.argmax(lls / lengths))
            acc.append(float(pred == example.gold))
            acc_norm.append(float(pred_norm == example.gold))
            samples.append({"task": name, "doc_id": i, "context": example.context, "choices": list(example.choices),
                            "gold": example.gold, "loglikelihoods": lls.tolist(),
                            "is_greedy": [s.is_greedy for s in score], "pred": pred, "pred_norm": pred_norm,
                            "acc": acc[-1], "acc_norm": acc_norm[-1]})
        # letter choices are all one character long: acc_norm would repeat acc (lm-eval's mmlu reports acc only)
        lettered = all(e.lettered for e in examples)
        return _summary({"acc": acc} if lettered else {"acc": acc, "acc_norm": acc_norm}), samples

    def _by_letter(self, name: str, examples: list[Example]) -> tuple[dict, list[dict]]:
        self._need_stop_token(name)
        prompts = [e.context if e.lettered else lettered_prompt(e.context, e.choices) for e in examples]
        with tqdm(total=len(examples), desc=name, disable=not self.progress, leave=False) as bar:
            texts = generate_answers(self.model, self.tokenizer, prompts, self.device, self.autocast,
                                     self.batch_size, max_new_tokens=MAX_NEW_TOKENS, progress=bar, cut=str)
        acc: list[float] = []
        unparsed: list[float] = []
        samples: list[dict[str, Any]] = []
        counts: Counter[str] = Counter()
        for i, (example, prompt, text) in enumerate(zip(examples, prompts, texts, strict=True)):
            letters = letters_for(len(example.choices))
            pred = parse_letter(text, len(example.choices))
            acc.append(float(pred == example.gold))
            unparsed.append(float(pred is None))
            counts[letters[pred] if pred is not None else "unparsed"] += 1
            samples.append({"task": name, "doc_id": i, "context": prompt, "choices": list(example.choices),
                            "gold": example.gold, "gold_letter": None if example.gold is None else letters[example.gold], "generated": text,
                            "pred": pred, "pred_letter": None if pred is None else letters[pred], "acc": acc[-1]})
        metrics = _summary({"acc": acc, "unparsed": unparsed})
        # a uniform guess among the valid letters scores this in expectation; below it is worse than guessing
        metrics["chance"] = float(np.mean([1.0 / len(e.choices) for e in examples]))
        return {**metrics, "answer_counts": dict(sorted(counts.items()))}, samples

    def _need_stop_token(self, name: str) -> None:
        if self.tokenizer.eos_token_id is None and self.tokenizer.pad_token_id is None:
            raise EvalError(f"task {name} generates text, but the checkpoint's tokenizer has no end-of-sequence "
                            "or padding token to stop and pad with")

    def loglikelihood(self, name: str, docs: list[dict]) -> tuple[dict, list[dict]]:
        examples = [TASKS[name].example(d) for d in docs]
        targets = [e.target or "" for e in examples]  # loglikelihood tasks always have one
        scores = self.scorer.score([(e.context, [t]) for e, t in zip(examples, targets, strict=True)], desc=name,
                                   progress=self.progress)
        lls = [s[0].loglikelihood for s in scores]
        greedy = [float(s[0].is_greedy) for s in scores]
        metrics = _summary({"acc": greedy})
        perplexity = math.exp(-float(np.mean(lls)))
        metrics.update(perplexity=perplexity, perplexity_stderr=perplexity * mean_stderr(lls))
        # per byte of target text: comparable across targets of any length and across tokenizers
        metrics["bits_per_byte"] = -float(np.sum(lls)) / (math.log(2) * sum(len(t.encode()) for t in targets))
        samples = [{"task": name, "doc_id": i, "context": e.context, "target": e.target, "loglikelihood": ll,
                    "is_greedy": bool(g)} for i, (e, ll, g) in enumerate(zip(examples, lls, greedy, strict=True))]
        return metrics, samples

    def generate(self, name: str, docs: list[dict]) -> tuple[dict, list[dict]]:
        self._need_stop_token(name)
        examples = [TASKS[name].example(d) for d in docs]
        with tqdm(total=len(examples), desc=name, disable=not self.progress, leave=False) as bar:
            answers = generate_answers(self.model, self.tokenizer, [e.context for e in examples], self.device,
                                       self.autocast, max(1, self.batch_size // 2), progress=bar)
        em, f1, samples = [], [], []
        for i, (example, answer) in enumerate(zip(examples, answers, strict=True)):
            e, f = best_over_answers(answer, example.answers)
            em.append(100.0 * e)
            f1.append(100.0 * f)
            samples.append({"task": name, "doc_id": i, "prediction": answer, "answers": list(example.answers),
                            "exact_match": em[-1], "f1": f1[-1]})
        return _summary({"exact_match": em, "f1": f1}), samples

    def perplexity(self, data: Path, seq_len: int | None, max_batches: int | None) -> tuple[dict, list[dict]]:
        from growlm.data.dataset import TokenSplit, evaluation_windows
        from growlm.evaluation.perplexity import evaluate_loss

        split = TokenSplit(data, "val")
        seq_len = seq_len or min(1024, int(self.model.config.max_position_embeddings))  # when not known
        windows = len(evaluation_windows(split, seq_len, None if max_batches is None else max_batches * self.batch_size))
        with tqdm(total=-(-windows // self.batch_size), desc="ppl", unit="batch", disable=not self.progress,
                  leave=False) as bar:  # a progress bar like the benchmark tasks'
            result = evaluate_loss(self.model, split, seq_len, self.batch_size, max_batches, self.device,
                                   self.autocast, progress=bar)
        return {**result, "seq_len": seq_len, "data": str(data)}, []


def _markdown(results: dict[str, Any]) -> str:
    lines = [f"# {results['model']['architecture']} — {results['model']['checkpoint']}", "",
             "| task | split | metric | value | stderr | n |", "|---|---|---|---|---|---|"]
    for task, metrics in results["results"].items():
        split = metrics.get("split", "val (prepared data)" if "data" in metrics else "")
        for name, value in metrics.items():
            if name.endswith("_stderr") or not isinstance(value, float):
                continue
            stderr = metrics.get(f"{name}_stderr")
            lines.append(f"| {task} | {split} | {name} | {value:.4f} | {'' if stderr is None else f'{stderr:.4f}'} | "
                         f"{metrics.get('n', metrics.get('tokens', ''))} |")
    for task, metrics in results["results"].items():  # mmlu: its categories, then its subjects
        parts = [*metrics.get("categories", {}).items(), *metrics.get("subjects", {}).items()]
        for part, score in parts:
            extra = f", macro {score['acc_macro']:.4f}" if "acc_macro" in score else ""
            lines.append(f"| {task}/{part} | {metrics.get('split', '')} | acc{extra} | {score['acc']:.4f} | | "
                         f"{score['n']} |")
    for group, metrics in results["groups"].items():
        lines.append(f"| **{group}** | | " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + " | | | |")
    notes = results.get("split_notes") or []
    if notes:
        lines += ["", *[f"- Note: {note}" for note in notes]]
    return "\n".join(lines) + "\n"


@dataclass
class EvalSettings:
    """How :func:`evaluate_checkpoint` scores (``growlm eval``'s flags, one field each; its ``--help``
    says what each does). The function also takes these fields as keywords."""

    data_dir: str | Path | None = None
    ppl_data: str | Path | None = None
    limit: int | None = None
    batch_size: int = 16
    device: str = "auto"
    seq_len: int | None = None
    max_batches: int | None = None
    progress: bool = True
    dtype: str = "auto"
    split: str | list[str] | dict[str, str] | None = None
    scoring: str = "loglikelihood"
    num_fewshot: int = 0
    task_data: list[str] | dict[str, str | Path] | None = None
    runtime_options: RuntimeOptions | None = None  # the fused paths and kernels the model takes (None: auto)


def evaluate_checkpoint(
    checkpoint: str | Path,
    tasks: list[str],
    out: str | Path | None = None,
    settings: EvalSettings | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Score ``tasks`` on one checkpoint and write results.json, samples.jsonl and results.md.

    Each task reads lm-eval's standard split (test for ARC, OpenBookQA and LAMBADA;
    validation for PIQA, HellaSwag and SQuAD) unless ``split`` names another (``"validation"``
    for every task, or ``{"arc_easy": "validation"}`` / ``"arc_easy=validation"``); when the
    standard split's file is absent another local split is scored and a note says so, in the
    output (logged) and in results.json.

    ``scoring`` picks how multiple-choice tasks are scored (:data:`~growlm.evaluation.tasks.SCORINGS`:
    log-likelihood, lm-eval's default, or a generated answer letter); ``num_fewshot`` leads each
    mmlu prompt with that many solved dev examples; ``task_data`` (``{"mmlu": PATH}`` or
    ``["mmlu=PATH"]``) reads a task from a folder or file of its own. ``runtime_options``: the
    fused paths and kernels the model takes (default: auto; ``growlm/runtime.py``).
    """
    from growlm.evaluation.tasks import default_benchmarks_dir
    from growlm.system import pick_autocast, pick_device

    o = replace(settings or EvalSettings(), **fields)
    data_dir, ppl_data, limit, batch_size, device = o.data_dir, o.ppl_data, o.limit, o.batch_size, o.device
    seq_len, max_batches, progress, dtype, split = o.seq_len, o.max_batches, o.progress, o.dtype, o.split
    scoring, num_fewshot, task_data, runtime_options = o.scoring, o.num_fewshot, o.task_data, o.runtime_options
    names = resolve_tasks(tasks)
    if "ppl" in names and ppl_data is None:
        raise EvalError("task ppl needs --data DATA_DIR (a folder written by `growlm data prepare`)")
    explicit = data_dir is not None
    bench = Path(data_dir) if data_dir is not None else default_benchmarks_dir()
    if data_dir is not None and bench is not None and not bench.is_dir():
        raise EvalError(f"--data-dir {bench} does not exist")
    folder = storage.resolve_model_dir(checkpoint)
    if not any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise EvalError(f"checkpoint {folder} holds no tokenizer: evaluation needs the tokenizer it was trained "
                        "with (growlm checkpoints carry it; copy it in with tokenizer.save_pretrained)")
    if scoring not in SCORINGS:
        raise EvalError(unknown_key_message("scoring", scoring, SCORINGS))
    chosen = resolve_splits(split, names)
    paths = resolve_task_data(task_data, names)
    loaded = {n: load_task_docs(TASKS[n], bench, limit, explicit, chosen.get(n), paths.get(n))
              for n in names if n != "ppl"}
    fewshot = {n: _fewshot_docs(n, num_fewshot, bench, explicit, paths.get(n)) for n in loaded} if num_fewshot else {}
    docs = {n: t.docs for n, t in loaded.items()}
    for task in loaded.values():
        logger.info(f"{task.task}: {task.split} split, {len(task.docs)} of {task.total} documents ({task.source})")
        if task.note:
            logger.info(f"note: {task.note}")
    run_device = pick_device(device)
    if dtype not in EVAL_DTYPES:
        raise EvalError(f"--dtype must be one of {', '.join(EVAL_DTYPES)}, got {dtype!r}")
    weights = EVAL_DTYPES[dtype]
    model = storage.load_model(folder, run_device)
    cast(torch.nn.Module, model).to(weights).eval()  # in place (transformers' wrapped .to is mistyped)
    apply_runtime(model, runtime_options or RuntimeOptions())
    tokenizer = load_tokenizer(folder)
    autocast = pick_autocast("auto", run_device) if dtype == "auto" else None
    evaluator = Evaluator(model, tokenizer, run_device, autocast, batch_size, progress, scoring, num_fewshot)
    started = time.time()
    report_info = model_info(folder, model)
    results: dict[str, dict[str, Any]] = {}
    samples: list[dict[str, Any]] = []
    for name in names:
        kind = TASKS[name].kind
        if kind == "perplexity":
            trained = report_info.get("trained_seq_len")
            assert ppl_data is not None  # checked above
            metrics, rows = evaluator.perplexity(Path(ppl_data), seq_len or trained, max_batches)
        else:
            if kind == "multiple_choice":
                metrics, rows = evaluator.multiple_choice(name, docs[name], fewshot.get(name))
            else:
                metrics, rows = {"loglikelihood": evaluator.loglikelihood, "generate": evaluator.generate}[kind](
                    name, docs[name])
            metrics["n"] = len(docs[name])
            metrics.update(loaded[name].record())
        results[name] = metrics
        samples += rows
    groups = {}
    for group, members in GROUPS.items():
        if all(m in results for m in members):
            shared = [k for k in ("acc", "acc_norm", "unparsed") if all(k in results[m] for m in members)]
            groups[group] = {k: float(np.mean([results[m][k] for m in members])) for k in shared}
    notes = [t.note for t in loaded.values() if t.note]
    report = {"model": report_info, "results": results, "groups": groups,
              "splits": {n: t.split for n, t in loaded.items()}, "split_notes": notes,
              "settings": {"tasks": names, "split": chosen or None, "scoring": scoring, "num_fewshot": num_fewshot,
                           "task_data": {k: str(v) for k, v in paths.items()} or None, "limit": limit, "batch_size": batch_size, "data_dir": str(bench),
                           "device": str(run_device), "dtype": dtype},
              "seconds": round(time.time() - started, 2)}
    out = Path(out) if out else folder / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2))
    with open(out / "samples.jsonl", "w") as f:
        for row in samples:
            f.write(json.dumps(row) + "\n")
    (out / "results.md").write_text(_markdown(report))
    return report


def result_lines(report: dict[str, Any]) -> list[str]:
    """``growlm eval``'s summary of a report: one line per task (its split, each score ± its standard
    error), mmlu's categories, then the groups."""
    lines = []
    for task, metrics in report["results"].items():
        shown = {k: v for k, v in metrics.items() if isinstance(v, float) and not k.endswith("_stderr")}
        where = f"[{metrics['split']}] " if "split" in metrics else ""
        lines.append(f"{task:<16} {where}" + "  ".join(
            f"{k} {v:.4f}" + (f" ± {metrics[k + '_stderr']:.4f}" if k + "_stderr" in metrics else "")
            for k, v in shown.items()))
        for category, score in metrics.get("categories", {}).items():  # mmlu
            lines.append(f"  {category:<14} acc {score['acc']:.4f}  acc_macro {score['acc_macro']:.4f}  "
                         f"({score['subjects']} subjects, {score['n']} questions)")
    for group, metrics in report["groups"].items():
        lines.append(f"{group:<16} " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return lines


def _fewshot_docs(name: str, num_fewshot: int, bench: Path | None, explicit: bool,
                  task_data: Path | None) -> list[dict[str, Any]]:
    """The pool a task's few-shot examples come from (its ``fewshot_split``: mmlu's dev)."""
    spec = TASKS[name]
    if spec.fewshot_split is None:
        raise EvalError(f"--num-fewshot {num_fewshot}: few-shot prompts are supported for "
                        f"{', '.join(t for t, s in TASKS.items() if s.fewshot_split)} only, not {name}")
    if task_data is not None and task_data.is_file():
        raise EvalError(f"--num-fewshot {num_fewshot} needs {name}'s {spec.fewshot_split} split, but --task-data "
                        f"{name}={task_data} is one file: give a folder holding {spec.split}.* and "
                        f"{spec.fewshot_split}.* (.jsonl, .jsonl.gz or .parquet)")
    return load_task_docs(spec, bench, None, explicit, spec.fewshot_split, task_data).docs


SERIES_METRICS = {"multiple_choice": ("acc", "acc_norm"), "loglikelihood": ("acc", "perplexity"),
                  "generate": ("exact_match", "f1"), "perplexity": ("loss", "perplexity")}


def evaluate_series(run_dir: str | Path, tasks: list[str], out: str | Path | None = None,
                    settings: EvalSettings | None = None, **fields: Any) -> list[dict[str, Any]]:
    """Every checkpoint of a run: one results folder each, plus ``series.csv`` and ``series.png``."""
    from growlm.plotting import plot_score_series

    run_dir = Path(run_dir)
    checkpoints = storage.list_checkpoints(run_dir)
    if not checkpoints:
        raise EvalError(f"{run_dir} holds no checkpoints to evaluate")
    out = Path(out) if out else run_dir / "eval-series"
    rows = []
    for folder in checkpoints:
        report = evaluate_checkpoint(folder, tasks, out / folder.name, settings, **fields)
        row = {"checkpoint": folder.name, "step": report["model"].get("step"),
               "tokens": report["model"].get("tokens_seen")}
        for task, metrics in report["results"].items():
            for metric in SERIES_METRICS[TASKS[task].kind]:
                if metric in metrics:  # no acc_norm for letter scoring or mmlu
                    row[f"{task}/{metric}"] = metrics[metric]
        for group, metrics in report["groups"].items():
            for metric, value in metrics.items():
                row[f"{group}/{metric}"] = value
        rows.append(row)
    with open(out / "series.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_score_series(rows, out / "series.png", title=f"{run_dir.name}: scores during training")
    return rows
