"""Tokens drawn as binary pictures with GNU Unifont, through Pillow (../shared/papers/NOTES.md §2).

Every character gets a fixed ``cell x cell`` square (32 x 32 by default, 1024 bits). The
font is drawn at ``size = cell``: Unifont is a 16-pixel bitmap font stored as square
outlines, so at a multiple of 16 pixels (and with anti-aliasing off) every font pixel
becomes an exact ``cell/16``-pixel block. Halfwidth glyphs (Latin, digits) are
``cell/2`` wide and centred in their cell; fullwidth ones (CJK) fill it.

A token of ``n`` characters is drawn as a strip of ``n`` cells side by side and resized
back to one cell with Pillow's nearest-neighbour filter (the paper's choice), then
binarised (pixel > 127). Byte tokens and special tokens are inverted (see ``text.py``).

Characters outside the font (Unifont's OpenType file covers the Basic Multilingual
Plane; emoji and other plane-1 characters are missing) would all be drawn as the same
``.notdef`` box. They are drawn instead the way Unifont itself shows code points it has
no picture for: a framed box with the code point's six hex digits in two rows of
three, so every missing character still has its own picture. ``GlyphStats`` counts them.

Pillow renders and resizes; fontTools (which Pillow and matplotlib already use) reads
the font's character map to tell a missing glyph from a real one. Neither is a font
parser written here.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from growlm.errors import DataError
from growlm.substrate.text import TokenText

UNIFONT = "fonts/unifont.otf"
THRESHOLD = 127


def find_font(explicit: str | Path | None = None) -> Path:
    """GNU Unifont: ``explicit``, else ``$GROWLM_FONT``, else the shared material's ``fonts/unifont.otf``,
    else Debian's copy (package ``fonts-unifont``)."""
    from growlm.data.shared import locate_shared

    explicit = explicit or os.environ.get("GROWLM_FONT") or None
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise DataError(f"font {path} does not exist")
        return path
    candidates = []
    with contextlib.suppress(DataError):
        candidates.append(locate_shared() / UNIFONT)
    candidates.append(Path("/usr/share/fonts/opentype/unifont/unifont.otf"))
    for path in candidates:
        if path.is_file():
            return path
    raise DataError("cannot find GNU Unifont (fonts/unifont.otf in the shared material, or Debian's fonts-unifont); "
                    "set GROWLM_FONT or GROWLM_SHARED, or pass --font")


@dataclass
class GlyphStats:
    """What drawing a vocabulary met: characters the font lacks, tokens by style."""

    missing_chars: set[str] = field(default_factory=set)
    tokens_with_missing: int = 0
    styles: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"characters_missing_from_font": len(self.missing_chars),
                "tokens_with_missing_characters": self.tokens_with_missing,
                "tokens_by_style": dict(sorted(self.styles.items()))}


class GlyphRenderer:
    """Draws characters and tokens as ``cell x cell`` boolean arrays."""

    def __init__(self, font_path: str | Path | None = None, cell: int = 32) -> None:
        if cell <= 0 or cell % 16:
            raise DataError(f"the glyph cell must be a positive multiple of 16 pixels, got {cell}")
        self.font_path = find_font(font_path)
        self.cell = cell
        # The basic layout engine: one glyph at a time, no shaping (raqm is not always installed and
        # shapes right-to-left and combining characters differently from one build to another).
        basic = ImageFont.Layout.BASIC
        self.font = ImageFont.truetype(str(self.font_path), size=cell, layout_engine=basic)
        self.small = ImageFont.truetype(str(self.font_path), size=cell // 2, layout_engine=basic)
        self._cells: dict[str, np.ndarray] = {}
        self.stats = GlyphStats()

    @cached_property
    def coverage(self) -> frozenset[int]:
        from fontTools.ttLib import TTFont

        return frozenset(TTFont(str(self.font_path)).getBestCmap())

    def _canvas(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        image = Image.new("L", (self.cell, self.cell), 0)
        draw = ImageDraw.Draw(image)
        draw.fontmode = "1"  # no anti-aliasing: Unifont pixels stay whole
        return image, draw

    def _hex_box(self, char: str) -> np.ndarray:
        image, draw = self._canvas()
        digits = f"{ord(char):06X}"
        width = self.small.getlength("000")
        x = (self.cell - width) / 2
        draw.text((x, 0), digits[:3], font=self.small, fill=255)
        draw.text((x, self.cell // 2), digits[3:], font=self.small, fill=255)
        draw.rectangle((0, 0, self.cell - 1, self.cell - 1), outline=255)
        return np.asarray(image) > THRESHOLD

    def char_cell(self, char: str) -> np.ndarray:
        """One character centred in its cell (a hex box when the font has no glyph for it)."""
        found = self._cells.get(char)
        if found is not None:
            return found
        if ord(char) not in self.coverage:
            self.stats.missing_chars.add(char)
            bits = self._hex_box(char)
        else:
            image, draw = self._canvas()
            x = max(0, (self.cell - int(self.font.getlength(char))) // 2)
            draw.text((x, 0), char, font=self.font, fill=255)
            bits = np.asarray(image) > THRESHOLD
        self._cells[char] = bits
        return bits

    def token(self, token: TokenText) -> np.ndarray:
        """The binarised ``cell x cell`` picture of one token."""
        self.stats.styles[token.style] = self.stats.styles.get(token.style, 0) + 1
        if token.style == "byte":  # two halfwidth hex digits fill exactly one cell
            image, draw = self._canvas()
            draw.text((0, 0), token.text, font=self.font, fill=255)
            bits = np.asarray(image) > THRESHOLD
        elif not token.text:
            bits = np.zeros((self.cell, self.cell), dtype=bool)
        else:
            if any(ord(c) not in self.coverage for c in token.text):
                self.stats.tokens_with_missing += 1
            strip = np.concatenate([self.char_cell(c) for c in token.text], axis=1)
            if strip.shape[1] != self.cell:
                image = Image.fromarray(strip.astype(np.uint8) * 255)
                strip = np.asarray(image.resize((self.cell, self.cell), Image.Resampling.NEAREST)) > THRESHOLD
            bits = strip
        return ~bits if token.inverted else bits


def glyph_bits(texts: list[TokenText], font_path: str | Path | None = None,
               cell: int = 32) -> tuple[np.ndarray, GlyphStats]:
    """The ``V x cell^2`` 0/1 matrix of every token's picture (row-major pixels), and what was met."""
    renderer = GlyphRenderer(font_path, cell)
    bits = np.empty((len(texts), cell * cell), dtype=np.uint8)
    for i, token in enumerate(texts):
        bits[i] = renderer.token(token).reshape(-1)
    return bits, renderer.stats
