"""Substrate codes without a font: binary and random codes, the PCA against scikit-learn, bad options."""

import math

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from growlm.errors import ConfigError
from growlm.models.presets import build_config
from growlm.substrate import SubstrateSpec, build_substrate, count_collisions
from growlm.substrate.codes import (
    binary_codes,
    glyph_codes,
    principal_coordinates,
    random_binary_codes,
    table_from_codes,
)


def test_binary_codes_are_the_id_bits_repeated():
    codes, info = binary_codes(32000, 40)
    assert info["id_bits"] == 15
    # id 5 = 0b101: bits (LSB first) 1,0,1,0,...; column j is bit j mod 15
    expected = torch.tensor([1.0 if j % 15 in (0, 2) else -1.0 for j in range(40)], dtype=torch.float64)
    assert torch.equal(codes[5], expected / math.sqrt(40))
    assert torch.allclose(codes.norm(dim=1), torch.ones(32000, dtype=torch.float64))
    assert count_collisions(codes.float())["tokens_sharing_a_row"] == 0
    with pytest.raises(ConfigError, match="embedding_dim >= 15"):
        binary_codes(32000, 14)


def test_random_binary_codes_are_seeded_and_collision_free():
    a, _ = random_binary_codes(32000, 64, seed=3)
    b, _ = random_binary_codes(32000, 64, seed=3)
    c, _ = random_binary_codes(32000, 64, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {-1 / 8, 1 / 8}
    assert count_collisions(a.float())["tokens_sharing_a_row"] == 0
    # 256 tokens in 8 bits: only a permutation of all 256 codes is collision-free; duplicates must be redrawn
    full, info = random_binary_codes(256, 8, seed=0)
    assert info["redrawn"] > 0
    assert count_collisions(full.float())["distinct_rows"] == 256
    with pytest.raises(ConfigError, match="embedding_dim >= 9"):
        random_binary_codes(257, 8, seed=0)


def _structured_bits(rows: int = 600, cols: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(rows, 5)) @ rng.normal(size=(5, cols))
    bits = (latent + rng.normal(scale=0.5, size=(rows, cols)) > 0).astype(np.uint8)
    bits[:, :3] = 1  # constant pixels: no variance, they must not count towards the rank
    return bits


def test_principal_coordinates_match_scikit_learn():
    bits = _structured_bits()
    coords, info = principal_coordinates(bits)
    assert info["rank"] == 45 and info["variance_kept"] == pytest.approx(1.0)
    reference = PCA(n_components=45, svd_solver="full").fit(bits.astype(np.float64))
    theirs = reference.transform(bits.astype(np.float64))
    ours = coords.numpy()
    # same axes up to sign, same variances
    signs = np.sign((ours * theirs).sum(0))
    np.testing.assert_allclose(ours, theirs * signs, atol=1e-9)
    np.testing.assert_allclose(ours.var(0, ddof=1), reference.explained_variance_, rtol=1e-9)
    # our sign convention: each axis's largest-magnitude coordinate is positive
    assert (ours[np.abs(ours).argmax(0), np.arange(45)] > 0).all()
    # full-rank PCA is a rotation of the centred data: all distances are kept
    centred = bits - bits.mean(0)
    for i, j in [(0, 1), (5, 400), (17, 599)]:
        assert np.linalg.norm(ours[i] - ours[j]) == pytest.approx(np.linalg.norm(centred[i] - centred[j]))


def test_glyph_codes_keep_the_leading_axes_and_pad():
    bits = _structured_bits()
    narrow, info = glyph_codes(bits, 10)
    wide, wide_info = glyph_codes(bits, 64)
    assert info["components_kept"] == 10 and wide_info["components_kept"] == 45
    assert torch.allclose(narrow.norm(dim=1), torch.ones(600, dtype=torch.float64))
    assert torch.equal(wide[:, 45:], torch.zeros(600, 19, dtype=torch.float64))
    coords, _ = principal_coordinates(bits, 10)
    assert torch.allclose(narrow, coords / coords.norm(dim=1, keepdim=True))


def test_table_is_scaled_and_zero_padded():
    codes, _ = binary_codes(100, 7)
    table = table_from_codes(codes, 12, scale=2.0)
    assert table.dtype == torch.float32 and table.shape == (100, 12)
    assert torch.equal(table[:, :7], (codes * 2).float()) and not table[:, 7:].any()
    with pytest.raises(ConfigError, match="exceeds hidden_size"):
        table_from_codes(codes, 6)


def test_binary_kinds_need_no_tokenizer_and_are_not_cached(substrate_cache):
    from pathlib import Path

    before = set(Path(substrate_cache).rglob("*"))
    substrate = build_substrate(SubstrateSpec("random_binary", 500, 16, seed=2), None)
    assert substrate.codes.shape == (500, 16)
    assert set(Path(substrate_cache).rglob("*")) == before


def test_bad_options_are_named():
    with pytest.raises(ConfigError, match=r"unknown embedding 'glif'.*; valid: binary, glyph, learned, "
                                          r"random_binary"):
        build_config("llama-tiny", {"embedding": "glif"})
    with pytest.raises(ConfigError, match="unknown substrate kind 'learned'; valid: binary, glyph, random_binary"):
        SubstrateSpec("learned", 10, 4)
    with pytest.raises(ConfigError, match="set tie_word_embeddings=false"):
        build_config("qwen3-tiny", {"embedding": "glyph"})
    with pytest.raises(ConfigError, match="embedding_dim must be a positive integer at most hidden_size=128"):
        build_config("llama-tiny", {"embedding": "binary", "embedding_dim": 129})
    with pytest.raises(ConfigError, match="embedding_cell must be a positive multiple of 16"):
        build_config("llama-tiny", {"embedding": "glyph", "embedding_cell": 20})
    with pytest.raises(ConfigError, match="it needs the tokenizer"):
        build_substrate(SubstrateSpec("glyph", 10, 4), None)
    assert build_config("llama-tiny", {"embedding": "binary"}).embedding_dim == 128
    assert build_config("llama-tiny").embedding_dim is None
