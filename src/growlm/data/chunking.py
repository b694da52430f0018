"""Exact tokenization of huge documents in pieces, and the parsing of one input line.

Why pieces: a fast tokenizer encodes one document on one thread, and the
SentencePiece-converted tokenizers (``Metaspace(split=False)``) run BPE over the
whole document as a single word, which gets slower per byte as the document grows
(measured on one core, Gutenberg text: 0.67 MB/s in 16 kB pieces, 0.42 MB/s in 256 kB
pieces, 0.18 MB/s for a 1 MB document whole, 0.14 MB/s for 4 MB). A corpus of a few
huge documents therefore kept one core busy, slowly, while the others waited. Cutting
documents into pieces makes every core several times faster on long documents, and
lets the reader spread one huge document over every worker.

Why the pieces give *exactly* the tokens of the whole document: a piece boundary is
placed only right after a single newline between two non-whitespace characters
(``"word\nWord"``).
Neither tokenizer family merges across such a point: byte-level BPE (GPT-2 and its
successors) splits words there in its pre-tokenizer regex, and the SentencePiece
vocabularies encode ``\\n`` as a byte-fallback token that no merge touches. (After a
run of whitespace, byte-level BPE would not be safe: at the end of a piece the whole run
is one pre-token, in context its last character goes to the next word.) A piece
after the first one is encoded behind an *anchor* (``"\\n"``), whose own tokens are
then dropped, so that the piece is tokenized as it is in context (for instance
without the word-start marker a SentencePiece tokenizer prepends to a text's first
word). Whether a tokenizer has these properties is checked when an :class:`Encoder`
is built, on a probe text with every kind of boundary (blank lines, indentation, tabs,
code, non-Latin scripts); if the pieces' tokens differ from the whole's there,
documents are encoded whole (and the reason is reported), never approximately.
Each anchored piece is also checked to start with the anchor's tokens.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from growlm.errors import DataError

ANCHOR = "\n"
PROBE = (
    "The first paragraph.\n\nSecond one,  with two spaces\n  indented line\n\ttabbed line\n"
    "def f(x):\n    return x  # code\n\n\n\nFour newlines above.\nÜnïcödé — ok.\n中文文本。\n"
    "Русский текст.\n- item\n* item\n1. item\n\"quoted\"\n'single'\n(paren)\n#heading\n\r\nwindows line\n"
    "  \nspaces then newline\nlast line without newline"
)


def split_points(text: str, piece_chars: int) -> list[int]:
    """Offsets at which to cut ``text`` into pieces of at least ``piece_chars`` characters.

    A cut is placed at the first safe point (just after a ``\\n`` with non-whitespace
    characters on both sides) at or after each ``piece_chars`` stride; a text without
    such points stays whole.
    """
    cuts: list[int] = []
    start = 0
    while len(text) - start > piece_chars:
        search = start + piece_chars
        while True:
            newline = text.find("\n", search - 1)
            if newline < 0 or newline + 1 >= len(text):
                return cuts
            if not text[newline + 1].isspace() and newline > 0 and not text[newline - 1].isspace():
                break
            search = newline + 2
        cuts.append(newline + 1)
        start = newline + 1
    return cuts


def split_text(text: str, piece_chars: int) -> list[str]:
    """``text`` cut at :func:`split_points` (one piece when it is short or has no safe point)."""
    bounds = [0, *split_points(text, piece_chars), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def parse_line(line: bytes, text_field: str) -> tuple[str | None, str | None]:
    """``(text, None)`` for a usable JSON line, ``(None, reason)`` for one that yields no document."""
    if not line.strip():
        return None, "blank_line"
    try:
        decoded = line.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    try:
        record = json.loads(decoded)
    except json.JSONDecodeError:
        return None, "invalid_json"
    if not isinstance(record, dict):
        return None, "not_a_json_object"
    if text_field not in record:
        return None, f"missing_{text_field}_field"
    text = record[text_field]
    if not isinstance(text, str):
        return None, f"{text_field}_not_a_string"
    if not text.strip():
        return None, f"empty_{text_field}"
    return text, None


class Encoder:
    """Tokenizes documents and pieces of documents; the same object runs in every worker.

    ``piece_chars`` is the piece length for huge documents (0: never cut). Work items are
    ``("line", raw_bytes)`` (a JSON line: parse, then tokenize whole) or
    ``("piece", text, first, last)`` (a piece of a document the reader has already parsed
    and cut) or ``("skip", reason)`` (passed through); :meth:`run` returns, per item,
    ``("ids", array, utf8_bytes)`` (with ``eod`` appended at a document's end, as ``dtype``:
    the workers do this work, not the process that writes) or ``("skip", reason)``.
    """

    def __init__(self, tokenizer: Any, text_field: str, piece_chars: int, check: bool = True,
                 eod: int | None = None, dtype: DTypeLike = np.int64) -> None:
        self.tokenizer, self.text_field = tokenizer, text_field
        self.eod, self.dtype = eod, np.dtype(dtype)  # what run() appends to a document's end, and its ids' type
        self.anchor_ids = self._encode_one(ANCHOR)
        self.piece_chars = piece_chars
        self.disabled_reason: str | None = None
        if piece_chars > 0 and check:
            self.disabled_reason = self._check_pieces()
            if self.disabled_reason:
                self.piece_chars = 0

    def _encode_one(self, text: str) -> list[int]:
        # single-text encode: keeps the tokenizers library's thread pool unused before workers fork
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _check_pieces(self) -> str | None:
        whole = self._encode_one(PROBE)
        for size in (1, 7, 40):
            pieces = split_text(PROBE, size)
            ids: list[int] = []
            for i, piece in enumerate(pieces):
                encoded = self._encode_one(piece if i == 0 else ANCHOR + piece)
                if i and encoded[: len(self.anchor_ids)] != self.anchor_ids:
                    return f"the tokenizer does not encode {ANCHOR!r} the same before every piece"
                ids += encoded if i == 0 else encoded[len(self.anchor_ids):]
            if ids != whole:
                return "the tokenizer merges tokens across line starts, so pieces would change the tokens"
        return None

    def split(self, text: str) -> list[str]:
        return split_text(text, self.piece_chars) if self.piece_chars else [text]

    def encode(self, texts: Sequence[str], anchored: Sequence[bool]) -> list[np.ndarray]:
        """Token ids of each text; an anchored text is encoded behind the anchor, which is then dropped."""
        if not texts:
            return []
        inputs = [ANCHOR + t if a else t for t, a in zip(texts, anchored, strict=True)]
        encoded = self.tokenizer(inputs, add_special_tokens=False)["input_ids"]
        out = []
        skip = len(self.anchor_ids)
        for ids, a in zip(encoded, anchored, strict=True):
            if a:
                if list(ids[:skip]) != self.anchor_ids:
                    raise DataError("a document piece did not start with the anchor's tokens; "
                                    "prepare with --piece-chars 0 to tokenize documents whole")
                ids = ids[skip:]
            out.append(np.asarray(ids, dtype=np.int64))
        return out

    def run(self, items: Sequence[tuple]) -> list[tuple[str, Any]]:
        results: list[tuple[Any, ...] | None] = [None] * len(items)
        texts, anchored, owner = [], [], []  # what to encode, and which item each text belongs to
        for i, item in enumerate(items):
            if item[0] == "skip":  # decided by the reader (a huge line or a .txt file it parsed itself)
                results[i] = item
                continue
            if item[0] == "line":
                text, reason = parse_line(item[1], self.text_field)
                if text is None:  # then reason says why
                    results[i] = ("skip", reason)
                    continue
                pieces = self.split(text)  # long documents encode faster in pieces, and identically
                texts += pieces
                anchored += [k > 0 for k in range(len(pieces))]
                owner += [i] * len(pieces)
            else:
                texts.append(item[1])
                anchored.append(not item[2])
                owner.append(i)
        parts: dict[int, list[np.ndarray]] = {}
        sizes: dict[int, int] = {}
        for i, text, ids in zip(owner, texts, self.encode(texts, anchored), strict=True):
            parts.setdefault(i, []).append(ids)
            sizes[i] = sizes.get(i, 0) + len(text.encode("utf-8"))
        for i, arrays in parts.items():
            if self.eod is not None and (items[i][0] == "line" or items[i][3]):  # a document's end
                arrays.append(np.asarray([self.eod]))
            ids = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            results[i] = ("ids", ids.astype(self.dtype), sizes[i])
        return results  # type: ignore[return-value]


_WORKER: Encoder | None = None


def init_worker(tokenizer: Any, text_field: str, piece_chars: int, eod: int, dtype: str) -> None:
    """Pool initializer: one encoder per worker process, tokenizer threads off (the workers are the threads)."""
    import os

    global _WORKER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER = Encoder(tokenizer, text_field, piece_chars, check=False, eod=eod, dtype=dtype)  # checked by the reader


def run_in_worker(items: Sequence[tuple]) -> list[tuple[str, Any]]:
    assert _WORKER is not None, "init_worker was not called"
    return _WORKER.run(items)
