"""Attention masking, padding and the key/value cache, for every architecture."""


import pytest
import torch

from tests.conftest import make_model, small_config

ARCHS = ["nexus", "qwen3"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("seed", range(3))
def test_causal_masking(arch, seed):
    """Changing tokens after position t never changes the logits at positions <= t."""
    model = make_model(small_config(arch, seed), seed, perturb=0.05)
    ids = torch.randint(0, 512, (2, 24))
    changed = ids.clone()
    changed[:, 12:] = torch.randint(0, 512, (2, 12))
    a, b = model(ids).logits, model(changed).logits
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-6)
    assert not torch.allclose(a[:, 12:], b[:, 12:], atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_left_padding_matches_unpadded(arch):
    """A left-padded sequence gives the same logits on its real tokens as the sequence alone."""
    model = make_model(small_config(arch, 1), 1, perturb=0.05)
    ids = torch.randint(0, 512, (1, 10))
    padded = torch.cat([torch.zeros(1, 5, dtype=torch.long), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 10, dtype=torch.long)], dim=1)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    alone = model(ids).logits
    with_pad = model(padded, attention_mask=mask, position_ids=position_ids).logits
    assert torch.isfinite(with_pad).all()
    assert torch.allclose(alone, with_pad[:, 5:], atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_kv_cache_decoding_matches_full_forward(arch):
    model = make_model(small_config(arch, 2), 2, perturb=0.05)
    ids = torch.randint(0, 512, (2, 16))
    full = model(ids, use_cache=False).logits
    out = model(ids[:, :9], use_cache=True)
    steps = [out.logits]
    cache = out.past_key_values
    for t in range(9, 16):
        out = model(ids[:, t: t + 1], past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        steps.append(out.logits)
    assert torch.allclose(full, torch.cat(steps, dim=1), atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_batched_with_padding_equals_single(arch):
    model = make_model(small_config(arch, 3), 3, perturb=0.05)
    short, long = torch.randint(1, 512, (1, 5)), torch.randint(1, 512, (1, 9))
    batch = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), short], 1), long])
    mask = (torch.arange(9)[None] >= torch.tensor([[4], [0]])).long()
    together = model.generate(batch, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    alone = model.generate(short, attention_mask=torch.ones_like(short), max_new_tokens=6, do_sample=False,
                           pad_token_id=0)
    assert torch.equal(together[0, 9:], alone[0, 5:])


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_is_mean_next_token_cross_entropy(arch):
    model = make_model(small_config(arch, 4), 4)
    ids = torch.randint(0, 512, (2, 12))
    out = model(ids, labels=ids)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 512), ids[:, 1:].reshape(-1))
    assert torch.allclose(out.loss, expected, atol=1e-6)
    shifted = model(ids[:, :-1], shift_labels=ids[:, 1:]).loss
    assert torch.allclose(shifted, expected, atol=1e-6)


def test_rotary_tables_op_equals_the_formula_and_is_not_inlined_by_the_compiler():
    """The opaque op gives the inline formula's values bit for bit, and under torch.compile the
    generated code reads its tables instead of recomputing cos/sin in every consumer."""
    from torch._inductor.utils import run_and_get_code

    from growlm.models import layers

    pos = torch.arange(37)[None] + 5
    inline = layers._rotary_cos_sin(pos, 16, 1e4)
    opaque = layers._rotary_cos_sin_op(pos, 16, 1e4)
    assert all(torch.equal(a, b) for a, b in zip(inline, opaque, strict=True))

    def rotate(q: torch.Tensor, positions: torch.Tensor, opaque: bool = True) -> torch.Tensor:
        cos, sin = layers.rotary_tables(positions, 16, 1e4, q.dtype, opaque)
        return layers.apply_rotary(q, cos, sin) * 2

    q = torch.randn(2, 3, 37, 16)
    codes = {}
    for opaque_tables in (True, False):
        torch._dynamo.reset()
        out, code = run_and_get_code(torch.compile(rotate), q, pos, opaque_tables)
        torch.testing.assert_close(out, rotate(q, pos, opaque_tables))
        codes[opaque_tables] = "\n".join(code)
    torch._dynamo.reset()
    assert "rotary_cos_sin" in codes[True] and "cos(" not in codes[True]
    assert "cos(" in codes[False]  # the compiler does inline the formula when it can see it
