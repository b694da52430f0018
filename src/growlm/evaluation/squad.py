"""SQuAD v1.1: greedy generation, exact match and F1 with the official answer normalisation.

Prompt (``tasks.SQUAD_PROMPT``)::

    Title: {title}

    Background: {context}

    Question: {question}

    Answer:

The model continues greedily for at most ``max_new_tokens`` (32) tokens; the answer is
the text up to the first newline, stripped. Scoring follows the official v1.1
evaluation script: answers are normalised (lower-cased, punctuation removed, the
articles a/an/the removed, whitespace collapsed, in that order), exact match is
equality of the normalised strings, F1 is the harmonic mean of token precision and
recall over the normalised words (0 when nothing is shared), and each prediction takes
the best score over the gold answers. Scores are reported in percent, like the script.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

import torch

from growlm.evaluation.perplexity import autocast_context

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction: str, truth: str) -> float:
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    shared = sum((Counter(predicted) & Counter(gold)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(gold)
    return 2 * precision * recall / (precision + recall)


def best_over_answers(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of a prediction against its best-matching gold answer."""
    return max(exact_match(prediction, a) for a in answers), max(f1(prediction, a) for a in answers)


def first_line(text: str) -> str:
    return text.split("\n", 1)[0].strip()


@torch.no_grad()
def generate_answers(model, tokenizer, prompts: Sequence[str], device: torch.device,
                     autocast: torch.dtype | None = None, batch_size: int = 8, max_new_tokens: int = 32,
                     progress=None, cut: Callable[[str], str] = first_line) -> list[str]:
    """Greedy continuations of ``prompts`` (left-padded batches through transformers' generate), each
    passed through ``cut`` (default: its first line, stripped)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    limit = int(model.config.max_position_embeddings) - max_new_tokens
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        encoded = [tokenizer.encode(p)[-limit:] for p in prompts[start: start + batch_size]]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, e in enumerate(encoded):
            ids[row, width - len(e):] = torch.tensor(e)
            mask[row, width - len(e):] = 1
        with autocast_context(device, autocast):
            out = model.generate(ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        answers += [cut(tokenizer.decode(row[width:], skip_special_tokens=True)) for row in out.cpu()]
        if progress is not None:
            progress.update(len(encoded))
    return answers
