"""``growlm table``: results of several models in the layout of the papers' tables.

* The benchmark table (Nexusformer paper, Tables 1 and 2): one row per model with PIQA,
  OBQA, HellaSwag, ARC-E, ARC-C and their average, in percent. ``--metric paper`` (the
  default) takes ``acc_norm`` for HellaSwag, OBQA and ARC-C and ``acc`` for PIQA and
  ARC-E (the Pythia/TokenFormer reporting convention; the Nexusformer paper does not
  say which it used); ``--metric acc`` or ``acc_norm`` takes one for all.
* The FLOPs table (appendix G, Table 8): model, size, training FLOPs per token,
  perplexity (the ``ppl`` task) and perplexity per GFLOP of training compute per token.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from growlm.errors import read_json
from growlm.evaluation.tasks import GROUPS, TASKS, EvalError

PAPER_METRIC = {"piqa": "acc", "arc_easy": "acc", "openbookqa": "acc_norm", "hellaswag": "acc_norm",
                "arc_challenge": "acc_norm"}


def load_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "results.json" if (path / "results.json").exists() else path / "eval" / "results.json"
    return read_json(path, EvalError, f"no results.json at {path}")


def _size(parameters: int) -> str:
    return f"{parameters / 1e6:.0f}M" if parameters >= 1e6 else f"{parameters / 1e3:.0f}K"


def benchmark_table(results: Sequence[dict[str, Any]], names: Sequence[str], metric: str = "paper") -> str:
    tasks = GROUPS["paper5"]
    header = "| Model | Size | " + " | ".join(TASKS[t].title for t in tasks) + " | Avg. |"
    lines = [header, "|" + "---|" * (len(tasks) + 3)]
    other_split = False
    for name, result in zip(names, results, strict=True):
        cells, scores = [], []
        for task in tasks:
            chosen = PAPER_METRIC[task] if metric == "paper" else metric
            entry = result["results"].get(task, {})
            value = entry.get(chosen)
            mark = "†" if value is not None and entry.get("standard_split") is False else ""
            other_split = other_split or bool(mark)
            cells.append("—" if value is None else f"{100 * value:.2f}{mark}")
            if value is not None:
                scores.append(100 * value)
        average = f"{sum(scores) / len(scores):.2f}" if len(scores) == len(tasks) else "—"
        lines.append(f"| {name} | {_size(result['model']['parameters'])} | " + " | ".join(cells) + f" | {average} |")
    if other_split:
        lines += ["", "† scored on another split than lm-eval's standard one (its results.json says which and why): "
                  "not comparable with published tables."]
    return "\n".join(lines)


def flops_table(results: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    lines = ["| Model | Size | train GFLOPs/token | PPL | PPL / GFLOPs |", "|---|---|---|---|---|"]
    for name, result in zip(names, results, strict=True):
        gflops = result["model"]["train_flops_per_token"] / 1e9
        ppl = result["results"].get("ppl", {}).get("perplexity")
        ratio = "—" if ppl is None else f"{ppl / gflops:.2f}"
        lines.append(f"| {name} | {_size(result['model']['parameters'])} | {gflops:.3f} | "
                     f"{'—' if ppl is None else f'{ppl:.2f}'} | {ratio} |")
    return "\n".join(lines)


def build_tables(paths: Sequence[str | Path], names: Sequence[str] | None = None, metric: str = "paper") -> str:
    if metric not in ("paper", "acc", "acc_norm"):
        raise EvalError(f"--metric must be paper, acc or acc_norm, got {metric!r}")
    results = [load_results(p) for p in paths]
    if names and len(names) != len(results):
        raise EvalError(f"{len(names)} name(s) for {len(results)} result file(s)")
    names = list(names) if names else [f"{r['model']['architecture']} ({Path(r['model']['checkpoint']).name})"
                                       for r in results]
    return (f"## Zero-shot accuracy (%, metric: {metric})\n\n{benchmark_table(results, names, metric)}\n\n"
            f"## Compute (training FLOPs per token at context {results[0]['model']['flops_seq_len']})\n\n"
            f"{flops_table(results, names)}\n")
