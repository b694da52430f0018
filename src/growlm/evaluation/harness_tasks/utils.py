"""Document loaders for the growlm_* lm-eval tasks (referenced from the YAML files)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import datasets

from growlm.evaluation.tasks import TASKS, default_benchmarks_dir, load_task_docs


def _load(task: str, **kwargs: Any) -> datasets.DatasetDict:
    """The task's documents under the split name its YAML scores (lm-eval's standard split).

    ``--metadata '{"data_dir": ..., "split": ...}'`` picks the folder and another split; when
    the standard split's file is absent growlm's fallback applies, and the warning names the
    split that is actually scored (it is placed under the YAML's split name).
    """
    data_dir = kwargs.get("data_dir")
    folder = Path(data_dir) if data_dir else default_benchmarks_dir()
    spec = TASKS[task]
    split = kwargs.get("split")
    if isinstance(split, dict):
        split = split.get(task)
    loaded = load_task_docs(spec, folder, explicit=bool(data_dir), split=split)
    if loaded.note:
        warnings.warn(f"growlm_{loaded.note}", stacklevel=2)
    return datasets.DatasetDict({spec.split: datasets.Dataset.from_list(loaded.docs)})


def load_piqa(**kwargs: Any) -> datasets.DatasetDict:
    return _load("piqa", **kwargs)


def load_openbookqa(**kwargs: Any) -> datasets.DatasetDict:
    return _load("openbookqa", **kwargs)


def load_hellaswag(**kwargs: Any) -> datasets.DatasetDict:
    return _load("hellaswag", **kwargs)


def load_arc_easy(**kwargs: Any) -> datasets.DatasetDict:
    return _load("arc_easy", **kwargs)


def load_arc_challenge(**kwargs: Any) -> datasets.DatasetDict:
    return _load("arc_challenge", **kwargs)


def load_lambada_openai(**kwargs: Any) -> datasets.DatasetDict:
    return _load("lambada_openai", **kwargs)


def process_hellaswag(dataset: datasets.Dataset) -> datasets.Dataset:
    def process(doc: dict[str, Any]) -> dict[str, Any]:
        example = TASKS["hellaswag"].example(doc)
        return {"query": example.context, "choices": list(example.choices), "gold": example.gold}

    return dataset.map(process)
