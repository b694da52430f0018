"""Document loaders for the growlm_* lm-eval tasks (referenced from the YAML files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from growlm.evaluation.tasks import TASKS, default_benchmarks_dir, load_docs


def _load(task: str, **kwargs: Any) -> datasets.DatasetDict:
    data_dir = kwargs.get("data_dir")
    folder = Path(data_dir) if data_dir else default_benchmarks_dir()
    split = TASKS[task].hub[2]
    return datasets.DatasetDict({split: datasets.Dataset.from_list(load_docs(TASKS[task], folder,
                                                                             explicit=bool(data_dir)))})


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
        example = TASKS["hellaswag"].to_example(doc)
        return {"query": example.context, "choices": list(example.choices), "gold": example.gold}

    return dataset.map(process)
