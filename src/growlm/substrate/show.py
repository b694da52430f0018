"""``growlm substrate TOKENIZER --kind KIND --out DIR``: build a substrate and show what it is.

Writes into ``DIR``:

* ``substrate.json``: the cache key and options, what the build found (PCA rank and the
  variance kept, characters missing from the font, tokens by style), the collisions
  (tokens whose row equals another token's: the share of the vocabulary and the first
  groups, by text) and the nearest neighbours (cosine similarity of rows) of a few tokens;
* ``cells.png``: sample tokens as the substrate sees them -- glyph pictures for ``glyph``,
  the code rows as a strip of pixels for the binary kinds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from growlm.substrate.build import SubstrateSpec, build_substrate
from growlm.substrate.codes import count_collisions, row_groups
from growlm.substrate.text import token_texts

# Tokens whose neighbours are shown, when the tokenizer has them as single pieces.
PROBES = ("▁the", "▁The", "ing", "▁and", "▁1", "▁function", "中", "<0x0A>", "</s>", "Ġthe", "the")
SAMPLES = 40


def _sample_ids(tokenizer: Any, count: int) -> list[int]:
    """Special and byte tokens first, then pieces spread evenly over the vocabulary."""
    texts = token_texts(tokenizer)
    first = [i for i, t in enumerate(texts) if t.style == "special"][:4]
    first += [i for i, t in enumerate(texts) if t.style == "byte"][10:12]
    spread = np.linspace(0, len(texts) - 1, count - len(first)).round().astype(int).tolist()
    return list(dict.fromkeys(first + spread))[:count]


def _label(tokenizer: Any, token_id: int) -> str:
    return tokenizer.convert_ids_to_tokens(token_id)


def nearest_neighbours(table: torch.Tensor, tokenizer: Any, probes: tuple[str, ...] = PROBES,
                       k: int = 5) -> dict[str, list[tuple[str, float]]]:
    """For each probe piece in the vocabulary: its ``k`` nearest other tokens by cosine similarity."""
    vocab = tokenizer.get_vocab()
    unit = table / table.norm(dim=1, keepdim=True).clamp_min(1e-12)
    out = {}
    for piece in probes:
        if piece not in vocab:
            continue
        token_id = vocab[piece]
        sims = unit @ unit[token_id]
        sims[token_id] = -2.0
        values, ids = sims.topk(k)
        out[piece] = [(_label(tokenizer, int(i)), round(float(v), 4)) for v, i in zip(values, ids, strict=True)]
    return out


def collision_groups(table: torch.Tensor, tokenizer: Any, limit: int = 20) -> list[list[str]]:
    """The first ``limit`` groups of tokens sharing one row, as their pieces."""
    inverse, counts = row_groups(table)
    groups: dict[int, list[int]] = {}
    for token_id, group in enumerate(inverse):
        if counts[group] > 1:
            groups.setdefault(int(group), []).append(token_id)
    ordered = sorted(groups.values(), key=lambda ids: ids[0])[:limit]
    return [[_label(tokenizer, i) if i < len(tokenizer) else f"#{i}" for i in ids] for ids in ordered]


def _plot_cells(pictures: list[np.ndarray], labels: list[str], path: Path, title: str,
                font: str | Path | None) -> None:
    from matplotlib.font_manager import FontProperties

    from growlm.errors import DataError
    from growlm.plotting import subplots  # a figure of its own: no pyplot, no backend
    from growlm.substrate.glyphs import find_font

    try:  # labels in Unifont too: matplotlib's default font lacks most of a vocabulary's scripts
        props = FontProperties(fname=str(find_font(font)), size=7)
    except DataError:
        props = FontProperties(size=7)

    cols = 8
    rows = (len(pictures) + cols - 1) // cols
    fig, axes = subplots(rows, cols, figsize=(cols * 1.4, rows * 1.6), dpi=110)
    for ax in np.asarray(axes).reshape(-1):
        ax.axis("off")
    for ax, picture, label in zip(np.asarray(axes).reshape(-1), pictures, labels, strict=False):
        ax.imshow(picture, cmap="gray_r", interpolation="nearest", aspect="auto")
        ax.set_title(label if len(label) <= 12 else label[:11] + "…", fontproperties=props)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def describe_substrate(tokenizer: Any, kind: str, out: Path, dim: int | None = None, cell: int = 32,
                       seed: int = 0, font: str | Path | None = None) -> dict[str, Any]:
    """Build the substrate of ``kind`` for ``tokenizer`` (at width ``dim``, default ``cell**2``) and show it."""
    out.mkdir(parents=True, exist_ok=True)
    dim = dim or cell * cell
    spec = SubstrateSpec(kind, len(tokenizer), dim, cell, seed, str(font) if font else None)
    substrate = build_substrate(spec, tokenizer)
    table = substrate.table(dim)
    ids = _sample_ids(tokenizer, SAMPLES)
    labels = [_label(tokenizer, i) for i in ids]
    if kind == "glyph":
        from growlm.substrate.glyphs import GlyphRenderer

        renderer = GlyphRenderer(font, cell)
        texts = token_texts(tokenizer)
        pictures = [renderer.token(texts[i]) for i in ids]
    else:
        width = min(dim, 64)
        pictures = [table[i, :width].numpy().reshape(1, -1) > 0 for i in ids]
    _plot_cells(pictures, labels, out / "cells.png", f"{kind} substrate ({substrate.key}): sample tokens", font)
    collisions = count_collisions(table)
    report = {
        "kind": kind, "key": substrate.key, "options": spec.options(),
        "build": {k: v for k, v in substrate.info.items() if k != "inputs"},
        "row_norm": {"min": float(table.norm(dim=1).min()), "max": float(table.norm(dim=1).max())},
        "collisions": {**collisions, "first_groups": collision_groups(table, tokenizer)},
        "nearest_neighbours": nearest_neighbours(table, tokenizer),
        "files": {"cells": "cells.png"},
    }
    (out / "substrate.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return report
