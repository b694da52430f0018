"""Letter-generation scoring of multiple-choice tasks (``growlm eval --scoring generate``).

The way the frozen-substrate paper (Bochkov) scores MMLU: the choices are listed with
letters, the model *generates* its answer greedily, and the answer is read off the
generated text. Unlike log-likelihood scoring (lm-eval's default, which always picks one of
the choices), a model may produce no valid letter at all; that answer counts as wrong, so
scores can fall **below chance** (an untrained model mostly does).

Prompt: a task whose own prompt already lists the choices with letters (``mmlu``) is used as
it is (lm-eval's ``mmlu_generative`` prompt equals its ``mmlu`` one). For the other
multiple-choice tasks growlm writes an MMLU-style prompt (:func:`lettered_prompt`): the
task's context with a trailing ``"\\nAnswer:"`` removed, then ``"\\nA. choice"`` per choice,
then ``"\\nAnswer:"``; it has no lm-eval counterpart.

Generation: greedy, at most :data:`MAX_NEW_TOKENS` new tokens, stopping at end of sequence.

Parsing (:func:`parse_letter`), the exact rule: skip leading whitespace (spaces, tabs,
newlines); the next character must be one of the task's letters (``A``, ``B``, ... one per
choice; upper case only, since a lower-case ``a`` is far more often the article), and the
character after it must not be a letter or digit (end of text, space, ``.``, ``)``, ``:``,
newline all qualify). So ``" A"``, ``"B."``, ``"\\nC) because"`` and ``" D is right"`` are
answers, while ``" All of them"``, ``" a"``, ``"(A)"`` and, for a 4-choice question,
``" E"`` are not: they are *unparsed* and count as wrong. lm-eval's ``mmlu_generative`` is
stricter (the whole first line, stripped, punctuation and case ignored, must equal the
letter): ``" D is right"`` counts there as wrong.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

MAX_NEW_TOKENS = 5
_LETTERS = string.ascii_uppercase


def letters_for(count: int) -> str:
    return _LETTERS[:count]


def parse_letter(text: str, count: int) -> int | None:
    """The choice index a generated ``text`` answers for a question of ``count`` choices, or None."""
    match = re.match(r"\s*([A-Z])(?![A-Za-z0-9])", text)
    if match is None:
        return None
    index = _LETTERS.index(match.group(1))
    return index if index < count else None


def lettered_prompt(context: str, choices: Sequence[str]) -> str:
    """An MMLU-style prompt for a task whose prompt does not list its choices."""
    base = context.removesuffix("\nAnswer:").rstrip()
    lettered = "".join(f"\n{letter}. {choice}" for letter, choice in zip(letters_for(len(choices)), choices,
                                                                          strict=True))
    return f"{base}{lettered}\nAnswer:"
