"""Glyph substrate: what each token is drawn as, the pictures (known answers), and the 32k table."""

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.decomposition import PCA

from growlm.substrate import SubstrateSpec, build_substrate, count_collisions
from growlm.substrate.codes import principal_coordinates, row_groups
from growlm.substrate.glyphs import GlyphRenderer
from growlm.substrate.text import TokenText, token_texts


@pytest.fixture(scope="module")
def renderer():
    return GlyphRenderer()


def test_token_texts_of_the_32k_vocabulary(tokenizer32k):
    texts = token_texts(tokenizer32k, 32005)
    assert [t.style for t in texts[:3]] == ["special"] * 3 and texts[1].text == "<s>"
    assert texts[3 + 0x0A] == TokenText("0A", "byte")  # <0x0A>
    assert sum(t.style == "byte" for t in texts) == 256
    the = tokenizer32k.convert_tokens_to_ids("▁the")
    assert texts[the] == TokenText("▁the", "plain")  # the word-boundary mark is drawn, not blanked
    assert texts[32004] == TokenText("#32004", "unused")
    # every id has its own text
    assert len({(t.text, t.style) for t in texts}) == len(texts)


def test_characters_sit_in_their_cells(renderer):
    a = renderer.char_cell("A")
    assert a.shape == (32, 32) and a.dtype == bool and a.any()
    assert not a[:, :8].any() and not a[:, 24:].any()  # halfwidth: 16 pixels wide, centred
    wide = renderer.char_cell("中")
    assert wide[:, :8].any() and wide[:, 24:].any()  # fullwidth fills the cell
    # Unifont pixels are 2 x 2 blocks at 32 pixels: every cell is a 16 x 16 picture scaled up
    for cell in (a, wide):
        assert np.array_equal(cell, np.kron(cell[::2, ::2], np.ones((2, 2), dtype=bool)))


def test_strips_are_resized_with_nearest_neighbour(renderer):
    ab = renderer.token(TokenText("ab", "plain"))
    strip = np.concatenate([renderer.char_cell("a"), renderer.char_cell("b")], axis=1)
    assert np.array_equal(ab, strip[:, 1::2])  # Pillow's nearest: source column floor((j + 0.5) * 2)
    abc = renderer.token(TokenText("abc", "plain"))
    strip = np.concatenate([renderer.char_cell(c) for c in "abc"], axis=1)
    resized = np.asarray(Image.fromarray(strip.astype(np.uint8) * 255).resize((32, 32), Image.Resampling.NEAREST))
    assert np.array_equal(abc, resized > 127)
    assert np.array_equal(renderer.token(TokenText("a", "plain")), renderer.char_cell("a"))
    assert not renderer.token(TokenText("", "plain")).any()


def test_bytes_and_specials_are_inverted(renderer):
    byte = renderer.token(TokenText("0A", "byte"))
    zero, a = renderer.char_cell("0"), renderer.char_cell("A")
    # two halfwidth digits fill one cell side by side: the left one is the centred '0' shifted by 8 pixels
    assert np.array_equal(~byte[:, :16], zero[:, 8:24]) and np.array_equal(~byte[:, 16:], a[:, 8:24])
    special = renderer.token(TokenText("<s>", "special"))
    assert np.array_equal(~special, renderer.token(TokenText("<s>", "plain")))


def test_characters_missing_from_the_font_get_their_own_hex_box(renderer):
    grin, rocket = renderer.char_cell("\U0001f602"), renderer.char_cell("\U0001f680")
    assert not np.array_equal(grin, rocket)
    assert grin[0].all() and grin[-1].all() and grin[:, 0].all()  # the frame
    assert "\U0001f602" in renderer.stats.missing_chars and "A" not in renderer.stats.missing_chars


def test_the_32k_glyph_table(glyph32k, tokenizer32k):
    substrate, bits = glyph32k
    table = substrate.table(128)
    assert table.shape == (32000, 128)
    assert (table.norm(dim=1) - 1).abs().max() < 1e-6
    info = substrate.info
    assert info["bits"] == 1024 and 0 < info["rank"] < 1024 and info["components_kept"] == 128
    assert info["characters_missing_from_font"] == 64  # emoji and other plane-1 characters
    # Rows coincide exactly when pictures do: every collision is a glyph coincidence, counted
    picture_group, _ = row_groups(bits)
    row_group, _ = row_groups(table)
    pairs = set(zip(picture_group.tolist(), row_group.tolist(), strict=True))
    assert len(pairs) == len(set(picture_group.tolist())) == len(set(row_group.tolist()))
    collisions = count_collisions(table)
    assert 0 < collisions["share_sharing_a_row"] < 0.1
    a, cyrillic_a = tokenizer32k.convert_tokens_to_ids(["▁a", "▁а"])  # Latin and Cyrillic: the same picture
    assert torch.equal(table[a], table[cyrillic_a])
    the, the_mid = tokenizer32k.convert_tokens_to_ids(["▁the", "the"])
    assert float(table[the] @ table[the_mid]) < 0.99


def test_the_cache_gives_back_the_same_bits(glyph32k, tokenizer32k, substrate_cache):
    from pathlib import Path

    substrate, _ = glyph32k
    assert (Path(substrate_cache) / "substrate" / f"{substrate.key}.safetensors").exists()
    again = build_substrate(SubstrateSpec("glyph", 32000, 128), tokenizer32k)
    assert again.key == substrate.key and torch.equal(again.codes, substrate.codes)
    assert again.info["rank"] == substrate.info["rank"]
    other = SubstrateSpec("glyph", 32000, 128, cell=64)
    from growlm.substrate.build import substrate_key

    assert substrate_key(other, tokenizer32k)[0] != substrate.key


def test_pca_of_real_pictures_matches_scikit_learn(glyph32k):
    _, bits = glyph32k
    sample = bits[::16]  # 2,000 tokens
    coords, _ = principal_coordinates(sample, 64)
    theirs = PCA(n_components=64, svd_solver="full").fit_transform(sample.astype(np.float64))
    signs = np.sign((coords.numpy() * theirs).sum(0))
    np.testing.assert_allclose(coords.numpy(), theirs * signs, atol=1e-8)
