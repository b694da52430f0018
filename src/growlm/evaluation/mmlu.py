"""MMLU in lm-evaluation-harness's schema and prompt, from local files, with per-subject scores.

Documents follow the hub dataset ``cais/mmlu`` (config ``all``): ``question`` (str),
``subject`` (e.g. ``abstract_algebra``), ``choices`` (four strings) and ``answer`` (the
gold index, 0-3). The prompt is lm-eval's ``mmlu`` task (``lm_eval/tasks/mmlu/default``)
rendered as plain text: the subject's description, then ``num_fewshot`` solved examples
(the first ones of the subject's ``dev`` split, lm-eval's ``first_n`` sampler), then the
question::

    The following are multiple choice questions (with answers) about abstract algebra.

    {question.strip()}
    A. {choices[0]}
    B. {choices[1]}
    C. {choices[2]}
    D. {choices[3]}
    Answer:

Each few-shot example is the same block followed by ``" " + gold letter + "\\n\\n"``. By
log-likelihood the continuations are ``" A"``, ``" B"``, ``" C"``, ``" D"`` (target
delimiter ``" "``); by generation (``--scoring generate``) the model continues the same
prompt and the answer letter is parsed (:mod:`growlm.evaluation.letters`).

Aggregates: per subject, the accuracy over its questions; per category (lm-eval's four
groups: stem, other, social_sciences, humanities) and overall, ``acc`` is the **micro**
average over questions, which is lm-eval's number (its groups aggregate with
``weight_by_size: true``), and ``acc_macro`` the unweighted mean over the subjects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from growlm.errors import GrowlmError

LETTERS = ("A", "B", "C", "D")
FIELDS = ("question", "subject", "choices", "answer")

# lm-eval's grouping of the 57 subjects (its mmlu/_generate_configs.py, after Hendrycks et al.)
CATEGORIES: dict[str, tuple[str, ...]] = {
    "stem": ("abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
             "college_computer_science", "college_mathematics", "college_physics", "computer_security",
             "conceptual_physics", "electrical_engineering", "elementary_mathematics", "high_school_biology",
             "high_school_chemistry", "high_school_computer_science", "high_school_mathematics",
             "high_school_physics", "high_school_statistics", "machine_learning"),
    "other": ("business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
              "management", "marketing", "medical_genetics", "miscellaneous", "nutrition",
              "professional_accounting", "professional_medicine", "virology"),
    "social_sciences": ("econometrics", "high_school_geography", "high_school_government_and_politics",
                        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology",
                        "human_sexuality", "professional_psychology", "public_relations", "security_studies",
                        "sociology", "us_foreign_policy"),
    "humanities": ("formal_logic", "high_school_european_history", "high_school_us_history",
                   "high_school_world_history", "international_law", "jurisprudence", "logical_fallacies",
                   "moral_disputes", "moral_scenarios", "philosophy", "prehistory", "professional_law",
                   "world_religions"),
}
CATEGORY_OF = {subject: category for category, subjects in CATEGORIES.items() for subject in subjects}


class MMLUError(GrowlmError):
    """An MMLU document or request that does not fit lm-eval's schema."""


def check_doc(doc: dict[str, Any]) -> None:
    """A clear error for a document outside the cais/mmlu schema (the key and what it should be)."""
    missing = [f for f in FIELDS if f not in doc]
    if missing:
        raise MMLUError(f"mmlu document lacks {', '.join(missing)}: the cais/mmlu schema has "
                        f"{', '.join(FIELDS)}; got keys {', '.join(sorted(doc))}")
    if len(doc["choices"]) != len(LETTERS):
        raise MMLUError(f"mmlu document ({doc['subject']}: {doc['question'][:60]!r}) has {len(doc['choices'])} "
                        "choices; MMLU has exactly 4 (A-D)")
    if int(doc["answer"]) not in range(len(LETTERS)):
        raise MMLUError(f"mmlu document ({doc['subject']}: {doc['question'][:60]!r}) has answer "
                        f"{doc['answer']!r}; it must be an index 0-3")


def description(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def question_block(doc: dict[str, Any]) -> str:
    """lm-eval's ``doc_to_text`` for mmlu."""
    lettered = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, doc["choices"], strict=True))
    return f"{doc['question'].strip()}{lettered}\nAnswer:"


def context(doc: dict[str, Any], shots: Sequence[dict[str, Any]] = ()) -> str:
    """The whole prompt: description, solved examples (target delimiter " ", example delimiter a blank line),
    then the question."""
    check_doc(doc)
    solved = "".join(f"{question_block(s)} {LETTERS[int(s['answer'])]}\n\n" for s in shots)
    return description(doc["subject"]) + solved + question_block(doc)


def fewshot_pool(dev_docs: Sequence[dict[str, Any]], subjects: set[str], n: int) -> dict[str, list[dict[str, Any]]]:
    """The first ``n`` dev documents of each subject, in file order (lm-eval's ``first_n`` sampler)."""
    pool: dict[str, list[dict[str, Any]]] = {}
    for doc in dev_docs:
        check_doc(doc)
        pool.setdefault(doc["subject"], []).append(doc)
    for subject in sorted(subjects):
        have = len(pool.get(subject, []))
        if have < n:
            raise MMLUError(f"--num-fewshot {n}: the few-shot split holds {have} document(s) of subject "
                            f"{subject!r} (cais/mmlu's dev split has 5 per subject)")
    return {s: pool[s][:n] for s in subjects} if n else {s: [] for s in subjects}


@dataclass(frozen=True)
class SubjectScore:
    subject: str
    category: str
    acc: float
    n: int


def aggregate(subjects: Sequence[str], correct: Sequence[float]) -> dict[str, Any]:
    """Per-subject accuracy, and per category and overall the micro (``acc``, lm-eval's) and macro
    (``acc_macro``, mean over subjects) averages."""
    by_subject: dict[str, list[float]] = {}
    for subject, value in zip(subjects, correct, strict=True):
        by_subject.setdefault(subject, []).append(value)
    scores = [SubjectScore(s, CATEGORY_OF.get(s, "unknown"), float(np.mean(v)), len(v))
              for s, v in sorted(by_subject.items())]
    categories: dict[str, dict[str, Any]] = {}
    for category in [*CATEGORIES, "unknown"]:
        members = [s for s in scores if s.category == category]
        if members:
            n = sum(s.n for s in members)
            categories[category] = {"acc": sum(s.acc * s.n for s in members) / n,
                                    "acc_macro": float(np.mean([s.acc for s in members])),
                                    "subjects": len(members), "n": n}
    return {"acc_macro": float(np.mean([s.acc for s in scores])),
            "categories": categories,
            "subjects": {s.subject: {"acc": s.acc, "n": s.n, "category": s.category} for s in scores}}
