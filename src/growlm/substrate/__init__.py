"""Frozen, non-semantic input embeddings (the frozen-substrate paper, ../shared/papers/NOTES.md §2).

A model whose config says ``embedding: glyph | binary | random_binary`` does not learn its
token embedding: the table is a fixed function of the tokenizer and a few options, built
here, written into the model once (:func:`install_substrate`) and never trained. See
docs/substrate.md.

Layering: ``substrate`` sits beside ``models`` and ``data`` (level 1) and imports them
(the config class, the tokenizer loader, the shared-material finder); ``models`` never
imports ``substrate``, so loading a model needs neither Pillow nor the font.
"""

from growlm.substrate.build import (
    Substrate,
    SubstrateSpec,
    build_substrate,
    cache_dir,
    check_substrate,
    expected_table,
    install_substrate,
    substrate_fingerprint,
)
from growlm.substrate.codes import count_collisions

__all__ = [
    "Substrate",
    "SubstrateSpec",
    "build_substrate",
    "cache_dir",
    "check_substrate",
    "count_collisions",
    "expected_table",
    "install_substrate",
    "substrate_fingerprint",
]
