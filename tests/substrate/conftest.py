"""The 32k tokenizer and its glyph substrate, built once per test session into a temporary cache."""

from __future__ import annotations

import os

import pytest

from tests.conftest import SP_MODEL


@pytest.fixture(scope="session", autouse=True)
def substrate_cache(tmp_path_factory: pytest.TempPathFactory):
    """A fresh, private substrate cache: every test builds or reads only what this session wrote."""
    previous = os.environ.get("GROWLM_CACHE")
    os.environ["GROWLM_CACHE"] = str(tmp_path_factory.mktemp("growlm-cache"))
    yield os.environ["GROWLM_CACHE"]
    if previous is None:
        os.environ.pop("GROWLM_CACHE", None)
    else:
        os.environ["GROWLM_CACHE"] = previous


@pytest.fixture(scope="session")
def tokenizer32k():
    from growlm.data.tokenizer import load_tokenizer

    return load_tokenizer(SP_MODEL)


@pytest.fixture(scope="session")
def glyph32k(tokenizer32k, substrate_cache):
    """The 32k glyph substrate at width 128 (the tiny presets' hidden size), built cold, and its pictures."""
    from growlm.substrate import SubstrateSpec, build_substrate
    from growlm.substrate.glyphs import glyph_bits
    from growlm.substrate.text import token_texts

    substrate = build_substrate(SubstrateSpec("glyph", 32000, 128), tokenizer32k)
    bits = substrate.bits if substrate.bits is not None else glyph_bits(token_texts(tokenizer32k, 32000))[0]
    return substrate, bits
