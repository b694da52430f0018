"""The benchmark tasks: where their data is and how a document becomes a prompt.

Prompts, target delimiters and answer indices are those of lm-evaluation-harness's
default task definitions (``lm_eval/tasks/{arc,piqa,openbookqa,hellaswag,lambada}``),
so that growlm's scores are the harness's scores; ``tests/evaluation/test_parity.py``
checks that against lm-eval itself. SQuAD v1.1 is scored by generation (``squad``, docs/eval.md)
or by the log-likelihood of its first gold answer (``squad_ll``: greedy match and perplexity).
``mmlu`` is lm-eval's ``mmlu`` (:mod:`growlm.evaluation.mmlu`) on the user's own files (none are shared).
Multiple-choice tasks are scored by log-likelihood (lm-eval's way) or, with
``scoring="generate"``, by generating an answer letter (:mod:`growlm.evaluation.letters`).

Data comes from local files in the Hugging Face schemas (``--data-dir``, default
``$GROWLM_BENCHMARKS`` or ``../shared/benchmarks``): ``TASK/SPLIT.jsonl.gz`` (or ``.jsonl``,
``.parquet``, or the hub's ``all/SPLIT-*.parquet`` shards); ``task_data`` (``--task-data
TASK=PATH``) names one task's folder or file instead. When no local copy exists the task is
loaded from the hub with ``datasets`` (online only).

Each task is scored on the split lm-eval scores (its YAML's ``test_split``, else its
``validation_split``): test for ARC, OpenBookQA and LAMBADA, validation for PIQA,
HellaSwag and SQuAD, as published tables are. Another split is scored only when asked
(``--split``) or when the standard split's local file is absent, and then a note says so
(:class:`TaskDocs`), which ``growlm eval`` prints and stores in results.json.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
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
    subject: str | None = None  # MMLU: per-subject and per-category scores
    lettered: bool = False  # the context lists the choices as "A. ..." and the choices are the letters


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


def _mmlu(doc: dict[str, Any], shots: Iterable[dict[str, Any]] = ()) -> Example:
    from growlm.evaluation import mmlu

    try:
        text = mmlu.context(doc, list(shots))
    except mmlu.MMLUError as exc:
        raise EvalError(str(exc)) from exc
    return Example(text, mmlu.LETTERS, int(doc["answer"]), subject=doc["subject"], lettered=True)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # multiple_choice | loglikelihood | generate | perplexity
    folder: str | None  # under the benchmarks folder: FOLDER/SPLIT.jsonl.gz
    hub: tuple[str, str | None] | None  # (path, config name) of the Hugging Face dataset
    to_example: Callable[[dict[str, Any]], Example] | None
    title: str
    split: str = ""  # the split lm-evaluation-harness scores (its task's test_split, else validation_split)
    splits: tuple[str, ...] = ()  # every split with gold labels, the standard one first
    fewshot_split: str | None = None  # where --num-fewshot examples come from (lm-eval's fewshot_split)

    def example(self, doc: dict[str, Any]) -> Example:
        """The scored item of one document (every task but ``ppl``, which scores token windows)."""
        if self.to_example is None:
            raise EvalError(f"task {self.name} scores token windows, not documents")
        return self.to_example(doc)

    @property
    def local_file(self) -> str | None:
        """The standard split's file under the benchmarks folder."""
        return self.file_for(self.split) if self.folder else None

    def file_for(self, split: str) -> str:
        return f"{self.folder}/{split}.jsonl.gz"


# the forms a split's local file may take under a task's folder (the last: a hub snapshot's shards)
LOCAL_FORMS = ("{split}.jsonl.gz", "{split}.jsonl", "{split}.parquet", "{split}-*.parquet", "all/{split}-*.parquet")


TASKS: dict[str, TaskSpec] = {
    "piqa": TaskSpec("piqa", "multiple_choice", "piqa", ("baber/piqa", None), _piqa, "PIQA",
                     "validation", ("validation", "train")),
    "openbookqa": TaskSpec("openbookqa", "multiple_choice", "openbookqa", ("allenai/openbookqa", "main"),
                           _openbookqa, "OBQA", "test", ("test", "validation", "train")),
    "hellaswag": TaskSpec("hellaswag", "multiple_choice", "hellaswag", ("Rowan/hellaswag", None), _hellaswag,
                          "HellaSwag", "validation", ("validation", "train")),
    "arc_easy": TaskSpec("arc_easy", "multiple_choice", "arc_easy", ("allenai/ai2_arc", "ARC-Easy"), _arc, "ARC-E",
                         "test", ("test", "validation", "train")),
    "arc_challenge": TaskSpec("arc_challenge", "multiple_choice", "arc_challenge", ("allenai/ai2_arc", "ARC-Challenge"),
                              _arc, "ARC-C", "test", ("test", "validation", "train")),
    "lambada_openai": TaskSpec("lambada_openai", "loglikelihood", "lambada_openai",
                               ("EleutherAI/lambada_openai", "default"), _lambada, "LAMBADA", "test", ("test",)),
    "squad": TaskSpec("squad", "generate", "squad", ("rajpurkar/squad", None), _squad, "SQuAD",
                      "validation", ("validation", "train")),
    "squad_ll": TaskSpec("squad_ll", "loglikelihood", "squad", ("rajpurkar/squad", None), _squad_ll, "SQuAD (LL)",
                         "validation", ("validation", "train")),
    "mmlu": TaskSpec("mmlu", "multiple_choice", "mmlu", ("cais/mmlu", "all"), _mmlu, "MMLU", "test",
                     ("test", "validation", "dev"), fewshot_split="dev"),
    "ppl": TaskSpec("ppl", "perplexity", None, None, None, "PPL"),
}
# how multiple-choice tasks are scored (--scoring): the first is the default
SCORINGS: dict[str, str] = {
    "loglikelihood": "the choice with the highest log-likelihood (lm-eval's acc, acc_norm)",
    "generate": "greedy generation of an answer letter; no valid letter counts as wrong, so scores can fall "
                "below chance (the frozen-substrate paper's scoring)",
}
GROUPS: dict[str, list[str]] = {"paper5": ["piqa", "openbookqa", "hellaswag", "arc_easy", "arc_challenge"]}


def split_names(names: str | Iterable[str]) -> list[str]:
    """Names given as lm-eval takes them: ``"arc_easy,piqa"`` as well as ``["arc_easy", "piqa"]``."""
    items = [names] if isinstance(names, str) else list(names)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def resolve_tasks(names: str | Iterable[str]) -> list[str]:
    """Expand groups and comma-separated lists; unknown names are errors listing every task and group."""
    out: list[str] = []
    for name in split_names(names):
        if name in GROUPS:
            members = GROUPS[name]
        elif name in TASKS:
            members = [name]
        else:
            raise EvalError(unknown_key_message("task", name, [*TASKS, *GROUPS]))
        out += [m for m in members if m not in out]
    return out


def resolve_splits(split: str | Iterable[str] | Mapping[str, str] | None, tasks: list[str]) -> dict[str, str]:
    """The splits asked for with ``--split``: ``SPLIT`` for every task, or ``TASK=SPLIT`` entries.

    Only the tasks named get an entry; the others keep their standard split. A split a task
    does not have (with gold labels) is an error naming the task's splits."""
    if split is None:
        return {}
    entries = [f"{k}={v}" for k, v in split.items()] if isinstance(split, Mapping) else split_names(split)
    chosen: dict[str, str] = {}
    for entry in entries:
        if "=" in entry:
            task, _, name = (part.strip() for part in entry.partition("="))
            if task not in TASKS:
                raise EvalError(unknown_key_message("task", task, list(TASKS)) + f" (in --split {entry})")
            if task not in tasks:
                raise EvalError(f"--split {entry}: task {task} is not among the tasks evaluated ({', '.join(tasks)})")
            targets = [task]
        else:
            name, targets = entry, [t for t in tasks if TASKS[t].splits]
        for task in targets:
            if name not in TASKS[task].splits:
                raise EvalError(f"task {task} has no split {name!r} with gold labels; its splits are "
                                f"{', '.join(TASKS[task].splits)} (give one task's split as TASK=SPLIT)")
            chosen[task] = name
    return chosen


def resolve_task_data(entries: Iterable[str] | Mapping[str, str | Path] | None, tasks: list[str]) -> dict[str, Path]:
    """``--task-data TASK=PATH`` entries: a folder or a file of one task's documents, in place of
    ``DATA_DIR/TASK``."""
    if not entries:
        return {}
    pairs = list(entries.items()) if isinstance(entries, Mapping) else [
        tuple(part.strip() for part in e.partition("=")[::2]) if "=" in e else (e, "") for e in entries]
    chosen: dict[str, Path] = {}
    for task, path in pairs:
        if not path:
            raise EvalError(f"--task-data {task}: give TASK=PATH (a folder or a .jsonl/.jsonl.gz/.parquet file), "
                            "e.g. --task-data mmlu=mmlu/")
        if task not in TASKS or TASKS[task].folder is None:
            raise EvalError(unknown_key_message("task", task, [t for t, s in TASKS.items() if s.folder]) +
                            f" (in --task-data {task}={path})")
        if task not in tasks:
            raise EvalError(f"--task-data {task}={path}: task {task} is not among the tasks evaluated "
                            f"({', '.join(tasks)})")
        chosen[task] = Path(path)
    return chosen


@dataclass(frozen=True)
class TaskDocs:
    """A task's documents and where they came from: the split, the source, and why if not the standard one."""

    task: str
    docs: list[dict[str, Any]]
    split: str
    standard_split: str
    source: str  # a file, or hub:PATH/NAME
    total: int  # documents in the split before --limit
    note: str | None = None  # set when the split is not lm-eval's standard one

    def record(self) -> dict[str, Any]:
        """The entry results.json keeps per task."""
        out = {"split": self.split, "standard_split": self.split == self.standard_split, "source": self.source,
               "documents_in_split": self.total, "documents": len(self.docs)}
        return {**out, "split_note": self.note} if self.note else out


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


def read_docs(path: Path) -> list[dict[str, Any]]:
    """A split's documents from a ``.jsonl``, ``.jsonl.gz`` or ``.parquet`` file."""
    if not path.name.endswith(".parquet"):
        return read_jsonl(path)
    import pyarrow
    import pyarrow.parquet

    try:
        return pyarrow.parquet.read_table(path).to_pylist()
    except (OSError, pyarrow.ArrowException) as exc:
        raise EvalError(f"cannot read benchmark file {path}: {exc}") from exc


def find_local(root: Path, split: str) -> list[Path]:
    """The split's file(s) under a task's folder, in the first of :data:`LOCAL_FORMS` present."""
    for form in LOCAL_FORMS:
        pattern = form.format(split=split)
        found = sorted(root.glob(pattern)) if "*" in pattern else [root / pattern]
        found = [f for f in found if f.is_file()]
        if found:
            return found
    return []


def _missing(root: Path, spec: TaskSpec, split: str, where: str) -> EvalError:
    hub = spec.hub[0] if spec.hub else spec.name
    return EvalError(f"benchmark file {root / f'{split}.jsonl.gz'} is missing (task {spec.name}, split {split}); "
                     f"{where} must hold {split}.jsonl.gz (or {split}.jsonl, {split}.parquet, "
                     f"all/{split}-*.parquet) under {root.name}/ in the Hugging Face schema of {hub}")


def load_task_docs(spec: TaskSpec, data_dir: Path | None, limit: int | None = None, explicit: bool = False,
                   split: str | None = None, task_data: str | Path | None = None) -> TaskDocs:
    """The task's documents, from the standard split unless ``split`` asks for another.

    Looked up in order: the requested (or standard) split's local file; when no split was
    requested and the standard file is absent, another labelled split's local file (said in
    ``note``); then, unless the folder was given explicitly, the hub through ``datasets``.
    ``task_data`` replaces ``data_dir/TASK``: a folder (explicit: no hub), or one file that
    holds the split scored.
    """
    if spec.folder is None or spec.hub is None:
        raise EvalError(f"task {spec.name} has no documents")
    if split is not None and split not in spec.splits:
        raise EvalError(f"task {spec.name} has no split {split!r} with gold labels; its splits are "
                        f"{', '.join(spec.splits)}")
    wanted = split or spec.split
    note = None if wanted == spec.split else (
        f"{spec.name}: scoring the {wanted} split as asked (--split); lm-eval's {spec.name} scores {spec.split}, "
        "so these numbers are not comparable with published lm-eval tables")
    where = "--data-dir"
    root = data_dir / spec.folder if data_dir is not None else None
    if task_data is not None:
        task_data = Path(task_data)
        if task_data.is_file():  # one file: the split scored
            docs = read_docs(task_data)
            if not docs:
                raise EvalError(f"task {spec.name}: no documents in {task_data}")
            return TaskDocs(spec.name, docs[:limit] if limit else docs, wanted, spec.split, str(task_data),
                            len(docs), note)
        if not task_data.is_dir():
            raise EvalError(f"--task-data {spec.name}={task_data}: no such file or folder")
        root, explicit, where = task_data, True, f"--task-data {spec.name}={task_data}"
    files = find_local(root, wanted) if root is not None else []
    if root is not None and not files and split is None:
        for other in spec.splits:
            if other in (wanted, "train", spec.fewshot_split) or not (found := find_local(root, other)):
                continue
            files, wanted = found, other
            note = (f"{spec.name}: the standard {spec.split} split is not in {root} "
                    f"({spec.split}.jsonl.gz absent); scoring the {wanted} split instead, so these numbers "
                    f"are not comparable with published lm-eval tables (pass --split {wanted} to choose it "
                    "explicitly)")
            break
    if files:
        docs, source = [d for f in files for d in read_docs(f)], ", ".join(str(f) for f in files)
    elif explicit and root is not None:
        raise _missing(root, spec, wanted, where)
    else:
        try:
            docs = load_hub_docs(*spec.hub, wanted)
        except EvalError as exc:
            raise EvalError(f"{exc} (task {spec.name} has no local file: put {spec.file_for(wanted)} under "
                            f"--data-dir, or pass --task-data {spec.name}=PATH)") from exc
        source = f"hub:{spec.hub[0]}/{spec.hub[1] or 'default'}"
    if not docs:
        raise EvalError(f"task {spec.name}: no documents in {source} (split {wanted})")
    return TaskDocs(spec.name, docs[:limit] if limit else docs, wanted, spec.split, source, len(docs), note)


def build_examples(name: str, docs: list[dict[str, Any]], fewshot_docs: list[dict[str, Any]] | None = None,
                   num_fewshot: int = 0) -> list[Example]:
    """The task's examples; with ``num_fewshot``, each prompt leads with that many solved examples taken
    from ``fewshot_docs`` (supported where lm-eval's order of them is fixed: mmlu, the first of each subject)."""
    spec = TASKS[name]
    if num_fewshot < 0:
        raise EvalError(f"--num-fewshot must be 0 or more, got {num_fewshot}")
    if num_fewshot == 0:
        return [spec.example(d) for d in docs]
    if name != "mmlu":
        raise EvalError(f"--num-fewshot {num_fewshot}: few-shot prompts are supported for mmlu only, not {name} "
                        "(lm-eval draws other tasks' examples at random)")
    from growlm.evaluation import mmlu

    try:
        for doc in docs:
            mmlu.check_doc(doc)
        pool = mmlu.fewshot_pool(fewshot_docs or [], {d.get("subject", "") for d in docs}, num_fewshot)
    except mmlu.MMLUError as exc:
        raise EvalError(str(exc)) from exc
    return [_mmlu(d, pool[d.get("subject", "")]) for d in docs]


def load_docs(spec: TaskSpec, data_dir: Path | None, limit: int | None = None, explicit: bool = False,
              split: str | None = None) -> list[dict[str, Any]]:
    """The task's documents only (see :func:`load_task_docs`)."""
    return load_task_docs(spec, data_dir, limit, explicit, split).docs
