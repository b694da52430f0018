"""The benchmark tasks: where their data is and how a document becomes a prompt.

Prompts, target delimiters and answer indices are those of lm-evaluation-harness's
default task definitions (``lm_eval/tasks/{arc,piqa,openbookqa,hellaswag,lambada}``),
so that growlm's scores are the harness's scores; ``tests/evaluation/test_parity.py``
checks that against lm-eval itself. SQuAD v1.1 is scored by generation (``squad``, docs/eval.md)
or by the log-likelihood of its first gold answer (``squad_ll``: greedy match and perplexity).

Data comes from local files in the Hugging Face schemas (``--data-dir``, default
``$GROWLM_BENCHMARKS`` or ``../shared/benchmarks``): ``TASK/SPLIT.jsonl.gz``. When no local
copy exists the task is loaded from the hub with ``datasets`` (online only).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from growlm.errors import GrowlmError, unknown_key_message


class EvalError(GrowlmError):
    """An evaluation request that cannot be carried out."""


@dataclass(frozen=True)
class Example:
    """One scored item: a context and either choices (with the gold index) or a target."""

    context: str
    choices: tuple[str, ...] = ()
    gold: int | None = None
    target: str | None = None
    answers: tuple[str, ...] = ()  # SQuAD gold answers


def _hellaswag_clean(text: str) -> str:
    """HellaSwag's WikiHow artefacts removed, as the harness does before scoring."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _arc(doc: dict[str, Any]) -> Example:
    return Example(f"Question: {doc['question']}\nAnswer:", tuple(doc["choices"]["text"]),
                   doc["choices"]["label"].index(doc["answerKey"]))


def _piqa(doc: dict[str, Any]) -> Example:
    return Example(f"Question: {doc['goal']}\nAnswer:", (doc["sol1"], doc["sol2"]), int(doc["label"]))


def _openbookqa(doc: dict[str, Any]) -> Example:
    return Example(doc["question_stem"], tuple(doc["choices"]["text"]),
                   doc["choices"]["label"].index(doc["answerKey"].lstrip()))


def _hellaswag(doc: dict[str, Any]) -> Example:
    context = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return Example(_hellaswag_clean(doc["activity_label"] + ": " + context),
                   tuple(_hellaswag_clean(e) for e in doc["endings"]), int(doc["label"]))


def _lambada(doc: dict[str, Any]) -> Example:
    words = doc["text"].split(" ")
    return Example(" ".join(words[:-1]), target=" " + words[-1])


SQUAD_PROMPT = "Title: {title}\n\nBackground: {context}\n\nQuestion: {question}\n\nAnswer:"


def _squad(doc: dict[str, Any]) -> Example:
    return Example(SQUAD_PROMPT.format(**doc), answers=tuple(doc["answers"]["text"]))


def _squad_ll(doc: dict[str, Any]) -> Example:
    """SQuAD scored by log-likelihood: the first gold answer as the continuation of the prompt.

    For models too small to generate an exact answer (the frozen-substrate experiment's)
    generation scores are 0 everywhere; the answer's perplexity still ranks them."""
    return Example(SQUAD_PROMPT.format(**doc), target=" " + doc["answers"]["text"][0])


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # multiple_choice | loglikelihood | generate | perplexity
    local_file: str | None  # under the benchmarks folder
    hub: tuple[str, str | None, str] | None  # (path, config name, split)
    to_example: Callable[[dict[str, Any]], Example] | None
    title: str


TASKS: dict[str, TaskSpec] = {
    "piqa": TaskSpec("piqa", "multiple_choice", "piqa/validation.jsonl.gz", ("baber/piqa", None, "validation"),
                     _piqa, "PIQA"),
    "openbookqa": TaskSpec("openbookqa", "multiple_choice", "openbookqa/validation.jsonl.gz",
                           ("allenai/openbookqa", "main", "validation"), _openbookqa, "OBQA"),
    "hellaswag": TaskSpec("hellaswag", "multiple_choice", "hellaswag/validation.jsonl.gz",
                          ("Rowan/hellaswag", None, "validation"), _hellaswag, "HellaSwag"),
    "arc_easy": TaskSpec("arc_easy", "multiple_choice", "arc_easy/validation.jsonl.gz",
                         ("allenai/ai2_arc", "ARC-Easy", "validation"), _arc, "ARC-E"),
    "arc_challenge": TaskSpec("arc_challenge", "multiple_choice", "arc_challenge/validation.jsonl.gz",
                              ("allenai/ai2_arc", "ARC-Challenge", "validation"), _arc, "ARC-C"),
    "lambada_openai": TaskSpec("lambada_openai", "loglikelihood", "lambada_openai/test.jsonl.gz",
                               ("EleutherAI/lambada_openai", "default", "test"), _lambada, "LAMBADA"),
    "squad": TaskSpec("squad", "generate", "squad/validation.jsonl.gz", ("rajpurkar/squad", None, "validation"),
                      _squad, "SQuAD"),
    "squad_ll": TaskSpec("squad_ll", "loglikelihood", "squad/validation.jsonl.gz",
                         ("rajpurkar/squad", None, "validation"), _squad_ll, "SQuAD (LL)"),
    "ppl": TaskSpec("ppl", "perplexity", None, None, None, "PPL"),
}
GROUPS: dict[str, list[str]] = {"paper5": ["piqa", "openbookqa", "hellaswag", "arc_easy", "arc_challenge"]}


def resolve_tasks(names: list[str]) -> list[str]:
    """Expand groups; unknown names are errors listing every task and group."""
    out: list[str] = []
    for name in names:
        if name in GROUPS:
            members = GROUPS[name]
        elif name in TASKS:
            members = [name]
        else:
            raise EvalError(unknown_key_message("task", name, [*TASKS, *GROUPS]))
        out += [m for m in members if m not in out]
    return out


def default_benchmarks_dir() -> Path | None:
    """``$GROWLM_BENCHMARKS``, ``../shared/benchmarks`` or the one beside the source checkout."""
    candidates = [Path(p) for p in [os.environ.get("GROWLM_BENCHMARKS")] if p]
    candidates += [Path.cwd().parent / "shared" / "benchmarks",
                   Path(__file__).resolve().parents[4] / "shared" / "benchmarks"]
    return next((p for p in candidates if p.is_dir()), None)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalError(f"cannot read benchmark file {path}: {exc}") from exc


def load_hub_docs(path: str, name: str | None, split: str) -> list[dict[str, Any]]:
    """A task's documents through ``datasets`` (the hub; a local dataset folder works the same)."""
    import datasets

    try:
        return list(datasets.load_dataset(path, name, split=split))
    except Exception as exc:  # datasets raises many kinds: the user needs the name and the reason
        raise EvalError(f"cannot load {path} ({name or 'default'}, {split}) with datasets: {exc}") from exc


def load_docs(spec: TaskSpec, data_dir: Path | None, limit: int | None = None,
              explicit: bool = False) -> list[dict[str, Any]]:
    """The task's documents: the local file when there is one, else the hub."""
    if spec.local_file is None or spec.hub is None:
        raise EvalError(f"task {spec.name} has no documents")
    local = data_dir / spec.local_file if data_dir is not None else None
    if local is not None and local.exists():
        docs = read_jsonl(local)
    elif explicit:
        raise EvalError(f"benchmark file {local} is missing (task {spec.name}); --data-dir must hold "
                        f"{spec.local_file} in the Hugging Face schema of {spec.hub[0]}")
    else:
        docs = load_hub_docs(*spec.hub)
    if not docs:
        raise EvalError(f"task {spec.name}: no documents in {local or spec.hub[0]}")
    return docs[:limit] if limit else docs
