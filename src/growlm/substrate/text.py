"""What each token id *is* as text, for drawing it: the tokenizer's own spelling, with three exceptions.

The glyph substrate draws every token's text (../shared/papers/NOTES.md §2). The text is the
tokenizer's own piece string (``convert_ids_to_tokens``), exactly as its vocabulary
spells it, so two tokens get the same picture only if their pieces look alike:

* **plain** pieces are drawn as they are spelled. SentencePiece's word-boundary mark
  ``▁`` (U+2581) is drawn as itself -- a low bar -- rather than as a blank, so ``▁the``
  (word-initial) and ``the`` (inside a word) stay apart and whitespace-only pieces
  (``▁▁▁▁``) are not all blank. GPT-2 style byte-level pieces are drawn in their
  printable byte-to-unicode spelling (``Ġthe``, ``Ċ``) for the same reason.
* **byte** tokens (SentencePiece byte fallback, ``<0xNN>``) are drawn as their two hex
  digits ``NN`` in one cell, inverted (white background). Spelled out, ``<0x0A>`` would
  be six characters squeezed into one cell, and the 256 byte tokens would differ
  only in two smudged digits.
* **special** tokens (the tokenizer's special and added special tokens: ``<s>``,
  ``</s>``, ``<unk>``, ...) are drawn as their text, inverted: they are not text, and
  inversion keeps them apart from any plain piece with the same characters.
* ids from ``len(tokenizer)`` up to the model's ``vocab_size`` (padding rows no text
  maps to) are drawn as ``#ID``, inverted, so every row of the table is a distinct
  unit vector.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from growlm.errors import DataError

STYLES = ("plain", "byte", "special", "unused")
_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@dataclass(frozen=True)
class TokenText:
    text: str  # the characters to draw
    style: str  # one of STYLES

    @property
    def inverted(self) -> bool:
        return self.style != "plain"


def token_texts(tokenizer: Any, vocab_size: int | None = None) -> list[TokenText]:
    """The text to draw for every id ``0 .. vocab_size - 1`` (default: the tokenizer's length)."""
    size = len(tokenizer)
    vocab_size = size if vocab_size is None else vocab_size
    if vocab_size < size:
        raise DataError(f"the tokenizer has {size} tokens but the model's vocab_size is only {vocab_size}")
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            special.add(int(token_id))
    out = []
    for token_id, piece in enumerate(pieces):
        if piece is None:
            out.append(TokenText(f"#{token_id}", "unused"))
        elif token_id in special:
            out.append(TokenText(piece, "special"))
        elif (match := _BYTE.match(piece)) is not None:
            out.append(TokenText(match.group(1).upper(), "byte"))
        else:
            out.append(TokenText(piece, "plain"))
    out += [TokenText(f"#{i}", "unused") for i in range(size, vocab_size)]
    return out
